"""A request body sent while watching for the server's answer, which may come before the body
has all been sent (s23 h3 3).

urllib3 sends the whole body before it reads anything, in one blocking sendall. A server that
refuses an upload at once (413 Payload Too Large, 401) and then stops reading left that send
blocked until the connect timeout gave up (two or three times it), the record a read_timeout
with no status, and an idempotent PUT sent again at each retry to a server that had refused
it. curl reads while it sends, and stops sending once a final answer of 300 or more arrives:
so does send_body, and the connection the body was cut on is closed with its answer
(EarlyAnswerResponse), never reused for another request it would be read as part of. So is a
connection a 2xx came on before the body was all sent (r7 9): the server that says 200 while it
reads may say more once it has read it all (a 413), which the next request would take for its
own answer. A server that said 2xx and then stopped reading had decided: the stall cuts the
body and that answer is the record, once (s25 r1 4), where it was a read_timeout and the PUT
sent again at each retry. curl, too, stops sending once it has read a whole answer on a
connection that is to close, as this one is.
"""

from __future__ import annotations

import fcntl
import http.client
import io
import math
import select
import socket
import struct
import sys
import termios
import time
from dataclasses import dataclass
from enum import Enum

from fetcher.errors import ErrorKind, FetchError
from fetcher.http.response_headers import (
    MAX_INTERIM,
    HeaderParsingResponse,
    is_interim,
    read_header_lines,
    read_status_line,
)

# Ends that make of the start of a status line one the answer's reader takes for a 1xx or a
# 2xx, if any can: the rest of "HTTP/" and a 100 (a start in or before the version), the rest of
# a 100 or a 200 (in the status code), or the line's end (after it). See may_become.
_ENDINGS = tuple(
    dict.fromkeys(
        [b"HTTP/"[cut:] + b" 100\n" for cut in range(6)]
        + [code[cut:] + b"\n" for code in (b"100", b"200") for cut in range(4)]
    )
)
_BLANK_LINES = (b"\r\n", b"\n")  # the end of a header block, as read_header_lines reads it
# What is looked at: interim answers longer than this hide what follows (r7 2). 4 KiB hid a 401
# behind five 1 KB 103s, and the body went on at a slow server's pace (s27 f2 2); 64 KiB holds
# any interim answers a server means, and is parsed in well under a millisecond at each look.
_PEEK = 64 * 1024
_LOOKS = 10  # looks at the bytes still queued in a timeout (Stall)
_RECHECK = 0.02  # seconds between looks at what arrived while it decides nothing
_RESET = select.POLLERR | select.POLLHUP  # the connection's end both ways (a reset)
_ENDED = _RESET | getattr(select, "POLLRDHUP", 0)  # ... or the server's (a FIN)
_NOW = socket.MSG_DONTWAIT
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)  # SIOCOUTQ on a socket, Linux's
_OUTQ_UNSENT = 0x894B if sys.platform.startswith("linux") else None  # SIOCOUTQNSD

Buffer = bytes | bytearray | memoryview


class Seen(Enum):
    """What waiting for room to send saw."""

    ROOM = "room"  # the connection takes more: send on
    INTERIM = "interim"  # whole interim answers and nothing after them: they hide nothing
    HEARD = "heard"  # what may hide a final answer: a full look, or an answer still in pieces
    ANSWERED = "answered"  # a 2xx: send the rest, looking only for the server's end
    FINAL = "final"  # the rest unsent: an answer of 300 or more, the server's end
    STALLED = "stalled"  # the rest unsent: a stall after a 2xx or what may hide an answer


@dataclass(frozen=True, slots=True)
class Cut:
    """A request body whose rest was left unsent: sent of its total bytes had left (the peer's
    system acknowledged them) at the cut, when the connection stalled (else the server ended
    it). That is neither what the server read (its system acknowledges into a receive buffer
    it may never read, s25 r9 2) nor what reached it (the bytes still queued reach a server
    that reads on after a graceful close, r7 4): it is said as what it is, acknowledged.
    early_2xx: False when the cut came in the wait after the whole body was handed over, the
    last look having seen only what may hide a 2xx (Seen.HEARD): the status is then known from
    the answer's reader alone (s26 r5 1). Cuts while sending say "early" as before."""

    sent: int
    total: int
    stalled: bool
    early_2xx: bool = True

    def failure(self, status: int) -> FetchError:
        """The record of an upload cut after an answer of status that would have passed for
        it done (a 2xx: s25 r3 1): the server did not get the body, whether it paused or
        stopped, so the URL did not end ok. Final: the server answered, and sending the request
        again is what s25 r1 4 objected to. A stall's kind is a stall's (read_timeout), an end's
        the protocol's (a connection ended early). The message names what was heard at the
        cut: an early status only if it was seen then, not one read whole only after it."""
        why = "stopped reading for --connect-timeout" if self.stalled else "ended the connection"
        heard = (
            f"the server's early {status}"
            if self.early_2xx
            else f"the start of an early answer, read whole only after the cut as a {status}"
        )
        error = FetchError(
            f"request body cut after {heard} ({self.sent} of {self.total}"
            f" bytes acknowledged by its system): it {why}",
            ErrorKind.READ_TIMEOUT if self.stalled else ErrorKind.PROTOCOL,
        )
        error.final = True
        return error


