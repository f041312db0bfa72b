"""Calibration client for the latency server: C keep-alive connections, each sending its next
request as soon as its previous answer is complete, N requests in all.

Why not the aiohttp peer alone: at 512 connections and 50 ms a client must complete 10,240
requests a second, and aiohttp spends about 150 us of CPU on one, so on a 2-core machine it
measures itself, not the server. Even a bare asyncio client spends some 30 us a request, and
every microsecond a client spends shows up as lateness: the answers of one round arrive
together, and the last connection of the burst waits for the client to get through all the
others. So this client is one epoll loop over non-blocking sockets, with no asyncio and no
parsing beyond the first answer (the latency server's answers are all the same length): little
more than a recv and a send a request.

Prints one line of JSON: requests, connections, elapsed (first request to last answer, with the
connections already open), ideal (rounds x delay) and efficiency (ideal / elapsed).
"""

from __future__ import annotations

import argparse
import json
import math
import select
import socket
import time

REQUEST = b"GET /probe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def answer_length(data: bytes) -> int | None:
    """The length of one whole answer, from the head and Content-Length of the first one."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    for line in data[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return end + 4 + int(value)
    return end + 4


def run(port: int, connections: int, requests: int, delay: float, limit: float) -> dict[str, float]:
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    poller = select.epoll()
    by_fd: dict[int, socket.socket] = {}
    pending: dict[int, bytearray] = {}  # bytes received and not yet counted as answers
    for sock in sockets:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        by_fd[sock.fileno()] = sock
        pending[sock.fileno()] = bytearray()
        poller.register(sock.fileno(), select.EPOLLIN)
    length: int | None = None
    remaining, outstanding = requests, 0
    started = time.perf_counter()
    deadline = started + limit
    try:
        for sock in sockets:
            if remaining:
                sock.send(REQUEST)
                remaining -= 1
                outstanding += 1
        while outstanding:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{outstanding} answers still missing after {limit} s")
            for fd, _ in poller.poll(1.0):
                sock = by_fd[fd]
                data = sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("the server closed a connection")
                buffer = pending[fd]
                buffer += data
                if length is None:
                    length = answer_length(bytes(buffer))
                    if length is None:
                        continue
                while len(buffer) >= length:
                    del buffer[:length]
                    outstanding -= 1
                    if remaining:
                        sock.send(REQUEST)
                        remaining -= 1
                        outstanding += 1
        elapsed = time.perf_counter() - started
    finally:
        poller.close()
        for sock in sockets:
            sock.close()
    ideal = math.ceil(requests / connections) * delay
    return {
        "requests": requests,
        "connections": connections,
        "elapsed": elapsed,
        "ideal": ideal,
        "efficiency": ideal / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--connections", type=int, default=512)
    parser.add_argument("--requests", type=int, default=512 * 20)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--limit", type=float, default=60.0, help="seconds before giving up")
    args = parser.parse_args()
    print(json.dumps(run(args.port, args.connections, args.requests, args.delay, args.limit)))


if __name__ == "__main__":
    main()
