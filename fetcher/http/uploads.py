"""A request body sent while watching for the server's answer, which may come before the body
has all been sent (s23 h3 3).

urllib3 sends the whole body before it reads anything, in one blocking sendall. A server that
refuses an upload at once (413 Payload Too Large, 401) and then stops reading left that send
blocked until the connect timeout gave up (two or three times it), the record a read_timeout
with no status, and an idempotent PUT sent again at each retry to a server that had refused
it. curl reads while it sends, and stops sending once a final answer of 300 or more arrives:
so does send_body, and the connection the body was cut on is closed with its answer
(EarlyAnswerResponse), never reused for another request it would be read as part of.
"""

from __future__ import annotations

import fcntl
import math
import re
import select
import socket
import struct
import termios
import time
from enum import Enum

from fetcher.http.response_headers import HeaderParsingResponse

# A status line to its first digit: 1 (an interim answer, 100 Continue: the final one is still
# to come) or 2 (a final answer that lets the body go on: curl's rule, an answer below 300 does
# not stop the sending); any other digit is a final answer that stops it.
_STATUS = re.compile(rb"HTTP/\d\.\d (\d)")
# Every proper start of such a line: what may still become one once the rest has come (r2 1).
_STATUS_START = re.compile(rb"H(T(T(P(/(\d(\.(\d( )?)?)?)?)?)?)?)?")
_BLOCK_END = re.compile(rb"\r?\n\r?\n")  # an interim answer's end (http.client takes bare LFs)
_PEEK = 4096  # room for the interim answers before a final one (r2 2)
_RECHECK = 0.02  # seconds between looks at what arrived while it decides nothing
_ENDED = select.POLLERR | select.POLLHUP | getattr(select, "POLLRDHUP", 0)
_NOW = socket.MSG_DONTWAIT
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)  # SIOCOUTQ on a socket, Linux's

Buffer = bytes | bytearray | memoryview


class Seen(Enum):
    """What waiting for room to send saw."""

    ROOM = "room"  # the connection takes more: send on
    HEARD = "heard"  # bytes that are no final answer yet (interim, a status line's start)
    ANSWERED = "answered"  # a 2xx: send the rest, as before any answer
    FINAL = "final"  # a final answer of 300 or more, the end of the connection or an error


class EarlyAnswerResponse(HeaderParsingResponse):
    """The answer to a request whose body was cut short: its connection ends with it (as with
    'Connection: close', http.client hands the socket to the answer, closed once it is read),
    for the server still waits for the rest of the body, and would read the next request as
    part of it."""

    def begin(self) -> None:
        super().begin()
        self.will_close = True


def send_body(sock: socket.socket, data: Buffer, timeout: float | None) -> bool:
    """Send data, a request body or a piece of one, on sock (a connected socket in blocking
    mode) unless a final answer arrives first: True once all of it is sent, False when the
    rest was left unsent.

    The sends do not wait: when the connection takes no more, a poll() waits for room or for
    something to read, until timeout (the connect timeout urllib3 gives a send) has passed
    with no byte leaving the connection, then TimeoutError, as the blocking send's own timeout
    did. A body the kernel takes at once costs the one send it did before; a request without a
    body never comes here.
    """
    view = memoryview(data).cast("B")
    heard = False  # what arrived decides nothing yet: it stays readable, and is looked at again
    while True:
        try:
            view = view[socket.socket.send(sock, view, _NOW) :]  # no timeout: never waits
        except BlockingIOError:
            pass
        if not view:
            return True
        seen = wait_for_room(sock, timeout, heard)
        if seen is Seen.FINAL:
            return False
        if seen is Seen.ANSWERED:  # nothing more to watch for (docs/guarantees.md's limits)
            sock.sendall(view)
            return True
        heard = heard or seen is Seen.HEARD