class EarlyAnswerResponse(HeaderParsingResponse):
    """The answer to a request whose body was cut short, or that came before the body was all
    sent: its connection ends with it (as with 'Connection: close', http.client hands the
    socket to the answer, closed once it is read), for the server still waits for the rest of
    the body, and would read the next request as part of it; or, having said 200 while it
    read, may say more once it has read it all (r7 9), which the next request would take for
    its own answer."""

    def begin(self) -> None:
        super().begin()
        self.will_close = True


def send_body(sock: socket.socket, data: Buffer, timeout: float | None) -> tuple[Seen, int]:
    """Send data, a request body or a piece of one, on sock (a connected socket in blocking
    mode) unless a final answer of 300 or more arrives first; return what was seen and the
    bytes of data handed to the kernel. All of it sent: ROOM after nothing heard or whole
    interim answers alone (their reader reads past them, and nothing is left behind for the
    next request: s25 r1 1), ANSWERED after a 2xx, HEARD after what may hide a final answer
    (both end the connection with its answer: r7 9, s24 r8 1). The rest left unsent: FINAL
    after an answer of 300 or more, or the server's end after one (s25 r3 2; after a 2xx a
    reset, not a FIN: r7 1), STALLED after a stall (cut_by). After a 2xx, what the kernel
    still holds once all is handed over is the connection's to wait for (drain).

    The last look at what came is the one before the last bytes were handed to the kernel:
    one after would race the server's answer to the whole body, and take it for an early one.
    The sends do not wait: when the connection takes no more, a poll() waits for room or for
    something to read, until timeout (the connect timeout urllib3 gives a send) has passed
    with no byte leaving the connection (Stall), then TimeoutError, as the blocking send's own
    timeout did. A body the kernel takes at once costs the one send it did before. After a 2xx
    the sends stay bounded so (r7 5: a blocking sendall waited a whole timeout for each piece).
    """
    view = memoryview(data).cast("B")
    size = len(view)
    before = Seen.ROOM  # what was heard: nothing, interim answers, what may hide one, a 2xx
    while True:
        try:
            try:
                view = view[socket.socket.send(sock, view, _NOW) :]  # no timeout: never waits
            except BlockingIOError:
                pass
            if not view:  # whole interim answers hide nothing: the connection is kept
                return (Seen.ROOM if before is Seen.INTERIM else before), size
            seen = wait_for_room(sock, timeout, before)
        except (TimeoutError, BrokenPipeError, ConnectionResetError) as error:
            return cut_by(error, sock, before), size - len(view)
        if seen is Seen.FINAL:
            return seen, size - len(view)
        if seen is not Seen.ROOM:
            before = seen


def drain(sock: socket.socket, timeout: float | None, hidden: bool = False) -> int:
    """After a 2xx heard during the upload (or what may hide one: s26 r5 1) and the whole body
    handed to the kernel, wait until the kernel has sent it all; return the bytes the server's
    system had not acknowledged when it reset the connection with some never sent (a cut: s26
    r1 3, they never left fetcher and are lost), else 0.

    What is never sent is what tells (unsent, read first once the poll returns): a reset
    leaves the counts as they were, but its acknowledgement of what the server read last is
    not taken, so a server that read the whole body and reset at once can leave bytes sent
    and unacknowledged (s25 r9 3 must stay ok; 2 runs in 90 had 27 KB so). Bytes sent are
    not a cut, nor are those its system took unread (TCP acknowledges the taking, not the
    reading: s25 r9 1), nor a stall (Stall): nothing was dropped, and the graceful close
    still hands the rest to a server that reads on, as before this wait. No poll() event says
    a send queue emptied: it is looked at every _RECHECK seconds. 0 at once where the kernel
    cannot say. hidden: what came may hide the answer (HEARD), looked at again at each wake: a
    300 or more ends the wait at once, the body refused (s27 f2 2: a slow server's 401 waited
    until it had read all 6 MB, 31 s); while it decides nothing, it may be a 2xx, and is
    waited for as one: a wait capped at timeout left 1.6 MB unsent behind a 200 that 70 KB
    of interim answers hid, and the reset after it made the upload ok (s27 r2 1)."""
    if not unsent(sock):
        return 0
    poller, stall = select.poll(), Stall(sock, timeout)
    poller.register(sock, _RESET)
    while True:
        events = poller.poll(stall.millis(_RECHECK))
        left = unsent(sock)
        if not left:
            return 0
        if events and events[0][1] & _RESET:
            return queued(sock) or left
        if hidden and (seen := _hidden_answer(sock)) is not Seen.HEARD:
            if seen is Seen.FINAL:
                return 0  # a refusal: its answer is the record, the rest of the body in vain
            hidden = False  # a 2xx: no need to look again
        try:
            stall.check()
        except TimeoutError:
            return 0


