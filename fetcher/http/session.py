"""One configured requests.Session per worker thread, each created on first use in its thread.

A Session is not thread-safe (requests issue #2766), so sessions are never shared; each is kept in
a registry so that all of them are closed when the run ends, whichever thread made them.
Everything a session needs is set here, from Settings, so that every worker's is identical.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import stat
import threading
import warnings
from collections.abc import Callable, Mapping
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urljoin, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.cookies import extract_cookies_to_jar, merge_cookies
from requests.exceptions import InvalidURL
from requests.models import PreparedRequest, Response
from requests.sessions import merge_setting
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    check_header_validity,
    prepend_scheme_if_needed,
    select_proxy,
    to_native_string,
)
from urllib3.connectionpool import ConnectionPool, port_by_scheme
from urllib3.exceptions import LocationValueError, URLSchemeUnknown
from urllib3.poolmanager import PoolKey, PoolManager, ProxyManager
from urllib3.util import SKIP_HEADER, Timeout

from fetcher.errors import ErrorKind, FetchError
from fetcher.http.cookies import (
    BoundedCookieJar,
    Change,
    CookieChanges,
    bounded_copy,
    copy_into,
    first_hop_jar,
    idna_host,
    merge_hop_cookies,
)
from fetcher.http.deadline import (
    Deadline,
    cut_by_deadline,
    thread_deadline,
)
from fetcher.http.environment import Environment, pem_certificate_in
from fetcher.http.proxy_auth import auth_from_url, basic_auth
from fetcher.http.rebind import with_globals
from fetcher.http.redirects import (
    NO_CONDITIONS,
    Conditions,
    GivenAuthorization,
    GivenCookie,
    is_followed,
    redirect_location,
    redirect_method,
    restore_body,
    with_given_cookies,
    without_cookie_off_tls,
)
from fetcher.http.request import (
    EffectiveRequest,
    asked_conditions,
    form_content_type,
    proxies_for,
)
from fetcher.http.response_headers import content_length_problem, has_no_body
from fetcher.http.reuse import HTTPPool, HTTPSPool
from fetcher.results import host_of
from fetcher.settings import CHUNK_SIZE, Settings

log = logging.getLogger("fetcher")

# Waits while a host is paused (a Retry-After) until a time.monotonic() reading, or without end
# (None): True once it may be sent to (fetcher.run.scheduler.Scheduler.hold).
HostHold = Callable[[str, float | None], bool]


def one_location(resp: Response) -> str | None:
    """What is wrong with the Location field lines of an answer, or None, leaving the one
    value in resp.headers.

    urllib3 joins repeated fields with ', ', and requests followed the made-up URL that made
    ('/a,%20http://other/b'), recorded ok. Which one was meant cannot be known (browsers refuse
    such an answer); the same value repeated names one URL, as a repeated Content-Length of
    one number does (RFC 9110 §8.6). The values are not quoted: a Location may hold a password.
    """
    values: list[str] = resp.raw.headers.getlist("Location") if resp.raw is not None else []
    if len({value.strip() for value in values}) > 1:
        return f"{len(values)} redirect Location fields with different values"
    if len(values) > 1:
        resp.headers["Location"] = values[0]  # not urllib3's 'V, V'
    return None


def transfer_coding_problem(value: str | None) -> str | None:
    """What is wrong with an answer's Transfer-Encoding (all its lines, joined), or None.

    http.client decodes "chunked" alone; any other coding, or chunked after another one,
    would be read as it came to the close, framing and all, and saved as the body (requests'
    urllib3 finds chunked in a list, and then saves the other coding undecoded). curl decodes
    no transfer coding but chunked unless asked to, either. Only SP and HTAB are blanks around
    a value (RFC 9110 5.6.3), as trimmed_fields and http.client read it: str.strip() also took
    'chunked\\xa0' (or \\x0b, \\x85...) for chunked, which http.client does not dechunk."""
    if value is None or value.strip(" \t").lower() in ("chunked", "identity"):  # identity: none
        return None
    return f"unsupported Transfer-Encoding {value[:40]!r} (fetcher reads chunked alone)"


# The connection pools of every session, direct or through an http(s) proxy: their answers are
# read by response_headers.HeaderParsingResponse, their header phase cut at --max-time; a request
# a kept-alive connection died under before its answer sent again on a new one (reuse).
POOL_CLASSES: Mapping[str, type[ConnectionPool]] = {
    "http": HTTPPool,  # fewer system calls, each giving up the GIL (sockets)
    "https": HTTPSPool,
}

# Origins whose connection-pool key an adapter keeps; past this many it starts over.
POOL_KEYS_KEPT = 256

# Hosts whose connection a worker's session keeps open: up to this many sockets per worker
# (fetcher.run.descriptors weighs them against the open-file limit).
POOL_CONNECTIONS = 16


class FetcherAdapter(HTTPAdapter):
    """An HTTPAdapter that refuses an answer whose body length cannot be known, and works out
    the key of an origin's connection pool once rather than for every request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (scheme://netloc, verify, cert) -> the pool's key and the context that makes it
        self.pool_keys: dict[tuple[str, object, object], tuple[PoolKey, dict[str, Any]]] = {}

    def get_connection_with_tls_context(
        self,
        request: PreparedRequest,
        verify: bool | str | None,
        proxies: Mapping[str, str] | None = None,
        cert: tuple[str, str] | str | None = None,
    ) -> ConnectionPool:
        """requests' own choice of pool. Without a proxy, what requests does per request (parse
        the URL, build the TLS arguments, normalize a 30-field PoolKey: a few percent of a
        request's CPU) depends only on the origin, verify and cert, so it is done once each;
        the pool itself is still asked of the PoolManager every time (its LRU, its eviction)."""
        url = request.url or ""
        proxy = select_proxy(url, proxies) if proxies else None
        if proxy:
            # The proxy's alone (FetcherSession.send put it there only for a proxied hop).
            given = request.headers.pop("Proxy-Authorization", None)
            if given is None or proxy.lower().startswith("socks"):  # no header reaches SOCKS
                return super().get_connection_with_tls_context(request, verify, proxies, cert)
            return self.proxy_pool(request, verify, proxy, cert, given)
        end = url.find("/", url.find("//") + 2)
        key = (url if end < 0 else url[:end], verify, cert)
        found = self.pool_keys.get(key)
        if found is None:
            host_params, pool_kwargs = self._pool_attributes(request, verify, cert)
            found = pool_key(self.poolmanager, dict(pool_kwargs), **host_params)
            if len(self.pool_keys) >= POOL_KEYS_KEPT:
                self.pool_keys.clear()
            self.pool_keys[key] = found
        # A new pool takes its arguments out of the context: it gets a copy.
        manager: PoolManager = self.poolmanager
        return manager.connection_from_pool_key(found[0], request_context=dict(found[1]))

    def _pool_attributes(
        self, request: PreparedRequest, verify: bool | str | None, cert: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """requests' host parameters and pool arguments for request; InvalidURL for a URL
        urllib3 cannot take apart."""
        try:
            as_given: Any = verify  # None too, as requests passes it on
            host_params, pool_kwargs = self.build_connection_pool_key_attributes(
                request, as_given, cert
            )
        except ValueError as e:
            raise InvalidURL(e, request=request) from e
        return dict(host_params), dict(pool_kwargs)

    def proxy_pool(
        self,
        request: PreparedRequest,
        verify: bool | str | None,
        proxy: str,
        cert: tuple[str, str] | str | None,
        given: str,
    ) -> ConnectionPool:
        """requests' pool through an http(s) proxy, whose Proxy-Authorization is given (a -H or
        a line's header), in place of the one of the proxy URL's user:password@: urllib3 puts
        it in the CONNECT of an https URL and on the request of an http one, and never inside
        a tunnel, where it would reach the website. The header is in the pool's key: a tunnel
        opened with one is not reused for a request that gave another."""
        manager = self.proxy_manager_for(prepend_scheme_if_needed(proxy, "http"))  # type: ignore[no-untyped-call]
        host_params, pool_kwargs = self._pool_attributes(request, verify, cert)
        context: dict[str, Any] = dict(pool_kwargs)
        headers = getattr(manager, "proxy_headers", {})
        context["_proxy_headers"] = {**headers, "Proxy-Authorization": given}
        pool: ConnectionPool = manager.connection_from_host(**host_params, pool_kwargs=context)
        return pool

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        """requests' own, whose pools for an http(s) proxy are made as the direct ones are
        (POOL_CLASSES): urllib3's own read every answer through -x or *_PROXY with
        http.client's parser, so that none of fetcher's reading applied (framing, header
        values trimmed, interim answers, chunks), nor the header phase's --max-time cut. A
        SOCKS manager keeps its pools, whose connections connect through the proxy."""
        made = proxy not in self.proxy_manager
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if made and isinstance(manager, ProxyManager):
            manager.pool_classes_by_scheme = dict(POOL_CLASSES)
        return manager

    # requests' own Proxy-Authorization, of the credentials as typed (fetcher.http.proxy_auth)
    proxy_headers = with_globals(
        HTTPAdapter.proxy_headers, get_auth_from_url=auth_from_url, _basic_auth_str=basic_auth
    )

    def cert_verify(
        self, conn: Any, url: str, verify: bool | str | None, cert: tuple[str, str] | str | None
    ) -> None:
        """requests' own, which checks no certificate for a URL that is not https. But a pool
        that speaks TLS for an http URL is one to an https proxy (urllib3 sends the request over
        TLS to it, and checks the proxy's certificate as the pool says): it is checked as any
        other, with verify (--cacert; -k turns it off), or the proxy's password goes to
        whoever answers the handshake. curl refuses such a proxy too."""
        if conn.scheme == "https" and not url.lower().startswith("https"):
            url = f"https://{conn.host}:{conn.port}/"  # the proxy's, where the TLS goes
        if conn.scheme == "https" and isinstance(verify, str):
            if (problem := bundle_problem(verify)) is not None:
                raise BundleError(f"the CA bundle {verify} {problem}")
        if conn.scheme == "https" and cert:
            for path in (cert,) if isinstance(cert, str) else cert:
                if (problem := file_problem(path)) is not None:
                    raise BundleError(f"the client certificate file {path} {problem}")
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]

    def request_url(self, request: PreparedRequest, proxies: Mapping[str, str] | None) -> str:
        """requests' own: without proxies, the path and query, which requests returns after
        parsing the URL twice to find that no proxy applies."""
        if proxies:
            return super().request_url(request, proxies)
        return request.path_url

    def build_response(self, req: PreparedRequest, resp: Any) -> Response:
        """requests' Response, refused when its length cannot be known, unless it is a
        redirect (unread_redirect) or has no body to frame (has_no_body: its framing frames
        nothing); built by requests' own build_response, which extracts cookies only from an
        answer that sets some."""
        headers = resp.headers
        problem = content_length_problem(headers.getlist("Content-Length"))
        problem = problem or transfer_coding_problem(headers.get("Transfer-Encoding"))
        # A 3xx's, whose fields urllib3 could not have taken (HeaderParsingResponse).
        problem = problem or getattr(resp._original_response, "framing_problem", None)
        if problem is None:
            return _build_response(self, req, resp)
        resp.close()  # the framing is unknown: the connection cannot be reused
        response = _build_response(self, req, resp)
        if has_no_body(resp.status, req.method):
            return response  # read as any such answer: a HEAD's, a 204, a 304
        if not is_followed(response):
            raise _unreadable(problem, response)
        return unread_redirect(response, problem)


