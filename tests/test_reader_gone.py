"""``fetcher ... | head -1``: the requests the run abandons itself once its reader has gone are
"not finished" in the summary, never "failed"; a closed standard output exits 141, whether
it is noticed mid-run or at the last flush (spec 2.4, 2.5; docs/choices.md); and under --state
only a record its reader took whole leaves its row (docs/state.md)."""

import fcntl
import json
import os
import shlex
import sqlite3
import subprocess
import termios
import threading
from pathlib import Path

import pytest

from tests.conftest import FETCHER, clean_env, start_on_a_pipe
from tests.servers import Route, counting_server, default_route, records, wait_for

NOISE = ("Traceback", "BrokenPipeError", "Exception ignored")


def pipeline(command: list[str], reader: str) -> subprocess.CompletedProcess[str]:
    """`command | reader` under bash with pipefail: the status is fetcher's unless reader fails."""
    line = f"set -o pipefail; {shlex.join(command)} | {reader}"
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60,
                          env=clean_env(), check=False)  # fmt: skip


def test_requests_abandoned_after_head_exits_are_not_finished_not_failed(tmp_path):
    """The first record reaches head, which exits; the run finds the pipe closed (at the
    next record, or by the writer's idle check, whichever comes first: the medium request may
    end either way) while three slow requests are in flight, stops at once and abandons them."""
    summary = tmp_path / "summary.json"
    with counting_server() as server:
        urls = [server.url("/fast"), server.url("/slow/0.5/medium")]
        urls += [server.url(f"/slow/8/{n}") for n in range(3)]
        command = [*FETCHER, "-j", "8", "--summary", str(summary), *urls]
        result = pipeline(command, "head -1")
    assert result.returncode == 141, result.stderr
    assert result.stdout.startswith("200\t")
    data = json.loads(summary.read_text())
    ok, not_finished = data["ok"], data["not_finished"]
    assert data["failed"] == 0 and ok in (1, 2) and ok + not_finished == 5, data
    assert data["total"] == 5 and data["by_kind"] == {} and data["by_host"] == {}
    assert data["interrupted_by"] == "a closed standard output"
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"fetcher: {ok} ok, 0 failed"), result.stderr
    assert f"  not finished: {not_finished}" in lines
    assert not any(noise in result.stderr for noise in NOISE), result.stderr


def test_a_reader_gone_before_the_last_flush_exits_141(tmp_path):
    """Every URL fetched, but the records met a closed pipe at the end: 141, as `cat FILE`
    killed by SIGPIPE, not 0 (the records were lost)."""
    with counting_server() as server:
        result = pipeline([*FETCHER, "-q", server.url("/a")], "(exec 0<&-; sleep 1)")
    assert result.returncode == 141, result.stderr
    assert not any(noise in result.stderr for noise in NOISE), result.stderr


EXECUTORS = [
    pytest.param(["-j", "2"], id="threads"),
    pytest.param(["--processes", "2"], id="processes"),  # the parent owns the state
]
PIPE_HOLDS = 4096  # bytes: the least a pipe can hold (F_SETPIPE_SZ)
PAD = "?pad=" + "p" * 6000  # a URL whose record is larger than such a pipe holds


def ok_rows(state: Path) -> dict[str, bytes]:
    """The URLs the state says were fetched ok, with the sha256 it keeps for each."""
    with sqlite3.connect(state) as db:
        return dict(db.execute("SELECT url, sha256 FROM urls WHERE ok = 1").fetchall())


