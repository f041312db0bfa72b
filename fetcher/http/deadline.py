"""A URL's --max-time deadline: when it runs out, the error it raises, the urllib3 timeout it
bounds, and the connections that cut a server dripping its headers when it does. Those
connections also read a proxy's answer to CONNECT within the connect timeout
(fetcher.http.tunnel).
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
import types
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.util import Timeout

from fetcher.errors import ErrorKind, FetchError
from fetcher.http.addresses import create_connection
from fetcher.http.rebind import with_globals
from fetcher.http.resolve import NameTimeout
from fetcher.http.response_headers import HeaderParsingResponse
from fetcher.http.tunnel import connect_request, open_tunnel


@dataclass(frozen=True, slots=True)
class Deadline:
    """The instant (on ``time.monotonic()``) by which a URL must be done, all attempts
    included, and the --max-time it came from (for the message)."""

    at: float
    seconds: float

    @classmethod
    def start(cls, seconds: float | None) -> Deadline | None:
        """The deadline seconds from now; None without a --max-time."""
        return cls(time.monotonic() + seconds, seconds) if seconds else None

    def remaining(self) -> float:
        """Seconds left; zero or less once it has passed."""
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    @property
    def message(self) -> str:
        return f"--max-time of {self.seconds:g} s reached"

    def error(self) -> FetchError:
        """The error of a request that the deadline cut (kind ``max_time``)."""
        return FetchError(self.message, ErrorKind.MAX_TIME)

    def timeout(self, connect: float, read: float) -> Timeout:
        """A urllib3 Timeout that never waits past the deadline.

        urllib3 clones the timeout for every request it sends, redirects included, so each
        clone takes the time left at that moment; past the deadline no new request is started.
        """
        return _BoundedTimeout(connect, read, self)


class _BoundedTimeout(Timeout):
    def __init__(self, connect: float, read: float, deadline: Deadline) -> None:
        super().__init__(connect=connect, read=read)
        self.deadline = deadline

    def clone(self) -> Timeout:
        remaining = self.deadline.remaining()
        if remaining <= 0:
            raise self.deadline.error()
        return Timeout(
            connect=min(float(self._connect), remaining),  # type: ignore[arg-type]
            read=min(float(self._read), remaining),  # type: ignore[arg-type]
        )


class Exchange:
    """One attempt at a URL under a deadline: when the deadline passes, the socket the attempt
    is using is shut down, wherever it is then: sending a body, waiting for a proxy's or the
    server's status line, or reading the body. Per-read timeouts and checks between reads
    cannot bound a server that drips (a byte of a header, a trailer or a chunk-size line at a
    time), nor one whose body is junk a decoder swallows or empty deflate blocks: each read
    never returns a byte of output, and one read held the worker for as long as the server
    liked. The process's one Watchdog thread does the cutting."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.cut = threading.Event()
        self.sock: socket.socket | None = None
        self.ended = False
        self.lock = threading.Lock()

    def using(self, sock: socket.socket | None) -> None:
        """The attempt now reads and writes sock (a new connection, or a kept-alive one)."""
        with self.lock:
            self.sock = sock
            if self.cut.is_set():
                _shut(sock)

    def end(self) -> None:
        """The attempt is over: its socket, back in the pool, is another's to use."""
        with self.lock:
            self.ended, self.sock = True, None

    def cut_now(self) -> None:
        with self.lock:
            if not self.ended:
                self.cut.set()
                _shut(self.sock)


def _shut(sock: socket.socket | None) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]


COMPACT_AT = 4096  # entries in the watchdog's heap before the ended ones are taken out


