"""A request an interrupt cuts after its answer arrived keeps what it got (s26 h5 2): its
status and reason, the bytes of its body read so far, as a body cut short by any other failure
has them; its kind and message still say it was interrupted. The summary's byte total counts
those bytes. Before its answer, it has no status and no bytes, as before.

Real processes against a FaultServer: the test waits until every byte the server sent has been
read by fetcher (both sockets' queues empty in /proc/net/tcp) before it sends the signal.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fetcher.output.summary import human_bytes
from tests.conftest import FETCHER, clean_env
from tests.servers import FaultServer, is_pending, read_request, signal_twice, wait_for

SENT = 200_000  # body bytes sent before the server goes quiet
LENGTH = 1_000_000  # what its Content-Length promises
TAIL = 1_000  # a last read smaller than a file's write buffer (st_blksize)


class Answering:
    """A server that answers 200 with the first SENT bytes of a longer body (or, with
    ``answer`` false, says nothing), then holds the connection until the test ends."""

    def __init__(self, answer: bool = True, head: str = "", tail: int = 0) -> None:
        self.answer = answer
        self.head = head  # more header lines, each ending in CRLF
        self.tail = tail  # bytes more, sent once the first SENT were read: a read of their own
        self.sent = threading.Event()
        self.release = threading.Event()
        self.peers: list[tuple[int, int]] = []  # (server's port, client's port) per connection
        self.server = FaultServer(self._behave)

    def _behave(self, conn: socket.socket) -> None:
        read_request(conn)
        if self.answer:
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {LENGTH}\r\n{self.head}\r\n".encode()
            conn.sendall(head + b"x" * SENT)
        self.peers.append((conn.getsockname()[1], conn.getpeername()[1]))
        if self.tail:
            wait_for(self._emptied, "the body's first bytes read by fetcher", 20)
            conn.sendall(b"x" * self.tail)
        self.sent.set()
        self.release.wait(30)

    def all_read(self) -> bool:
        """Whether a connection came and every byte sent on it was read by the client: nothing
        left in the server's send queue nor in the client's receive queue."""
        return self.sent.is_set() and self._emptied()

    def _emptied(self) -> bool:
        if not self.peers:
            return False
        server_port, client_port = self.peers[-1]
        queues = _queues()
        return (
            queues.get((server_port, client_port), (1, 1))[0] == 0
            and queues.get((client_port, server_port), (1, 1))[1] == 0
        )


def _queues() -> dict[tuple[int, int], tuple[int, int]]:
    """(local port, remote port) -> (send queue, receive queue) of every IPv4 TCP socket."""
    found = {}
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        sending, receiving = (int(queue, 16) for queue in fields[4].split(":"))
        found[(local, remote)] = (sending, receiving)
    return found


@contextlib.contextmanager
def answering(answer: bool = True, head: str = "", tail: int = 0) -> Iterator[Answering]:
    running = Answering(answer, head, tail)
    with running.server:
        try:
            yield running
        finally:
            running.release.set()


def interrupted(tmp_path: Path, args: list[str], ready: Any, twice: bool) -> tuple[int, str]:
    """Run fetcher with args, SIGINT it (twice: a hard stop) once ready() holds; return its
    exit status and its stderr. Its stdout is tmp_path/stdout."""
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([*FETCHER, *args], stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err, env=clean_env())  # fmt: skip
    with process:
        try:
            wait_for(ready, "the answer's bytes read by fetcher", 20)
            if twice:
                signal_twice(process, signal.SIGINT)
            else:
                process.send_signal(signal.SIGINT)
                wait_for(lambda: not is_pending(process.pid, signal.SIGINT), "SIGINT delivered")
            returncode = process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return returncode, stderr.read_text()


def the_record(tmp_path: Path) -> dict[str, Any]:
    lines = (tmp_path / "stdout").read_text().splitlines()
    assert len(lines) == 1, lines
    record: dict[str, Any] = json.loads(lines[0])
    return record


@pytest.mark.parametrize(
    ("twice", "processes"),
    [(False, []), (True, []), (False, ["--processes", "2"])],
    ids=["grace-ends", "hard-stop", "processes"],
)
def test_an_answer_cut_by_an_interrupt_keeps_its_status_and_bytes(tmp_path, twice, processes):
    with answering() as server:
        url = server.server.url("/big")
        args = ["--format", "jsonl", "-j", "2", *processes, url]
        status, stderr = interrupted(tmp_path, args, server.all_read, twice)
    assert status == 130, stderr
    record = the_record(tmp_path)
    assert (record["status"], record["bytes"]) == (200, SENT), record
    assert record["reason"] == "OK" and record["elapsed"] > 0, record
    assert record["error"]["kind"] == "other", record
    assert record["error"]["message"].startswith("interrupted before it finished"), record
    if not twice:  # a hard stop prints no summary
        assert f"0 ok, 0 failed, {human_bytes(SENT)}," in stderr, stderr


def test_a_request_interrupted_before_its_answer_has_no_status_nor_bytes(tmp_path):
    with answering(answer=False) as server:
        args = ["--format", "jsonl", server.server.url("/quiet")]
        status, stderr = interrupted(tmp_path, args, lambda: bool(server.peers), False)
    assert status == 130, stderr
    record = the_record(tmp_path)
    assert (record["status"], record["reason"], record["bytes"]) == (None, None, 0), record
    assert record["error"]["kind"] == "other", record


@pytest.mark.parametrize(
    ("twice", "processes"),
    [(False, []), (True, []), (False, ["--processes", "2"])],
    ids=["grace-ends", "hard-stop", "processes"],
)
def test_an_answer_cut_by_an_interrupt_under_continue_counts_the_bytes_its_file_keeps(
    tmp_path, twice, processes
):
    """Under --continue the body's partial file is kept, and its record's bytes are what that
    file holds: they were the bytes read (s26 h5 2), of which the last chunk, read and not yet
    written, or written into a buffer that the exit never flushed, was not in the file (up to
    3 KiB short of a MiB the record claimed: s27 f1 2). The row names the file, from the URL
    the record's final_url says (partial_url: a failure's row has no final_url of a body)."""
    out, state = tmp_path / "out", tmp_path / "s.db"
    with answering(head='ETag: "v1"\r\n', tail=TAIL) as server:
        url = server.server.url("/big")
        args = ["--format", "jsonl", "-j", "2", "-o", str(out), "--state", str(state),
                "--continue", *processes, url]  # fmt: skip
        status, stderr = interrupted(tmp_path, args, server.all_read, twice)
    assert status == 130, stderr
    record = the_record(tmp_path)
    [kept] = list(out.rglob(".fetcher-*"))
    assert record["bytes"] == kept.stat().st_size > 0, record
    assert kept.read_bytes() == b"x" * record["bytes"]
    with sqlite3.connect(state) as db:
        [row] = db.execute("SELECT partial, partial_url FROM urls").fetchall()
    db.close()
    assert row == (str(kept), record["final_url"]), (row, record)
