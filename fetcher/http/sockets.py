"""Plain-http connections whose socket timeouts the kernel keeps (SO_RCVTIMEO, SO_SNDTIMEO).

With a Python timeout every send and receive is a poll() and then the call, and every change
of timeout (urllib3 sets the connect timeout to send and the read timeout to receive) an
ioctl: seven system calls a request, each giving up the GIL, and each hand-off of the GIL a
context switch when many threads want it. In blocking mode with the kernel's timeouts a request
is the dropped-connection check, one send and one receive: three. The errors are the same: a
timed-out call raises TimeoutError("timed out"), as a Python timeout does (the kernel says
EAGAIN, which socket.SocketIO would otherwise read as "no data yet").

TLS sockets keep Python's timeouts (ssl does its own reads), and so does connect().
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from fetcher.http.deadline import DeadlineHTTPConnection, DeadlineHTTPPool


def _timeval(seconds: float) -> bytes:
    """A struct timeval of seconds; zero means "no timeout" to the kernel, so a positive
    timeout never rounds down to it."""
    whole = int(seconds)
    micros = int((seconds - whole) * 1_000_000)
    if whole == 0 and micros == 0:
        micros = 1
    return struct.pack("ll", whole, micros)


_NO_TIMEOUT = struct.pack("ll", 0, 0)


class KernelTimeoutSocket(socket.socket):
    """A connected socket in blocking mode whose timeouts are the kernel's. Made by assigning
    the class of a connected socket.socket (the same layout: no slots of its own)."""

    __slots__ = ()

    def settimeout(self, value: float | None) -> None:
        if value is not None and value <= 0:
            super().settimeout(value)  # non-blocking, as Python's: no kernel timeout applies
            return
        when = _NO_TIMEOUT if value is None else _timeval(value)
        self.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, when)
        self.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, when)
        if super().gettimeout() is not None:
            super().settimeout(None)  # blocking, once: later changes cost no ioctl

    def recv_into(self, *args: Any) -> int:
        try:
            return super().recv_into(*args)
        except BlockingIOError:
            if super().gettimeout() == 0:
                raise
            raise TimeoutError("timed out") from None

    def sendall(self, *args: Any) -> None:
        try:
            super().sendall(*args)
        except BlockingIOError:
            if super().gettimeout() == 0:
                raise
            raise TimeoutError("timed out") from None


def adopt(sock: socket.socket) -> None:
    """Make a connected plain socket a KernelTimeoutSocket, keeping its current timeout."""
    if type(sock) is socket.socket:
        timeout = sock.gettimeout()
        sock.__class__ = KernelTimeoutSocket
        sock.settimeout(timeout)


class KernelTimeoutHTTPConnection(DeadlineHTTPConnection):
    def connect(self) -> None:
        super().connect()
        if self.sock is not None:
            adopt(self.sock)


class KernelTimeoutHTTPPool(DeadlineHTTPPool):
    ConnectionCls = KernelTimeoutHTTPConnection
