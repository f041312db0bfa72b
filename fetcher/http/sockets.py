"""Plain-http connections whose socket timeouts the kernel keeps (SO_RCVTIMEO, SO_SNDTIMEO).

With a Python timeout every send and receive is a poll() and then the call, and every change
of timeout (urllib3 sets the connect timeout to send and the read timeout to receive) an
ioctl: seven system calls a request, each giving up the GIL, and each hand-off of the GIL a
context switch when many threads want it. In blocking mode with the kernel's timeouts, each
applied when first needed, a request on a kept-alive connection is a getsockopt (the reuse
check, which keeps the GIL), a send and a receive. The errors are the same: a timed-out call
raises TimeoutError("timed out"), as a Python timeout does (the kernel says EAGAIN, which
socket.SocketIO would otherwise read as "no data yet").

The send still gives the GIL up, on purpose: a send on loopback does the receiver's TCP work
too, and with the GIL free another thread runs Python on the other core meanwhile. A send that
kept the GIL (libc's through ctypes.PyDLL) saved CPU but lost throughput: -8% req/s at -j 256
against the 50 ms server, none gained at -j 16 (alternating runs, medians of 4).

TLS sockets keep Python's timeouts (ssl does its own reads), and so does connect().
"""

from __future__ import annotations

import functools
import socket
import struct
from typing import Any

from fetcher.http.deadline import DeadlineHTTPConnection, DeadlineHTTPPool, using_socket
from fetcher.http.uploads import (
    Buffer,
    Cut,
    EarlyAnswerResponse,
    Seen,
    drain,
    queued,
    send_body,
)


@functools.lru_cache(maxsize=64)
def _timeval(seconds: float | None) -> bytes:
    """A struct timeval of seconds, None for "no timeout" (the kernel's zero), so a positive
    timeout never rounds down to it."""
    if seconds is None:
        return struct.pack("ll", 0, 0)
    whole = int(seconds)
    micros = int((seconds - whole) * 1_000_000)
    if whole == 0 and micros == 0:
        micros = 1
    return struct.pack("ll", whole, micros)


_UNSET = -1.0  # a kernel timeout not set by this socket yet (no timeout asked for is negative)

# Linux's struct tcp_info: the state is its first byte, tcpi_bytes_received (since 4.1, every byte
# received in order) the 8 bytes at offset 128.
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_TCP_INFO_SIZE = 136
_BYTES_RECEIVED_AT = 128
_TCP_ESTABLISHED = 1


