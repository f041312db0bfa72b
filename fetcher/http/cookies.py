"""The cookie jar file (-c) and command-line cookies (-b).

Each worker's Session keeps its own jar (a jar shared between sessions would be iterated by
requests without its lock: ``merge_cookies`` in ``Session.prepare_request`` and
``resolve_redirects``), starting from the loaded file. What its servers set or delete is also
noted, with when, in one CookieChanges per process; the file saved at the end is the loaded
one with every change applied in the order made. Merging the session jars instead would let a
session that never heard of a change bring the loaded value back.

The file is the Netscape format that curl and wget read and write. http.cookiejar's
MozillaCookieJar disagrees with curl on two points: it writes an empty expiry for session
cookies (curl skips such lines) and reads curl's ``0`` as expired in 1970; and it drops curl's
``#HttpOnly_`` lines as comments. So the seven fields are read and written here, into and from
http.cookiejar's own Cookie objects, which still do all the domain and path matching.

What servers set is bounded as a browser bounds it (RFC 6265 §6.1 gives the minimums), in each
session's jar and in the changes: a server that sets new cookies on every answer evicts its own
oldest ones instead of growing memory and the Cookie header without limit. The file's own
cookies are the user's (read up to MAX_JAR_FILE_BYTES): all are saved back, though a session
sends only those its bounded jar keeps.

Where a cookie goes is RFC 6265's (HostOnlyPolicy, the policy of every jar a request is sent
from): one set without a Domain attribute only to the host that set it, whatever the port; a -b
cookie only to the host and port of its URL, as requests keeps Authorization.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from http import cookiejar
from http.cookiejar import Cookie, CookieJar, CookiePolicy, DefaultCookiePolicy
from typing import Any, NamedTuple
from urllib.parse import SplitResult, urlsplit

from requests.cookies import RequestsCookieJar
from requests.models import PreparedRequest

from fetcher.output.atomic import atomic_path
from fetcher.settings import DEFAULT_PORTS

HEADER = (
    "# Netscape HTTP Cookie File\n# Written by fetcher: curl -b and wget --load-cookies read it.\n"
)
HTTP_ONLY = "#HttpOnly_"

MAX_COOKIE_BYTES = 4096  # name and value; a larger cookie is ignored, as browsers do
MAX_COOKIES_PER_DOMAIN = 50  # then the domain's least recently set cookie is evicted
MAX_COOKIES = 3000  # per jar, and received ones saved: then the least recently set goes
MAX_COOKIE_HEADER_BYTES = 8192  # Apache's and nginx's default limit for one header line
MAX_JAR_FILE_BYTES = 16 * 1024 * 1024  # -c FILE; about 100 times what MAX_COOKIES take

_Key = tuple[str, str, str]  # domain, path, name: what identifies a cookie in a jar


class HostOnlyPolicy(DefaultCookiePolicy):
    """DefaultCookiePolicy with RFC 6265's host-only cookies (§5.3 step 6), as browsers and curl
    have them, and with -b cookies bound to their URL's port.

    A cookie without a Domain attribute (domain_specified false: a server's, a -c file line with
    the include-subdomains flag FALSE, a -b cookie) goes back to its own host only:
    DefaultCookiePolicy sends it to every subdomain too unless told DomainStrictNonDomain.

    Only -b cookies have a port (host_cookies; make_cookies drops the Port attribute of a
    server's, which RFC 6265 does not know): cookies do not isolate by port, but a -b cookie is a
    credential the user gave for one URL.
    """

    def __init__(self) -> None:
        super().__init__(strict_ns_domain=DefaultCookiePolicy.DomainStrictNonDomain)

    def return_ok_port(self, cookie: Cookie, request: Any) -> bool:
        """A cookie with a port goes to that port only, or from http's default port to https's,
        the one change of port on which requests keeps Authorization. DefaultCookiePolicy's
        takes a URL without a port for port 80, even an https one."""
        if cookie.port is None:
            return True
        port = _port(urlsplit(f"{request.type}://{request.host}"))  # the host connected to
        if cookie.port == str(port):
            return True
        given_for_http = not cookie.secure  # host_cookies: secure exactly when given for https
        return given_for_http and cookie.port == "80" and request.type == "https" and port == 443


class BoundedCookieJar(RequestsCookieJar):
    """A RequestsCookieJar that holds at most MAX_COOKIES_PER_DOMAIN cookies per domain and
    MAX_COOKIES in all, evicting the least recently set, ignores cookies over
    MAX_COOKIE_BYTES, and builds Cookie headers of at most MAX_COOKIE_HEADER_BYTES.

    Every way into a jar (a received Set-Cookie, the -c file, requests' merging) goes through
    ``set_cookie`` and every way out through ``clear``, so the recency order is kept there.
    With ``changes`` set (a session's jar, after the -c file was copied in), what comes in or
    goes out after that is what the session's servers set or deleted, and is noted there:
    evictions are not, since they are this jar's bound, not a server's word.
    """

    changes: CookieChanges | None = None  # a class default: the many temporary jars note nothing
    _answering_host: str | None = None  # while make_cookies reads an answer: its host

    def make_cookies(self, response: Any, request: Any) -> Sequence[Cookie]:
        """CookieJar's, which carries out an expired Set-Cookie's deletion as it reads it,
        before any policy decides whether the host may set cookies for that domain at all:
        without the host noted for clear, any server could delete any site's cookie (and -c
        saves what servers deleted). A Port attribute (RFC 2965's) is dropped: RFC 6265 ignores
        it, and a port is what marks a -b cookie (HostOnlyPolicy)."""
        with self._cookies_lock:  # type: ignore[attr-defined] # an RLock: clear takes it too
            self._answering_host = cookiejar.eff_request_host(request)[1]  # type: ignore[attr-defined]
            try:
                cookies = super().make_cookies(response, request)
            finally:
                self._answering_host = None
        for cookie in cookies:
            cookie.port, cookie.port_specified = None, False
        return cookies

    def __init__(self, policy: CookiePolicy | None = None) -> None:
        super().__init__(policy if policy is not None else HostOnlyPolicy())
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
            if self.changes is not None:
                self.changes.note(key, cookie)

    def _evict(self, domain: str) -> None:
        paths = self._cookies.get(domain, {})  # type: ignore[attr-defined]
        extra = sum(len(names) for names in paths.values()) - MAX_COOKIES_PER_DOMAIN
        if extra > 0:
            for key in [key for key in self._order if key[0] == domain][:extra]:
                self._forget(*key)
        while len(self._order) > MAX_COOKIES:
            self._forget(*next(iter(self._order)))

    def clear(
        self, domain: str | None = None, path: str | None = None, name: str | None = None
    ) -> None:
        """CookieJar's clear. A server's deletion (an expired Set-Cookie) comes here with the
        whole key, and is noted even when this jar does not hold the cookie (KeyError): it may
        be in the file, or set by another worker. Only one for a domain the answering host may
        set cookies for (see make_cookies)."""
        with self._cookies_lock:  # type: ignore[attr-defined]
            host = self._answering_host
            if host is not None and domain is not None and not _may_set(host, domain):
                return  # another site's cookie: not this server's to delete
            changes = self.changes
            if changes is not None and domain is not None and path is not None and name is not None:
                changes.note((domain, path, name), None)
            self._forget(domain, path, name)

    def _forget(self, domain: str | None, path: str | None, name: str | None) -> None:
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

    def copy(self) -> BoundedCookieJar:
        """RequestsCookieJar's copy, bounded as this jar: requests copies the request's jar for
        every redirect hop, and a plain copy's Cookie header knew no bound. Notes nothing."""
        new = BoundedCookieJar()
        new.set_policy(self.get_policy())
        new.update(self)
        return new

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


class OrderedCookieJar(CookieJar):
    """A CookieJar iterated in the order its cookies were last set, where CookieJar's own
    iteration sorts them by domain, path and name: for the -c file, its order, which decides
    which of its cookies a session's bounded jar keeps (the last lines win)."""

    def __init__(self) -> None:
        super().__init__()
        self._ordered: dict[_Key, Cookie] = {}

    def set_cookie(self, cookie: Cookie) -> None:
        with self._cookies_lock:  # type: ignore[attr-defined]
            super().set_cookie(cookie)
            key = (cookie.domain, cookie.path, cookie.name)
            self._ordered.pop(key, None)
            self._ordered[key] = cookie

    def clear(
        self, domain: str | None = None, path: str | None = None, name: str | None = None
    ) -> None:
        with self._cookies_lock:  # type: ignore[attr-defined]
            try:
                super().clear(domain, path, name)
            finally:
                if domain is not None and path is not None and name is not None:
                    self._ordered.pop((domain, path, name), None)
                else:
                    kept = self._ordered.items()
                    self._ordered = {k: c for k, c in kept if not _under(k, domain, path, name)}

    def __iter__(self) -> Iterator[Cookie]:
        with self._cookies_lock:  # type: ignore[attr-defined]
            return iter(list(self._ordered.values()))


class Change(NamedTuple):
    """A cookie a server set (cookie) or deleted (None), and when: ``time.monotonic_ns()``,
    one clock for all of this machine's processes, so that a worker process's changes and
    another's can be put in the order they were made."""

    stamp: int
    key: _Key
    cookie: Cookie | None


class CookieChanges:
    """The last change each server made to each cookie (domain, path, name), in the order made,
    noted by any number of threads (a lock of its own, taken inside a jar's, never around one).

    Bounded as received cookies are: the cookies set as a BoundedCookieJar holds them (per
    domain, in all, the least recently set evicted); deletions MAX_COOKIES in all but none per
    domain, since a file may hold more of a domain's cookies than a server could set. An
    evicted change is forgotten: the file's own value of that cookie, if any, is saved.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changes: OrderedDict[_Key, Change] = OrderedDict()
        self._set: dict[str, int] = {}  # how many of the changes are cookies set, per domain
        self._sets = 0  # and in all

    def note(self, key: _Key, cookie: Cookie | None, stamp: int | None = None) -> None:
        """Note that key was set to cookie (None: deleted), at stamp (default: now)."""
        with self._lock:
            old = self._changes.pop(key, None)
            if old is not None and old.cookie is not None:
                self._count(key[0], -1)
            stamp = time.monotonic_ns() if stamp is None else stamp  # under the lock: in order
            self._changes[key] = Change(stamp, key, cookie)
            if cookie is not None:
                self._count(key[0], 1)
            self._evict(key[0])

    def _evict(self, domain: str) -> None:
        """Each note adds one change, so at most one of each kind goes; the search for it (the
        oldest first) runs only past a bound."""
        if self._set.get(domain, 0) > MAX_COOKIES_PER_DOMAIN:
            self._drop(lambda change: change.cookie is not None and change.key[0] == domain)
        if self._sets > MAX_COOKIES:
            self._drop(lambda change: change.cookie is not None)
        if len(self._changes) - self._sets > MAX_COOKIES:
            self._drop(lambda change: change.cookie is None)

    def _drop(self, which: Callable[[Change], bool]) -> None:
        oldest = next(change for change in self._changes.values() if which(change))
        del self._changes[oldest.key]
        if oldest.cookie is not None:
            self._count(oldest.key[0], -1)

    def _count(self, domain: str, step: int) -> None:
        count = self._set.get(domain, 0) + step
        if count:
            self._set[domain] = count
        else:
            self._set.pop(domain, None)  # no entry left for a domain that has none
        self._sets += step

    def entries(self) -> list[Change]:
        """The changes, oldest first."""
        with self._lock:
            return list(self._changes.values())


def _may_set(host: str, domain: str) -> bool:
    """Whether the answer of host may set (so delete) a cookie of domain (RFC 6265 5.1.3)."""
    return bool(cookiejar.domain_match(host, domain))  # type: ignore[attr-defined]


def _under(key: _Key, domain: str | None, path: str | None, name: str | None = None) -> bool:
    """Whether CookieJar.clear(domain, path, name) removes the cookie of key."""
    return all(
        part is None or part == mine for part, mine in zip((domain, path, name), key, strict=True)
    )


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
    # FALSE is a host-only cookie; TRUE, or a leading dot (".example.com FALSE", hand-written:
    # http.cookiejar would match no host to it), one for the subdomains too.
    whole_domain = domain_flag.upper() == "TRUE" or domain.startswith(".")
    domain = jar_domain(domain)
    return Cookie(
        version=0, name=name, value=value, port=None, port_specified=False, domain=domain,
        domain_specified=whole_domain, domain_initial_dot=domain.startswith("."),
        path=path, path_specified=True, secure=secure.upper() == "TRUE", expires=expires,
        discard=expires is None, comment=None, comment_url=None,
        rest={"HttpOnly": ""} if http_only else {},
    )  # fmt: skip


def jar_domain(domain: str) -> str:
    """A cookie file's domain as http.cookiejar names it: a host without a dot (localhost, an
    IPv6 literal) is 'host.local' there (RFC 2965's rule), where curl's file says 'host'. Only
    the two file_domain gives back are read so: any other name is kept as the file has it."""
    return f"{domain}.local" if domain == "localhost" or domain.startswith("[") else domain


def file_domain(domain: str) -> str:
    """jar_domain's inverse for the dotless hosts a run meets (localhost, an IPv6 literal): the
    domain as curl writes it, so that curl sends the cookie. 'printer.local' may be an mDNS
    host's own name, so any other name keeps its '.local'."""
    host = domain.removesuffix(".local")
    return host if host == "localhost" or host.startswith("[") else domain


def format_jar_line(cookie: Cookie) -> str:
    prefix = HTTP_ONLY if cookie.has_nonstandard_attr("HttpOnly") else ""
    fields = [
        file_domain(cookie.domain),
        "TRUE" if cookie.domain_specified or cookie.domain.startswith(".") else "FALSE",
        cookie.path,
        "TRUE" if cookie.secure else "FALSE",
        str(cookie.expires) if cookie.expires is not None else "0",  # 0: a session cookie
        cookie.name,
        cookie.value or "",
    ]
    return prefix + "\t".join(fields) + "\n"


def load_jar(path: str) -> CookieJar:
    """Load a Netscape cookie file, every cookie of it (bounded by the file's size only: they
    are the user's, all saved back); a missing file is an empty jar. Raises ValueError if the
    file exists but cannot be read as one."""
    jar = OrderedCookieJar()
    try:
        # Not blocking: a FIFO (opened without a writer) is refused, not waited on for ever.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as file:
            if stat.S_ISFIFO(os.fstat(file.fileno()).st_mode):
                raise ValueError(f"cannot use cookie jar {path!r}: a FIFO cannot be written back")
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
    """A new jar holding cookies, in their order (sent between processes as a list: a jar
    holds a lock)."""
    jar = OrderedCookieJar()
    copy_into(cookies, jar)
    return jar


def bounded_copy(cookies: Iterable[Cookie]) -> BoundedCookieJar:
    """What of cookies (the loaded file, oldest first) a session holds and sends, made once
    for all of a process's sessions: the newest that fit a BoundedCookieJar's bounds, chosen
    in one pass (setting all of a 16 MiB file into one, each set over a domain's bound looking
    for that domain's oldest, took a minute and a half)."""
    chosen: list[Cookie] = []
    per_domain: dict[str, int] = {}
    for cookie in reversed(list(cookies)):
        count = per_domain.get(cookie.domain, 0)
        fits = len(cookie.name) + len(cookie.value or "") <= MAX_COOKIE_BYTES
        if fits and count < MAX_COOKIES_PER_DOMAIN:
            chosen.append(cookie)
            per_domain[cookie.domain] = count + 1
            if len(chosen) == MAX_COOKIES:
                break
    jar = BoundedCookieJar()
    copy_into(reversed(chosen), jar)
    return jar


def changed_jar(loaded: Iterable[Cookie], changes: Iterable[Change]) -> CookieJar:
    """A new jar: the loaded cookies with changes applied in their order, unbounded (the
    changes are bounded already)."""
    jar = jar_of(loaded)
    for change in changes:
        if change.cookie is not None:
            jar.set_cookie(change.cookie)
        else:
            with contextlib.suppress(KeyError):  # a cookie the file did not hold
                jar.clear(*change.key)
    return jar


def merge_changes(lists: Iterable[list[Change]]) -> list[Change]:
    """The changes noted in several processes, in the order they were made there, bounded as
    one process's are. The stamps of two processes are one clock's (time.monotonic_ns), so
    order by them: a change a process never heard of must not be undone by its stale value."""
    merged = CookieChanges()
    for change in sorted((change for changes in lists for change in changes), key=_stamp):
        merged.note(change.key, change.cookie, change.stamp)
    return merged.entries()


def _stamp(change: Change) -> int:
    return change.stamp


def save_jar(path: str, jars: Iterable[CookieJar]) -> int:
    """Merge the jars (later ones win for the same domain, path and name) and write them to path
    atomically, mode 0600; return the number of cookies saved. Nothing is evicted: the jars are
    the loaded file with the run's changes, already bounded (changed_jar)."""
    merged = CookieJar()
    for jar in jars:
        copy_into(jar, merged)
    now = int(time.time())
    cookies = [cookie for cookie in merged if not cookie.is_expired(now)]
    with atomic_path(path, mode=0o600) as temporary, open(temporary, "a") as file:
        file.write(HEADER + "\n")
        file.writelines(format_jar_line(cookie) for cookie in cookies)
    return len(cookies)


def host_cookies(pairs: tuple[tuple[str, str], ...], url: SplitResult) -> RequestsCookieJar:
    """Command-line cookies bound to url's host (not its subdomains) and port, and to https when
    url is https, so that a redirect to another host or port, or from https to http, never
    carries them (HostOnlyPolicy)."""
    host = idna_host((url.hostname or "").lower())  # the name the request is sent to
    if ":" in host:
        host = f"[{host}]"  # IPv6: http.cookiejar's host is the URL's, brackets and all
    # http.cookiejar knows a host without a dot (localhost) as host.local.
    domain = host if "." in host else f"{host}.local"
    jar = RequestsCookieJar()
    for name, value in pairs:
        cookie = Cookie(
            version=0, name=name, value=value, port=str(_port(url)), port_specified=True,
            domain=domain, domain_specified=False, domain_initial_dot=False, path="/",
            path_specified=True, secure=url.scheme == "https", expires=None, discard=True,
            comment=None, comment_url=None, rest={},
        )  # fmt: skip
        jar.set_cookie(cookie)
    return jar


def idna_host(host: str) -> str:
    """host (a name, or host_of's host:port) as requests connects to it and its cookie jar sees
    it: a non-ASCII name IDNA-encoded as ``PreparedRequest.prepare_url`` does. As written when
    requests leaves it so (ASCII) or cannot encode it (then it refuses the URL anyway)."""
    if host.isascii():
        return host
    name, colon, port = host.rpartition(":")
    if not (colon and port.isdigit()):
        name, colon, port = host, "", ""  # host_of brackets IPv6, which is ASCII: no ":" is left
    try:
        name = PreparedRequest._get_idna_encoded_host(name)  # type: ignore[attr-defined]
    except UnicodeError:
        return host
    return f"{name}{colon}{port}"


def _port(url: SplitResult) -> int:
    """The port url connects to."""
    return url.port if url.port is not None else DEFAULT_PORTS[url.scheme]