class Watchdog:
    """One thread for the process that cuts each Exchange when its deadline passes: a thread an
    attempt (threading.Timer) doubled the threads a run needed at -j 256, and cost some 90 us of
    CPU to start and stop. The attempts wait in a heap by deadline; an ended one at its top is
    dropped as the next is added, and the heap is rid of every ended one when it has doubled
    (behind one attempt of a long --max-time that has not ended, they would stay): it holds
    about the attempts in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.due: list[tuple[float, int, Exchange]] = []
        self.order = itertools.count()  # ties: never compare two Exchanges
        self.thread: threading.Thread | None = None
        self.compact_at = COMPACT_AT

    def watch(self, exchange: Exchange) -> None:
        """Cut exchange when its deadline passes, unless it ended first. Raises RuntimeError
        when the system refuses the watchdog's thread (the attempt's record says so)."""
        with self.lock:
            while self.due and self.due[0][2].ended:
                heapq.heappop(self.due)
            heapq.heappush(self.due, (exchange.deadline.at, next(self.order), exchange))
            if len(self.due) >= self.compact_at:
                self.due = [entry for entry in self.due if not entry[2].ended]
                heapq.heapify(self.due)
                self.compact_at = max(COMPACT_AT, 2 * len(self.due))
            if self.thread is None:
                thread = threading.Thread(target=self._run, name="fetcher-deadlines", daemon=True)
                thread.start()
                self.thread = thread
            elif self.due[0][2] is exchange:
                self.wake.notify()

    def _run(self) -> None:
        with self.lock:
            while True:
                now = time.monotonic()
                while self.due and (self.due[0][2].ended or self.due[0][0] <= now):
                    heapq.heappop(self.due)[2].cut_now()
                # threading cannot wait past TIMEOUT_MAX (about 292 years)
                wait = min(self.due[0][0] - now, threading.TIMEOUT_MAX) if self.due else None
                self.wake.wait(wait)


_watchdog = Watchdog()


class _ThreadExchange(threading.local):
    exchange: Exchange | None = None


# The exchange the calling thread is in, for its connections to say which socket they use:
# urllib3 passes a connection no Timeout object.
_current = _ThreadExchange()


def set_thread_deadline(deadline: Deadline | None) -> None:
    """Until the next call, the calling thread's requests are cut when deadline passes, at any
    step of the attempt (see Exchange); None: never."""
    if _current.exchange is not None:
        _current.exchange.end()
        _current.exchange = None
    if deadline is not None:
        exchange = Exchange(deadline)
        _watchdog.watch(exchange)
        _current.exchange = exchange


def thread_deadline() -> Deadline | None:
    """The deadline set_thread_deadline gave the calling thread."""
    return None if _current.exchange is None else _current.exchange.deadline


def using_socket(sock: socket.socket | None) -> None:
    """The calling thread's attempt now reads and writes sock (Exchange.using)."""
    if _current.exchange is not None:
        _current.exchange.using(sock)


def cut_by_deadline() -> bool:
    """Whether the calling thread's attempt was cut by its deadline: reads past the cut end as
    a body that ends, which must not pass for a whole one."""
    return _current.exchange is not None and _current.exchange.cut.is_set()


# urllib3's own, connecting through fetcher.http.addresses: one connect timeout for every address.
_new_conn = with_globals(
    urllib3.connection.HTTPConnection._new_conn,
    connection=types.SimpleNamespace(create_connection=create_connection),
)


class _DeadlineMixin:
    """Tells the thread's Exchange which socket the attempt uses, and turns what a cut made of
    a request or of the wait for its answer into the deadline's error."""

    sock: socket.socket | None
    timeout: float | None
    _connecting_since = 0.0  # when the last connection began (on time.monotonic())

    def _new_conn(self) -> socket.socket:
        """urllib3's, but the connect timeout (at most the time -m leaves) bounds the whole
        connect phase, the name's lookup and every address of the host's included
        (fetcher.http.addresses). A lookup that -m cut short is a max_time that says so; one the
        connect timeout cut, dns (s28 r3 4: a resolver's silence is no connection's fault)."""
        self._connecting_since = time.monotonic()
        try:
            sock: socket.socket = _new_conn(self)  # type: ignore[arg-type]
        except urllib3.exceptions.ConnectTimeoutError as error:
            deadline = thread_deadline()
            late = error.__cause__
            if isinstance(late, NameTimeout) and deadline is not None and deadline.expired():
                # -m is what ran out (the connect timeout was what it left): say so, and why
                message = f"{deadline.message}: {late.host} did not resolve in time"
                raise FetchError(message, ErrorKind.MAX_TIME) from error
            if isinstance(late, NameTimeout):  # the resolver's fault: dns, as its own timeout was
                # a proxy's name: proxy, as one not known at once is (s29 r1 3)
                kind = ErrorKind.PROXY if getattr(self, "proxy", None) else ErrorKind.DNS
                raise FetchError(str(late), kind) from error
            raise
        using_socket(sock)  # before a proxy's CONNECT answer is read on it, or TLS begins
        return sock

    def _tunnel(self) -> None:
        """The CONNECT through a proxy (fetcher.http.tunnel) in place of http.client's, over by
        the connect timeout counted from the start of connecting, as curl counts it. An end the
        deadline made (its cut, or its time left as the connect timeout) is its error."""
        seconds = self.timeout if isinstance(self.timeout, (int, float)) else None
        until = None if seconds is None else self._connecting_since + seconds
        request = connect_request(
            self._tunnel_host,  # type: ignore[attr-defined]
            self._tunnel_port,  # type: ignore[attr-defined]
            self._tunnel_headers,  # type: ignore[attr-defined]
        )
        try:
            status, reason = open_tunnel(self.sock, request, until, seconds)  # type: ignore[arg-type]
        except (FetchError, OSError, http.client.HTTPException):
            deadline = thread_deadline()
            if deadline is not None and (cut_by_deadline() or deadline.expired()):
                raise deadline.error() from None
            raise
        if status != http.HTTPStatus.OK:
            self.close()  # type: ignore[attr-defined] # urllib3 then says ProxyError
            raise OSError(f"Tunnel connection failed: {status} {reason.strip()}")

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        using_socket(self.sock)  # the TLS socket, or the one a proxy's tunnel left

    def request(self, *args: object, **kwargs: object) -> None:
        exchange = _current.exchange
        if exchange is None:
            super().request(*args, **kwargs)  # type: ignore[misc]
            return
        if self.sock is not None:  # kept alive; else connect() tells the exchange
            exchange.using(self.sock)
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        except OSError:
            if not exchange.cut.is_set():
                raise
        if exchange.cut.is_set():
            raise exchange.deadline.error()

    def getresponse(self, *args: object, **kwargs: object) -> object:
        exchange = _current.exchange
        response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        if exchange is not None and exchange.cut.is_set():
            # The EOF the cut caused may have looked like the end of the headers.
            response.close()
            raise exchange.deadline.error()
        return response


