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

import math
import re
import select
import socket
from enum import Enum

from fetcher.http.response_headers import HeaderParsingResponse

# The start of an answer that lets the body go on: an interim one (100 Continue), or a 2xx said
# before the server reads on (curl's rule: an answer below 300 does not stop the sending).
_GOES_ON = re.compile(rb"HTTP/\d\.\d [12]")
_PEEK = 16  # enough of the status line for its first digit
_READABLE = select.POLLIN | select.POLLERR | select.POLLHUP
_NOW = socket.MSG_DONTWAIT

Buffer = bytes | bytearray | memoryview


class Seen(Enum):
    """What waiting for room to send saw."""

    ROOM = "room"  # the connection takes more: send on
    GOES_ON = "goes on"  # an answer below 300: send the rest, as before any answer
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
    something to read, up to timeout (the connect timeout urllib3 gives a send), then
    TimeoutError, as the blocking send's own timeout did. A body the kernel takes at once
    costs the one send it did before; a request without a body never comes here.
    """
    view = memoryview(data).cast("B")
    while True:
        try:
            view = view[socket.socket.send(sock, view, _NOW) :]  # no timeout: never waits
        except BlockingIOError:
            pass
        if not view:
            return True
        seen = wait_for_room(sock, timeout)
        if seen is Seen.FINAL:
            return False
        if seen is Seen.GOES_ON:  # its bytes stay readable: a poll would not wait again
            sock.sendall(view)
            return True


def wait_for_room(sock: socket.socket, timeout: float | None) -> Seen:
    """Wait until sock takes more bytes or has something to read (what it is decides)."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT | _READABLE)
    millis = -1 if timeout is None else max(1, math.ceil(timeout * 1000))
    events = poller.poll(millis)
    if not events:
        raise TimeoutError("timed out")
    if events[0][1] & _READABLE:
        return answer_seen(sock)
    return Seen.ROOM


def answer_seen(sock: socket.socket) -> Seen:
    """What the server sent, peeked at (left for the answer's reader): an answer below 300 lets
    the body go on; anything else ends it, the end of the connection and garbage too (the
    reader says what it was)."""
    try:
        start = socket.socket.recv(sock, _PEEK, socket.MSG_PEEK | _NOW)  # not counted
    except BlockingIOError:
        return Seen.ROOM  # nothing to read after all
    except OSError:
        return Seen.FINAL  # a reset: sending more is in vain
    return Seen.GOES_ON if _GOES_ON.match(start) else Seen.FINAL
