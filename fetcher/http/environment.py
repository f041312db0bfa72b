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
import socket
import stat
import threading
from collections.abc import Mapping
from functools import lru_cache
from netrc import NetrcParseError, netrc
from urllib.parse import ParseResult, SplitResult, urlparse
from urllib.request import getproxies, getproxies_environment, proxy_bypass

from requests.compat import proxy_bypass_environment  # type: ignore[attr-defined]
from requests.utils import NETRC_FILES, address_in_network, is_ipv4_address, is_valid_cidr

from fetcher.input.parsing import with_proxy_scheme

CACHE_SIZE = 4096
log = logging.getLogger("fetcher")


class _Recorded(dict[str, tuple[str, str, str]]):
    """netrc's hosts, which keep each host's last entry, recording every entry as it is read."""

    def __init__(self, entries: dict[str, list[tuple[str, str, str]]]) -> None:
        super().__init__()
        self.entries = entries

    def __setitem__(self, host: str, entry: tuple[str, str, str]) -> None:
        if isinstance(entry, tuple) and len(entry) == 3:  # not the {} it sets an entry's start to
            self.entries.setdefault(host, []).append(entry)
        super().__setitem__(host, entry)


class EveryLogin(netrc):
    """Python's netrc, and every entry of each host (entry_of), not only its last: curl takes
    the entry of the URL's host and user name. netrc's parser sets self.hosts, then an entry
    at a time (CPython 3.8 to 3.13); a parser that did otherwise records none, and entry_of
    finds none (the last entry's login still is one)."""

    def __init__(self, file: str) -> None:
        self.entries: dict[str, list[tuple[str, str, str]]] = {}
        super().__init__(file)

    @property
    def hosts(self) -> dict[str, tuple[str, str, str]]:
        return self._hosts

    @hosts.setter
    def hosts(self, value: dict[str, tuple[str, str, str]]) -> None:
        self._hosts = _Recorded(self.entries)
        self._hosts.update(value)

    def entry_of(self, host: str, login: str) -> tuple[str, str] | None:
        """(login, password) of host's entry for login, else of the default entry's."""
        for name in (host, "default"):
            for found_login, _, password in reversed(self.entries.get(name, [])):
                if found_login == login:
                    return login, password or ""
        return None


class Environment:
    """Thread-safe: its caches are filled idempotently under the GIL, .netrc read under a lock."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        found = ca_bundle_variable(environ)
        self.ca_bundle = None if found is None else found[1]
        self._variables = ProxyVariables()
        self._bypass = lru_cache(CACHE_SIZE)(self._origin_bypass)
        self._netrc = lru_cache(CACHE_SIZE)(self._host_netrc)
        self._netrc_lock = threading.Lock()
        self._netrc_file: netrc | None = None
        self._netrc_read = False  # read once, at the first URL that may use it

    def bypasses_proxy(self, url: SplitResult) -> bool:
        """Whether NO_PROXY covers url."""
        return self._bypass(url.scheme, url.netloc)

    def proxies_for(self, url: SplitResult) -> dict[str, str]:
        """The *_PROXY proxies for url, {} when NO_PROXY covers it: what requests would merge.
        A copy: one dict is shared by every host now, and requests may add to what it gets."""
        return {} if self.bypasses_proxy(url) else dict(self._variables.proxies)

    def netrc_auth(self, url: SplitResult) -> tuple[str, str] | None:
        """The .netrc credentials for url's host, as requests would find them."""
        return self._netrc(url.hostname)

    def netrc_login(self, url: SplitResult, login: str) -> tuple[str, str] | None:
        """The .netrc credentials of login for url's host, as curl finds them: the entry of
        that host and login (Python's netrc keeps the host's last entry alone, and a URL that
        named the first of two logins got an empty password: s37 r3 3), else the default
        entry's when it is that login's."""
        if self._netrc(url.hostname) is None or not isinstance(self._netrc_file, EveryLogin):
            return None
        return self._netrc_file.entry_of(url.hostname or "", login)

    def _origin_bypass(self, scheme: str, netloc: str) -> bool:
        return self._variables.bypass(f"{scheme}://{netloc}/")

    def _host_netrc(self, host: str | None) -> tuple[str, str] | None:
        """requests' answer (get_netrc_auth) from the .netrc read once: it parsed the file again
        for each new host. The login, else the account, and the password; '' for one unset."""
        if not self._netrc_read:
            with self._netrc_lock:
                if not self._netrc_read:
                    self._netrc_file = self._read_netrc()
                    self._netrc_read = True
        if self._netrc_file is None or host is None:
            return None
        found = self._netrc_file.authenticators(host)
        if not found or not any(found):
            return None
        return (found[0] if found[0] else found[1]) or "", found[2] or ""

    def _read_netrc(self) -> netrc | None:
        """The .netrc requests would read, parsed; None, said, for one that cannot be used:
        bytes that are not UTF-8 (requests lets that error through, which failed every URL,
        with a traceback each), or what Python's netrc parser rejects (a token it does not
        know, such as curl's 'port'), or a file that cannot be opened: requests drops those for
        every host without a word, and the run got 401s."""
        if (odd := netrc_unfit()) is not None:  # a FIFO: opening it waited for ever
            self._unusable_netrc(odd)
            return None
        if (path := netrc_path()) is None:
            return None
        try:
            return EveryLogin(path)
        except NetrcParseError as exc:
            self._unusable_netrc(netrc_problem(exc))
        except UnicodeDecodeError:  # the file and line, as a parse error's (s32 t2 5)
            self._unusable_netrc(f"{path}, line {_first_line_not_utf8(path)}: not UTF-8")
        except (UnicodeError, ValueError, OSError) as exc:
            self._unusable_netrc(str(exc))
        return None

    @staticmethod
    def _unusable_netrc(problem: str) -> None:
        log.warning("cannot read .netrc (%s): its credentials are not used", problem)