def _hidden_answer(sock: socket.socket) -> Seen:
    """What the bytes the server sent say now (what_is): HEARD while they decide nothing, or
    when none can be peeked (an end is the poll's to see: answer_seen would call a reset
    FINAL, and a reset with bytes unsent is the cut)."""
    try:
        start = socket.socket.recv(sock, _PEEK, socket.MSG_PEEK | _NOW)
    except OSError:
        return Seen.HEARD
    return what_is(start) if start else Seen.HEARD


def cut_by(error: OSError, sock: socket.socket, before: Seen) -> Seen:
    """What error, a stall or the connection's end met while sending, makes of the upload
    after before was heard: its rest unsent, an answer for the reader to read. After a 2xx or
    what may hide an answer, STALLED for a stall (the server had answered, or may have: s24 r8
    2, s25 r1 4) and FINAL for an end; an end with a 2xx (or what may be one) to read is FINAL
    too: a server may say 200 and reset before any wait looked (s25 r3 2). Else error is
    raised: after nothing heard or whole interim answers no answer will come while the server
    waits for the rest of the body (s25 r1 2), and an end with nothing to read is the answer's
    reader's to tell, as urllib3 has it tell a refusal that came before the end."""
    stall = isinstance(error, TimeoutError)
    if before in (Seen.ANSWERED, Seen.HEARD):
        return Seen.STALLED if stall else Seen.FINAL
    if not stall and answer_seen(sock) in (Seen.ANSWERED, Seen.HEARD):
        return Seen.FINAL
    raise error


def wait_for_room(sock: socket.socket, timeout: float | None, before: Seen) -> Seen:
    """Wait until sock takes more bytes or what the server sent decides (answer_seen), or
    tells more than before, what was heard so far (ROOM: nothing).

    Once bytes were heard (INTERIM, HEARD), poll() would say "readable" at once and for ever:
    it then waits for room, or for the connection's end, alone, and they are peeked at again
    every _RECHECK seconds, and at each wake, for what has come after them. After a 2xx
    (ANSWERED) only room and the connection's end are waited for: a reset (POLLERR, POLLHUP)
    is FINAL at once (s25 r3 2: it was waited on for a whole timeout); a FIN is not (r7 1): it
    says only that the server sends nothing more, and one that half-closes after its 200 may
    read the whole body, as curl lets it. What the 2xx's reader will read is not looked at
    again.
    """
    answered = before is Seen.ANSWERED
    rechecking = before in (Seen.INTERIM, Seen.HEARD)
    poller = select.poll()
    reading = select.POLLIN if before is Seen.ROOM else 0
    poller.register(sock, select.POLLOUT | (_RESET if answered else _ENDED) | reading)
    stall = Stall(sock, timeout)
    while True:
        events = poller.poll(stall.millis(_RECHECK if rechecking else None))
        mask = events[0][1] if events else 0
        if answered and mask & _RESET:
            return Seen.FINAL  # the server reset after its 2xx: no more of the body is read
        if not answered and (rechecking or mask & (select.POLLIN | _ENDED)):
            seen = answer_seen(sock)
            if seen in (Seen.INTERIM, Seen.HEARD) and mask & _ENDED:
                return Seen.FINAL  # the server ended: what it said is all it will say
            if seen is not before and seen is not Seen.ROOM:
                return seen  # more was heard, or something else
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
    return what_is(start)


