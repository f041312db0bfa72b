"""A URL's --max-time deadline: when it runs out, the error it raises, the urllib3 timeout it
bounds, and the connections that cut a server dripping its headers when it does.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass

import urllib3
from urllib3.util import Timeout

from fetcher.errors import ErrorKind, FetchError
from fetcher.http.response_headers import HeaderParsingResponse


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


class _ThreadDeadline(threading.local):
    deadline: Deadline | None = None


# The deadline of the request the calling thread is sending, for its connection to read while
# the status line and headers arrive: urllib3 passes a connection no Timeout object.
_current = _ThreadDeadline()


def set_thread_deadline(deadline: Deadline | None) -> None:
    """Until the next call, the calling thread's requests are cut when deadline passes while
    their headers arrive (see DeadlineHTTPPool); None: never."""
    _current.deadline = deadline


def thread_deadline() -> Deadline | None:
    """The deadline set_thread_deadline gave the calling thread."""
    return _current.deadline


# A request of at most this many bytes of body goes into the kernel's send buffer whole, however
# slowly the server reads: only a larger one can hold a send past the deadline, and only it pays
# for a timer thread (fetcher's bodies are bytes: -d, a line's data).
UNSTUCK_BODY = 64 * 1024


class _DeadlineMixin:
    """Cuts the connection when the deadline passes while a request body is being sent or the
    status line and headers are still arriving: per-call timeouts cannot bound a server that
    drips them, nor one that never reads an upload (each blocking step of the send waited up
    to the time left when it began: three times --max-time)."""

    sock: socket.socket | None

    def request(self, *args: object, **kwargs: object) -> None:
        deadline = _current.deadline
        body = kwargs.get("body")
        if deadline is None or not isinstance(body, bytes) or len(body) <= UNSTUCK_BODY:
            super().request(*args, **kwargs)  # type: ignore[misc]
            return
        cut = threading.Event()
        timer = self._timer(deadline, cut)
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        except OSError:
            if not cut.is_set():
                raise
        finally:
            timer.cancel()
        if cut.is_set():
            raise deadline.error()

    def getresponse(self, *args: object, **kwargs: object) -> object:
        deadline = _current.deadline
        if deadline is None:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        cut = threading.Event()
        timer = self._timer(deadline, cut)
        try:
            response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        finally:
            timer.cancel()
        if cut.is_set():  # the EOF it caused may have looked like the end of the headers
            response.close()
            raise deadline.error()
        return response

    def _timer(self, deadline: Deadline, cut: threading.Event) -> threading.Timer:
        """A started timer that sets cut and shuts the socket down when deadline passes."""
        # threading cannot wait past TIMEOUT_MAX (about 292 years): its timer thread would die
        # of an OverflowError, and a wait that long never needs to end anyway.
        interval = min(max(0.0, deadline.remaining()), threading.TIMEOUT_MAX)
        timer = threading.Timer(interval, self._cut, (cut,))
        timer.daemon = True
        timer.start()
        return timer

    def _cut(self, cut: threading.Event) -> None:
        cut.set()
        with contextlib.suppress(OSError, AttributeError):
            self.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]


class DeadlineHTTPConnection(_DeadlineMixin, urllib3.connection.HTTPConnection):  # type: ignore[misc]
    response_class = HeaderParsingResponse


class DeadlineHTTPSConnection(_DeadlineMixin, urllib3.connection.HTTPSConnection):  # type: ignore[misc]
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


class DeadlineHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = DeadlineHTTPConnection  # type: ignore[assignment]


class DeadlineHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = DeadlineHTTPSConnection  # type: ignore[assignment]