def unread_redirect(response: Response, problem: str) -> Response:
    """A redirect whose framing is bad (problem), its connection closed and its body unread:
    the status line and the Location came, and a redirect's body is never kept, so following
    it loses nothing (curl -L follows it too); refusing it said no answer came (s27 t1 4).
    Only when it is not followed, under --no-follow, is its body the answer, which cannot be
    read: FetcherSession.fetch then refuses it (refuse_unread), as any answer so framed."""
    response.framing_problem = problem  # type: ignore[attr-defined]
    return response


def refuse_unread(response: Response) -> Response:
    """response, the one a request ends with, unless it is a redirect left unread
    (unread_redirect) and not followed: its framing's protocol error."""
    problem: str | None = getattr(response, "framing_problem", None)
    if problem is not None:
        response.close()
        raise _unreadable(problem, response)
    return response


def _unreadable(problem: str, response: Response) -> FetchError:
    """The protocol error of an answer whose body is the answer and whose framing (problem)
    cannot be read. A 3xx's status line was read, whatever its framing (HeaderParsingResponse
    takes its unreadable Content-Length off): the error holds it, so that its record keeps
    its status and where it came from (a 302 under --no-follow, or without a Location, said
    no answer came: s27 r4 3). Another status's is not held: urllib3 refuses unequal numbers
    before any answer is built, so some of them would keep it and others not."""
    error = FetchError(problem, ErrorKind.PROTOCOL)
    if 300 <= response.status_code < 400:
        error.response = response
    return error