class KernelTimeoutSocket(socket.socket):
    """A connected socket in blocking mode whose timeouts are the kernel's (see adopting).

    A timeout is handed to the kernel when a receive or a send needs it, not when it is set:
    urllib3 sets the connect timeout before each request is sent and the read timeout before its
    answer is read, so setting both options at each change would be four system calls a request
    where, with a timeout per direction applied on use, there are none once a connection has
    sent and received.
    """

    __slots__ = ("_seconds", "_receive_seconds", "_send_seconds", "received")

    _seconds: float | None
    _receive_seconds: float | None
    _send_seconds: float | None
    received: int  # bytes this socket has received since it was connected (fetcher.http.reuse)

    @classmethod
    def adopting(cls, sock: socket.socket) -> KernelTimeoutSocket:
        """A KernelTimeoutSocket for the connection of sock (which is detached), with its
        timeout."""
        timeout = sock.gettimeout()
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        adopted._receive_seconds = adopted._send_seconds = _UNSET
        adopted.received = 0  # adopted as soon as it is connected: nothing was read yet
        adopted._seconds = None
        socket.socket.setblocking(adopted, True)  # the descriptor may be non-blocking still
        adopted.settimeout(timeout)
        return adopted

    def settimeout(self, value: float | None) -> None:
        if value is not None and value <= 0:
            super().settimeout(value)  # non-blocking, as Python's: no kernel timeout applies
            return
        self._seconds = value
        if super().gettimeout() is not None:
            super().settimeout(None)  # blocking, once: later changes cost no ioctl

    def gettimeout(self) -> float | None:
        mode = super().gettimeout()
        return self._seconds if mode is None else mode

    def _receiving(self) -> None:
        if self._receive_seconds != self._seconds:
            self.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(self._seconds))
            self._receive_seconds = self._seconds

    def _sending(self) -> None:
        if self._send_seconds != self._seconds:
            self.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self._seconds))
            self._send_seconds = self._seconds

    def _again(self, error: BlockingIOError) -> OSError:
        """What EAGAIN means: in blocking mode, that the kernel's timeout ran out (as Python's
        own timeout says it); non-blocking, what it says."""
        if super().gettimeout() == 0:
            return error
        return TimeoutError("timed out")

    def recv_into(self, *args: Any) -> int:
        self._receiving()
        try:
            count = super().recv_into(*args)
        except BlockingIOError as error:
            raise self._again(error) from None
        self.received += count
        return count

    def recv(self, *args: Any) -> bytes:
        self._receiving()
        try:
            data = super().recv(*args)
        except BlockingIOError as error:
            raise self._again(error) from None
        self.received += len(data)
        return data

    def quiet(self) -> bool | None:
        """Whether the connection is open with nothing to read: what poll() says by "not
        readable" (no data waiting, no end of stream, no reset), or None when the kernel cannot
        tell (not TCP, not Linux).

        Asked of a kept-alive connection before each request it is reused for. poll() gives the
        GIL up, and while other threads want it that is two context switches for a call that
        does not block (a tenth of a small request's CPU at -j 16); getsockopt keeps the GIL.
        The peer's FIN or RST moves the state out of ESTABLISHED; bytes that arrived and were
        not read make the kernel's count of bytes received exceed this socket's.
        """
        if _TCP_INFO is None:
            return None
        try:
            info = self.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
        except OSError:
            return None
        if len(info) < _TCP_INFO_SIZE:
            return None  # a kernel older than 4.1
        if info[0] != _TCP_ESTABLISHED:
            return False
        received: int = struct.unpack_from("=Q", info, _BYTES_RECEIVED_AT)[0]
        if received == 0 and self.received:
            return None  # a network stack that does not keep the count
        return received == self.received

    def sendall(self, *args: Any) -> None:
        self._sending()
        try:
            super().sendall(*args)
        except BlockingIOError as error:
            raise self._again(error) from None

    def send(self, *args: Any) -> int:
        self._sending()
        try:
            return super().send(*args)
        except BlockingIOError as error:
            raise self._again(error) from None


def adopted(sock: socket.socket) -> socket.socket:
    """sock's connection as a KernelTimeoutSocket when sock is a plain socket.socket (TLS
    sockets keep Python's timeouts), else sock."""
    if type(sock) is socket.socket:
        return KernelTimeoutSocket.adopting(sock)
    return sock