class ProxyVariables:
    """The *_PROXY and NO_PROXY variables, read once, and requests' decision for a URL made from
    them alone: requests (should_bypass_proxies, get_environ_proxies) read all of os.environ
    again, several times, for each new host, 250-1,700 µs each (s27 t5 2). The same rules: its
    own NO_PROXY match (lower case wins, IPv4 addresses and CIDR, suffixes with and without the
    port), then urllib's (proxy_bypass_environment: '*', case-blind suffixes) on the proxies
    urllib read (the lower-case variable wins, HTTP_PROXY dropped under CGI's REQUEST_METHOD).
    Where the environment names no proxy, macOS and Windows ask the system's settings (urllib's
    proxy_bypass; requests has a registry reader of its own on Windows, to the same effect)."""

    def __init__(self) -> None:
        found = getproxies_environment()
        self._system = not found and getproxies is not getproxies_environment
        # Each read as -x and the start-up check read it (with_proxy_scheme): requests took
        # 'localhost' of http_proxy=localhost:3128 for a scheme, and every URL of the run failed
        # as invalid_url. An empty one (no proxy) and NO_PROXY's are as they were.
        self.proxies = {
            key: with_proxy_scheme(value) if value and key != "no" else value
            for key, value in (getproxies() if self._system else found).items()
        }
        self._found = found
        listed = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
        entries = [entry for entry in listed.replace(" ", "").split(",") if entry]
        self._no_proxy = [(entry, is_valid_cidr(entry)) for entry in entries]

    def bypass(self, url: str) -> bool:
        """should_bypass_proxies(url, no_proxy=None), from the variables read once."""
        parsed = urlparse(url)
        hostname = parsed.hostname
        if hostname is None:  # requests: a URL without a host
            return True
        if self._no_proxy and self._listed(hostname, parsed):
            return True
        try:
            if self._system:
                return bool(proxy_bypass(hostname))
            return bool(proxy_bypass_environment(hostname, self._found))
        except (TypeError, socket.gaierror):
            return False

    def _listed(self, hostname: str, parsed: ParseResult) -> bool:
        """requests' own NO_PROXY match: an IPv4 address against addresses and CIDR blocks,
        any other host as the name or a suffix of it, with or without the port (read only
        then, as requests reads it: a port out of range raises there alone)."""
        if is_ipv4_address(hostname):
            return any(
                address_in_network(hostname, entry) if cidr else hostname == entry
                for entry, cidr in self._no_proxy
            )
        with_port = f"{hostname}:{parsed.port}" if parsed.port else hostname
        for entry, _ in self._no_proxy:
            name = entry.lstrip(".")
            if name in (hostname, with_port):
                return True
            if hostname.endswith(f".{name}") or with_port.endswith(f".{name}"):
                return True
        return False


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


def pem_certificate_in(path: str) -> bool:
    """Whether the file at path holds a PEM certificate's first line, read 1 MiB at a time to
    the first one (64 MiB read whole took 60 MB of memory: s24 r9 4); past 64 MiB, it is taken
    to (a bundle that large is no mistake of a path)."""
    marks = (b"-----BEGIN CERTIFICATE-----", b"-----BEGIN TRUSTED")
    tail = b""
    with open(path, "rb") as file:
        for _ in range(64):
            piece = file.read(1 << 20)
            if not piece:
                return False
            if any(mark in tail + piece for mark in marks):
                return True
            tail = piece[-32:]
    return True


def netrc_path() -> str | None:
    """The .netrc requests reads, found as requests finds it: $NETRC, else ~/.netrc, else
    ~/_netrc, the first that exists; None for none."""
    given = os.environ.get("NETRC")
    for name in [given] if given is not None else [f"~/{name}" for name in NETRC_FILES]:
        path = os.path.expanduser(name)
        if os.path.exists(path):
            return path
    return None


def netrc_unfit() -> str | None:
    """The .netrc requests would read, when it is not one to parse: what to say. A FIFO's open
    waited for ever and held every worker (s23 r5 5), an endless device (/dev/zero) was read
    for ever at full CPU (s24 r1 3), and so was a regular file without end (/proc/self/pagemap,
    whose size says 0) or a huge one (s24 r9 5): one is read to one byte past NETRC_LIMIT, no
    further. /dev/null, a common way to turn it off, reads as empty (s23 r6 5)."""
    if (path := netrc_path()) is None:
        return None
    found = os.stat(path)
    if _is_dev_null(found):
        return None
    if not stat.S_ISREG(found.st_mode):
        return f"{path}: not a regular file"
    return _past_limit(path)


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


def _first_line_not_utf8(path: str) -> int | str:
    """The number of the first line of path (a .netrc, 128 KiB at most: _past_limit) that is
    not UTF-8: the codec's offset counts from the piece it decoded, not the file's start."""
    try:
        with open(path, "rb") as file:
            data = file.read()
        data.decode("utf-8")
    except OSError:
        return "?"
    except UnicodeDecodeError as exc:
        return data[: exc.start].count(b"\n") + 1
    return "?"


def netrc_problem(exc: NetrcParseError) -> str:
    """The parser's message with the file and line it names, the token it quotes masked."""
    where = f"{exc.filename}, line {exc.lineno}" if exc.lineno else exc.filename or "~/.netrc"
    return f"{where}: {_QUOTED.sub('(not shown)', exc.msg)}"