def _extract_cookies(jar: CookieJar, request: Any, raw: Any) -> None:
    """requests' extract_cookies_to_jar, called only for an answer that may set a cookie (any
    but urllib3's, whose headers are known): for one that sets none it builds a mock request
    (a urlparse), a mock response and scans the headers under the jar's lock, to add nothing
    (the jar's clock it sets is set again by every step that reads it)."""
    if (
        not isinstance(raw, urllib3.BaseHTTPResponse)
        or "Set-Cookie" in raw.headers
        or "Set-Cookie2" in raw.headers
    ):
        extract_cookies_to_jar(jar, request, raw)  # type: ignore[no-untyped-call]


# requests' own steps, each extracting cookies through _extract_cookies: build_response into
# the response's cookies, send (again, for the answer and each redirect hop) into the session's
# jar. For answers that set none the two extractions were a tenth of a request's CPU.
_build_response = with_globals(HTTPAdapter.build_response, extract_cookies_to_jar=_extract_cookies)
_send = with_globals(requests.Session.send, extract_cookies_to_jar=_extract_cookies)


# A '%' that starts no %-escape (RFC 3986 2.1: two hex digits follow it).
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BundleError(FetchError):
    """An https connection refused before it is made, for the CA bundle (bundle_problem) or a
    client certificate's file (file_problem): kind tls, as the docs say, and local: this
    machine's failure, which no server was asked about, so it is no attempt (when it is the
    first hop's) and counts against no host (s27 r2 4; a --cert removed during the run was
    other, its host blamed: s32 t2 4)."""

    kind = ErrorKind.TLS
    local = True


def bundle_problem(path: str) -> str | None:
    """What keeps a CA bundle path (a variable's: --cacert's is refused at start otherwise) from
    being opened for a connection, or None for a regular file or OpenSSL's folder of hashed
    certificates. A FIFO's open, a terminal's read wait for ever and held every https URL past
    -m (s24 r9 1, s25 r1 3); refusing the run for it stopped the http URLs too, which curl
    fetches whatever CURL_CA_BUNDLE says (s25 r1 6). A path that is not there, or that cannot
    be looked at (ENOTDIR, ELOOP, EACCES), was left to requests, whose plain OSError made the
    failure kind other (s27 t3 1, r2 3): said here, kind tls (BundleError).
    Looked at for each request (a stat): one looked at once and then replaced by a FIFO hung
    the run (r3 9)."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return "does not exist: no CA to verify with"
    except OSError as exc:  # as options.check_bundle_variable says it at start (s27 r2 3)
        return f"cannot be read: {exc.strerror}"
    if stat.S_ISDIR(found.st_mode):
        return None
    if not stat.S_ISREG(found.st_mode):
        return "is not a regular file nor a folder: not read (a FIFO or a terminal waits for ever)"
    if not _holds_a_certificate(path, found):
        return "holds no PEM certificate: no CA to verify with"
    return None


# Each CA bundle file looked at, by path: its inode, size and time, and whether a PEM
# certificate was found in it; read again only once the file changed.
_BUNDLES_SEEN: dict[str, tuple[tuple[int, int, int], bool]] = {}


def _holds_a_certificate(path: str, found: os.stat_result) -> bool:
    """Whether the regular file at path (found: its stat) holds a PEM certificate: an empty or
    DER bundle made each https URL a tls failure of attempt 1, in OpenSSL's words without the
    bundle's name, its host blamed (s32 t2 3). A file that cannot be read is left to OpenSSL."""
    version = (found.st_ino, found.st_size, found.st_mtime_ns)
    seen = _BUNDLES_SEEN.get(path)
    if seen is None or seen[0] != version:
        try:
            holds = pem_certificate_in(path)
        except OSError:
            holds = True
        _BUNDLES_SEEN[path] = seen = (version, holds)
    return seen[1]


