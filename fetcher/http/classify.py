"""The one function that maps any exception to an ErrorKind, and one that describes it."""

from __future__ import annotations

import errno
import http.client
import re
import socket
import ssl
from collections.abc import Iterator

import requests.exceptions as rex
import urllib3.exceptions as uex

from fetcher.errors import ErrorKind, FetchError

# Checked in this order against every exception of the chain: the first kind whose types match
# anywhere wins. Specific kinds come before the generic ones they are wrapped in (a proxy that
# fails TLS is a proxy problem; a refused connection is wrapped in a generic ConnectionError).
_KIND_TABLE: tuple[tuple[ErrorKind, tuple[type[BaseException], ...]], ...] = (
    (
        ErrorKind.INVALID_URL,
        (
            rex.InvalidURL,
            rex.MissingSchema,
            rex.InvalidSchema,
            rex.URLRequired,
            uex.LocationValueError,
        ),
    ),
    (ErrorKind.TOO_MANY_REDIRECTS, (rex.TooManyRedirects,)),
    (ErrorKind.PROXY, (rex.ProxyError, uex.ProxyError, uex.ProxySchemeUnknown)),
    (ErrorKind.TLS, (rex.SSLError, uex.SSLError, ssl.SSLError, ssl.CertificateError)),
    (ErrorKind.DNS, (uex.NameResolutionError, socket.gaierror)),
    (ErrorKind.CONNECT_TIMEOUT, (rex.ConnectTimeout,)),
    (ErrorKind.READ_TIMEOUT, (rex.ReadTimeout, uex.ReadTimeoutError)),
    (ErrorKind.CONNECT, (uex.NewConnectionError, ConnectionRefusedError)),
    (
        ErrorKind.PROTOCOL,
        (
            rex.ChunkedEncodingError,
            rex.ContentDecodingError,
            uex.ProtocolError,
            uex.DecodeError,
            uex.IncompleteRead,
            uex.InvalidChunkLength,
            uex.InvalidHeader,  # conflicting Content-Length values in an answer
            http.client.HTTPException,
            ConnectionResetError,
            ConnectionAbortedError,
            BrokenPipeError,
        ),
    ),
    # A urllib3 connect timeout that is not a NewConnectionError (which subclasses it).
    (ErrorKind.CONNECT_TIMEOUT, (uex.ConnectTimeoutError,)),
    (ErrorKind.READ_TIMEOUT, (rex.Timeout, socket.timeout)),
    (ErrorKind.CONNECT, (rex.ConnectionError,)),
)

_MAX_CHAIN = 16

# This machine out of descriptors (its process's RLIMIT_NOFILE, or the system's table): no
# server was asked, so the failure is ours, kind io, whatever the library wrapped it in.
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})


