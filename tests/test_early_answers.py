"""An upload the server answers before it has read it all (s23 h3 3): a 413 or a 401 sent right
after the request's head, the body then left unread, the connection kept open, half-closed or
reset. The record carries that answer, at once, not a timeout after --connect-timeout; it is
not retried (a 4xx), and the connection the body was cut on is not reused.

An interim answer (100 Continue) or a 2xx during the upload does not cut it: the server reads
on, and gets the whole body. Each server is a plain socket on 127.0.0.1; the 32 MiB body is
more than the kernel's buffers on both sides take, so a send that nobody reads blocks.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_process
from tests.servers import FaultServer, read_request, reset

MIB = 1 << 20
UPLOAD_SIZE = 32 * MIB
LIFETIME = 15.0  # a holding server thread ends with the test, or after this

TOO_LARGE = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large"
UNAUTHORIZED = (
    b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="up"\r\n'
    b"Content-Length: 12\r\n\r\nunauthorized"
)


def body_length(head: bytes) -> int:
    return int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])


def take_body(conn: socket.socket, head: bytes) -> str:
    """Read the rest of the body whose head (and first bytes) is head; its sha256."""
    digest = hashlib.sha256(head.split(b"\r\n\r\n", 1)[1])
    left = body_length(head) - len(head.split(b"\r\n\r\n", 1)[1])
    while left > 0 and (chunk := conn.recv(min(left, MIB))):
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


class UploadServer(FaultServer):
    """A FaultServer whose paths /take... read the whole body and answer 200 with its sha256
    (kept alive); any other path is answered by early(conn), the body unread."""

    def __init__(self, early: Callable[[socket.socket], None]) -> None:
        super().__init__(self.serve)
        self.early = early
        self.taken: list[str] = []  # the sha256 of each body /take read

    def serve(self, conn: socket.socket) -> None:
        while head := read_request(conn):
            if b" /take" not in head.split(b"\r\n", 1)[0]:
                self.early(conn)
                return
            self.taken.append(take_body(conn, head))
            answer = self.taken[-1].encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + answer)


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    """Set when the test ends: the servers' holding threads return."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def upload(tmp_path: Path) -> tuple[Path, str]:
    """A 32 MiB file of zeros (not held in the test's memory) and its sha256."""
    path = tmp_path / "upload.bin"
    with path.open("wb") as file:
        file.truncate(UPLOAD_SIZE)
    digest = hashlib.sha256()
    block = bytes(MIB)
    for _ in range(UPLOAD_SIZE // MIB):
        digest.update(block)
    return path, digest.hexdigest()


def by_url(output: bytes) -> dict[str, dict[str, Any]]:
    return {record["url"]: record for record in map(json.loads, output.decode().splitlines())}


def answer_then(answer: bytes, end: str, stop: threading.Event) -> Callable[[socket.socket], None]:
    """Answer at once, read nothing, then: hold the connection open (hold), half-close it (a
    FIN, the socket kept: shut) or reset it (an RST: reset)."""

    def early(conn: socket.socket) -> None:
        conn.sendall(answer)
        if end == "reset":
            reset(conn)
            return
        if end == "shut":
            conn.shutdown(socket.SHUT_WR)
        stop.wait(LIFETIME)

    return early


EARLY = {
    "413-hold": (TOO_LARGE, "hold", 413),
    "401-hold": (UNAUTHORIZED, "hold", 401),
    "413-shut": (TOO_LARGE, "shut", 413),
    "413-reset": (TOO_LARGE, "reset", 413),
}


@pytest.mark.parametrize("answer, end, status", EARLY.values(), ids=EARLY.keys())
def test_an_answer_before_the_upload_is_read_is_the_record_at_once_and_not_retried(
    answer: bytes, end: str, status: int, stop: threading.Event, upload: tuple[Path, str]
) -> None:
    """A PUT (idempotent: retried on a timeout) with retries allowed and a long
    --connect-timeout: the server's answer, in far less than that timeout, one attempt. The
    next two URLs, on the same server with -j 1, get a connection of their own (kept alive
    from one to the other) and their whole body."""
    path, digest = upload
    with UploadServer(answer_then(answer, end, stop)) as server:
        early, take, again = server.url("/early"), server.url("/take"), server.url("/take2")
        args = ["--format", "jsonl", "-j", "1", "--connect-timeout", "10", "--backoff", "0"]
        done = run_process([*args, "-X", "PUT", "-d", f"@{path}", early, take, again])
        records = by_url(done.stdout)
        assert server.connections == 2, "cut connection reused, or the next not kept alive"
    record = records[early]
    assert (record["status"], record["ok"], record["attempts"]) == (status, False, 1), record
    assert record["elapsed"] < 5, record
    assert records[take]["ok"] is True and records[again]["ok"] is True, records
    assert server.taken == [digest, digest]
    assert done.returncode == 1, done.stderr


def interim_then_take(interim: bytes, taken: list[str]) -> Callable[[socket.socket], None]:
    """Send interim at once, then read the whole body (its sha256 into taken) and answer."""

    def behaviour(conn: socket.socket) -> None:
        head = read_request(conn)
        conn.sendall(interim)
        taken.append(take_body(conn, head))
        if not interim.startswith(b"HTTP/1.1 2"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ntaken")

    return behaviour


INTERIM = {
    "100-continue": b"HTTP/1.1 100 Continue\r\n\r\n",
    "200-early": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ntaken",
}


@pytest.mark.parametrize("interim", INTERIM.values(), ids=INTERIM.keys())
def test_a_100_or_a_2xx_during_the_upload_does_not_cut_it(
    interim: bytes, upload: tuple[Path, str]
) -> None:
    """curl's rule: only a final answer of 300 or more stops the sending; a server that says
    100 Continue, or 200 before it reads on, gets the whole body."""
    path, digest = upload
    taken: list[str] = []
    with FaultServer(interim_then_take(interim, taken)) as server:
        args = ["--format", "jsonl", "--retries", "0", "-d", f"@{path}", server.url()]
        done = run_process(args)
    [record] = by_url(done.stdout).values()
    assert (record["ok"], record["status"], record["bytes"]) == (True, 200, 5), record
    assert taken == [digest]