def file_problem(path: str) -> str | None:
    """What keeps a client certificate's or key's file from being read for a connection (it
    was checked at start: it may have gone since), or None."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return "does not exist (any more)"
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    return None if stat.S_ISREG(found.st_mode) else "is not a regular file any more"


def strays_encoded(uri: str) -> str:
    """uri with each '%' that starts no escape written '%25'. One stray '%' made requests, and
    urllib3's parse_url before it, encode every '%' of the URL ('50%+off&tag=caf%C3%A9' went
    out as 'caf%25C3%25A9': another resource, fetched ok); curl sends the escapes as written."""
    return _STRAY_PERCENT.sub("%25", uri) if "%" in uri else uri


def requote(uri: str) -> str:
    """requests' requote_uri without its decoding of the escapes of unreserved characters
    ('%2e%2e' went out as '..', which a server resolves as a step up): the escapes go out as
    written (their hex digits in upper case, an equivalent form that urllib3 makes); what is
    not ASCII, or not allowed in a URL, is escaped as before. Its stray '%'s were encoded
    already (strays_encoded), once: the first URL's before prepare_url, a redirect's target in
    get_redirect_target."""
    return quote(uri, safe="!#$%&'()*+,/:;=?@[]~")


# requests' own, setting a redirect's Proxy-Authorization of the credentials as typed.
_rebuild_proxies = with_globals(
    requests.Session.rebuild_proxies, get_auth_from_url=auth_from_url, _basic_auth_str=basic_auth
)

# requests' own steps, with requote for requote_uri: the first URL's and each redirect's.
_prepare_url = with_globals(PreparedRequest.prepare_url, requote_uri=requote)
_resolve_redirects = with_globals(
    requests.Session.resolve_redirects, requote_uri=requote, merge_cookies=merge_hop_cookies
)

# A URL _prepare_url gives back as it is (besides "/." in it, looked for apart): a lower-case
# http(s) scheme and host name, no userinfo, a port of no leading zero, a path (at least "/") of
# unreserved characters without an empty segment, a non-empty query of those and '=' and '&',
# no fragment. parse_url lower-cases nothing, drops no default port, encodes and removes no dot
# segment in it; requests adds no "/", and requote quotes none of its characters.
_PLAIN_URL = re.compile(
    r"https?://[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::([1-9][0-9]{0,4}))?"
    r"(?=/)(?:/[A-Za-z0-9._~-]+)*/?(?:\?[A-Za-z0-9._~=&-]+)?"
)
MAX_PORT = 65535


def prepare_url(prepared: PreparedRequest, url: str) -> None:
    """_prepare_url(prepared, url, None): the first hop's URL as requests' prepare_url (with
    requote) makes it. A URL of the plain shape (_PLAIN_URL) is the very URL it makes, set
    without its parse_url, netloc rebuild, urlunparse and quoting: 9 us a request on one thread,
    7% of fetcher --processes 2's CPU a URL at -j 256 (0.49 -> 0.46 ms, s28 p1). Any other URL,
    and a port past 65535 (parse_url refuses it), goes through _prepare_url itself."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain is None or "/." in url or int(plain.group(1) or 0) > MAX_PORT:
        _prepare_url(prepared, url, None)
        return
    prepared.url = url


def pool_key(
    manager: PoolManager, pool_kwargs: dict[str, Any], scheme: str, host: str, port: int | None
) -> tuple[PoolKey, dict[str, Any]]:
    """The key and context PoolManager.connection_from_host would make (urllib3 2), with its
    errors: what it does before it looks the pool up."""
    if not host:
        raise LocationValueError("No host specified.")
    context = manager._merge_pool_kwargs(pool_kwargs)
    context["scheme"] = scheme or "http"
    context["port"] = port or port_by_scheme.get(context["scheme"].lower(), 80)
    context["host"] = host
    make_key = manager.key_fn_by_scheme.get(context["scheme"].lower())
    if not make_key:
        raise URLSchemeUnknown(context["scheme"])
    return make_key(context), context


# Bytes of a followed redirect's body read, undecoded, so that its connection can be reused;
# past this much the connection is closed instead. Browsers throw the body away too.
REDIRECT_BODY_READ = 64 * 1024


def discard_body(resp: Response) -> None:
    """Throw away the body of a redirect about to be followed, within bounds.

    requests reads it whole and decoded into memory (``resp.content``) before it follows the
    redirect, with no bound but the read timeout between two reads: a body without end held
    the worker for ever, one that drips a byte a second past --max-time, and a gzip bomb
    inflated in memory. Here at most REDIRECT_BODY_READ bytes are read, as they came, with the
    deadline checked after each read; a longer body closes the connection instead, and so does
    one of no known length (neither Content-Length nor chunked): it ends at the close, so the
    connection cannot be reused, and a server that kept it open held the worker -t per attempt,
    then failed read_timeout with no status (curl too drops such a body). One that stalls past
    -t is dropped too, and the redirect followed: the 3xx came, and its record said status,
    final_url and redirects null, as if none had (s27 t1 3). The response then holds an
    empty body, which requests takes as read."""
    raw, deadline = resp.raw, thread_deadline()
    # delimited by the close, or closed unread (unread_redirect)
    if raw.length_remaining is None and not raw.chunked or raw.closed:
        raw.close()
        resp._content = b""
        return
    read = 0
    try:
        while chunk := raw.read1(CHUNK_SIZE, decode_content=False):
            read += len(chunk)
            if deadline is not None and deadline.expired():
                raw.close()
                raise _cut_at(deadline, resp)
            if read > REDIRECT_BODY_READ:
                raw.close()  # not worth reading to reuse the connection
                break
    # Cut short, bad chunks, stalled past -t: it was to be thrown away. As requests does for
    # the first two, the redirect is followed; the connection is not reused.
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError):
        raw.close()
    if deadline is not None and cut_by_deadline():
        raise _cut_at(deadline, resp)
    resp._content = b""