def iter_chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield exc and every exception it wraps, outermost first, each once.

    Follows ``__cause__``, ``__context__`` (unless suppressed: ``_context``), urllib3's
    ``reason`` and requests' habit of passing the wrapped exception as the first argument.
    """
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < _MAX_CHAIN:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        candidates = [reason, current.__cause__, _context(current)]
        candidates.extend(current.args[:1])
        todo.extend(c for c in candidates if isinstance(c, BaseException))


def _context(link: BaseException) -> BaseException | None:
    """The exception link was raised while handling, unless its raiser said with ``from None``
    that it is not why (fetcher's sockets so turn EAGAIN into "timed out"). urllib3's
    LocationParseError is the exception: raised from None over the IDNA codec's complaint, which
    is the one text that says what is wrong with the host."""
    if link.__suppress_context__ and not isinstance(link, uex.LocationParseError):
        return None
    return link.__context__


def classify(exc: BaseException) -> ErrorKind:
    """Return the kind of a failure. Never raises; unknown failures are ``other``."""
    chain = list(iter_chain(exc))
    for link in chain:
        if isinstance(link, FetchError):
            return link.kind
    if any(isinstance(link, OSError) and link.errno in _OUT_OF_DESCRIPTORS for link in chain):
        return ErrorKind.IO  # a connection (NewConnectionError: connect) or a CA file (tls)
    # A send that timed out (the server does not read the request): urllib3 wraps the
    # TimeoutError in ProtocolError("Connection aborted."), which would say protocol.
    if any(isinstance(link, uex.ProtocolError) for link in chain) and any(
        isinstance(link, TimeoutError) for link in chain
    ):
        return ErrorKind.READ_TIMEOUT
    for kind, types in _KIND_TABLE:
        for link in chain:
            if kind is ErrorKind.CONNECT_TIMEOUT:
                if isinstance(link, uex.NewConnectionError):
                    continue
                if _is_handshake_timeout(link):
                    return kind  # urllib3 reports it as a read timeout; it is part of connecting
            if isinstance(link, types):
                return kind
    return ErrorKind.OTHER


def timeout_said(exc: BaseException, kind: ErrorKind, connect: float, read: float) -> str | None:
    """What the record of a timeout says (kind, classify's), None for another kind: which
    limit ended it, and how long it was. The socket's own "timed out" named neither, to a user
    who set both -t and --connect-timeout (s35 t3 1), and a TLS handshake's was CPython's
    "_ssl.c:989: The handshake operation timed out" (t3 2). A request the server stopped
    reading is bounded by --connect-timeout, as urllib3 sends it (classify: read_timeout). A
    proxy that timed out (kind proxy) is one not reached, or whose TLS handshake was not done,
    within the connect timeout: its CONNECT's answer is fetcher.http.tunnel's, which says so."""
    chain = list(iter_chain(exc))
    if any(isinstance(link, FetchError) for link in chain):
        return None  # ours, which says what happened already (an upload cut by an answer)
    proxy = kind is ErrorKind.PROXY and any(isinstance(link, TimeoutError) for link in chain)
    if kind is ErrorKind.CONNECT_TIMEOUT or proxy:  # a proxy's: "timed out" alone (s35 r2 6)
        what = (
            "the TLS handshake was not done"
            if any(map(_is_handshake_timeout, chain))
            else ("no connection")
        )
        return f"timed out: {what} within --connect-timeout's {connect:g} s"  # the proxy named
    if kind is not ErrorKind.READ_TIMEOUT:
        return None
    if any(isinstance(link, uex.ProtocolError) for link in chain):
        limit = f"--connect-timeout's {connect:g} s"
        return f"timed out: the server read no more of the request for {limit}"
    return f"timed out: the server sent nothing for -t's {read:g} s"


def _is_handshake_timeout(link: BaseException) -> bool:
    return isinstance(link, TimeoutError) and "handshake operation timed out" in str(link)


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>:?\s*")


def describe(exc: BaseException) -> str:
    """A one-line message for humans: the innermost informative text of the chain.

    The walk stops at an http.client error: what lies below it is parsing detail (int()'s
    complaint about a status that is not a number), not what went wrong.
    """
    message = ""
    for link in iter_chain(exc):
        if isinstance(link, FetchError):
            return str(link)  # ours, and written to be read as it is
        text = _text(link)
        if text and "Max retries exceeded" not in text and "Caused by" not in text:
            message = text
        elif text and not message:
            message = text
        if isinstance(link, http.client.HTTPException):
            break
    if not message:
        message = type(exc).__name__
    return " ".join(message.split())


def _text(link: BaseException) -> str:
    if isinstance(link, uex.LocationParseError) and "://" not in str(link):
        # urllib3 quotes the part it could not parse, which may be half of a password.
        return "malformed URL (check the URL and any *_PROXY variable)"
    if isinstance(link, http.client.IncompleteRead) and link.partial == b"" and not link.expected:
        # http.client's, in a chunked body: "IncompleteRead(0 bytes read)" beside a record of
        # the bytes that came (s34 t5 2)
        return "body cut short: the connection closed before its last chunk"
    if type(link) is http.client.BadStatusLine:
        line = str(link.args[0] if link.args else "").strip()
        return f"bad status line {line!r}" if line else "a blank line where the status line goes"
    return _OBJECT_REPR.sub("", str(link)).strip()
