"""Connecting to a host's addresses in turn within one connect timeout for them all, the name's
lookup included (fetcher.http.resolve).

urllib3's create_connection gives its whole timeout to each address the name resolves to, so a
dual-stack host neither of whose addresses answered took twice --connect-timeout, and twice the
time -m had left (s28 t2 2); a CDN's eight took eight times. curl's --connect-timeout covers
the whole connect phase, every address included: here each address gets what is left of it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

from urllib3.exceptions import LocationParseError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from fetcher.http.resolve import resolve

SocketOptions = Sequence[tuple[int, int, int | bytes]]


def create_connection(
    address: tuple[str, int],
    timeout: object = _DEFAULT_TIMEOUT,
    source_address: tuple[str, int] | None = None,
    socket_options: SocketOptions | None = None,
) -> socket.socket:
    """urllib3.util.connection.create_connection, the connect phase bounded as a whole by
    timeout (seconds, None: unbounded, urllib3's default: the socket module's): a timeout
    (TimeoutError) once it has passed, in the name's lookup (NameTimeout) or whichever address
    was being tried. The socket keeps the whole timeout, as urllib3's did: what follows under
    it (a TLS handshake, a proxy's CONNECT, the request's body) is not cut by what the lookup
    and the other addresses left of it."""
    host, port = address
    if host.startswith("["):
        host = host.strip("[]")
    try:
        host.encode("idna")
    except UnicodeError:
        raise LocationParseError(f"'{host}', label empty or too long") from None
    seconds = float(timeout) if isinstance(timeout, (int, float)) else None
    until = None if seconds is None else time.monotonic() + seconds
    error: OSError | None = None
    found = resolve(host, port, allowed_gai_family(), seconds)
    for at, (family, kind, proto, _, peer) in enumerate(found):
        given = timeout if until is None else _share(until, more=at + 1 < len(found))
        if until is not None and given <= 0:  # type: ignore[operator]
            raise TimeoutError("timed out")  # the phase's time is spent: none for this address
        try:
            sock = _connect((family, kind, proto), peer, given, source_address, socket_options)
        except OSError as failed:
            error = failed
            continue
        if timeout is not _DEFAULT_TIMEOUT:
            sock.settimeout(timeout)  # type: ignore[arg-type]  # whole, for what follows (below)
        return sock
    if error is not None:
        raise error
    raise OSError("getaddrinfo returns an empty list")


def _share(until: float, more: bool) -> float:
    """An address's time of what is left of the phase until then: half when more addresses
    follow, as curl gives it (Curl_connecthost), so that one that hangs leaves the next its
    turn (s28 t6 1: all of it, every attempt, and a dual-stack host with a dead IPv6 route,
    reached before at the second address, was lost)."""
    left = until - time.monotonic()
    return left / 2 if more else left


def _connect(
    how: tuple[int, int, int],
    peer: object,
    timeout: object,
    source_address: tuple[str, int] | None,
    socket_options: SocketOptions | None,
) -> socket.socket:
    """A socket of how (family, type, protocol) connected to peer within timeout (as
    create_connection's), or the OSError."""
    sock = socket.socket(*how)
    try:
        for option in socket_options or ():
            sock.setsockopt(*option)
        if timeout is not _DEFAULT_TIMEOUT:
            sock.settimeout(timeout)  # type: ignore[arg-type]
        if source_address:
            sock.bind(source_address)
        sock.connect(peer)  # type: ignore[arg-type]
    except BaseException:
        sock.close()
        raise
    return sock