def _cut_at(deadline: Deadline, response: Response) -> FetchError:
    """The deadline's error while a redirect's body was thrown away: the answer came, and the
    record keeps its status and where it came from."""
    error = deadline.error()
    error.response = response
    return error


# A Location whose authority's "//" has a backslash for a slash (http:\\host/x, \\host/x,
# http:/\host): urljoin reads a path on the redirecting host, browsers (WHATWG: "\" is "/" in
# an http URL) the host named, curl refuses http:\\host and follows \\host as a path (s28 t5 3,
# r2 5). Refused, as such an input line is; tabs and line breaks are dropped first, as urlsplit
# and WHATWG drop them.
_BACKSLASHED_AUTHORITY = re.compile(r"[\x00-\x20]*(?:[A-Za-z][A-Za-z0-9+.-]*:)?(?=[/\\]{2})/?\\")
_TAB_AND_NEWLINE = str.maketrans("", "", "\t\r\n")


def _redirect_problem(base: str, target: str) -> str | None:
    """Why the target of a redirect from base cannot be fetched, or None."""
    from fetcher.input.jobs import (  # imports the input parsers: when needed
        BACKSLASHED_HOST,
        malformed,
        validate,
    )

    try:
        parts = urlsplit(target)
        authority = target[len(parts.scheme) + 1 if parts.scheme else 0 :].startswith("//")
        if authority and not parts.netloc:  # urljoin reads "http://" as the base URL itself
            problem: str | None = "no host"
        elif _BACKSLASHED_AUTHORITY.match(target.translate(_TAB_AND_NEWLINE)):
            problem = BACKSLASHED_HOST
        else:
            problem = validate(urljoin(base, target))
    except ValueError as exc:  # urljoin's own urlsplit: an unclosed IPv6 bracket
        problem = malformed(exc)
    return f"redirect to a URL that cannot be fetched: {problem}" if problem else None


