"""The cookie jar file (-c) and command-line cookies (-b).

Each worker's Session keeps its own jar (a jar shared between sessions would be iterated by
requests without its lock: ``merge_cookies`` in ``Session.prepare_request`` and
``resolve_redirects``), starting from the loaded file. What its servers set or delete is also
noted, with when, in one CookieChanges per process; the file saved at the end is the file as
it is then (read again: another run may have saved it meanwhile) with every change of this run
applied in the order made (save_jar). Merging the session jars instead would let a session
that never heard of a change bring the loaded value back, and saving the loaded file would
let this run bring back what another run changed since.

The file is the Netscape format that curl and wget read and write. http.cookiejar's
MozillaCookieJar disagrees with curl on two points: it writes an empty expiry for session
cookies (curl skips such lines) and reads curl's ``0`` as expired in 1970; and it drops curl's
``#HttpOnly_`` lines as comments. So the seven fields are read and written here, into and from
http.cookiejar's own Cookie objects, which still do all the domain and path matching. The file
is bytes, read and written as Latin-1 whatever the locale: a header value is one character per
byte to http.client and requests, so a value goes back to the wire and the file as the bytes it
came as (curl's UTF-8 included). What fetcher stores, it can save and send (is_storable: no
control character); a file's line it cannot read or send is skipped, as curl skips it, and
never shown; and it never saves a file larger than it reads (save_jar).

What servers set is bounded as a browser bounds it (RFC 6265 §6.1 gives the minimums), in each
session's jar and in the changes: a server that sets new cookies on every answer evicts its own
oldest ones instead of growing memory and the Cookie header without limit. The file's own
cookies are the user's (read up to MAX_JAR_FILE_BYTES): all are saved back, though a session
sends only those its bounded jar keeps.

Where a cookie goes is RFC 6265's (HostOnlyPolicy, the policy of every jar a request is sent
from): one set without a Domain attribute only to the host that set it, whatever the port; a -b
cookie only to the host and port of its URL, as requests keeps Authorization. What a server may
set is RFC 6265bis's too: no Domain that is a public suffix fetcher knows (is_public_suffix),
Secure cookies and the __Secure- and __Host- prefixes only from https, and a Secure cookie
left alone by http answers (AnswerRulesJar.make_cookies), whichever worker or process holds it
and whether or not a bound evicted it from a session's jar (CookieChanges.note)."""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import heapq
import ipaddress
import logging
import os
import re
import socket
import stat
import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from http import cookiejar
from http.cookiejar import Cookie, CookieJar, CookiePolicy, DefaultCookiePolicy
from typing import Any, NamedTuple
from urllib.parse import SplitResult, urlsplit, urlunsplit

from requests.cookies import MockRequest, RequestsCookieJar, merge_cookies
from requests.models import PreparedRequest

from fetcher.input.parsing import CONTROL  # in a cookie: a tab splits the file's line, CR a header
from fetcher.output.atomic import open_folder, write_atomically
from fetcher.owners import resolve
from fetcher.settings import DEFAULT_PORTS, MAX_COOKIE_BYTES, MAX_COOKIE_HEADER_BYTES

log = logging.getLogger("fetcher")

HEADER = (
    "# Netscape HTTP Cookie File\n# Written by fetcher: curl -b and wget --load-cookies read it.\n"
)
HTTP_ONLY = "#HttpOnly_"
# Where a cookie read from a wget line 'host:PORT' keeps PORT (Cookie.rest, as HttpOnly): no
# attribute a server sets can have this name (http.cookiejar splits its name at the first '=').
WGET_PORT = "=wget-port"
# Where a host-only cookie of a domain http.cookiejar gives two hosts (_local_twin) keeps the one
# it belongs to (Cookie.rest, named as WGET_PORT is, so that no server sets it).
ORIGIN = "=origin"
# What a jar file's first line says, in curl's files and in older ones (curl and wget read both).
FILE_MARKS = ("# Netscape HTTP Cookie File", "# HTTP Cookie File")
UTF8_BOM = "\xef\xbb\xbf"  # as the file is read: one Latin-1 character per byte
ENCODING = "latin-1"  # the file's: one character per byte, as http.client and requests see them

MAX_COOKIES_PER_DOMAIN = 50  # then the domain's least recently set cookie is evicted
MAX_COOKIES = 3000  # per jar, and received ones saved: then the least recently set goes
MAX_JAR_FILE_BYTES = 16 * 1024 * 1024  # -c FILE, read and saved; ~100 times what MAX_COOKIES take
MAX_LIFETIME = 400 * 24 * 3600  # RFC 6265bis §5.5: a longer Max-Age or Expires is cut to it
MAX_EXPIRY = 2**63 - 1  # a file's expiry: curl's is a 64-bit number (curl_off_t)
MAX_EXPIRY_DIGITS = len(str(MAX_EXPIRY))  # checked first: int() refuses 4,300 digits
# What of a file's expiry field curl reads: blanks (a tab splits the line), digits; the rest is
# ignored (curl's strtoll stops there). An empty field is a session cookie, as 0 is.
_EXPIRY = re.compile(r" *([0-9]+)")
MAX_LINES_NAMED = 5  # of the jar file's skipped lines, in the one message that says so

SECURE_PREFIX, HOST_PREFIX = "__secure-", "__host-"  # RFC 6265bis §4.1.3, any case

# A Set-Cookie http.cookiejar cannot read (a 400-digit Max-Age overflowed a float) is caught by
# its catch-all, which warns "http.cookiejar bug!" on stderr with a traceback. AnswerRulesJar
# reads each cookie on its own and quietly; requests still reads every answer's cookies into a
# plain jar too (Response.cookies, which fetcher never reads), so the warning itself is silenced.
warnings.filterwarnings("ignore", message="http.cookiejar bug!", category=UserWarning)

# Public suffixes (RFC 6265 §5.3 step 5) fetcher knows without the Public Suffix List: a
# Domain attribute naming one is refused, unless it is the answering host itself (as libpsl
# does for curl). Two labels, a country code after one of these (co.uk, com.au, ne.jp): the
# list of http.cookiejar's strict_domain and more.
_COUNTRY_SECOND_LEVELS = frozenset(
    "ac aero biz cat co com coop edu eu gob go gouv gov info int jobs ltd mil mobi museum name "
    "ne net nhs nom or org plc pro sch travel".split()
)
# Shared hosting, each customer's site a subdomain (the List's private part, the best known).
_SHARED_HOSTING = frozenset(
    "appspot.com azurestaticapps.net azurewebsites.net bitbucket.io blogspot.com "
    "cloudfront.net cloudfunctions.net firebaseapp.com fly.dev github.io gitlab.io glitch.me "
    "herokuapp.com myshopify.com netlify.app ngrok-free.app ngrok.io now.sh onrender.com "
    "pages.dev pythonanywhere.com readthedocs.io s3.amazonaws.com surge.sh vercel.app web.app "
    "wixsite.com workers.dev".split()
)

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

    def set_ok_domain(self, cookie: Cookie, request: Any) -> bool:
        """DefaultCookiePolicy's, and no Domain attribute naming a public suffix (co.uk,
        github.io: is_public_suffix) but the answering host's own name."""
        if not super().set_ok_domain(cookie, request):
            return False
        host = cookiejar.eff_request_host(request)[1]  # type: ignore[attr-defined]
        if cookie.domain_specified and _is_ip(host):
            return False  # its own address was made host-only (AnswerRulesJar): another's part
        return not cookie.domain_specified or not _is_others_suffix(host, cookie.domain)

    def return_ok_domain(self, cookie: Cookie, request: Any) -> bool:
        """DefaultCookiePolicy's, and to an IP address only a cookie of that address (RFC 6265
        §5.1.3 matches no other domain to one): it sent a file's '.0.1' line, which an older
        fetcher saved, to every address ending in .0.1."""
        if not super().return_ok_domain(cookie, request):
            return False
        named: str
        named, host = cookiejar.eff_request_host(request)  # type: ignore[attr-defined]
        if not cookie.domain_specified and _local_twin(cookie.domain):
            return origin_of(cookie) == named  # intranet's is not intranet.local's (s30 t3 1)
        return not _is_ip(host) or cookie.domain.lstrip(".") == host

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


