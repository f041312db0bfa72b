"""The connection pools of every session: a request on a kept-alive connection that the server
ended before a byte of its answer came is sent again, once and at once, on a new connection.

The reuse check (is_connected) sees a server's end that arrived before the request went out;
one that crossed the request on the wire arrives after it, and the request dies unanswered: a
race of the client's reuse, not the server's failure. curl sends such a request again on a
fresh connection ("Connection died, retrying a fresh connect"), whatever its method; so does
fetcher, as part of the same attempt (no retry counted, no backoff). Never for a connection
made for the request, never twice, never once any byte of the answer came (the server had
the request then, and may have acted on it), never after the deadline's cut, never when the
connection died more than RESEND_WINDOW after the request went out (a server that worked on
it, then went: s27 r5 2): those failures are left to the retry policy (fetcher.http.retry).
"""

from __future__ import annotations

import http.client
import logging
import time
from typing import Any

from urllib3.connectionpool import HTTPConnectionPool

from fetcher.http.deadline import DeadlineHTTPSPool, cut_by_deadline
from fetcher.http.sockets import KernelTimeoutHTTPPool, KernelTimeoutSocket

log = logging.getLogger("fetcher")

# Bodies sent again as they are: fetcher's are bytes (-d @file and -d @- are read at start).
# A file or an iterator could not be read again, and is never sent twice.
_RESENDABLE = (bytes, bytearray, memoryview, str)


class ResendingPool(HTTPConnectionPool):
    """A pool that sends a request again on a new connection when the kept-alive one it went
    out on died before any byte of its answer (see the module's docstring). What the normal
    path pays is this method's frame, a look at the connection's socket, a clock read and, for
    plain http, the count of bytes it had received: no poll."""

    def _make_request(self, conn: Any, method: str, url: str, body: Any = None, *args: Any,
                      **kwargs: Any) -> Any:  # fmt: skip
        sock = conn.sock  # None: a new connection, which _make_request connects
        if sock is None or conn._tunnel_host is not None:  # a tunnel's: a CONNECT to make again
            return super()._make_request(conn, method, url, body, *args, **kwargs)
        before = sock.received if type(sock) is KernelTimeoutSocket else _UNCOUNTED
        sent = time.monotonic()
        try:
            return super()._make_request(conn, method, url, body, *args, **kwargs)
        except (ConnectionResetError, BrokenPipeError) as error:  # RemoteDisconnected is one
            raced = time.monotonic() - sent < RESEND_WINDOW
            if not raced or not died_unanswered(error, sock, before, body):
                raise
        log.debug("kept-alive connection to %s died unanswered: sent again", self.host)
        conn.close()  # http.client's getresponse closed it already; a send's error did not
        return super()._make_request(conn, method, url, body, *args, **kwargs)  # a new one


# Seconds after a request went out within which a death unanswered is the reuse race: a
# server's close crosses the request within a round trip; one that read the request, worked
# on it and closed unanswered later may have acted on it (s27 r5 2).
RESEND_WINDOW = 1.0

_UNCOUNTED = -1  # the bytes a socket received before a request, when it does not count them


def died_unanswered(error: OSError, sock: Any, before: int, body: Any) -> bool:
    """Whether a request that failed with error (a reset, a broken pipe, the end of the
    connection before a status line) on a kept-alive connection, on sock, may be sent again:
    no byte of its answer came, the deadline did not cut it, and its body can be sent again.

    A plain-http socket counts the bytes it receives: as many as before the request (before)
    says nothing came, interim answers and pieces of a status line included. A TLS socket
    cannot say what a reset lost in the reader's buffer; the end of the stream before the
    first status line (RemoteDisconnected: nothing read at all) is then the one sign taken."""
    if cut_by_deadline() or not (body is None or isinstance(body, _RESENDABLE)):
        return False
    if before != _UNCOUNTED:
        return bool(sock.received == before)
    return isinstance(error, http.client.RemoteDisconnected) and not getattr(
        error, "after_interim", False
    )


class HTTPPool(ResendingPool, KernelTimeoutHTTPPool):
    """A session's plain-http pool (fetcher.http.sockets' connections)."""


class HTTPSPool(ResendingPool, DeadlineHTTPSPool):
    """A session's https pool."""