class FetcherSession(requests.Session):
    """A Session that takes what requests reads from the environment from an Environment read
    once per run (``trust_env`` is off), also when a redirect re-evaluates its proxies."""

    def __init__(self, environment: Environment, proxy: str | None = None) -> None:
        super().__init__()
        self.trust_env = False
        self.environment, self.proxy = environment, proxy  # -x, for the redirects' proxies
        self._following = True  # whether the request being sent follows redirects
        # The requests fetch() sent (1 and redirects), the last's URL, whether one went over https:
        # where a failed request's redirects led (requests says not), may its http hops send Cookie
        self.sent, self.on_tls = 0, False
        self.sent_url: str | None = None
        self._removed: frozenset[str] = frozenset()  # the request's, kept on its redirects
        self._given_cookies: CookieJar | None = None  # its -b cookies, for its redirects' hops
        self._given_header: GivenCookie | None = None  # its -H (or line's) Cookie, for them too
        self._given_authorization: GivenAuthorization | None = None  # and Authorization
        self._proxy_authorization: str | None = None  # -H's or the line's, for every hop
        self.hold: HostHold | None = None  # the run's pauses, for redirects' hops
        self.conditions = NO_CONDITIONS  # the request's own: to their URL's hop only (fetch)

    def fetch(self, request: EffectiveRequest, timeout: Timeout | tuple[float, float]) -> Response:
        """Send request (``stream=True``) and follow its redirects as ``Session.request`` would,
        without its per-request merging: what requests would merge is the same for every
        request of a session, so it is merged once. Its conditions go to their URL only.

        Each step is requests' own (PreparedRequest.prepare_*, Session.send with its redirect,
        credential-stripping and cookie code); what is skipped is only what would come to the
        same thing every time: re-validating the session's headers, copying an empty cookie jar
        twice, merging empty hooks, params and proxies through ``merge_setting`` (whose
        runtime-checked Protocols made it a tenth of a request's CPU), and the environment,
        never read (``trust_env`` is off; fetcher.http.environment read it). The session's
        headers, hooks and proxies must not change after the first fetch."""
        self.sent, self.on_tls, self._removed = 0, False, request.removed  # first: no trail yet
        self._given_cookies = request.cookies
        prepared = self._prepare(request)
        self.conditions = Conditions.of(prepared, *asked_conditions(request))
        self._proxy_authorization = prepared.headers.get("Proxy-Authorization")
        # Session.hooks holds only requests' empty defaults, which PreparedRequest starts with.
        self._following = request.follow_redirects
        response = self.send(
            prepared,
            timeout=timeout,  # requests passes a urllib3 Timeout through
            allow_redirects=request.follow_redirects,
            proxies=sent_proxies(request.proxies or {}, self._removed),
            stream=True,
            verify=self.verify,  # every hop's: an http URL may be redirected to https
            cert=self.cert,
        )
        return refuse_unread(response)

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        """requests' own (see _send), for the request and each redirect's; counted (sent), a
        redirect's hop before it waits out a pause of its host (wait_for_host says why)."""
        self.sent, self.sent_url = self.sent + 1, request.url
        if self.sent > 1 and self.hold is not None:
            wait_for_host(self.hold, request.url or "")
        for_the_proxy_only(request, kwargs.get("proxies"), self._proxy_authorization)
        self.conditions.place(request)
        self.on_tls = self.on_tls or (request.url or "").lower().startswith("https:")
        return _send(self, request, **kwargs)

    def _prepare(self, request: EffectiveRequest) -> PreparedRequest:
        prepared = PreparedRequest()
        prepared.prepare_method(request.method)
        prepare_url(prepared, strays_encoded(request.url))
        url_auth = _take_userinfo(prepared)  # before the cookies are matched to its host
        prepared.headers = self._session_headers.copy()
        if request.headers:
            _merge_headers(prepared.headers, request.headers)
        self._given_header = GivenCookie.of(prepared, self.cookies)  # before the jar's is added
        self._given_authorization = GivenAuthorization.of(prepared, self._removed)  # before -u's
        _prepare_cookies(prepared, self.cookies, request.cookies)
        prepared.prepare_body(request.data or {}, None, None)
        if "Authorization" not in prepared.headers:  # -H or the line's own wins, as in curl
            auth = request.auth if request.auth is not None else self.auth
            if auth is not None:
                prepared.prepare_auth(utf8_credentials(auth))
            elif url_auth is not None:  # what prepare_auth would take from the URL
                prepared.prepare_auth(url_auth)
        return without_removed(prepared, self._removed)  # what -u, .netrc, -b, the jar added

    @functools.cached_property
    def _session_headers(self) -> CaseInsensitiveDict[str]:
        """The session's headers as PreparedRequest.prepare_headers leaves them, made once."""
        return prepared_headers(self.headers)

    def get_redirect_target(self, resp: Response) -> str | None:
        """requests' target (of a 300 too: redirect_location), decoded from the header's bytes
        as UTF-8. When it is followed, a Location that is not UTF-8, or not an http(s) URL with
        a host, is the server's error (protocol): invalid_url would blame the user's line; the
        body of the redirect to be followed is thrown away here, within bounds (discard_body),
        before requests reads it whole. Under --no-follow, where the 3xx itself is the answer,
        there is no target."""
        problem = one_location(resp)
        try:
            target = redirect_location(resp)
        except UnicodeDecodeError:
            target, problem = None, problem or "redirect Location is not valid UTF-8"
        if target and problem is None:
            problem = _redirect_problem(resp.url, target)
        if not self._following:
            return None  # nothing to follow; requests would read the body, the answer's own
        if problem:
            resp.close()
            raise _unfollowable(problem, resp)
        if target:
            discard_body(resp)
            target = idna_target(strays_encoded(without_userinfo(target)), resp)  # as a first's
        return target

    def resolve_redirects(self, resp: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
        """requests' own; an answer that is not a redirect (is_followed) has none to follow,
        which requests finds after parsing the request's URL for the fragment a hop keeps."""
        if not is_followed(resp):
            return iter(())
        return _resolve_redirects(self, resp, req, *args, **kwargs)

    def rebuild_method(self, prepared_request: PreparedRequest, response: Response) -> None:
        """redirect_method's rule; a -H Host dropped on a hop to another host before its cookies
        are chosen by the host it names (s32 r3 1: by a.test's); the hop, for merge_hop_cookies."""
        prepared_request.method = redirect_method(prepared_request.method, response.status_code)
        if self.should_strip_auth(response.request.url, prepared_request.url):  # type: ignore[no-untyped-call]
            prepared_request.headers.pop("Host", None)
        self.cookies.hop = prepared_request  # type: ignore[attr-defined] # the jar's, merged next

    def rebuild_auth(self, prepared_request: PreparedRequest, response: Response) -> None:
        """requests' own (no .netrc: ``trust_env`` off; -u's Authorization kept within the origin
        or from http:80 to https:443), with the request's own credentials (hop_credentials: a
        given Authorization to its origin on every hop); then the dropped body goes back."""
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        if self._given_header is not None:  # what the answer set, as the hop's jar took it
            self._given_header.receive(response, prepared_request)
        own = self._given_cookies, self._removed, self.on_tls, self._given_header
        hop_credentials(prepared_request, *own, self._given_authorization)
        restore_body(prepared_request, response)

    def rebuild_proxies(
        self, prepared_request: PreparedRequest, proxies: dict[str, str] | None
    ) -> dict[str, str]:
        """The proxies of a redirect's target, decided as for a first URL (-x, *_PROXY and
        NO_PROXY, by proxies_for) rather than kept from the URL redirected from: a hop out of
        NO_PROXY goes through -x, and one into it goes direct, as curl decides for every URL.
        requests' own then sets or removes the Proxy-Authorization header for the new URL."""
        url = urlsplit(prepared_request.url or "")
        decided = sent_proxies(proxies_for(url, self.proxy, self.environment), self._removed)
        rebuilt: dict[str, str] = _rebuild_proxies(  # type: ignore[no-untyped-call]
            self, prepared_request, decided
        )
        return rebuilt


# urllib3 adds User-Agent and Host, and http.client Accept-Encoding, to a request without them;
# SKIP_HEADER as the value sends none (what curl does for -H "User-Agent:").
SKIPPABLE_HEADERS = frozenset(urllib3.util.SKIPPABLE_HEADERS)


def _take_userinfo(prepared: PreparedRequest) -> tuple[bytes, bytes] | None:
    """Take 'user:password@' out of the prepared URL: the credentials, %-escapes decoded to the
    bytes they name (as curl sends them), or None. The cookie jar reads the host from that URL:
    with them left in, a server's cookie was saved under the domain 'user:password@host' in
    the -c file, and no -b cookie matched the host. (The request line never carries them.)"""
    url = prepared.url or ""
    if "@" not in url:  # the common case, on every request's path: no split
        return None
    netloc = urlsplit(url).netloc
    if "@" not in netloc:
        return None
    user, _, password = netloc.rpartition("@")[0].partition(":")
    prepared.url = without_userinfo(url)
    credentials = (unquote_to_bytes(user), unquote_to_bytes(password))
    return credentials if any(credentials) else None


def utf8_credentials(auth: Any) -> Any:
    """Basic credentials as the bytes to send: text in UTF-8, as curl sends what was typed and
    RFC 7617 allows (requests sends Latin-1, and fails on anything beyond it); bytes a command
    line held that were not UTF-8 as they were. Any other auth as it is."""
    if isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(v, str) for v in auth):
        return tuple(value.encode("utf-8", "surrogateescape") for value in auth)
    return auth