# Names of Secure cookies a jar keeps past twice those it holds before it makes the set again
# of those (AnswerRulesJar._secure_names): a server's fresh names grew it without end.
NAMES_ROOM = 64


class AnswerRulesJar(RequestsCookieJar):
    """A RequestsCookieJar that takes from a server's answer only what RFC 6265bis lets it:
    Secure cookies and the __Secure- and __Host- prefixes only from https (from http, ignored,
    deletions too: _normalized_cookie_tuples); from http, nothing
    that would overwrite or delete a Secure cookie the jar holds; no deletion of a cookie of a
    domain the host may not set cookies for; lifetimes cut to MAX_LIFETIME; and a cookie
    http.cookiejar cannot read ignored alone and quietly."""

    _answering_host: str | None = None  # while make_cookies reads an answer: its host
    _answering_secure = False  # and whether it came over https
    _over_http = False  # while extract_cookies takes an http answer's cookies (set and clear)

    def __init__(self, policy: CookiePolicy | None = None) -> None:
        super().__init__(policy)
        # The names of the Secure cookies this jar holds, and perhaps of some it held: never
        # fewer (_known_secure); made again of those it holds as it outgrows twice as many.
        self._secure_names: set[str] = set()
        self._names_room = NAMES_ROOM

    def set_cookie(self, cookie: Cookie, *args: Any, **kwargs: Any) -> None:
        if cookie.secure and cookie.name not in self._secure_names:
            with self._cookies_lock:  # type: ignore[attr-defined]
                if len(self._secure_names) >= self._names_room:  # s34 r3 2: 240 KB an answer
                    self._secure_names = held_secure_names(self._cookies)  # type: ignore[attr-defined]
                    self._names_room = 2 * len(self._secure_names) + NAMES_ROOM
                self._secure_names.add(cookie.name)
        super().set_cookie(cookie, *args, **kwargs)

    def add_cookie_header(self, request: Any) -> None:
        """CookieJar's, with request's IPv6 host as the jar names it (spelled_request)."""
        super().add_cookie_header(spelled_request(request))

    def extract_cookies(self, response: Any, request: Any) -> None:
        """CookieJar's, with _over_http said for the set_cookie and clear calls it makes: what
        they note for the -c file must say whether an http answer made it (CookieChanges); and
        request's IPv6 host as the jar names it (spelled_request)."""
        request = spelled_request(request)
        with self._cookies_lock:  # type: ignore[attr-defined]
            self._over_http = request.type != "https"
            try:
                super().extract_cookies(response, request)
            finally:
                self._over_http = False

    def make_cookies(self, response: Any, request: Any) -> Sequence[Cookie]:
        """CookieJar's, which carries out an expired Set-Cookie's deletion as it reads it,
        before any policy decides whether the host may set cookies for that domain at all:
        without the host noted for clear (may_delete), any server could delete any site's
        cookie (and -c saves what servers deleted). A Port attribute (RFC 2965's) is dropped:
        RFC 6265 ignores it, and a port is what marks a -b cookie (HostOnlyPolicy)."""
        with self._cookies_lock:  # type: ignore[attr-defined] # an RLock: clear takes it too
            self._answering_host = cookiejar.eff_request_host(request)[1]  # type: ignore[attr-defined]
            self._answering_secure = request.type == "https"
            try:
                cookies = super().make_cookies(response, request)
                cookies = [cookie for cookie in cookies if self._may_take(cookie)]
            finally:
                self._answering_host, self._answering_secure = None, False
        origin = cookiejar.request_host(request)  # type: ignore[attr-defined]
        for cookie in cookies:
            cookie.port, cookie.port_specified = None, False
            if not cookie.domain_specified and _local_twin(cookie.domain):
                cookie.set_nonstandard_attr(ORIGIN, origin)
        return cookies

    def _cookies_from_attrs_set(self, attrs_set: Any, request: Any) -> list[Cookie]:
        """CookieJar's, one cookie at a time: one it cannot read (int(float()) of a 400-digit
        Max-Age overflowed) is ignored, where CookieJar's catch-all dropped every cookie of
        the answer and printed 'http.cookiejar bug!' with a traceback."""
        cookies: list[Cookie] = []
        for attrs in attrs_set:
            with contextlib.suppress(Exception):
                cookies += super()._cookies_from_attrs_set([attrs], request)  # type: ignore[misc]
        return cookies

    def _normalized_cookie_tuples(self, attrs_set: Any) -> list[Any]:
        """CookieJar's, with the expiry of a Max-Age or Expires cut to MAX_LIFETIME from now,
        and without a Domain attribute that leaves the cookie host-only (_kept_attrs). A Secure
        attribute is Secure whatever its value (RFC 6265bis §5.6.5; CookieJar took 'Secure='
        for not Secure). From an http answer, a Secure cookie or a prefixed name is dropped
        here (§5.7: ignored entirely): CookieJar carries out an expired one's deletion as it
        reads the tuple, before _may_take could refuse it, so an http answer deleted a cookie
        with a Set-Cookie that it could not have set (s27 r2 6)."""
        attrs_set = [[*attrs[:1], *self._kept_attrs(attrs[1:])] for attrs in attrs_set]
        tuples: list[Any] = super()._normalized_cookie_tuples(attrs_set)  # type: ignore[misc]
        latest = self._now + MAX_LIFETIME  # type: ignore[attr-defined] # make_cookies' clock
        for _name, _value, standard, _rest in tuples:
            if standard.get("expires") is not None and standard["expires"] > latest:
                standard["expires"] = latest
            if "secure" in standard:
                standard["secure"] = True
        if self._answering_host is None or self._answering_secure:
            return tuples
        return [cookie for cookie in tuples if not _secure_only(cookie[0], cookie[2])]

    def _kept_attrs(self, attrs: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
        """A cookie's attributes (name, value) but a Domain that leaves it host-only: an empty
        one, which RFC 6265 §5.2.3 ignores (as curl does: http.cookiejar dropped the cookie),
        and one naming the answering IP address itself (§5.1.3 matches no other domain to an
        address), as curl stores it; so is the deletion of one (CookieJar computes the domain
        it clears from the same attributes). Any other Domain of an IP host is refused
        (HostOnlyPolicy.set_ok_domain, _may_set)."""
        host = self._answering_host
        return [(k, v) for k, v in attrs if not _is_void_domain(k, v, host)]

    def _may_take(self, cookie: Cookie) -> bool:
        """Whether the answer being read may set cookie (RFC 6265bis §5.6 steps 14-20)."""
        name = cookie.name.lower()
        prefixed = name.startswith((SECURE_PREFIX, HOST_PREFIX))
        if (cookie.secure or prefixed) and not self._answering_secure:
            return False
        if prefixed and not cookie.secure:
            return False
        if name.startswith(HOST_PREFIX) and (cookie.domain_specified or cookie.path != "/"):
            return False  # host-only, for the whole host
        secure = self._answering_secure
        return secure or not self._known_secure(cookie.domain, cookie.path, cookie.name)

    def may_delete(self, domain: str, path: str | None, name: str | None) -> bool:
        """Whether the answer being read, if any, may delete the cookie (clear's arguments)."""
        host = self._answering_host
        if host is None:
            return True  # not a server's deletion: an expired cookie, a bound
        if not _may_set(host, domain):
            return False  # another site's cookie: not this server's to delete
        if self._answering_secure or path is None or name is None:
            return True
        return not self._known_secure(domain, path, name)

    def _known_secure(self, domain: str, path: str, name: str) -> bool:
        """Whether a Secure cookie an http answer may not touch is known (holds_secure)."""
        if name not in self._secure_names:  # no walk: 3.3 ms a cookie, 3,000 domains (s34 t4 1)
            return False
        return holds_secure(self._cookies, domain, path, name)  # type: ignore[attr-defined]

    def guards_secure(self, domain: str, path: str, name: str) -> bool:
        """Whether this jar would refuse an http answer's change of the cookie (domain, path,
        name) for a Secure cookie it knows (_known_secure: its own, and a BoundedCookieJar's
        run's): what a jar reading the same answer on its behalf asks (redirects'
        _DeletionProbe), so that the two decide alike."""
        with self._cookies_lock:  # type: ignore[attr-defined]
            return self._known_secure(domain, path, name)


def held_secure_names(index: dict[str, dict[str, dict[str, Cookie]]]) -> set[str]:
    """The names of the Secure cookies a jar's index holds."""
    return {
        name
        for paths in index.values()
        for names in paths.values()
        for name, cookie in names.items()
        if cookie.secure
    }


def holds_secure(
    index: dict[str, dict[str, dict[str, Cookie]]], domain: str, path: str, name: str
) -> bool:
    """Whether a jar's index (domain, path, name) holds a Secure cookie of this name whose
    domain matches domain (either way) and whose path is a prefix of path: what an http answer
    may not touch. By the index: a walk over every cookie took 1.6 ms a cookie with 3,000
    held, on the worker's thread (s15 r1 3); and the jar walks its domains only for a name it
    held a Secure cookie of (AnswerRulesJar._known_secure)."""
    for held_domain, paths in index.items():
        if not any(cookie_path.get(name) for cookie_path in paths.values()):
            continue
        if not _domains_meet(domain, held_domain):
            continue
        for held_path, names in paths.items():
            held = names.get(name)
            if held is not None and held.secure and path.startswith(held_path):
                return True
    return False


class BoundedCookieJar(AnswerRulesJar):
    """An AnswerRulesJar that holds at most MAX_COOKIES_PER_DOMAIN cookies per domain and
    MAX_COOKIES in all, evicting the least recently set, ignores cookies over
    MAX_COOKIE_BYTES or that a request could not carry (is_storable), and builds Cookie
    headers of at most MAX_COOKIE_HEADER_BYTES, the -b cookies always in them.

    Every way into a jar (a received Set-Cookie, the -c file, requests' merging) goes through
    ``set_cookie`` and every way out through ``clear``, so the recency order is kept there.
    With ``changes`` set (a session's jar, after the -c file was copied in), what comes in or
    goes out after that is what the session's servers set or deleted, and is noted there:
    evictions are not, since they are this jar's bound, not a server's word. ``loaded_keys``
    are the -c file's cookies (all, also those this jar does not hold): changes to them are
    noted as held, which no bound evicts.
    """

    changes: CookieChanges | None = None  # a class default: the many temporary jars note nothing
    hop: PreparedRequest | None = None  # a session's: the redirect hop merge_hop_cookies is for
    asks: CookieChanges | None = None  # a request's or hop's jar: the run's, asked (for_request)
    loaded_keys: frozenset[_Key] = frozenset()

    def __init__(self, policy: CookiePolicy | None = None) -> None:
        super().__init__(policy if policy is not None else HostOnlyPolicy())
        self._order: OrderedDict[_Key, None] = OrderedDict()

    def set_cookie(self, cookie: Cookie, *args: Any, **kwargs: Any) -> None:
        if len(cookie.name) + len(cookie.value or "") > MAX_COOKIE_BYTES:
            return
        if cookie.port is None and not is_storable(cookie):  # -b's: checked as -H's, never saved
            return
        with self._cookies_lock:  # type: ignore[attr-defined]
            key = (cookie.domain, cookie.path, cookie.name)
            changes, held = self.changes, key in self.loaded_keys
            if changes is not None and not changes.note(key, cookie, None, held, self._over_http):
                return  # a Secure cookie another worker or the file holds (CookieChanges.note)
            super().set_cookie(cookie, *args, **kwargs)
            self._order[key] = None
            self._order.move_to_end(key)
            self._evict(cookie.domain)

    def _evict(self, domain: str) -> None:
        """Past the domain's bound, its least recently set cookies go, those not Secure first
        (RFC 6265bis §5.7): a flood of plain cookies from http must not push out the Secure one
        that stops an http answer from setting its own in its place."""
        paths = self._cookies.get(domain, {})  # type: ignore[attr-defined]
        extra = sum(len(names) for names in paths.values()) - MAX_COOKIES_PER_DOMAIN
        if extra > 0:
            keys = [key for key in self._order if key[0] == domain]
            keys.sort(key=lambda key: _is_secure(paths.get(key[1], {}).get(key[2])))  # stable
            for key in keys[:extra]:
                self._forget(*key)
        while len(self._order) > MAX_COOKIES:
            self._forget(*next(iter(self._order)))

    def _known_secure(self, domain: str, path: str, name: str) -> bool:
        """This jar's Secure cookies, and with changes, the run's and the -c file's."""
        known = super()._known_secure(domain, path, name)
        rules = self.changes if self.changes is not None else self.asks
        return known or (rules is not None and rules.holds_secure(domain, path, name))

    def for_request(self) -> BoundedCookieJar:
        """An empty jar, bounded as this one, for a request of this jar's session (requests
        builds its Cookie header from it, and copies it for each redirect hop, reading the
        hop's Set-Cookie into the copy). It notes nothing, but asks the run's changes which
        Secure cookies an http answer may not touch: a hop's jar that knew only its own
        cookies took the sid=EVIL the session's jar refused and sent it on, to https too
        (s25 r8 1)."""
        new = BoundedCookieJar()
        new.set_policy(self.get_policy())
        new.loaded_keys = self.loaded_keys
        new.asks = self.changes if self.changes is not None else self.asks
        return new

    def clear(
        self, domain: str | None = None, path: str | None = None, name: str | None = None
    ) -> None:
        """CookieJar's clear. A server's deletion (an expired Set-Cookie) comes here with the
        whole key, and is noted even when this jar does not hold the cookie (KeyError): it may
        be in the file, or set by another worker. Only what the answer may delete (may_delete)."""
        with self._cookies_lock:  # type: ignore[attr-defined]
            if domain is not None and not self.may_delete(domain, path, name):
                return
            changes = self.changes
            if changes is not None and domain is not None and path is not None and name is not None:
                key = (domain, path, name)
                if not changes.note(key, None, None, key in self.loaded_keys, self._over_http):
                    return  # a Secure cookie another worker or the file holds
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
        every redirect hop, and a plain copy's Cookie header knew no bound. Notes nothing,
        and asks what this jar asks (for_request)."""
        new = self.for_request()
        new.update(self)
        return new

    def _cookie_attrs(self, cookies: list[Cookie]) -> list[str]:
        """The ``name=value`` pairs of a Cookie header, in CookieJar's order (the most specific
        paths first), those that fit in the bound: the -b cookies (the only ones with a port:
        host_cookies) always, so a server's cookies never push the user's own out. (Each
        cookie is one pair: RFC 2109 ones are read as Netscape's, version 0.)"""
        cookies.sort(key=lambda cookie: len(cookie.path), reverse=True)  # CookieJar's, stable
        attrs_of = super()._cookie_attrs  # type: ignore[misc] # (no super() in a comprehension)
        pairs = [(cookie.port is not None, attrs_of([cookie])) for cookie in cookies]
        # "; " between two: each pair costs its length and 2, the header 2 less than all.
        room = MAX_COOKIE_HEADER_BYTES + 2
        room -= sum(len(attr) + 2 for given, attrs in pairs if given for attr in attrs)
        kept: list[str] = []
        for given, attrs in pairs:
            size = sum(len(attr) + 2 for attr in attrs)
            if given or size <= room:
                kept += attrs
                room -= 0 if given else size
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

    def held(self, key: _Key) -> Cookie | None:
        """The cookie the jar holds under key (domain, path, name), if any."""
        with self._cookies_lock:  # type: ignore[attr-defined]
            return self._ordered.get(key)


class Change(NamedTuple):
    """A cookie a server set (cookie) or deleted (None), and when: ``time.monotonic_ns()``,
    one clock for all of this machine's processes, so that a worker process's changes and
    another's can be put in the order they were made. held: a change to a cookie of the -c
    file, which no bound evicts. over_http: made by an http answer, which may not touch a
    Secure cookie (CookieChanges.note)."""

    stamp: int
    key: _Key
    cookie: Cookie | None
    held: bool = False
    over_http: bool = False


class CookieChanges:
    """The last change each server made to each cookie (domain, path, name), in the order made,
    noted by any number of threads (a lock of its own, taken inside a jar's, never around one).

    A change to a cookie of the file (held) is never evicted: there are no more of them than
    the file's lines, and an evicted one would bring back the file's value (a revoked session
    after a logout). The others are bounded as received cookies are: the cookies set as a
    BoundedCookieJar holds them, and the deletions likewise, each kind per domain and in all,
    the oldest evicted (per domain, those not Secure first), so that one host's flood evicts
    only its own. A deletion of a cookie not from the file takes the place of its set, if noted
    here, and is kept (bounded) for a cookie another worker process may have set.

    It also knows which cookies are Secure, the loaded file's and those set since: RFC 6265bis's
    rule that an http answer neither overwrites nor deletes one holds for the run's jar as a
    whole (every worker's, every process's when merge_changes notes theirs in order) and for
    the file, where each session's jar sees only what it holds itself (s25 h4 1).
    """

    def __init__(self, loaded: Iterable[Cookie] = ()) -> None:
        self._lock = threading.Lock()
        self._changes: OrderedDict[_Key, Change] = OrderedDict()
        # How many changes no bound exempts there are, per (is a set, domain), and per kind.
        self._per_domain: dict[tuple[bool, str], int] = {}
        self._in_all: dict[bool, int] = {True: 0, False: 0}
        self._secure: dict[str, set[_Key]] = {}  # by name: the keys of the Secure cookies
        for cookie in loaded:
            if cookie.secure:
                self._secure.setdefault(cookie.name, set()).add(_key(cookie))

    def note(
        self,
        key: _Key,
        cookie: Cookie | None,
        stamp: int | None = None,
        held: bool = False,
        over_http: bool = False,
    ) -> bool:
        """Note that key was set to cookie (None: deleted), at stamp (default: now); held: a
        cookie of the -c file; over_http: by an http answer. False, noting nothing, for an http
        answer's change to a Secure cookie known here (holds_secure)."""
        with self._lock:
            if over_http and self._holds_secure(*key):
                return False
            old = self._changes.pop(key, None)
            if old is not None:
                self._count(old, -1)
            stamp = time.monotonic_ns() if stamp is None else stamp  # under the lock: in order
            change = Change(stamp, key, cookie, held, over_http)
            self._changes[key] = change
            self._count(change, 1)
            self._mark_secure(key, _is_secure(cookie))
            if not held:
                self._evict(cookie is not None, key[0])
            return True

    def holds_secure(self, domain: str, path: str, name: str) -> bool:
        """Whether a Secure cookie is known (the file's, or set since, and not changed since)
        that an http answer's change of (domain, path, name) would touch: of that name, its
        domain matching domain either way, its path a prefix of path (RFC 6265bis §5.6)."""
        with self._lock:
            return self._holds_secure(domain, path, name)

    def _holds_secure(self, domain: str, path: str, name: str) -> bool:
        for held_domain, held_path, _name in self._secure.get(name, ()):
            if path.startswith(held_path) and _domains_meet(domain, held_domain):
                return True
        return False

    def _mark_secure(self, key: _Key, secure: bool) -> None:
        keys = self._secure.get(key[2])
        if secure:
            self._secure.setdefault(key[2], set()).add(key)
        elif keys is not None:
            keys.discard(key)
            if not keys:
                del self._secure[key[2]]

    def _evict(self, setting: bool, domain: str) -> None:
        """Each note adds one change, so at most one of its kind goes; the search for it (the
        oldest first) runs only past a bound."""
        if self._per_domain.get((setting, domain), 0) > MAX_COOKIES_PER_DOMAIN:
            plain = self._drop(lambda c: _kind(c) == (setting, domain) and not _is_secure(c.cookie))
            if not plain:
                self._drop(lambda change: _kind(change) == (setting, domain))
        if self._in_all[setting] > MAX_COOKIES:
            self._drop(lambda change: _kind(change)[0] == setting)

    def _drop(self, which: Callable[[Change], bool]) -> bool:
        """Evict the oldest change that no bound exempts and which says; False if none does."""
        evictable = (change for change in self._changes.values() if not change.held)
        oldest = next((change for change in evictable if which(change)), None)
        if oldest is None:
            return False
        del self._changes[oldest.key]
        self._count(oldest, -1)
        self._mark_secure(oldest.key, False)  # not the file's (held): not saved at all now
        return True

    def _count(self, change: Change, step: int) -> None:
        if change.held:
            return
        kind = _kind(change)
        count = self._per_domain.get(kind, 0) + step
        if count:
            self._per_domain[kind] = count
        else:
            self._per_domain.pop(kind, None)  # no entry left for a domain that has none
        self._in_all[kind[0]] += step

    def entries(self) -> list[Change]:
        """The changes, oldest first."""
        with self._lock:
            return list(self._changes.values())


def _is_secure(cookie: Cookie | None) -> bool:
    return cookie is not None and bool(cookie.secure)


def _secure_only(name: str, standard: dict[str, Any]) -> bool:
    """Whether a Set-Cookie read as name and standard (CookieJar's tuple) is for https alone:
    Secure, or of a name whose prefix asks for Secure (RFC 6265bis §4.1.3, any case)."""
    return bool(standard.get("secure")) or name.lower().startswith((SECURE_PREFIX, HOST_PREFIX))


@functools.lru_cache(maxsize=4096)  # asked for each cookie a request may carry
def _is_ip(host: str) -> bool:
    """Whether host, as http.cookiejar names it ('[::1].local' for a bracketed IPv6 URL), is
    an IP address."""
    address = host.removesuffix(".local") if host.startswith("[") else host
    try:
        ipaddress.ip_address(address.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def _is_void_domain(attribute: str, value: str | None, host: str | None) -> bool:
    """Whether the cookie attribute is a Domain that leaves the cookie host-only: empty ('.'
    too, empty without its dot) or, from host (http.cookiejar's name of the answering host:
    'localhost.local' for localhost), that host itself, dot or not, when it is an IP address
    or a public suffix (RFC 6265 5.3 step 5: co.uk's Domain=co.uk went to every site under
    it, s35 t8 2; localhost's Domain=localhost was dropped, named against 'localhost.local',
    t8 1)."""
    if attribute.lower() != "domain":
        return False
    named = (value or "").strip().lower().lstrip(".")
    if not named:
        return True
    if host is None or named not in (host, host.removesuffix(".local")):
        return False
    return _is_ip(host) or is_public_suffix(named)


def _key(cookie: Cookie) -> _Key:
    return cookie.domain, cookie.path, cookie.name


def _domains_meet(domain: str, other: str) -> bool:
    """Whether either domain domain-matches the other as RFC 6265bis §5.6 step 19 compares
    them: without the leading dot that http.cookiejar gives a Domain cookie, the same name, or
    one a subdomain of the other (not of an IP address: §5.1.3). http.cookiejar's domain_match
    had a host-only 'example.test' and '.example.test' meet neither way, nor
    'www.example.test' and 'example.test': an http answer then set its own cookie beside the
    Secure one, saved and sent with it (s25 r8 2)."""
    mine, theirs = domain.lstrip(".").lower(), other.lstrip(".").lower()
    if mine == theirs:
        return True
    longer, shorter = (mine, theirs) if len(mine) > len(theirs) else (theirs, mine)
    return bool(shorter) and longer.endswith(f".{shorter}") and not _is_ip(longer)


def _kind(change: Change) -> tuple[bool, str]:
    """What bounds change: (whether it sets a cookie, its domain)."""
    return change.cookie is not None, change.key[0]


def _may_set(host: str, domain: str) -> bool:
    """Whether the answer of host may set (so delete) a cookie of domain (RFC 6265 5.1.3): not
    one of a public suffix (is_public_suffix) but the host's own name."""
    matches = cookiejar.domain_match(host, domain)  # type: ignore[attr-defined]
    return bool(matches) and not _is_others_suffix(host, domain)


def _is_others_suffix(host: str, domain: str) -> bool:
    """Whether domain is a public suffix host may not set cookies for: not its own name."""
    return is_public_suffix(domain) and domain.lstrip(".") != host


# IPv6 addresses that hold an IPv4 one, each another's (is_global answers for what they hold):
# the IETF's reserved ::/8, which holds the IPv4-mapped, IPv4-compatible and IPv4-translated
# (SIIT: s34 r1 3) ones and no global network; NAT64's well-known prefix and its local-use one
# (RFC 8215, whose /64 held a whole IPv4 /16: s33 r2 5).
_HOLDING_IPV4 = tuple(map(ipaddress.ip_network, ("::/8", "64:ff9b::/96", "64:ff9b:1::/48")))


def site_of(domain: str) -> str:
    """The site a cookie's domain belongs to: its registrable name, the public suffix fetcher
    knows (is_public_suffix) and one label more (s1.tracker.test and .tracker.test are
    tracker.test, a.b.co.uk is b.co.uk); a global IPv6 address's /64; any other address, or a
    name with no such suffix, whole."""
    labels = domain.strip(".").lower().split(".")
    bare = domain.strip(".").removesuffix(".local").strip("[]")
    if _is_ip(bare):
        address = ipaddress.ip_address(bare)
        # A global IPv6 address's /64, which one holder has whole (every host of it was a free
        # site: s32 r3 3); any other address alone: a /24 is a home network's router and its
        # devices, whose owners differ (s32 r4 1), and an IPv4 address held in an IPv6 one is
        # alone as it is (s33 r1 1: all were one '::/64').
        holds_ipv4 = any(address in held for held in _HOLDING_IPV4)
        if address.version == 6 and address.is_global and not holds_ipv4:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        return str(address)
    for start in range(len(labels) - 1, 0, -1):
        if not is_public_suffix(".".join(labels[start:])):
            return ".".join(labels[start:])
    return ".".join(labels)


def is_public_suffix(domain: str) -> bool:
    """Whether domain is a public suffix fetcher knows: a top-level domain, a country code's
    registry (co.uk, com.au: _COUNTRY_SECOND_LEVELS) or a shared host (_SHARED_HOSTING). The
    rest of the Public Suffix List is not known (*.kawasaki.jp, pvt.k12.ma.us, most hosts)."""
    labels = domain.strip(".").lower().split(".")
    if len(labels) < 2 or ".".join(labels) in _SHARED_HOSTING:
        return True
    return len(labels) == 2 and len(labels[1]) == 2 and labels[0] in _COUNTRY_SECOND_LEVELS


def is_storable(cookie: Cookie) -> bool:
    """Whether cookie can be saved in the file and sent: no control character in its fields
    (a tab would make a line of eight fields, a CR or LF another header line), Latin-1 text."""
    fields = (cookie.domain, cookie.path, cookie.name, cookie.value or "")
    return not any(CONTROL.search(field) or not _is_latin1(field) for field in fields)


def _is_latin1(text: str) -> bool:
    return not text or max(text) <= "\xff"  # max: one pass in C, for 4 KiB values per request


def _under(key: _Key, domain: str | None, path: str | None, name: str | None = None) -> bool:
    """Whether CookieJar.clear(domain, path, name) removes the cookie of key."""
    return all(
        part is None or part == mine for part, mine in zip((domain, path, name), key, strict=True)
    )


def parse_jar_line(line: str) -> Cookie | None:
    """One line of a Netscape cookie file to a Cookie; None for comments, blank lines and
    expired cookies. Six fields are a cookie with an empty value, as curl reads them. Raises
    ValueError, with a message that never repeats the line (a value is a secret), for a line
    that cannot be read or sent."""
    line = line.rstrip("\r\n")
    http_only = line.startswith(HTTP_ONLY)
    if http_only:
        line = line[len(HTTP_ONLY) :]
    elif not line.strip() or line.startswith("#"):
        return None
    fields = line.split("\t")
    if len(fields) == 6:
        fields.append("")
    if len(fields) != 7:
        raise ValueError("is not 7 tab-separated fields")
    if CONTROL.search(line.replace("\t", "")):
        raise ValueError("has a control character")
    domain, domain_flag, path, secure, expires_text, name, value = fields
    expires = file_expiry(expires_text)
    if expires is not None and expires < time.time():
        return None
    # FALSE is a host-only cookie; TRUE, or a leading dot (".example.com FALSE", hand-written:
    # http.cookiejar would match no host to it), one for the subdomains too.
    domain, port = wget_port(domain)
    whole_domain = domain_flag.upper() == "TRUE" or domain.startswith(".")
    whole_domain, domain = _line_scope(domain, whole_domain)
    written, domain = domain, jar_domain(domain, whole_domain)
    rest = {"HttpOnly": ""} if http_only else {}
    if not whole_domain and _local_twin(domain):
        rest[ORIGIN] = written.lower()  # 'intranet' or 'intranet.local': two hosts
    if port is not None:
        rest[WGET_PORT] = port  # written back (format_jar_line), for wget to read as it wrote
    return with_expiry(Cookie(
        version=0, name=name, value=value, port=None, port_specified=False, domain=domain,
        domain_specified=whole_domain, domain_initial_dot=domain.startswith("."),
        path=path, path_specified=True, secure=secure.upper() == "TRUE", expires=expires,
        discard=expires is None, comment=None, comment_url=None, rest=rest,
    ), expires)  # fmt: skip


def _line_scope(domain: str, whole_domain: bool) -> tuple[bool, str]:
    """A jar line's (whether for the subdomains too, domain): an IP address's is host-only
    (jar_domain), and so is a public suffix's (curl's `.localhost TRUE`), as RFC 6265 5.3
    makes its Domain: matched to no host, or sent to every site under it (s35 t8 1)."""
    if whole_domain and (_is_ip(domain.lstrip(".")) or is_public_suffix(domain)):
        return False, domain.lstrip(".")
    return whole_domain, domain


def with_expiry(cookie: Cookie, expires: int | None) -> Cookie:
    """cookie with the file's expiry to the digit: Cookie's own __init__ does int(float()),
    which rounds any value over 2**53, and curl's largest (2**63 - 1) was saved as 2**63,
    past it, so the next load skipped the line and the save after dropped it (s25 r7 7). The
    attribute is a plain one, compared with a clock (is_expired), exact as an int."""
    cookie.expires = expires
    return cookie


def wget_port(domain: str) -> tuple[str, str | None]:
    """A jar line's domain field without the port wget writes after a host-only cookie's host
    when it came from a non-default port ('127.0.0.1:8080'), and that port (None: none). Such
    a line was loaded and saved back but never sent: no host is named 'host:port' (s25 h4 10).
    wget's own reading (domain_port): digits to the end of the field; anything else after the
    colon, or a port no URL has, is no port, and the domain stays as written (and matches no
    host, as in wget). An IPv6 literal's own colons are no port ('::1'; '[::1]:8080' has one).

    The port does not bind the cookie here: fetcher sends a server's host-only cookie to every
    port of its host (RFC 6265 8.5: cookies do not isolate by port; curl neither), and only a
    -b cookie, a credential the user gave for one URL, is bound to its port."""
    host, colon, port = domain.rpartition(":")
    if not (colon and port.isascii() and port.isdigit() and len(port) <= len("65535")):
        return domain, None
    if not 0 < int(port) <= 65535 or (":" in host and not host.endswith("]")):
        return domain, None
    return host, port


def set_file_cookie(jar: OrderedCookieJar, cookie: Cookie) -> None:
    """Set a cookie read from the file's next line into jar without losing a line to a wget
    line of another port: wget keeps 'HOST:P1 ... w1' and 'HOST:P2 ... w1' apart, but read as
    the host's cookie (wget_port) both have one key, and the later replaced the earlier, whose
    line the save then lost (s25 r7 5). A line without a port is the host's cookie, else the
    first wget line of that name is; any other wget line colliding with it is kept as written
    (as_written: saved back unchanged, never sent). Two lines that are one key as written
    (twice the same line) are one cookie, the later, as curl reads them."""
    held = jar.held((cookie.domain, cookie.path, cookie.name))
    port = cookie.get_nonstandard_attr(WGET_PORT)
    if held is not None and port is not None and held.get_nonstandard_attr(WGET_PORT) != port:
        cookie = as_written(cookie)  # one port's line twice is one cookie, the later (r9 6)
    elif held is not None and port is None and held.has_nonstandard_attr(WGET_PORT):
        jar.set_cookie(as_written(held))  # before cookie takes its key: the file's order kept
    elif held is not None and origin_of(held) != origin_of(cookie):
        cookie = as_written(cookie)  # 'intranet' and 'intranet.local' lines, one key: both kept
    jar.set_cookie(cookie)


def as_written(cookie: Cookie) -> Cookie:
    """A cookie read from a wget 'host:port' line, under that domain field as written: no host
    is named so, so it is never sent, and format_jar_line writes its line back unchanged, as
    wget_port's reading did before the port was read."""
    port = cookie.get_nonstandard_attr(WGET_PORT)
    rest = {"HttpOnly": ""} if cookie.has_nonstandard_attr("HttpOnly") else {}
    domain = file_host(cookie, True) + ("" if port is None else f":{port}")
    return with_expiry(Cookie(
        version=0, name=cookie.name, value=cookie.value, port=None, port_specified=False,
        domain=domain, domain_specified=cookie.domain_specified,
        domain_initial_dot=domain.startswith("."), path=cookie.path, path_specified=True,
        secure=cookie.secure, expires=cookie.expires, discard=cookie.discard, comment=None,
        comment_url=None, rest=rest,
    ), cookie.expires)  # fmt: skip


def file_expiry(text: str) -> int | None:
    """A jar line's expiry field as curl reads it (curlx_strtoofft): blanks, then the digits of
    a number up to curl's 64-bit maximum, whatever follows ignored; None for a session cookie
    (empty, or 0). A fraction ('1900000000.5', from browser-export converters) or a leading
    space was skipped here where curl reads the line, and then dropped from the file at the
    save (s25 h4 8). ValueError, as curl skips the line, when no number starts it (a sign
    neither) or it is over the maximum; its leading zeros are not counted (int() refuses
    4,300 digits)."""
    if not text:
        return None
    found = _EXPIRY.match(text)
    if found is None:
        raise ValueError("has an expiry that is not a number")
    digits = found.group(1).lstrip("0")
    if len(digits) > MAX_EXPIRY_DIGITS or int(digits or "0") > MAX_EXPIRY:
        raise ValueError("has an expiry past curl's largest")
    return int(digits) if digits else None


def jar_domain(domain: str, whole_domain: bool = False) -> str:
    """A cookie file's domain as http.cookiejar names it: a host without a dot (localhost, an
    IPv6 literal) is 'host.local' there (RFC 2965's rule), where curl's file says 'host'. Only
    the two file_domain gives back are read so. A domain cookie's (whole_domain) gets its
    leading dot: http.cookiejar keys a cookie by its domain's text, and a server's Domain= is
    always '.example.test', so a line 'example.test TRUE' (hand-written, exported) was another
    cookie, never replaced nor deleted by the server's, and sent before it (s25 h4 4); curl,
    which strips the dot and keeps the flag, has the two as one. An IP address's is its
    host-only cookie, dot or flag or not: a server's Domain=127.0.0.1 makes that one
    (AnswerRulesJar._kept_attrs), where an older fetcher saved '.127.0.0.1 TRUE', which no
    login replaced nor logout deleted (s25 r8 3); an IPv6 address's in inet_ntop's spelling,
    with '.local' only where http.cookiejar adds it (no dot: an IPv4-mapped one has dots, and
    was never sent: s26 r1 4). wget writes [::1]:8123's line '::1:8123', which is also the
    address ::1:8123, where it was sent (s26 r1 1): such a field is kept as written, sent to
    no host, as wget_port keeps it. Any other name is kept."""
    bare = domain.lstrip(".")
    address = _ipv6_spelling(bare) if ":" in bare else None
    if address is not None:  # curl writes ::1, an older fetcher [::1] (s25 r9 5)
        if not bare.startswith("[") and _may_be_wget_port(bare):
            return domain  # a guess either way: sent nowhere, written back as it is
        return f"[{address}]" if "." in address else f"[{address}].local"
    if (
        domain == "localhost"
        or domain.startswith("[")
        or (domain and "." not in domain and not whole_domain)
    ):
        return f"{domain}.local"  # http.cookiejar's name, the host kept apart (ORIGIN)
    if _is_ip(bare):
        return bare
    return f".{domain}" if whole_domain and domain and not domain.startswith(".") else domain


def _local_twin(domain: str) -> bool:
    """Whether a host-only cookie's domain is one http.cookiejar gives two hosts: 'NAME.local'
    is its name of NAME (no dot: it adds '.local') and of the mDNS name NAME.local, which anyone
    on the local network may answer for. A -b cookie, a server's and a file's line went from
    one to the other (s30 t3 1): such a cookie keeps its host (ORIGIN)."""
    return domain.endswith(".local") and not domain.startswith("[")


def first_hop_jar(session_jar: CookieJar, prepared: PreparedRequest) -> BoundedCookieJar:
    """The jar requests builds the Cookie header of prepared, a request's first hop, from (and
    copies for each redirect hop, adding the session's cookies there: merge_hop_cookies): an
    empty one of the session's kind (``for_request``) with the session's cookies prepared's
    host may be sent (sent_cookies). requests copies every cookie: with 3,000 of other sites
    in a -c file, a request cost 50-100 ms of CPU, copied and then walked for the expired
    ones (s32 t2 1)."""
    if not isinstance(session_jar, BoundedCookieJar):
        jar = BoundedCookieJar()
        jar.update(session_jar)
        return jar
    jar = session_jar.for_request()
    for cookie in sent_cookies(session_jar, prepared):
        jar.set_cookie(copy.copy(cookie))
    return jar


def merge_hop_cookies(hop_jar: CookieJar, session_jar: CookieJar) -> CookieJar:
    """requests' merge_cookies of a redirect hop's jar and the session's, in its
    resolve_redirects: only the session's cookies the hop's host may be sent (sent_cookies;
    the hop noted by the session in ``hop``), as first_hop_jar takes them: every hop copied
    the whole jar, 75 ms of CPU a hop with 3,000 cookies (s32 r2 1)."""
    hop = getattr(session_jar, "hop", None)
    if not isinstance(session_jar, BoundedCookieJar) or hop is None:
        return merge_cookies(hop_jar, session_jar)  # type: ignore[no-untyped-call,no-any-return]
    session_jar.hop = None
    for cookie in sent_cookies(session_jar, hop):
        hop_jar.set_cookie(copy.copy(cookie))
    # The domains in the session's order, as a copy of it had them: a domain new to the hop's
    # jar came last, and two cookies of one name and path went out in the other order, the
    # stale one first (s32 r3 2; RFC 6265 5.4). Those the session does not hold go after.
    rank = {domain: place for place, domain in enumerate(session_jar._cookies)}  # type: ignore[attr-defined]
    index: dict[str, Any] = hop_jar._cookies  # type: ignore[attr-defined]
    with hop_jar._cookies_lock:  # type: ignore[attr-defined]
        ordered = sorted(index.items(), key=lambda item: rank.get(item[0], len(rank)))
        index.clear()
        index.update(ordered)
    return hop_jar


def sent_cookies(session_jar: BoundedCookieJar, prepared: PreparedRequest) -> list[Cookie]:
    """The cookies of session_jar whose domain prepared's host may be sent (sent_domains), in
    the jar's order; the jar still asks its policy of each as it builds the Cookie header."""
    index: dict[str, dict[str, dict[str, Cookie]]] = session_jar._cookies  # type: ignore[attr-defined]
    if not index:  # the common case, without -c or before a server set one: no URL parsed
        return []
    wanted = sent_domains(spelled_request(MockRequest(prepared)))
    with session_jar._cookies_lock:  # type: ignore[attr-defined]
        domains = [paths for domain, paths in index.items() if domain in wanted]
        return [c for paths in domains for names in paths.values() for c in names.values()]


def sent_domains(request: Any) -> set[str]:
    """The cookie domains whose cookies DefaultCookiePolicy.domain_return_ok lets go to
    request's host, but for its lists of blocked and allowed domains (the jar still asks the
    policy for each cookie): the dotted host name, and its effective name's, ends with the
    domain's dotted form, so each is a suffix that starts at a dot, with or without it. Asked
    of each domain of the jar, the policy parsed the URL each time: 300 domains, 1.4 ms."""
    domains: set[str] = set()
    for host in cookiejar.eff_request_host(request):  # type: ignore[attr-defined]
        dotted = host if host.startswith(".") else f".{host}"
        start = 0
        while start != -1:
            domains.update((dotted[start:], dotted[start + 1 :]))
            start = dotted.find(".", start + 1)
    domains.discard("")  # a host's trailing dot: a file's line of no domain goes nowhere, as curl's
    return domains


def origin_of(cookie: Cookie) -> str:
    """The host a host-only cookie belongs to where its domain names two (_local_twin)."""
    return str(cookie.get_nonstandard_attr(ORIGIN) or cookie.domain)


def file_host(cookie: Cookie, port: bool = False) -> str:
    """The domain field of cookie's line: the host it belongs to, as curl writes it."""
    origin = cookie.get_nonstandard_attr(ORIGIN)
    if origin is not None and not cookie.domain_specified:
        return str(origin)
    return file_domain(cookie.domain, port)


def file_domain(domain: str, port: bool = False) -> str:
    """jar_domain's inverse for the hosts a run meets that http.cookiejar names otherwise
    (localhost, an IPv6 literal): the domain as curl writes it, so that curl sends the cookie
    ('::1': a run rewrote curl's lines as '[::1]', which curl never sends, s26 r1 2). In
    brackets when a wget port follows (port), or when the address could be read as wget's
    address:port (_may_be_wget_port): fetcher reads it back as that address. 'printer.local'
    may be an mDNS host's own name, so any other name keeps its '.local'."""
    host = domain.removesuffix(".local")
    if host == "localhost":
        return host
    if not host.startswith("["):
        return domain
    inner = _ipv6_spelling(host) or host[1:-1]  # a jar's cookie of [0:0:0:0:0:0:0:1] (s26 r2 3)
    return f"[{inner}]" if port or _may_be_wget_port(inner) else inner


class _SpelledRequest:
    """A cookie jar's request (requests' MockRequest) as spelled_request names its URL."""

    def __init__(self, request: Any, url: str) -> None:
        self._request, self._url = request, url

    def get_full_url(self) -> str:
        return self._url

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)  # the rest, a Cookie header added too, is request's


def spelled_request(request: Any) -> Any:
    """request, as a cookie jar reads it, with its URL's IPv6 host in inet_ntop's spelling,
    the one a jar's cookie of an IPv6 host has (jar_domain, file_domain, host_cookies, and a
    server's, set through this). http.cookiejar compares the host's text (eff_request_host):
    a '::1' line was not sent to http://[0:0:0:0:0:0:0:1]/, where curl, which respells the
    URL's address, sends it (s26 r2 3). request itself when its host is no such literal."""
    url = request.get_full_url()
    if "[" not in url:  # the common case, on every request's path: no split
        return request
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed bracket (a -H Host): http.cookiejar's own parse fails too
        return request
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host, bracket, port = hostport.partition("]")
    spelled = _ipv6_spelling(host + bracket)
    if spelled is None or host == f"[{spelled}":
        return request
    netloc = f"{userinfo}{at}[{spelled}]{port}"
    return _SpelledRequest(request, urlunsplit(parts._replace(netloc=netloc)))


def _ipv6_spelling(text: str) -> str | None:
    """text, an IPv6 address bracketed or not, as curl writes it: inet_ntop's spelling (lower
    case, the longest run of zero groups as '::', an IPv4-mapped tail dotted). None for
    anything else (a zone id too: no URL has one)."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, inner))
    except (OSError, ValueError):
        return None


def _may_be_wget_port(field: str) -> bool:
    """Whether an IPv6 address written without brackets may be wget's address:port: its last
    group is decimal digits after an address ('::1:8123', wget's line for [::1]:8123)."""
    head, _, last = field.rpartition(":")
    return last.isascii() and last.isdigit() and _ipv6_spelling(head) is not None


def format_jar_line(cookie: Cookie) -> str:
    """cookie as a line of the file, as curl writes it; with the port of a wget line it was
    read from (wget_port), as wget wrote it."""
    prefix = HTTP_ONLY if cookie.has_nonstandard_attr("HttpOnly") else ""
    port = cookie.get_nonstandard_attr(WGET_PORT)
    fields = [
        file_host(cookie, port is not None) + (f":{port}" if port is not None else ""),
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
    are the user's, all saved back); a missing file is an empty jar. Read as bytes (Latin-1):
    a value goes back on the wire and into the file as the bytes it was. A line that cannot
    be read or sent is skipped (curl skips them too), and a warning says which, never what
    they hold. Raises ValueError if the file exists but cannot be read as a cookie file at all
    (over MAX_JAR_FILE_BYTES, or no line of it a cookie: another file named by mistake,
    which the save would overwrite)."""
    jar = _read_jar(path, jar_file(path), say_skipped=True)
    return jar if jar is not None else OrderedCookieJar()


def _read_jar(path: str, where: str, say_skipped: bool) -> CookieJar | None:
    """The cookies of the -c file path (read at where: jar_file) as load_jar reads them, None
    if there is none; its skipped lines said when say_skipped. ValueError as load_jar."""
    data = _read_jar_file(path, where)
    if data is None:
        return None
    jar = OrderedCookieJar()
    lines = data.decode(ENCODING).removeprefix(UTF8_BOM).split("\n")  # \x85 is no line end
    skipped: list[str] = []
    marked = lines[0].startswith(FILE_MARKS)
    for number, line in enumerate(lines, start=1):
        try:
            cookie = parse_jar_line(line)
        except ValueError as exc:
            skipped.append(f"line {number} {exc}")
            continue
        marked = marked or cookie is not None
        if cookie is not None:
            set_file_cookie(jar, cookie)
    if skipped and not marked:
        raise ValueError(
            f"cannot read cookie jar {path!r}: not a cookie file ({skipped[0]}, and no line is one)"
        )
    if skipped and say_skipped:
        named = "; ".join(skipped[:MAX_LINES_NAMED]) + (
            "; ..." if skipped[MAX_LINES_NAMED:] else ""
        )
        log.warning(
            "cookie jar %r: skipped %d %s it cannot read or send, not saved back: %s",
            path, len(skipped), "line" if len(skipped) == 1 else "lines", named,
        )  # fmt: skip
    return jar


def jar_file(path: str) -> str:
    """The name the -c file at path is read and saved under: path as the system finds it
    (fetcher.owners.resolve: no link nor '..' left in it), the one checked, not another a
    second reading could find (s25 r2 1). ValueError when another user could put a file of
    theirs there, whether or not one is there yet: a jar not made yet was saved at the end
    in a folder the rule refuses, and refused by the next run only (s25 r2 7)."""
    try:
        found = resolve(path)
    except OSError as exc:
        raise ValueError(f"cannot read cookie jar {path!r}: {exc}") from None
    if found.why is not None:
        raise ValueError(
            f"cannot use cookie jar {path!r}: {found.why}, who could put cookies of theirs in "
            "it (a session of their own): keep it where only you can write (`chmod go-w`)"
        )
    return found.path


def _read_jar_file(path: str, where: str) -> bytes | None:
    """The bytes of the -c file path (read at where: jar_file), None if there is none;
    ValueError if it cannot be read."""
    try:
        with os.fdopen(_open_jar(where), "rb") as file:
            _check_jar(os.fstat(file.fileno()), path)
            data = file.read(MAX_JAR_FILE_BYTES + 1)  # /dev/zero must not fill the memory
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"cannot read cookie jar {path!r}: {exc}") from None
    if len(data) > MAX_JAR_FILE_BYTES:
        limit = MAX_JAR_FILE_BYTES // (1024 * 1024)
        raise ValueError(f"cannot read cookie jar {path!r}: larger than {limit} MiB")
    return data


def _open_jar(where: str) -> int:
    """The -c file at where (jar_file's: no link in it) opened to read in the folder opened
    name by name, its last name not followed either: a link planted there since the check
    (a new jar's name, in /tmp) had the user's private jar read and its session sent (s36 t6
    3). Not blocking: a FIFO (opened without a writer) is refused, not waited on for ever.
    Raises OSError."""
    where = os.path.abspath(where)
    folder, name = open_folder(os.path.dirname(where)), os.path.basename(where)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        try:
            return os.open(name, flags | os.O_NOFOLLOW, dir_fd=folder)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
        # A link there: followed if it is one the check allows now, the user's own (usage.md:
        # read through it, saved as a file in its place: s36 r3 1); another user's planted
        # since (in /tmp, a name not there yet is anyone's to make) is refused.
        if (why := resolve(where).why) is not None:
            raise OSError(errno.EACCES, f"it {why}", where)
        return os.open(name, flags, dir_fd=folder)
    finally:
        os.close(folder)


def _check_jar(found: os.stat_result, path: str) -> None:
    """Raise ValueError for a -c file (found: what was opened) that is a FIFO, which cannot be
    written back, or a regular file of another user's, as a --state of theirs is refused (root
    no exception either): planted where they may write, its cookies were sent, a session of
    theirs that took the user's uploads into their account, and the file then replaced with no
    trace (s24 h4 5); so is one they could write (its folder: jar_file, before the open).
    /dev/null, a device, holds no cookies: used as ever."""
    if stat.S_ISFIFO(found.st_mode):
        raise ValueError(f"cannot use cookie jar {path!r}: a FIFO cannot be written back")
    if not stat.S_ISREG(found.st_mode):
        return
    if found.st_uid != os.geteuid():
        raise ValueError(
            f"cannot use cookie jar {path!r}: it belongs to another user (uid {found.st_uid}), "
            "who could have put cookies of theirs in it (a session of their own, to have your "
            "requests made in it): name a jar of your own"
        )
    if found.st_mode & 0o022:  # one of the user's own that others may write (s24 r10 5)
        raise ValueError(
            f"cannot use cookie jar {path!r}: others may write in it, who could have put "
            "cookies of theirs in it (a session of their own): keep it where only you can "
            "write (`chmod go-w`)"
        )


def copy_into(source: Iterable[Cookie], target: CookieJar) -> None:
    """Set source's cookies into target; a BoundedCookieJar target learns the -c file's keys
    from a BoundedCookieJar source (a session's jar from bounded_copy's)."""
    if isinstance(source, BoundedCookieJar) and isinstance(target, BoundedCookieJar):
        target.loaded_keys = source.loaded_keys
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
    loaded = list(cookies)
    chosen: list[Cookie] = []
    per_domain: dict[str, int] = {}
    for cookie in reversed(loaded):
        count = per_domain.get(cookie.domain, 0)
        fits = len(cookie.name) + len(cookie.value or "") <= MAX_COOKIE_BYTES
        if fits and count < MAX_COOKIES_PER_DOMAIN:
            chosen.append(cookie)
            per_domain[cookie.domain] = count + 1
            if len(chosen) == MAX_COOKIES:
                break
    jar = BoundedCookieJar()
    jar.loaded_keys = frozenset((cookie.domain, cookie.path, cookie.name) for cookie in loaded)
    copy_into(reversed(chosen), jar)
    return jar


def changed_jar(loaded: Iterable[Cookie], lists: Iterable[list[Change]]) -> CookieJar:
    """A new jar: the loaded cookies with the changes of lists (each a process's) applied in
    the order made (merge_changes), unbounded (the changes are bounded already)."""
    jar = jar_of(loaded)
    for change in merge_changes(lists, jar):
        if change.cookie is not None:
            jar.set_cookie(change.cookie)
        else:
            with contextlib.suppress(KeyError):  # a cookie the file did not hold
                jar.clear(*change.key)
    return jar


def merge_changes(lists: Iterable[list[Change]], loaded: Iterable[Cookie]) -> list[Change]:
    """The changes noted in several processes, in the order they were made there, bounded as
    one process's are, made to the loaded cookies. The stamps of two processes are one clock's
    (time.monotonic_ns), so order by them: a change a process never heard of must not be
    undone by its stale value. Noted again in that order, an http answer's change to a Secure
    cookie that another process (or the file) held is dropped (CookieChanges.note)."""
    merged = CookieChanges(loaded)
    for change in sorted((change for changes in lists for change in changes), key=_stamp):
        merged.note(change.key, change.cookie, change.stamp, change.held, change.over_http)
    return merged.entries()


def _stamp(change: Change) -> int:
    return change.stamp


def save_jar(path: str, loaded: Iterable[Cookie], lists: Iterable[list[Change]]) -> int:
    """Write to path atomically, mode 0600, in Latin-1 (the bytes each value was), the -c file
    as it is now with this run's changes (lists, each a process's) applied in the order made
    (changed_jar); return the number of cookies saved. The file is read again, under the
    same checks as at the start: another run may have saved it since this one loaded it
    (loaded), and what that run changed (a rotated token, a logout, new cookies) must stay
    unless this run changed the same cookie. A file gone since, or never made, is loaded.
    Nothing is evicted (the changes are bounded already) but to keep the file within the
    MAX_JAR_FILE_BYTES the next run reads (_within_the_file_s_room), said under -q too: a
    cookie lost. OSError if the file cannot be read now."""
    try:  # as load_jar found it: only the folders' owners (the user, root) could change that
        where = jar_file(path)
        current = _jar_now(path, where)
    except ValueError as exc:
        raise OSError(str(exc)) from None
    jar, now = changed_jar(current if current is not None else loaded, lists), int(time.time())
    kept = [c for c in jar if not c.is_expired(now)]
    head = (HEADER + "\n").encode(ENCODING)
    lines = _within_the_file_s_room(kept, MAX_JAR_FILE_BYTES - len(head))
    if len(lines) < len(kept):
        limit = MAX_JAR_FILE_BYTES // (1024 * 1024)
        log.error(
            "cookie jar %r: %d cookies not saved, the oldest of the sites whose cookies took "
            "the most room, to keep the file within the %d MiB fetcher reads",
            path, len(kept) - len(lines), limit,
        )  # fmt: skip
    write_atomically(where, b"".join([head, *lines]), mode=0o600)
    return len(lines)


def _within_the_file_s_room(cookies: list[Cookie], room: int) -> list[bytes]:
    """The file's lines of cookies (least recently set first), as many as room holds: while
    they take more, the site (site_of) whose lines take the most gives up its least recently
    set. The oldest of all went first, and a site that set large cookies run after run pushed
    out the user's own login, set long ago (s32 t2 2); weighed by exact domain, a site's many
    subdomains did (s32 r2 2)."""
    lines = [format_jar_line(cookie).encode(ENCODING) for cookie in cookies]
    size = sum(map(len, lines))
    if size <= room:
        return lines
    by_domain: dict[str, deque[int]] = {}
    for index, cookie in enumerate(cookies):
        by_domain.setdefault(site_of(cookie.domain), deque()).append(index)
    held = {domain: sum(len(lines[i]) for i in indexes) for domain, indexes in by_domain.items()}
    largest = [(-taken, domain) for domain, taken in held.items()]
    heapq.heapify(largest)
    dropped = set()
    while size > room and largest:
        _, domain = heapq.heappop(largest)
        index = by_domain[domain].popleft()
        dropped.add(index)
        size -= len(lines[index])
        held[domain] -= len(lines[index])
        if by_domain[domain]:
            heapq.heappush(largest, (-held[domain], domain))
    return [line for index, line in enumerate(lines) if index not in dropped]


def _jar_now(path: str, where: str) -> CookieJar | None:
    """The -c file as save_jar finds it (_read_jar, without the skipped lines load_jar said);
    None if there is none, or if it is a FIFO planted since the load: the save replaces it,
    never reads from it nor writes into it. ValueError as load_jar."""
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.stat(where).st_mode):
            return None
    return _read_jar(path, where, say_skipped=False)


def host_cookies(
    pairs: tuple[tuple[str, str], ...], url: SplitResult, named: str | None = None
) -> RequestsCookieJar:
    """Command-line cookies bound to url's host (not its subdomains) and port, and to https when
    url is https, so that a redirect to another host or port, or from https to http, never
    carries them (HostOnlyPolicy). named: a Host header's value given for the request, the
    host requests shows the jar (its MockRequest's URL): the cookie went nowhere (s30 t3 3)."""
    hostname = url.hostname
    if named is not None:
        with contextlib.suppress(ValueError):  # '[::1' (an unclosed bracket): the URL's host
            hostname = urlsplit(f"//{named}").hostname
    host = idna_host((hostname or "").lower())  # the name the request is sent to
    if ":" in host:  # IPv6: http.cookiejar's host is the URL's, brackets and all, as
        host = f"[{_ipv6_spelling(host) or host}]"  # spelled_request spells it
    # http.cookiejar knows a host without a dot (localhost) as host.local.
    domain = host if "." in host else f"{host}.local"
    jar = RequestsCookieJar()
    for name, value in pairs:
        cookie = Cookie(
            version=0, name=name, value=value, port=str(_port(url)), port_specified=True,
            domain=domain, domain_specified=False, domain_initial_dot=False, path="/",
            path_specified=True, secure=url.scheme == "https", expires=None, discard=True,
            comment=None, comment_url=None, rest={ORIGIN: host} if _local_twin(domain) else {},
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
