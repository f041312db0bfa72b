"""Under --state, a record on a pipe counts as reported only once its reader has taken it whole:
one still in the pipe's buffer when the reader leaves (`| head -c 1000`) leaves no row, so the
next run reports its change (docs/state.md; s23 r4 2). A reader that stays is waited for, a
short while, at the end; then what it has not read yet counts as taken."""

import os
import sqlite3
import subprocess
import threading
from hashlib import sha256
from pathlib import Path

import pytest

from tests.conftest import FETCHER, clean_env
from tests.servers import Route, counting_server, records, wait_for

EXECUTORS = [
    pytest.param(["-j", "4"], id="threads"),
    pytest.param(["--processes", "2"], id="processes"),  # the parent owns the state
]
URLS = 30  # records of some 330 bytes: all fit in a pipe's buffer together


def rows(state: Path) -> dict[str, str]:
    """Each URL the state says was fetched ok, with the sha256 (hex) of its body."""
    with sqlite3.connect(state) as db:
        found = db.execute("SELECT url, sha256 FROM urls WHERE ok = 1").fetchall()
    return {url: digest.hex() for url, digest in found}


def start_on_a_pipe(command: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """command with its standard output on a pipe; and the pipe's read end, for the test."""
    reader, writer = os.pipe()
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=writer,
                                   stderr=subprocess.PIPE, env=clean_env())  # fmt: skip
    except BaseException:
        os.close(reader)
        raise
    finally:
        os.close(writer)
    return process, reader


def in_pipe(reader: int) -> int:
    """The bytes waiting in the pipe (FIONREAD on its read end)."""
    import fcntl
    import termios

    count = bytearray(4)
    fcntl.ioctl(reader, termios.FIONREAD, count)
    return int.from_bytes(count, "little")


def read_exactly(reader: int, count: int) -> bytes:
    """count bytes from reader, no more: what follows stays in the pipe."""
    taken = b""
    while len(taken) < count:
        piece = os.read(reader, count - len(taken))
        assert piece, f"the output ended after {taken!r}"
        taken += piece
    return taken


def finish(process: subprocess.Popen[bytes]) -> str:
    try:
        return process.communicate(timeout=30)[1].decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_to_the_end(command: list[str]) -> list[dict[str, object]]:
    result = subprocess.run(command, capture_output=True, env=clean_env(), timeout=60,
                            stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return records(result.stdout)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_records_left_in_the_pipe_when_its_reader_goes_leave_their_rows_as_they_were(
    tmp_path, executor
):
    """Every body changed; the reader takes 1,000 bytes of the records sitting in the pipe and
    goes (as `head -c 1000`), while a last URL is still being fetched. Only the records it took
    whole are reported: the rows of the others keep the old body, and the next run says they
    changed. Before, every record the pipe had taken was committed as reported."""
    state, version, gate = tmp_path / "s.db", [1], threading.Event()

    def route(path: str) -> Route:
        if path.startswith("/last"):
            gate.wait(30)  # until the reader has gone
        return 200, {"Content-Type": "text/plain"}, f"v{version[0]} {path}".encode(), 0.0

    with counting_server(route) as server:
        urls = [server.url(f"/{n}") for n in range(URLS)]
        base = [*FETCHER, *executor, "-q", "--state", str(state), "--format", "jsonl"]
        run_to_the_end([*base, *urls])  # every row says v1
        version[0] = 2
        process, reader = start_on_a_pipe([*base, *urls, server.url("/last")])
        try:
            wait_for(lambda: in_pipe(reader) >= 3000, "records in the pipe")
            taken = read_exactly(reader, 1000)
        finally:
            os.close(reader)
            gate.set()
        stderr = finish(process)
        assert process.returncode == 141, stderr
        whole = {str(record["url"]) for record in records(taken[: taken.rindex(b"\n") + 1])}
        assert whole and len(whole) < URLS
        new = {url: sha256(f"v2 {url[len(server.url()) - 1 :]}".encode()).hexdigest()
               for url in urls}  # fmt: skip
        found = rows(state)
        assert {url for url in urls if found[url] == new[url]} == whole
        assert set(found) == set(urls)  # the others keep their v1 rows; /last has none
        again = run_to_the_end([*base, *urls])
    changed = {str(record["url"]) for record in again if record["changed"]}
    assert changed == set(urls) - whole


def test_a_reader_that_stays_is_waited_for_then_every_row_is_kept(tmp_path):
    """The run is over while its records still sit in the pipe, unread: the reader is still
    there and will read them, so they count as taken once the short wait is over; exit 0."""
    state = tmp_path / "s.db"
    with counting_server() as server:
        urls = [server.url(f"/{n}") for n in range(URLS)]
        command = [*FETCHER, "-j", "4", "-q", "--state", str(state), "--format", "jsonl", *urls]
        process, reader = start_on_a_pipe(command)
        try:
            stderr = finish(process)  # nothing read until it has exited
            output = b""
            while piece := os.read(reader, 1 << 16):
                output += piece
        finally:
            os.close(reader)
    assert process.returncode == 0, stderr
    assert {str(record["url"]) for record in records(output)} == set(urls)
    assert set(rows(state)) == set(urls)


def test_pending_rows_are_written_as_far_as_the_reader_has_read():
    """The rows of a record wait until the reader has read past its last byte, those of no
    record (a partial file begun) wait for none; a reader gone drops the results of the
    records it did not read, and keeps those it did."""
    from fetcher.state.writes import PendingWrites, Statement

    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (n)")
    insert, partial = Statement("INSERT INTO t", 1, ""), Statement("INSERT INTO t", 1, "", False)
    pending = PendingWrites()
    for n, end in ((1, 100), (2, 250), (3, 400)):  # a record's row, then its end in the pipe
        pending.add(insert, (n,))
        pending.mark(end)
    pending.add(partial, (30,))
    pending.write(db, upto=249)  # the second record is cut
    assert db.execute("SELECT n FROM t").fetchall() == [(1,), (30,)]
    assert len(pending) == pending.held == 2
    pending.write(db, upto=250)
    assert db.execute("SELECT n FROM t").fetchall() == [(1,), (30,), (2,)]
    pending.add(insert, (4,))
    pending.mark(500)
    pending.drop(insert, upto=450)  # gone, having read the third record, not the fourth
    pending.write(db)
    assert db.execute("SELECT n FROM t").fetchall() == [(1,), (30,), (2,), (3,)]
