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
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fetcher.output.summary import human_bytes
from fetcher.settings import DEFAULT_GRACE
from tests.conftest import FETCHER, ROOT, clean_env
from tests.servers import (
    SECOND_AFTER,
    FaultServer,
    is_pending,
    read_request,
    signal_twice,
    wait_for,
)

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


# A write to the partial file that never returns, as on a hung NFS or FUSE mount or a full
# FUSE queue: in every fetcher process (a --processes worker too), once the file holds bytes,
# the next write creates the file HUNG_MARK names and blocks for good.
HUNG_SITE = """\
import os, threading
if os.environ.get("HUNG_MARK"):
    from fetcher.output import bodies
    written = bodies.SavedFile.write
    def write(self, chunk):
        if self.size:
            open(os.environ["HUNG_MARK"], "x").close()
            threading.Event().wait()
        written(self, chunk)
    bodies.SavedFile.write = write
"""
# The end of a first signal's grace, and a margin for a loaded machine (the exit after it
# takes some 0.1 s on an idle one); before s27 f13 1 the run never ended.
GRACE_EXIT = DEFAULT_GRACE + 1.5


def stopped_while_hung(tmp_path: Path, args: list[str], twice: bool) -> tuple[int, float, str]:
    """Run fetcher with args, its body's writes hung once the partial file holds bytes; SIGINT
    it (twice: a hard stop) once a write hangs. Returns its exit status, the seconds from the
    first signal's delivery to its exit, and its stderr."""
    site, mark = tmp_path / "site", tmp_path / "hung"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HUNG_SITE)
    env = clean_env(PYTHONPATH=f"{ROOT}{os.pathsep}{site}", HUNG_MARK=str(mark))
    with (tmp_path / "stdout").open("wb") as out, (tmp_path / "stderr").open("wb") as err:
        process = subprocess.Popen([*FETCHER, *args], stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err, env=env)  # fmt: skip
    with process:
        try:
            wait_for(lambda: mark.exists() or process.poll() is not None, "a write hung", 20)
            assert process.poll() is None, (tmp_path / "stderr").read_text()
            process.send_signal(signal.SIGINT)
            wait_for(lambda: not is_pending(process.pid, signal.SIGINT), "SIGINT delivered")
            delivered = time.monotonic()
            if twice:
                time.sleep(SECOND_AFTER)  # two signals, not one sent twice (signal_twice)
                process.send_signal(signal.SIGINT)
            returncode = process.wait(timeout=20)
            took = time.monotonic() - delivered
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return returncode, took, (tmp_path / "stderr").read_text()


@pytest.mark.parametrize(
    ("twice", "processes"),
    [(False, []), (True, []), (False, ["--processes", "2"])],
    ids=["grace-ends", "hard-stop", "processes"],
)
def test_a_write_that_never_returns_holds_up_no_stop(tmp_path, twice, processes):
    """A worker blocked in a write to its partial file (a hung mount) held the lock the stop's
    cut of that file (BodyOutput.cut) waited for, with no bound: neither the end of the first
    signal's grace nor a second signal ended the run (s27 r3 1). The cut takes the count it
    has, the file is kept as it is, the record says what the file holds, and the line goes to
    --failed."""
    out, failed = tmp_path / "out", tmp_path / "failed.txt"
    with answering(head='ETag: "v1"\r\n') as server:
        url = server.server.url("/big")
        args = ["--format", "jsonl", "-j", "2", "-o", str(out), "--continue",
                "--state", str(tmp_path / "s.db"), "--failed", str(failed), *processes,
                url]  # fmt: skip
        status, took, stderr = stopped_while_hung(tmp_path, args, twice)
    assert status == 130, stderr
    # A second signal's exit comes before the first's grace would have ended the run.
    assert took < (DEFAULT_GRACE if twice else GRACE_EXIT), (took, stderr)
    record = the_record(tmp_path)
    assert record["error"]["message"].startswith("interrupted before it finished"), record
    [kept] = list(out.rglob(".fetcher-*"))
    assert record["bytes"] == kept.stat().st_size > 0, record
    assert failed.read_text() == f"{url}\n"
