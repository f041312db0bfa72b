"""The bench's fallback static server, used only when nginx cannot be had: an asyncio HTTP/1.1
keep-alive server answering a 1 KiB body for every path (with an ETag and a Last-Modified date, and
a 304 to a request that sends the ETag back in If-None-Match), and ``/big/NAME`` from --files with
sendfile. It is far slower than nginx (one Python process), which the table's header then says.

Like nginx's stub_status it counts the TCP connections it accepted and the requests it answered,
because a client's connection reuse is part of what the bench reports: ``GET /__stats`` returns
them as JSON, the asking connection left out. It prints its port on stdout once it listens
(``--port 0`` picks a free one) and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

MAX_HEAD = 64 * 1024  # a request head longer than this is not from one of our clients
STATS_PATH = b"/__stats"
# The 1 KiB body never changes, so like nginx's static files it has validators, and a request
# that sends its ETag back (scenario F's second run with --state) gets a 304.
ETAG = b'"bench-1k"'
VALIDATORS = b"ETag: " + ETAG + b"\r\nLast-Modified: Thu, 01 Jan 2026 00:00:00 GMT\r\n"


class Counters:
    """What the server saw; read by ``GET /__stats``."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.open = 0
        self.max_open = 0

    def report(self) -> bytes:
        """The counters as JSON, without the asking connection."""
        return json.dumps(
            {
                "connections": self.connections,
                "requests": self.requests,
                "open": self.open - 1,
                "max_open": self.max_open,
            }
        ).encode()


def response_head(
    length: int, close: bool, content_type: bytes = b"text/plain", extra: bytes = b""
) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\n"
        b"Content-Length: " + str(length).encode() + b"\r\n" + extra + connection + b"\r\n"
    )


def not_modified_head(close: bool) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 304 Not Modified\r\n" + VALIDATORS + connection + b"\r\n"


class HttpProtocol(asyncio.Protocol):
    """One connection: parses request heads, answers each at once, keeps alive."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.served = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        counters = self.server.counters
        counters.connections += 1
        counters.open += 1
        counters.max_open = max(counters.max_open, counters.open)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.counters.open -= 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            self.handle(head)
        if len(self.buffer) > MAX_HEAD and self.transport is not None:
            self.transport.close()

    def handle(self, head: bytes) -> None:
        request_line, _, header_block = head.partition(b"\r\n")
        parts = request_line.split(b" ")
        target = parts[1] if len(parts) == 3 else b"/"
        headers = header_block.lower()
        close = b"connection: close" in headers or (
            parts[-1] == b"HTTP/1.0" and b"connection: keep-alive" not in headers
        )
        counters = self.server.counters
        if target == STATS_PATH:
            if self.served == 0:  # the asking connection is the bench's, not the client's
                counters.connections -= 1
            self.served += 1
            self.write(response_head(len(stats := counters.report()), close) + stats, close)
            return
        self.served += 1
        counters.requests += 1
        if target.startswith(b"/big/") and self.server.files is not None:
            asyncio.get_running_loop().create_task(self.send_file(target[5:], close))
        elif b"if-none-match: " + ETAG in headers:
            self.write(self.server.not_modified[close], close)
        else:
            self.respond(close)

    def respond(self, close: bool) -> None:
        # Every answer is the same bytes, so answers to pipelined requests cannot be misordered.
        self.write(self.server.small_response_close if close else self.server.small_response, close)

    def write(self, data: bytes, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        if close:
            self.transport.close()

    async def send_file(self, name: bytes, close: bool) -> None:
        """Fallback for scenario C: a file from --files, with the kernel's sendfile."""
        assert self.server.files is not None
        transport = self.transport
        path = self.server.files / os.path.basename(name.decode("utf-8", "replace"))
        if transport is None:
            return
        if not path.is_file():
            body = b"not found\n"
            self.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\n" + body, close)
            return
        transport.pause_reading()
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                transport.write(response_head(size, close, b"application/octet-stream"))
                await asyncio.get_running_loop().sendfile(transport, file)
        except (OSError, RuntimeError):
            transport.close()
            return
        if close:
            transport.close()
        elif not transport.is_closing():
            transport.resume_reading()


class Server:
    """Settings and counters shared by every connection."""

    def __init__(self, body_size: int, files: Path | None) -> None:
        self.files = files
        self.counters = Counters()
        body = (b"x" * (body_size - 1) + b"\n") if body_size > 0 else b""
        self.small_response = response_head(len(body), False, extra=VALIDATORS) + body
        self.small_response_close = response_head(len(body), True, extra=VALIDATORS) + body
        self.not_modified = {False: not_modified_head(False), True: not_modified_head(True)}


async def serve(args: argparse.Namespace) -> None:
    server = Server(args.body_size, args.files)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: HttpProtocol(server), "127.0.0.1", args.port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    port = listener.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    await stop.wait()
    listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--body-size", type=int, default=1024, help="bytes in each answer")
    parser.add_argument("--files", type=Path, default=None, help="folder served under /big/")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