def wait_for_room(sock: socket.socket, timeout: float | None, heard: bool) -> Seen:
    """Wait until sock takes more bytes or what the server sent decides (answer_seen).

    Once bytes that decide nothing were heard, poll() would say "readable" at once and for
    ever: it then waits for room, or for the connection's end, alone, and they are peeked at
    again every _RECHECK seconds, and at each wake, for what has come after them.
    """
    poller = select.poll()
    poller.register(sock, select.POLLOUT | _ENDED | (0 if heard else select.POLLIN))
    stall = Stall(sock, timeout)
    while True:
        events = poller.poll(stall.millis(_RECHECK if heard else None))
        mask = events[0][1] if events else 0
        if heard or mask & (select.POLLIN | _ENDED):
            seen = answer_seen(sock)
            if seen is Seen.HEARD and mask & _ENDED:
                return Seen.FINAL  # the server ended: what it said is all it will say
            if seen is Seen.ANSWERED or seen is Seen.FINAL or (seen is Seen.HEARD and not heard):
                return seen
        if mask & select.POLLOUT:
            return Seen.ROOM
        stall.check()


def answer_seen(sock: socket.socket) -> Seen:
    """What the server sent, peeked at (left for the answer's reader): see what_is."""
    try:
        start = socket.socket.recv(sock, _PEEK, socket.MSG_PEEK | _NOW)  # not counted
    except BlockingIOError:
        return Seen.ROOM  # nothing to read after all
    except OSError:
        return Seen.FINAL  # a reset: sending more is in vain
    if not start:
        return Seen.FINAL  # the peer's end
    return what_is(start, len(start) == _PEEK)


def what_is(start: bytes, full: bool) -> Seen:
    """What the first bytes an upload's server sent say, interim answers skipped: a 2xx lets
    the body go on; the start of what may still be a 1xx or a 2xx status line decides nothing
    yet (r2 1: it came in pieces); anything else ends it, garbage too (the reader says what it
    was), and so does a peek full of what decides nothing, which cannot be looked past."""
    while match := _STATUS.match(start):
        if match[1] != b"1":
            return Seen.ANSWERED if match[1] == b"2" else Seen.FINAL
        end = _BLOCK_END.search(start, match.end())
        if end is None:
            return Seen.FINAL if full else Seen.HEARD  # the interim answer's rest is to come
        start = start[end.end() :]
    if start and not _STATUS_START.fullmatch(start):
        return Seen.FINAL
    return Seen.FINAL if full else Seen.HEARD


class Stall:
    """How long one wait for room may still last: timeout from its start, or from the last
    moment bytes were seen leaving the connection (r2 6). poll() says "room" only once a third
    of the send buffer is free, and a server that reads slowly but steadily is no stalled one.
    The kernel's count of bytes sent and not yet acknowledged (SIOCOUTQ) tells: it falls as
    the server reads. Where the kernel cannot say, a whole timeout without room ends the wait."""

    __slots__ = ("sock", "timeout", "queued", "end")

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self.sock, self.timeout = sock, timeout
        self.queued = None if timeout is None else queued(sock)
        self.end = None if timeout is None else time.monotonic() + timeout

    def millis(self, most: float | None) -> int:
        """poll()'s timeout: until the end, or most seconds when that is sooner (-1: none)."""
        left = most if self.end is None else self.end - time.monotonic()
        if most is not None and left is not None:
            left = min(left, most)
        return -1 if left is None else max(1, math.ceil(left * 1000))

    def check(self) -> None:
        """Raise TimeoutError once a whole timeout passed with no byte leaving."""
        now = time.monotonic()
        if self.end is None or self.timeout is None or now < self.end:
            return
        count = queued(self.sock)
        if count is None or self.queued is None or count >= self.queued:
            raise TimeoutError("timed out")
        self.queued, self.end = count, now + self.timeout


def queued(sock: socket.socket) -> int | None:
    """The bytes sock holds that the peer has not acknowledged (sent or not), or None where the
    kernel cannot say (SIOCOUTQ is Linux's; elsewhere TIOCOUTQ is a terminal's)."""
    if _OUTQ is None:
        return None
    try:
        raw = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
    except OSError:
        return None
    count: int = struct.unpack("i", raw)[0]
    return count