class KernelTimeoutHTTPConnection(DeadlineHTTPConnection):
    """A plain-http connection on a KernelTimeoutSocket, whose request body stops going out
    when the server answers it first with 300 or more (fetcher.http.uploads): its answer is
    then the record's, at once, and the connection ends with it. It ends too after an answer
    that came before the body was all sent and let it go on (a 2xx), for the server may say
    more after it (r7 9)."""

    body_next = False  # a request's headers are sent: what send is given is its body
    body_cut = False  # the rest of this request's body was left unsent (Seen.FINAL, STALLED)
    body_stalled = False  # ... because the connection stalled (Seen.STALLED)
    answered_early = False  # the server answered before this request's body was all sent
    answered_2xx = False  # ... with a 2xx, as the last look at what came saw (Seen.ANSWERED)
    answer_hidden = False  # ... with what may hide a final answer, as it saw (Seen.HEARD)
    body_given = 0  # bytes of this request's body given to send, the cut rest too
    body_sent = 0  # of those, the bytes that left (acknowledged, once it was cut)

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.answered_early:  # the connection is a new one now: the answer closed the last
            self.answered_early = self.answered_2xx = self.answer_hidden = False
            self.body_cut = self.body_stalled = False
            del self.response_class  # the class's again
        self.body_given = self.body_sent = 0
        try:
            super().request(*args, **kwargs)
            if (self.answered_2xx or self.answer_hidden) and not self.body_cut:
                self.drained()
        finally:
            self.body_next = False

    def drained(self) -> None:
        """After an early 2xx, the body all handed to the kernel: wait until the server's
        system acknowledged it (drain); a reset before is the cut (s26 r1 3: the bytes still
        in the send queue never left, and the upload was ok). So after what may hide a 2xx
        (Seen.HEARD: interim answers past the look, a status line in pieces), whose 2xx is
        known only to the answer's reader (s26 r5 1: such an upload was ok), but looked at
        again as it is waited for, and not waited for past the send's timeout: a refusal
        behind it was waited on until a slow server had read the whole body (s27 f2 2).
        Uploads without an early answer never come here: no call is added to them."""
        sock = self.sock
        if type(sock) is KernelTimeoutSocket:
            unacknowledged = drain(sock, sock.gettimeout(), self.answer_hidden)
            if unacknowledged:
                self.note_cut(Seen.FINAL, unacknowledged)

    def endheaders(self, message_body: Any = None, *, encode_chunked: bool = False) -> None:
        super().endheaders(message_body, encode_chunked=encode_chunked)
        self.body_next = True

    def send(self, data: Any) -> None:
        """http.client's, but a body's bytes go out through send_body, unless an answer of 300
        or more came first: the rest of the body is then dropped, and counted (cut). An answer
        that came before the body was all sent closes the connection once it is read."""
        sock = self.sock
        if not self.body_next or type(sock) is not KernelTimeoutSocket:
            super().send(data)
        elif not isinstance(data, Buffer):
            super().send(data)
        else:
            self.body_given += memoryview(data).nbytes
            if self.body_cut:
                return
            seen, sent = send_body(sock, data, sock.gettimeout())
            self.body_sent += sent
            if seen is not Seen.ROOM:
                self.answered_early = True
                self.answered_2xx = seen is Seen.ANSWERED
                self.answer_hidden = seen is Seen.HEARD
                self.response_class = EarlyAnswerResponse
            if seen in (Seen.FINAL, Seen.STALLED):
                self.note_cut(seen, queued(sock) or 0)

    def note_cut(self, seen: Seen, unacknowledged: int) -> None:
        """The body cut (seen FINAL or STALLED), unacknowledged bytes of what was handed to the
        kernel still in its send queue: what cut() says. Cut.failure says N as what it is, the
        bytes the server's system acknowledged (s25 r9 2), exactly (s26 r1 5)."""
        self.body_cut, self.body_stalled = True, seen is Seen.STALLED
        self.body_sent -= min(self.body_sent, unacknowledged)  # not acknowledged

    def cut(self) -> Cut | None:
        """The last request's body left unsent in part, once the request is sent, else None."""
        if not self.body_cut:
            return None
        return Cut(self.body_sent, self.body_given, self.body_stalled, not self.answer_hidden)

    def connect(self) -> None:
        super().connect()
        if self.sock is not None:
            self.sock = adopted(self.sock)
            using_socket(self.sock)  # the socket the deadline's cut must shut now

    @property
    def is_connected(self) -> bool:
        """urllib3's check that a kept-alive connection may be reused (the socket is not
        readable), without a poll() when the kernel can tell (KernelTimeoutSocket.quiet)."""
        sock = self.sock
        if type(sock) is KernelTimeoutSocket:
            quiet = sock.quiet()
            if quiet is not None:
                return quiet
        connected: bool = super().is_connected
        return connected


class KernelTimeoutHTTPPool(DeadlineHTTPPool):
    ConnectionCls = KernelTimeoutHTTPConnection


def body_cut(raw: object) -> Cut | None:
    """The cut of the request body whose answer raw (urllib3's response, its headers read) is,
    when its connection is a KernelTimeoutHTTPConnection that left the rest unsent, else None.
    Asked before the answer's body is read: the connection is the response's until then."""
    connection = getattr(raw, "connection", None)
    if isinstance(connection, KernelTimeoutHTTPConnection):
        return connection.cut()
    return None
