"""The cookie jar file (-c) and command-line cookies (-b).

Each worker's Session keeps its own jar (a jar shared between sessions would be iterated by
requests without its lock); the jars are merged when the run ends and saved atomically.

The file is the Netscape format that curl and wget read and write. http.cookiejar's
MozillaCookieJar disagrees with curl on two points: it writes an empty expiry for session
cookies (curl skips such lines) and reads curl's ``0`` as expired in 1970; and it drops curl's
``#HttpOnly_`` lines as comments. So the seven fields are read and written here, into and from
http.cookiejar's own Cookie objects, which still do all the domain and path matching.

Every jar is bounded as a browser's is (RFC 6265 §6.1 gives the minimums): a server that sets
new cookies on every answer evicts its own oldest ones instead of growing memory and the Cookie
header without limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from http.cookiejar import Cookie, CookieJar, CookiePolicy
from typing import Any
from urllib.parse import SplitResult

from requests.cookies import RequestsCookieJar, create_cookie

from fetcher.output.atomic import atomic_path

HEADER = (
    "# Netscape HTTP Cookie File\n# Written by fetcher: curl -b and wget --load-cookies read it.\n"
)
HTTP_ONLY = "#HttpOnly_"

MAX_COOKIE_BYTES = 4096  # name and value; a larger cookie is ignored, as browsers do
MAX_COOKIES_PER_DOMAIN = 50  # then the domain's least recently set cookie is evicted
MAX_COOKIES = 3000  # per jar (one per worker): then the least recently set one is evicted
MAX_COOKIE_HEADER_BYTES = 8192  # Apache's and nginx's default limit for one header line
MAX_JAR_FILE_BYTES = 16 * 1024 * 1024  # -c FILE; about 100 times what MAX_COOKIES take

_Key = tuple[str, str, str]  # domain, path, name: what identifies a cookie in a jar


class BoundedCookieJar(RequestsCookieJar):
    """A RequestsCookieJar that holds at most MAX_COOKIES_PER_DOMAIN cookies per domain and
    MAX_COOKIES in all, evicting the least recently set, ignores cookies over
    MAX_COOKIE_BYTES, and builds Cookie headers of at most MAX_COOKIE_HEADER_BYTES.

    Every way into a jar (a received Set-Cookie, the -c file, requests' merging) goes through
    ``set_cookie`` and every way out through ``clear``, so the recency order is kept there.
    """

    def __init__(self, policy: CookiePolicy | None = None) -> None:
        super().__init__(policy)
        self._order: OrderedDict[_Key, None] = OrderedDict()

    def set_cookie(self, cookie: Cookie, *args: Any, **kwargs: Any) -> None:
        if len(cookie.name) + len(cookie.value or "") > MAX_COOKIE_BYTES:
            return
        with self._cookies_lock:  # type: ignore[attr-defined]
            super().set_cookie(cookie, *args, **kwargs)
            key = (cookie.domain, cookie.path, cookie.name)
            self._order[key] = None
            self._order.move_to_end(key)
            self._evict(cookie.domain)

    def _evict(self, domain: str) -> None:
        paths = self._cookies.get(domain, {})  # type: ignore[attr-defined]
        extra = sum(len(names) for names in paths.values()) - MAX_COOKIES_PER_DOMAIN
        if extra > 0:
            for key in [key for key in self._order if key[0] == domain][:extra]:
                self.clear(*key)
        while len(self._order) > MAX_COOKIES:
            self.clear(*next(iter(self._order)))

    def clear(
        self, domain: str | None = None, path: str | None = None, name: str | None = None
    ) -> None:
        with self._cookies_lock:  # type: ignore[attr-defined]
            try:
                super().clear(domain, path, name)
            finally:
                if domain is None:
                    self._order.clear()
                elif name is not None and path is not None:
                    self._order.pop((domain, path, name), None)
                else:
                    for key in [k for k in self._order if _under(k, domain, path)]:
                        del self._order[key]

    def _cookie_attrs(self, cookies: list[Cookie]) -> list[str]:
        """The ``name=value`` pairs of a Cookie header, those that fit in the bound (the most
        specific paths come first: CookieJar sorts them so)."""
        kept: list[str] = []
        size = 0
        for attr in super()._cookie_attrs(cookies):  # type: ignore[misc]
            extra = len(attr) + (2 if kept else 0)  # "; " between two
            if size + extra <= MAX_COOKIE_HEADER_BYTES:
                kept.append(attr)
                size += extra
        return kept


def _under(key: _Key, domain: str, path: str | None) -> bool:
    return key[0] == domain and (path is None or key[1] == path)


def parse_jar_line(line: str) -> Cookie | None:
    """One line of a Netscape cookie file to a Cookie; None for comments, blank lines and
    expired cookies. Raises ValueError for a line that is not seven tab-separated fields."""
    line = line.rstrip("\r\n")
    http_only = line.startswith(HTTP_ONLY)
    if http_only:
        line = line[len(HTTP_ONLY) :]
    elif not line.strip() or line.startswith("#"):
        return None
    fields = line.split("\t")
    if len(fields) != 7:
        raise ValueError("expected 7 tab-separated fields")
    domain, domain_flag, path, secure, expires_text, name, value = fields
    expires = int(expires_text) if expires_text not in ("", "0") else None
    if expires is not None and expires < time.time():
        return None
    return Cookie(
        version=0, name=name, value=value, port=None, port_specified=False, domain=domain,
        domain_specified=domain_flag.upper() == "TRUE", domain_initial_dot=domain.startswith("."),
        path=path, path_specified=True, secure=secure.upper() == "TRUE", expires=expires,
        discard=expires is None, comment=None, comment_url=None,
        rest={"HttpOnly": ""} if http_only else {},
    )  # fmt: skip


def format_jar_line(cookie: Cookie) -> str:
    prefix = HTTP_ONLY if cookie.has_nonstandard_attr("HttpOnly") else ""
    fields = [
        cookie.domain,
        "TRUE" if cookie.domain.startswith(".") else "FALSE",
        cookie.path,
        "TRUE" if cookie.secure else "FALSE",
        str(cookie.expires) if cookie.expires is not None else "0",  # 0: a session cookie
        cookie.name,
        cookie.value or "",
    ]
    return prefix + "\t".join(fields) + "\n"


def load_jar(path: str) -> CookieJar:
    """Load a Netscape cookie file; a missing file is an empty jar. Raises ValueError if the
    file exists but cannot be read as one."""
    jar = BoundedCookieJar()
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_JAR_FILE_BYTES + 1)  # /dev/zero must not fill the memory
        if len(data) > MAX_JAR_FILE_BYTES:
            limit = MAX_JAR_FILE_BYTES // (1024 * 1024)
            raise ValueError(f"cannot read cookie jar {path!r}: larger than {limit} MiB")
        lines = data.decode("utf-8").split("\n")  # not splitlines: \x85 is no line end
    except FileNotFoundError:
        return jar
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read cookie jar {path!r}: {exc}") from None
    for number, line in enumerate(lines, start=1):
        try:
            cookie = parse_jar_line(line)
        except ValueError as exc:
            raise ValueError(f"cannot read cookie jar {path!r}, line {number}: {exc}") from None
        if cookie is not None:
            jar.set_cookie(cookie)
    return jar


def copy_into(source: Iterable[Cookie], target: CookieJar) -> None:
    for cookie in source:
        target.set_cookie(cookie)


def jar_of(cookies: Iterable[Cookie]) -> CookieJar:
    """A new jar holding cookies (sent between processes as a list: a jar holds a lock)."""
    jar = CookieJar()
    copy_into(cookies, jar)
    return jar


def save_jar(path: str, jars: Iterable[CookieJar]) -> int:
    """Merge the jars (later ones win for the same domain, path and name) and write them to path
    atomically, mode 0600; return the number of cookies saved."""
    merged = BoundedCookieJar()
    for jar in jars:
        copy_into(jar, merged)
    now = int(time.time())
    cookies = [cookie for cookie in merged if not cookie.is_expired(now)]
    with atomic_path(path, mode=0o600) as temporary, open(temporary, "a") as file:
        file.write(HEADER + "\n")
        file.writelines(format_jar_line(cookie) for cookie in cookies)
    return len(cookies)


def host_cookies(pairs: tuple[tuple[str, str], ...], url: SplitResult) -> RequestsCookieJar:
    """Command-line cookies bound to url's host, and to https when url is https, so that a
    redirect to another host, or from https to http, never carries them."""
    host = (url.hostname or "").lower()
    # http.cookiejar knows a host without a dot (localhost) as host.local.
    domain = host if "." in host else f"{host}.local"
    secure = url.scheme == "https"
    jar = RequestsCookieJar()
    for name, value in pairs:
        cookie = create_cookie(  # type: ignore[no-untyped-call]
            name, value, domain=domain, path="/", secure=secure
        )
        jar.set_cookie(cookie)
    return jar
