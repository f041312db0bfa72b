"""What requests reads from the process environment, read once per run instead of per request.

With ``trust_env`` on, requests scans every environment variable for proxies twice per request
and searches and parses ~/.netrc once per request: a quarter of a worker's CPU time on a fast
server (measured with cProfile: getproxies_environment alone was 24%). Sessions here run with
``trust_env`` off and get the same answers from this object: the proxies and NO_PROXY decision
per origin, the netrc credentials per host, and REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, each
computed once and cached (bounded, so that a list of a million hosts stays flat in memory).
Its methods take a URL already split (``urllib.parse.urlsplit``): the caller splits it once.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from collections.abc import Mapping
from functools import lru_cache
from netrc import NetrcParseError
from urllib.parse import SplitResult

from requests.utils import get_environ_proxies, get_netrc_auth, should_bypass_proxies

from fetcher.input.parsing import with_proxy_scheme

CACHE_SIZE = 4096
log = logging.getLogger("fetcher")


class Environment:
    """Thread-safe: its caches are filled idempotently under the GIL."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        found = ca_bundle_variable(environ)
        self.ca_bundle = None if found is None else found[1]
        self._proxies = lru_cache(CACHE_SIZE)(self._origin_proxies)
        self._bypass = lru_cache(CACHE_SIZE)(self._origin_bypass)
        self._netrc = lru_cache(CACHE_SIZE)(self._host_netrc)
        self._netrc_unreadable = threading.Event()  # said once, then not read again

    def bypasses_proxy(self, url: SplitResult) -> bool:
        """Whether NO_PROXY covers url."""
        return self._bypass(url.scheme, url.netloc)

    def proxies_for(self, url: SplitResult) -> dict[str, str]:
        """The *_PROXY proxies for url, {} when NO_PROXY covers it: what requests would merge."""
        return self._proxies(url.scheme, url.netloc)

    def netrc_auth(self, url: SplitResult) -> tuple[str, str] | None:
        """The .netrc credentials for url's host, as requests would find them."""
        return self._netrc(url.scheme, url.hostname or "")

    @staticmethod
    def _origin_proxies(scheme: str, netloc: str) -> dict[str, str]:
        """requests' proxies, each read as -x and the start-up check read it (with_proxy_scheme):
        requests took 'localhost' of http_proxy=localhost:3128 for a scheme, and every URL of
        the run failed as invalid_url. An empty one (no proxy) and NO_PROXY's are as they were."""
        proxies = get_environ_proxies(f"{scheme}://{netloc}/", no_proxy=None)
        return {
            key: with_proxy_scheme(value) if value and key != "no" else value
            for key, value in proxies.items()
        }

    @staticmethod
    def _origin_bypass(scheme: str, netloc: str) -> bool:
        return bool(should_bypass_proxies(f"{scheme}://{netloc}/", no_proxy=None))

    def _host_netrc(self, scheme: str, host: str) -> tuple[str, str] | None:
        """requests' answer; None, said once, for a .netrc that cannot be used: bytes that are
        not UTF-8 (requests lets that error through, which failed every URL, with a traceback
        each), or what Python's netrc parser rejects (a token it does not know, such as curl's
        'port'), or a file that cannot be opened: requests drops those for every host without a
        word, and the run got 401s."""
        if self._netrc_unreadable.is_set():
            return None
        if (odd := netrc_unfit()) is not None:  # a FIFO: opening it waited for ever
            self._unusable_netrc(odd)
            return None
        try:
            return get_netrc_auth(f"{scheme}://{host}/", raise_errors=True)
        except NetrcParseError as exc:
            self._unusable_netrc(netrc_problem(exc))
        except (UnicodeError, ValueError, OSError) as exc:
            self._unusable_netrc(str(exc))
        return None

    def _unusable_netrc(self, problem: str) -> None:
        if not self._netrc_unreadable.is_set():
            self._netrc_unreadable.set()
            log.warning("cannot read .netrc (%s): its credentials are not used", problem)


# What requests' merge_environment_settings reads, in its order, when verify is left on.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def ca_bundle_variable(environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """The variable whose CA bundle requests verifies with when neither --cacert nor -k is
    given, and its path: the first of CA_BUNDLE_VARIABLES set and not empty; None for none."""
    for name in CA_BUNDLE_VARIABLES:
        if value := environ.get(name):
            return name, value
    return None


# curl's bound (MAX_NETRC_FILE in its lib/netrc.c): a .netrc past it is no .netrc.
NETRC_LIMIT = 128 * 1024


def netrc_unfit() -> str | None:
    """The .netrc requests would read, when it is not one to parse: what to say. A FIFO's open
    waited for ever and held every worker (s23 r5 5), an endless device (/dev/zero) was read
    for ever at full CPU (s24 r1 3), and so was a regular file without end (/proc/self/pagemap,
    whose size says 0) or a huge one, parsed again for each new host (s24 r9 5): one is read
    to one byte past NETRC_LIMIT, no further. /dev/null, a common way to turn it off, reads as
    empty (s23 r6 5). Found as requests finds it: $NETRC, else ~/.netrc, else ~/_netrc."""
    given = os.environ.get("NETRC")
    for name in [given] if given is not None else ["~/.netrc", "~/_netrc"]:
        path = os.path.expanduser(name)
        if os.path.exists(path):
            found = os.stat(path)
            if _is_dev_null(found):
                return None
            if not stat.S_ISREG(found.st_mode):
                return f"{path}: not a regular file"
            return _past_limit(path)
    return None


def _past_limit(path: str) -> str | None:
    """What to say of a regular .netrc longer than NETRC_LIMIT; None for one within it, or one
    that cannot be opened (the parser says why)."""
    try:
        with open(path, "rb") as netrc:
            length = len(netrc.read(NETRC_LIMIT + 1))
    except OSError:
        return None
    return f"{path}: larger than 128 KiB" if length > NETRC_LIMIT else None


def _is_dev_null(found: os.stat_result) -> bool:
    """Whether found is the null device, by its device number (a link to it, or a copy made
    with mknod, is one too)."""
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return stat.S_ISCHR(found.st_mode) and found.st_rdev == null.st_rdev


# A token the netrc parser quotes in its message ('bad follower token %r'): it may be a piece
# of a password written with a space in it.
_QUOTED = re.compile(r"""(['"]).*\1""")


def netrc_problem(exc: NetrcParseError) -> str:
    """The parser's message with the file and line it names, the token it quotes masked."""
    where = f"{exc.filename}, line {exc.lineno}" if exc.lineno else exc.filename or "~/.netrc"
    return f"{where}: {_QUOTED.sub('(not shown)', exc.msg)}"
