"""Scenario B's latency server: an HTTP/1.1 keep-alive server that answers every request after
--delay seconds (50 ms by default).

A client with J connections can then complete at most J / 0.05 requests a second, so its
efficiency (ideal time / actual time) shows how much it loses to its own overhead. That only
means something if the server loses nothing, and the server's losses are lateness: the answers
of one round fall due together, and while the server is still reading the burst of requests
that came before, they wait. An asyncio server (about 16 us a request) was measurably late at
512 connections; this one is a single epoll loop over non-blocking sockets (no framework, no
per-request object beyond a queue entry), and it measures its own lateness: ``GET /__stats``
reports, besides connections and requests, how late answers left against their due time since
the previous ask. The bench proves the whole at 512 connections before scenario B runs.

Every answer waits the same delay, so answers fall due in the order their requests came: one
FIFO queue holds them, and the loop sleeps in epoll until the head is due (epoll counts in whole
milliseconds, rounded up, so an answer leaves up to 1 ms late and never early).

It also measures each client's **turnaround**: on a kept-alive connection, the time from an
answer leaving to the next request's head arriving. A client loses its turnaround plus the
server's lateness once per round, so these two account for its efficiency: at 50 ms, a mean
turnaround of 1 ms is about 2 points.

It prints its port on stdout once it listens (``--port 0`` picks a free one) and stops on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
import time
from collections import deque

MAX_HEAD = 64 * 1024  # a request head longer than this is not from one of our clients
STATS_PATH = b"/__stats"


class Stop(Exception):
    """Raised by the signal handler to leave the loop."""


class Connection:
    """One client connection: its socket, unparsed bytes, and whether it is still open."""

    __slots__ = ("sock", "buffer", "served", "closed", "answered")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.served = 0
        self.closed = False
        self.answered = 0.0  # when the last answer left; 0: none is waiting for a next request


class Server:
    """The loop, the queue of due answers, and the counters /__stats reports."""

    def __init__(self, listener: socket.socket, delay: float, body_size: int) -> None:
        self.listener = listener
        self.delay = delay
        body = (b"x" * (body_size - 1) + b"\n") if body_size > 0 else b""
        self.answer = self.head(len(body), False) + body
        self.answer_close = self.head(len(body), True) + body
        self.poller = select.epoll()
        self.poller.register(listener.fileno(), select.EPOLLIN)
        self.connections: dict[int, Connection] = {}
        self.due: deque[tuple[float, Connection, bool]] = deque()
        self.accepted = 0
        self.requests = 0
        self.max_open = 0
        self.late_count = 0
        self.late_sum = 0.0
        self.late_max = 0.0
        self.turnarounds: list[float] = []  # seconds, since the previous report

    @staticmethod
    def head(length: int, close: bool) -> bytes:
        connection = b"Connection: close\r\n" if close else b""
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Length: " + str(length).encode() + b"\r\n" + connection + b"\r\n"
        )

    def run(self) -> None:
        poll, due, connections = self.poller.poll, self.due, self.connections
        listen_fd = self.listener.fileno()
        while True:
            timeout = max(due[0][0] - time.monotonic(), 0.0) if due else 1.0
            for fd, _ in poll(timeout):
                if fd == listen_fd:
                    self.accept()
                elif (connection := connections.get(fd)) is not None:
                    self.read(connection)
            now = time.monotonic()
            while due and due[0][0] <= now:
                when, connection, close = due.popleft()
                if not connection.closed:
                    self.send(connection, self.answer_close if close else self.answer, close)
                sent = time.monotonic()
                connection.answered = sent
                late = sent - when
                self.late_count += 1
                self.late_sum += late
                if late > self.late_max:
                    self.late_max = late

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections[sock.fileno()] = Connection(sock)
            self.poller.register(sock.fileno(), select.EPOLLIN)
            self.accepted += 1
            self.max_open = max(self.max_open, len(self.connections))

    def read(self, connection: Connection) -> None:
        try:
            data = connection.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close(connection)
            return
        if connection.answered:
            self.turnarounds.append(time.monotonic() - connection.answered)
            connection.answered = 0.0
        buffer = connection.buffer + data if connection.buffer else data
        start = 0
        while (end := buffer.find(b"\r\n\r\n", start)) >= 0:
            self.handle(connection, buffer[start:end])
            start = end + 4
        connection.buffer = buffer[start:]
        if len(connection.buffer) > MAX_HEAD:
            self.close(connection)

    def handle(self, connection: Connection, head: bytes) -> None:
        request_line, _, header_block = head.partition(b"\r\n")
        parts = request_line.split(b" ")
        headers = header_block.lower()
        close = b"connection: close" in headers or (
            parts[-1] == b"HTTP/1.0" and b"connection: keep-alive" not in headers
        )
        if len(parts) == 3 and parts[1] == STATS_PATH:
            if connection.served == 0:  # the asking connection is the bench's, not a client's
                self.accepted -= 1
            connection.served += 1
            body = self.report()
            self.send(connection, self.head(len(body), close) + body, close)
            return
        connection.served += 1
        self.requests += 1
        self.due.append((time.monotonic() + self.delay, connection, close))

    def report(self) -> bytes:
        """The counters as JSON, the asking connection left out. The peak of open connections,
        the lateness and the turnarounds start again at each report, so that one report covers
        one run."""
        open_now = len(self.connections) - 1
        turnarounds = sorted(self.turnarounds)
        middle = turnarounds[len(turnarounds) // 2] if turnarounds else 0.0
        data = json.dumps(
            {
                "connections": self.accepted,
                "requests": self.requests,
                "open": open_now,
                # The asking connection is open now: it is in the peak only if the peak is now.
                "max_open": self.max_open - 1 if self.max_open == open_now + 1 else self.max_open,
                "late_mean_ms": 1000 * self.late_sum / self.late_count if self.late_count else 0,
                "late_max_ms": 1000 * self.late_max,
                "turnarounds": len(turnarounds),
                "turn_mean_ms": 1000 * sum(turnarounds) / len(turnarounds) if turnarounds else 0,
                "turn_median_ms": 1000 * middle,
            }
        ).encode()
        self.max_open = open_now
        self.late_count, self.late_sum, self.late_max = 0, 0.0, 0.0
        self.turnarounds = []
        return data

    def send(self, connection: Connection, data: bytes, close: bool) -> None:
        sock = connection.sock
        try:
            sent = sock.send(data)
            if sent < len(data):  # rare: the client is not reading; wait for it a little
                sock.settimeout(5)
                sock.sendall(data[sent:])
                sock.setblocking(False)
        except OSError:
            close = True
        if close:
            self.close(connection)

    def close(self, connection: Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        fd = connection.sock.fileno()
        self.connections.pop(fd, None)
        try:
            self.poller.unregister(fd)
        except (OSError, ValueError):
            pass
        connection.sock.close()


def stop(signum: int, frame: object) -> None:
    raise Stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each answer")
    parser.add_argument("--body-size", type=int, default=64, help="bytes in each answer")
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(4096)
    listener.setblocking(False)
    server = Server(listener, args.delay, args.body_size)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write(f"{listener.getsockname()[1]}\n")
    sys.stdout.flush()
    try:
        server.run()
    except Stop:
        pass
    finally:
        for connection in list(server.connections.values()):
            server.close(connection)
        server.poller.close()
        listener.close()


if __name__ == "__main__":
    main()