def idna_target(target: str, response: Any) -> str:
    """A redirect's target with a Unicode host in its IDNA form, as prepare_url makes a first
    URL's (requests sends a Location on as it came, its host %-encoded by requote_uri). One
    IDNA refuses, or only maps to ASCII (a look-alike: '１２７．０．０．１' is 127.0.0.1), is
    the server's error, as any redirect that cannot be followed: response is its answer."""
    parts = urlsplit(target)
    if parts.netloc.isascii():
        return target
    netloc = idna_host(parts.netloc)  # as written when IDNA refuses it
    if "xn--" not in netloc:
        response.close()
        raise _unfollowable(f"redirect to an invalid host name {parts.netloc[:60]!r}", response)
    return urlunsplit(parts._replace(netloc=netloc))


def without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def prepared_headers(headers: Mapping[str, str | bytes]) -> CaseInsensitiveDict[str]:
    """headers as requests' merge and PreparedRequest.prepare_headers leave them."""
    template = PreparedRequest()
    template.prepare_headers(
        merge_setting({}, headers, dict_class=CaseInsensitiveDict)  # type: ignore[no-untyped-call]
    )
    headers_made: CaseInsensitiveDict[str] = template.headers
    return headers_made


def wait_for_host(hold: HostHold, url: str) -> None:
    """A redirect's hop to a host that asked every client to wait (a Retry-After) waits it
    out, as that host's own URLs do: the pause is the host's, whatever led there (s21 h3 1: a
    redirecting host sent 96 requests in 1.5 s of a 30 s pause). Up to the URL's --max-time
    (kind max_time); a stop of the run ends the wait (not finished, as a request cut then).
    The hop is counted sent (FetcherSession.send) before it waits: one cut here followed its
    3xx as much as one cut connecting, and its record says so (redirects, final_url), not "no
    answer" (s25 h2 6)."""
    deadline, host = thread_deadline(), host_of(url)
    if hold(host, None if deadline is None else deadline.at):
        return
    if deadline is not None and deadline.expired():
        raise FetchError(f"{deadline.message} while {host} asked to wait", ErrorKind.MAX_TIME)
    stopped = FetchError(f"interrupted before it finished (while {host} asked to wait)")
    stopped.abandoned = True  # as a request in flight at the stop is, once its grace ends
    raise stopped


def without_removed(prepared: PreparedRequest, removed: frozenset[str]) -> PreparedRequest:
    """prepared without the credential headers its request removed (EffectiveRequest.removed):
    requests adds Authorization and Cookie after the headers are merged, from -u, .netrc, a
    URL's user:password@, -b and the jar, and builds each redirect's Cookie again."""
    for name in removed:
        prepared.headers.pop(name, None)
    return prepared


def hop_credentials(
    prepared: PreparedRequest,
    given: CookieJar | None,
    removed: frozenset[str],
    on_tls: bool,
    header: GivenCookie | None = None,
    authorization: GivenAuthorization | None = None,
) -> None:
    """The credentials of prepared, a redirect's hop, as its request has them: its -b cookies
    (given) back where they go, over a server's of the same name (with_given_cookies); its
    given Cookie header (header) on a hop to its URL's origin, with the cookies the chain's
    answers set but no other (GivenCookie.place), and its given Authorization header
    (authorization) likewise (GivenAuthorization.place); the headers it removed off again,
    Cookie too, which requests built again (without_removed); no Cookie over http once the
    chain was on https (without_cookie_off_tls)."""
    with_given_cookies(prepared, given)
    if header is not None:
        header.place(prepared)
    if authorization is not None:
        authorization.place(prepared, on_tls)
    without_removed(prepared, removed)
    without_cookie_off_tls(prepared, on_tls)


def sent_proxies(proxies: Mapping[str, str | None], removed: frozenset[str]) -> dict[str, str]:
    """The proxies a request is sent through: those set, and with Proxy-Authorization removed
    (-H 'Proxy-Authorization:') an http(s) proxy's user:password@ taken out, which would go
    out as that header (the adapter's, and requests' on a redirect). A SOCKS proxy's are no
    header, and are kept."""
    strip = "proxy-authorization" in removed
    return {
        scheme: without_userinfo(url) if strip and url.lower().startswith("http") else url
        for scheme, url in proxies.items()
        if url is not None
    }


def for_the_proxy_only(
    prepared: PreparedRequest, proxies: Mapping[str, str] | None, given: str | None
) -> None:
    """Put a given Proxy-Authorization (-H, a line's; None: none given) on prepared if it goes
    through an http(s) proxy, where the adapter hands it to the proxy alone
    (FetcherAdapter.proxy_pool), or take it off if it goes direct or through SOCKS: it would
    reach the website, the proxy's password in clear over http (docs: credentials never go to
    another host). On every hop (FetcherSession.send), since requests takes it off a
    redirect's, and each hop's proxy is decided anew."""
    if given is None:
        return
    url = prepared.url or ""
    proxy = select_proxy(url, dict(proxies or {}))
    if proxy and not proxy.lower().startswith("socks"):
        prepared.headers["Proxy-Authorization"] = given
    elif prepared.headers.pop("Proxy-Authorization", None) is not None:
        log.info("Proxy-Authorization not sent to %s: no http(s) proxy there", host_of(url))