def what_is(start: bytes) -> Seen:
    """What the first bytes an upload's server sent say, read as the answer's reader will
    read them (read_status_line, is_interim, read_header_lines), interim answers skipped: a
    2xx lets the body go on (ANSWERED); whole interim answers and nothing after them, in a
    look not full, say the server reads on (INTERIM); a 1xx whose block has not ended yet, a
    look full of interim answers, or the start of what may still become a 1xx or a 2xx status
    line, decide nothing yet and may hide what does (HEARD: r2 1, it came in pieces; r7 2, it
    is longer than the peek); anything else ends it (FINAL), garbage and more interim answers
    than the reader takes too (the reader says what they were)."""
    fp = io.BytesIO(start)
    try:
        for count in range(MAX_INTERIM + 1):
            line = fp.readline()
            if count and not line:  # interim answers, all of what came (s25 r1 1)
                return Seen.INTERIM if len(start) < _PEEK else Seen.HEARD
            if not line.endswith(b"\n"):
                return Seen.HEARD if may_become(line) else Seen.FINAL
            version, status, reason = read_status_line(line)
            if not is_interim(version, status, reason):
                return Seen.ANSWERED if status < 300 else Seen.FINAL
            if read_header_lines(fp)[-1] not in _BLANK_LINES:
                return Seen.HEARD  # the interim answer's rest is to come
    except http.client.HTTPException:
        return Seen.FINAL
    return Seen.FINAL


def may_become(start: bytes) -> bool:
    """Whether start, the first bytes of a status line, may still become one the answer's
    reader takes for a 1xx or a 2xx: whether one of _ENDINGS makes it one. The reader's own
    code decides (read_status_line), so what it takes (any blanks between the parts, bare
    CRs, blanks before the version) is waited for, and what it refuses is not."""
    for ending in _ENDINGS:
        try:
            version, status, reason = read_status_line(start + ending)
            if is_interim(version, status, reason) or status < 300:
                return True
        except http.client.HTTPException:
            continue
    return False


class Stall:
    """How long one wait for room may still last: timeout from its start, or from the last
    moment bytes were seen leaving the connection (r2 6). poll() says "room" only once a third
    of the send buffer is free, and a server that reads slowly but steadily is no stalled one.
    The kernel's count of bytes sent and not yet acknowledged (SIOCOUTQ) tells: it falls as
    the peer acknowledges them, which it does as its window reopens, after each read of about
    two segments (on loopback, 128 KiB), not at each read (r7 5). The count is looked at
    _LOOKS times a timeout, so a wait ends within 1 + 1/_LOOKS timeouts after the last byte
    left: looked at only at each timeout's end, bytes that left just after the wait began
    put its end off by a whole one (a silent server was cut after two). Where the kernel
    cannot say, a whole timeout without room ends the wait."""

    __slots__ = ("sock", "timeout", "queued", "end")

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self.sock, self.timeout = sock, timeout
        self.queued = None if timeout is None else queued(sock)
        self.end = None if timeout is None else time.monotonic() + timeout

    def millis(self, most: float | None) -> int:
        """poll()'s timeout: until the end, or the next look at the count, or most seconds,
        whichever is soonest (-1: none)."""
        left = most
        if self.end is not None and self.timeout is not None:
            left = min(self.end - time.monotonic(), left if left is not None else math.inf)
            if self.queued is not None:
                left = min(left, self.timeout / _LOOKS)
        return -1 if left is None else max(1, math.ceil(left * 1000))

    def check(self) -> None:
        """Note bytes that left since the last look; raise TimeoutError once a whole timeout
        passed with none leaving."""
        if self.end is None or self.timeout is None:
            return
        count = None if self.queued is None else queued(self.sock)
        now = time.monotonic()
        if count is not None and self.queued is not None and count < self.queued:
            self.queued, self.end = count, now + self.timeout
        elif now >= self.end:
            raise TimeoutError("timed out")


def queued(sock: socket.socket) -> int | None:
    """The bytes sock holds that the peer has not acknowledged (sent or not), or None where the
    kernel cannot say (SIOCOUTQ is Linux's; elsewhere TIOCOUTQ is a terminal's)."""
    return _count(sock, _OUTQ)


def unsent(sock: socket.socket) -> int | None:
    """The bytes sock holds that it has not sent yet (SIOCOUTQNSD, Linux's), or None where the
    kernel cannot say."""
    return _count(sock, _OUTQ_UNSENT)


def _count(sock: socket.socket, request: int | None) -> int | None:
    """What the ioctl request says of sock, a count of bytes; None without one."""
    if request is None:
        return None
    try:
        raw = fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0")
    except OSError:
        return None
    count: int = struct.unpack("i", raw)[0]
    return count