class DeadlineHTTPConnection(_DeadlineMixin, urllib3.connection.HTTPConnection):  # type: ignore[misc]
    response_class = HeaderParsingResponse


class DeadlineHTTPSConnection(_DeadlineMixin, urllib3.connection.HTTPSConnection):
    response_class = HeaderParsingResponse

    @property
    def is_connected(self) -> bool:
        """urllib3's check that a kept-alive connection may be reused (nothing to read on the
        socket), and nothing already decrypted either: bytes a server sent past its last
        answer's end (a body longer than its length, a 204 with one) wait in the TLS layer,
        where the socket's check cannot see them, and were read as the next answer."""
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        connected: bool = super().is_connected
        return connected

    # The write the server's end failed, for getresponse to read what it said before it.
    _write_ended: ssl.SSLEOFError | None = None
    _body_given = False

    def request(self, *args: object, **kwargs: object) -> None:
        """The mixin's. A write that the server's end failed (SSLEOFError, which a TLS socket
        says where a plain one says reset or broken pipe) is left to getresponse, which reads
        what the server said before its end."""
        self._write_ended = None
        self._body_given = (args[2] if len(args) > 2 else kwargs.get("body")) is not None
        try:
            super().request(*args, **kwargs)
        except ssl.SSLEOFError as error:
            self._write_ended = error

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        """The mixin's. After a write the server's end failed (request), the answer the server
        sent before that end, as curl reads it: a TLS alert ('certificate required': a server
        that wants a client certificate checks it after the client's handshake, then closes;
        the write said 'EOF occurred in violation of protocol', which advised http for a URL
        typed without a scheme, s37 t1 2) is raised as it is, an early refusal of an upload (a
        413) is the answer (s37 r1 2). None came: RemoteDisconnected, so that a kept-alive
        connection's request is sent again, as over plain http (reuse.py, s37 r1 3). A 2xx to
        a body that did not all leave is no whole upload: a cut, not sent again."""
        ended, self._write_ended = self._write_ended, None
        if ended is None:
            return super().getresponse(*args, **kwargs)
        try:
            response: Any = super().getresponse(*args, **kwargs)
        except (ssl.SSLEOFError, ConnectionError):  # RemoteDisconnected is one
            raise http.client.RemoteDisconnected(_ENDED_UNANSWERED) from None
        if self._body_given and 200 <= response.status < 300:
            response.close()
            raise _cut_by_its_end(response.status)
        return response


def _cut_by_its_end(status: int) -> FetchError:
    """A request whose body's write the server's end failed after it answered status, a 2xx:
    the upload was cut (protocol, as over plain http), and the server answered: not resent."""
    cut = FetchError(f"request body cut: the server answered {status} and ended the TLS "
                     "connection before it took the whole body", ErrorKind.PROTOCOL)  # fmt: skip
    cut.final = True
    return cut


_ENDED_UNANSWERED = "the server ended the TLS connection before it answered"


class DeadlineHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = DeadlineHTTPConnection  # type: ignore[assignment]


class DeadlineHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = DeadlineHTTPSConnection