def start_on_a_small_pipe(command: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """command with its standard output on a pipe that holds PIPE_HOLDS bytes: a record of
    a PAD URL never fits whole; and the pipe's read end."""
    return start_on_a_pipe(command, holds=PIPE_HOLDS)


def read_up_to(reader: int, count: int, end: bytes = b"") -> bytes:
    """count bytes from reader, or fewer up to and with end: no byte more, so that what the
    writer wrote after them stays unread."""
    taken = b""
    while len(taken) < count and not (end and taken.endswith(end)):
        piece = os.read(reader, 1 if end else count - len(taken))
        assert piece, f"the output ended after {taken!r}"
        taken += piece
    return taken


def in_pipe(reader: int) -> int:
    """The bytes waiting in a pipe, from its read end (FIONREAD)."""
    count = bytearray(4)
    fcntl.ioctl(reader, termios.FIONREAD, count)
    return int.from_bytes(count, "little")


def finish(process: subprocess.Popen[bytes]) -> str:
    """Its standard error, once it has exited (killed if not within 30 s)."""
    try:
        return process.communicate(timeout=30)[1].decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_under_state_a_record_its_reader_never_took_whole_leaves_no_ok_row(tmp_path, executor):
    """`| head -c 1000` took less than the first record; yet the state said fetched ok, with
    the new sha256, for it and the results after it, and the next run said "changed": false:
    the change reported never (s23 h1 1). Only a record taken whole is reported."""
    state = tmp_path / "s.db"
    with counting_server() as server:
        urls = [server.url(f"/{n}{PAD}") for n in range(8)]
        command = [*FETCHER, *executor, "-q", "--state", str(state), "--format", "jsonl", *urls]
        process, reader = start_on_a_small_pipe(command)
        try:
            read_up_to(reader, 1000)
        finally:
            os.close(reader)
        stderr = finish(process)
        assert process.returncode == 141, stderr
        assert ok_rows(state) == {}
        again = pipeline([*FETCHER, "--state", str(state), "--format", "jsonl", *urls], "cat")
    assert again.returncode == 0, again.stderr
    assert [record["changed"] for record in records(again.stdout)] == [True] * len(urls)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_under_state_a_record_taken_whole_before_the_reader_left_keeps_its_row(tmp_path, executor):
    """The reader takes the first record whole, then goes away while the second, larger than
    the pipe holds, is being written: the first is reported (its row stays), the second not."""
    state, gate = tmp_path / "s.db", threading.Event()

    def route(path: str) -> Route:
        if path.startswith("/second"):
            gate.wait(30)  # until the first record was read
        return default_route(path)

    with counting_server(route) as server:
        urls = [server.url("/first"), server.url(f"/second{PAD}")]
        command = [*FETCHER, *executor, "-q", "--state", str(state), "--format", "jsonl", *urls]
        process, reader = start_on_a_small_pipe(command)
        try:
            first = json.loads(read_up_to(reader, 1 << 20, end=b"\n"))
            gate.set()
            wait_for(lambda: in_pipe(reader) > PIPE_HOLDS // 2, "the second record's writing")
        finally:
            gate.set()
            os.close(reader)  # in the middle of the second record
        stderr = finish(process)
    assert process.returncode == 141, stderr
    assert first["url"] == urls[0] and first["changed"] is True
    assert ok_rows(state) == {urls[0]: bytes.fromhex(first["sha256"])}


def test_under_state_a_body_its_reader_never_took_whole_leaves_no_ok_row(tmp_path):
    """--body: the state took the result as ok before its body met the closed pipe; its
    record said io, "body not written whole", and its line went to --failed, whose retry then
    said "changed": false for a body never delivered."""
    state, results = tmp_path / "s.db", tmp_path / "r.jsonl"

    def big(path: str) -> Route:  # a body larger than a pipe holds
        return 200, {"Content-Type": "text/plain"}, path.encode() * 40_000, 0.0

    with counting_server(big) as server:
        urls = [server.url(f"/big/{n}") for n in range(4)]
        command = [*FETCHER, "-j", "2", "--state", str(state), "--body", "--results",
                   str(results), "--format", "jsonl", *urls]  # fmt: skip
        result = pipeline(command, "head -c 1000 >/dev/null")
    assert result.returncode == 141, result.stderr
    assert not any(record["ok"] for record in records(results.read_text()))
    assert ok_rows(state) == {}
