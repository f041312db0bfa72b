"""The cookie jar file (-c) and command-line cookies (-b).

Each worker's Session keeps its own jar (a jar shared between sessions would be iterated by
requests without its lock); the jars are merged when the run ends and saved atomically in the
Netscape format that curl and wget read.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from http.cookiejar import CookieJar, LoadError, MozillaCookieJar

from requests.cookies import RequestsCookieJar, create_cookie

from fetcher.atomic import atomic_path


def load_jar(path: str) -> MozillaCookieJar:
    """Load a Netscape cookie file; a missing file is an empty jar. Raises ValueError if the
    file exists but cannot be read as one."""
    jar = MozillaCookieJar(path)
    if os.path.exists(path):
        try:
            jar.load(ignore_discard=True, ignore_expires=False)
        except (LoadError, OSError) as exc:
            raise ValueError(f"cannot read cookie jar {path!r}: {exc}") from None
    return jar


def copy_into(source: Iterable[object], target: CookieJar) -> None:
    for cookie in source:
        target.set_cookie(copy.copy(cookie))  # type: ignore[arg-type]


def save_jar(path: str, jars: Iterable[CookieJar]) -> int:
    """Merge the jars and write them to path atomically; return the number of cookies saved."""
    merged = MozillaCookieJar()
    for jar in jars:
        copy_into(jar, merged)
    with atomic_path(path, mode=0o600) as temporary:
        merged.save(temporary, ignore_discard=True, ignore_expires=False)
    return len(merged)


def host_cookies(pairs: tuple[tuple[str, str], ...], host: str) -> RequestsCookieJar:
    """Command-line cookies bound to one host, so that a redirect elsewhere never carries them."""
    jar = RequestsCookieJar()
    for name, value in pairs:
        jar.set_cookie(create_cookie(name, value, domain=host, path="/"))  # type: ignore[no-untyped-call]
    return jar