def _merge_headers(headers: CaseInsensitiveDict[str], extra: Mapping[str, str | None]) -> None:
    """Add a request's own headers to a copy of the session's, as requests' merge_setting and
    prepare_headers would (a None value removes one), checking only the headers added: the
    session's were checked once (a conditional request's two headers cost a twentieth of a
    request's CPU through merge_setting)."""
    for name, value in extra.items():
        if value is None:
            headers.pop(name, None)
            if name.lower() in SKIPPABLE_HEADERS:
                headers[name] = SKIP_HEADER
            continue
        check_header_validity((name, value))
        headers[to_native_string(name)] = value  # type: ignore[no-untyped-call]


def make_session(
    settings: Settings,
    cookies: CookieJar | None = None,
    environment: Environment | None = None,
    changes: CookieChanges | None = None,
) -> FetcherSession:
    """A Session configured from settings, holding a copy of cookies (the loaded jar); what its
    servers set or delete after that is also noted in changes (fetcher.http.cookies)."""
    environment = environment or Environment()
    session = FetcherSession(environment, settings.proxy)
    session.headers["User-Agent"] = settings.user_agent or SKIP_HEADER  # -A '': none, as curl
    session.headers.update(form_content_type(settings.data))  # -H below may change or remove it
    for name, value in settings.headers:
        # None removes it, as curl -H "X:" does; removed, the libraries' own would be sent
        if value is None and name.lower() in SKIPPABLE_HEADERS:
            value = SKIP_HEADER
        session.headers[name] = value  # type: ignore[assignment]
    session.max_redirects = settings.max_redirects
    session.cookies = jar = BoundedCookieJar()
    if settings.auth is not None:
        session.auth = settings.auth
    # REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE apply when neither --cacert nor -k was given.
    session.verify = environment.ca_bundle or True if settings.verify is True else settings.verify
    if settings.client_cert is not None:
        session.cert = settings.client_cert
    if cookies is not None:
        copy_into(cookies, jar)
    jar.changes = changes  # only now: the copy above is no server's change
    # One thread uses a session at a time, so one connection per host is all it can use; no
    # retries here: fetcher.http.fetch retries, counts attempts and honours the deadline.
    adapter = FetcherAdapter(pool_connections=POOL_CONNECTIONS, pool_maxsize=1, max_retries=0)
    adapter.poolmanager.pool_classes_by_scheme = dict(POOL_CLASSES)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def close_session(session: requests.Session) -> None:
    """Close session and every connection it holds, now. Since urllib3 2, PoolManager.clear()
    only forgets its pools, and a pool held in an exception's traceback cycle keeps its socket
    open until the cycle collector runs (urllib3 #3082); so each pool is closed here."""
    for adapter in session.adapters.values():
        if isinstance(adapter, HTTPAdapter):
            for manager in (adapter.poolmanager, *adapter.proxy_manager.values()):
                for key in list(manager.pools.keys()):
                    pool = manager.pools.get(key)
                    if pool is not None:
                        pool.close()
    session.close()


class SessionPool:
    """Hands each thread its own Session; ``close_all`` closes every session ever handed out."""

    def __init__(self, settings: Settings, cookies: CookieJar | None = None) -> None:
        self.settings = settings
        self.cookies = cookies  # the -c file as loaded, or None without -c
        # What each session starts from, bounded once for all; and, with -c, what they change.
        self._session_cookies = bounded_copy(cookies) if cookies is not None else None
        self.changes = CookieChanges(cookies) if cookies is not None else None
        self.environment = Environment()
        self._local = threading.local()
        self._lock = threading.Lock()
        self.sessions: list[FetcherSession] = []
        self.closed = False
        self.hold: HostHold | None = None  # the run's pauses, which sessions made from now obey
        if settings.verify is False:
            # The user asked for it with --insecure; a warning per request would drown the output.
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)

    def get(self) -> FetcherSession:
        """The calling thread's session, created on its first call."""
        session: FetcherSession | None = getattr(self._local, "session", None)
        if session is None:
            session = make_session(
                self.settings, self._session_cookies, self.environment, self.changes
            )
            session.hold = self.hold
            self._local.session = session
            with self._lock:
                self.sessions.append(session)
        return session

    def change_list(self) -> list[Change]:
        """What the sessions' servers set or deleted, oldest first (empty without -c), for
        save_jar to apply to the -c file as it is at the save."""
        return self.changes.entries() if self.changes is not None else []

    def close_all(self) -> None:
        with self._lock:
            sessions = list(self.sessions)
            self.closed = True
        for session in sessions:
            close_session(session)


def _prepare_cookies(
    prepared: PreparedRequest, session_jar: CookieJar, given: CookieJar | None
) -> None:
    """Give prepared, a request's first hop, its jar as requests' prepare_request would: the
    session's cookies (those its host may be sent: first_hop_jar), and the request's -b
    cookies (given) over them; requests builds a Cookie header of it unless one was given, and
    each redirect's from it, reading each hop's Set-Cookie into (a copy of) it. It asks the
    run's changes which Secure cookies an http answer may not touch (for_request), also when
    the session's jar is still empty."""
    jar = first_hop_jar(session_jar, prepared)
    if given or jar:
        prepared.prepare_cookies(merge_cookies(jar, given or {}))  # type: ignore[no-untyped-call]
    else:
        prepared._cookies = jar  # type: ignore[attr-defined] # as requests'


def _unfollowable(problem: str, response: Any) -> FetchError:
    """A redirect that cannot be followed: the server's own answer, the same at every attempt
    (final: not retried); an answer came, so its status is the record's."""
    error = FetchError(problem, ErrorKind.PROTOCOL)
    error.final, error.response = True, response
    return error
