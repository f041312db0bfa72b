"""Under --state, a record on a pipe counts as reported only once its reader has taken it whole:
one still in the pipe's buffer when the reader leaves (`| head -c 1000`) leaves no row, so the
next run reports its change (docs/state.md; s23 r4 2). A reader that stays is waited for at the
end while it reads; what it has not read when it stops reading, or goes, leaves no row either."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pytest

from fetcher.input.jobs import Job
from fetcher.output.collector import Collector
from fetcher.output.writers import StreamWriter
from fetcher.results import Result, Summary
from tests.conftest import FETCHER, clean_env, start_on_a_pipe
from tests.servers import Route, counting_server, records, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed import ReadableBuffer

    from fetcher.state.store import State

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


def versioned(version: list[int]) -> Callable[[str], Route]:
    """A route answering each path with a body of the version now in version[0]."""

    def route(path: str) -> Route:
        return 200, {"Content-Type": "text/plain"}, f"v{version[0]} {path}".encode(), 0.0

    return route


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
            wait_for(lambda: in_pipe(reader) >= 3000, "records in the pipe", timeout=60)
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


def test_a_reader_that_stays_but_stops_reading_leaves_no_row_of_what_it_did_not_read(tmp_path):
    """Every body changed; the reader takes 1,000 bytes and then reads nothing while fetcher
    ends, its end of the pipe still open (`{ head -c 1000; sleep 3; }`, a `| less` not paged
    on). Once it has read nothing for a while the run ends, exit 0, and the rows of the records
    it did not read whole are dropped: the next run reports their change again (s24 r3 3:
    they were committed as reported, 28 of 30 changes never reported)."""
    state, version = tmp_path / "s.db", [1]

    with counting_server(versioned(version)) as server:
        urls = [server.url(f"/{n}") for n in range(URLS)]
        base = [*FETCHER, "-j", "4", "-q", "--state", str(state), "--format", "jsonl"]
        run_to_the_end([*base, *urls])  # every row says v1
        version[0] = 2
        process, reader = start_on_a_pipe([*base, *urls])
        try:
            wait_for(lambda: in_pipe(reader) >= 3000, "records in the pipe")
            taken = read_exactly(reader, 1000)
            stderr = finish(process)  # the reader is still there, reading nothing
            rest = b""
            while piece := os.read(reader, 1 << 16):
                rest += piece
        finally:
            os.close(reader)
        assert process.returncode == 0, stderr
        assert "not read by" not in stderr  # -q: said with the summary, not without it
        assert {str(record["url"]) for record in records(taken + rest)} == set(urls)
        whole = {str(record["url"]) for record in records(taken[: taken.rindex(b"\n") + 1])}
        new = {url: sha256(f"v2 {url[len(server.url()) - 1 :]}".encode()).hexdigest()
               for url in urls}  # fmt: skip
        found = rows(state)
        assert {url for url in urls if found[url] == new[url]} == whole
        again = run_to_the_end([*base, *urls])
    changed = {str(record["url"]) for record in again if record["changed"]}
    assert changed == set(urls) - whole


def test_a_reader_still_reading_at_the_end_is_waited_for_while_it_reads():
    """The end of a run waits for a reader that is still reading past the time it may read
    nothing (idle), as long as it goes on taking bytes: a slow `| jq` gets its records
    counted as read, not dropped. A reader that has read nothing yet may start late: it is
    waited for up to most, not idle (s24 r8 4); one that read and stopped, idle only."""
    from fetcher.output.pipes import PipeLedger, unread

    reader, writer = os.pipe()

    def read_slowly() -> None:
        while os.read(reader, 1000):
            time.sleep(0.01)  # a slow reader's pace, not a synchronisation

    thread = threading.Thread(target=read_slowly)
    try:
        os.set_blocking(writer, False)
        ledger = PipeLedger(writer)
        ledger.in_pipe = os.write(writer, b"x" * 60_000)
        began = time.monotonic()
        ledger.drain(idle=0.05, most=0.5)  # no one reads yet
        assert time.monotonic() - began >= 0.5 and unread(writer) == 60_000
        ledger.in_pipe += 1  # as if it had read one byte: a reader that stopped reading
        began = time.monotonic()
        ledger.drain(idle=0.05, most=5.0)
        assert time.monotonic() - began < 1.0
        ledger.in_pipe -= 1
        thread.start()
        began = time.monotonic()
        ledger.drain(idle=0.3, most=30.0)
        assert unread(writer) == 0 and ledger.taken() == 60_000
        assert time.monotonic() - began > 0.3  # longer than the reader may read nothing
    finally:
        os.close(writer)
        if thread.is_alive():
            thread.join(10)
        os.close(reader)


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


def test_a_record_that_adds_no_row_leaves_no_mark(tmp_path):
    """20,000 URLs skipped as fresh (a synthetic state, as the bench's) written to a pipe that
    a reader empties: none adds a row, so none needs a mark. Each kept one for good (no row
    pending, no commit looked at them): 100 B a URL, +100 MB for the SPEC's million (s24 r3
    1). Rows of records read are let go with their marks at each commit."""
    from fetcher.state.store import State
    from tests.test_bench_state import state_files

    path, listing = tmp_path / "s.db", tmp_path / "urls.txt"
    count = 20_000
    pairs = ((f"http://127.0.0.1:9/f/{n}", f"out/f/{n}") for n in range(count))
    state_files().synthetic_state(path, listing, pairs)
    state = State(str(path))
    collector, reader, drained = piped_collector(state)
    most = 0
    try:
        for n, url in enumerate(listing.read_text().split()):
            collector.on_result(Result.fresh(job(n, url), "00" * 32, f"out/f/{n}"))
            most = max(most, len(state._pending.marks))
            if n % 1000 == 999:
                collector.on_idle()
                most = max(most, len(state._pending.marks))
        collector.on_result(ok(count, "http://127.0.0.1:9/changed"))  # a row, and its mark
        marked = len(state._pending.marks)
    finally:
        collector.close_writer()  # the pipe's end, for the reading thread
        drained.join(30)
        os.close(reader)
        state.close()
    assert (most, marked) == (0, 1)
    assert len(state._pending.marks) == 0
    assert set(rows(path)) >= {"http://127.0.0.1:9/changed"}


def test_a_reader_gone_during_the_end_s_wait_leaving_records_unread_is_a_reader_gone(tmp_path):
    """The run is over, every record in the pipe; its reader took one byte and leaves while
    fetcher waits for it to read (``PipeLedger.drain``). Its records it never read are lost as
    surely as those of a reader gone mid-run: their rows are dropped, their ok results are not
    finished, and the exit is 141 (s32 r1 1: the summary, --summary and --metrics counted them
    ok beside stderr's "2 records were not read"; s24 r3 4 had made it no 141, when a reader's
    unread ok records still counted ok)."""
    from fetcher.state.store import State

    state = State(str(tmp_path / "s.db"))
    collector, reader, _ = piped_collector(state, drain=False)
    closer = threading.Thread(target=collector.close_writer)
    try:
        collector.on_result(ok(1))
        collector.on_result(ok(2))
        collector.on_idle()  # in the pipe, not read: no row yet
        assert rows(tmp_path / "s.db") == {}
        read_exactly(reader, 1)
        closer.start()
        wait_for(lambda: in_a_call(closer, "drain"), "the end's wait for the reader")
    finally:
        os.close(reader)
        closer.join(10)
        state.close()
    assert not closer.is_alive()
    assert collector.reader_gone and collector.write_error is None
    assert (collector.summary.ok, collector.summary.not_finished) == (0, 2)
    assert rows(tmp_path / "s.db") == {}


@pytest.mark.parametrize(
    ("options", "takes"),
    [
        pytest.param(["--format", "jsonl", "--state", "s.db"], 450, id="records-state"),
        pytest.param(["--format", "jsonl"], 450, id="records"),
        pytest.param(["--body", "--results", "r.jsonl"], 25, id="bodies"),
    ],
)
def test_what_a_reader_gone_at_the_end_never_read_is_not_finished(tmp_path, options, takes):
    """s32 r1 1: `fetcher --state S ... | { sleep 2; head -c N; }`, the reader gone while
    fetcher waited for it at the end: what it never read was counted ok in the summary and
    --summary, exit 0, beside stderr's "8 records were not read". Those records are not
    finished, the exit 141, as when the reader goes before the last flush. Without --state
    the end waits for the reader too, a second at most (s34 r2 5: `--body ... | head -c
    119999` of 120 bodies of 1000 bytes left one unread, and it was ok, exit 0, no line in
    --failed)."""
    summary, failed, said_so_far = tmp_path / "s.json", tmp_path / "f.txt", bytearray()
    options = [str(tmp_path / o) if o.endswith((".db", ".jsonl")) else o for o in options]
    with counting_server() as server:
        urls = [server.url(f"/{n}") for n in range(10)]
        process, reader = start_on_a_pipe([*FETCHER, "-v", "--no-progress", *options,
                                           "--summary", str(summary), "--failed", str(failed),
                                           *urls])  # fmt: skip
        assert process.stderr is not None
        err = process.stderr.fileno()
        stderr = threading.Thread(
            target=lambda: [said_so_far.extend(c) for c in iter(lambda: os.read(err, 4096), b"")]
        )
        stderr.start()
        try:
            taken = read_exactly(reader, 10)  # a reader that reads (s35 t7 2: one that has
            # read nothing yet is not waited for without --state)
            wait_for(lambda: b"waiting for the reader of standard output" in said_so_far,
                     "the end's wait for the reader")  # fmt: skip
            taken += read_exactly(reader, takes - 10)
        finally:
            os.close(reader)
            stderr.join(30)
            finish(process)
    said = json.loads(summary.read_text())
    read = taken.count(b"\n")
    assert process.returncode == said["exit_status"] == 141, said
    assert (said["ok"], said["not_finished"]) == (read, 10 - read), said
    assert len(failed.read_text().splitlines()) == 10 - read


def test_without_state_a_reader_that_has_read_nothing_is_not_waited_for():
    """s35 t7 2: a script that reads fetcher's output once it has ended (Popen, wait, read)
    waited a second more at each run for the end's wait for a reader that read nothing."""
    with counting_server() as server:
        process, reader = start_on_a_pipe([*FETCHER, "-v", "--no-progress", server.url("/a")])
        try:
            said = finish(process)
        finally:
            os.close(reader)
    assert process.returncode == 0, said
    assert "waiting for the reader" not in said, said


def test_a_reader_gone_by_the_close_without_state_leaves_its_records_not_finished():
    """Without --state nothing waits for the reader; one already gone as the records' output
    is closed, records left unread in the pipe, is gone as under --state."""
    collector, reader, _ = piped_collector(None, drain=False)
    collector.on_result(ok(1))
    collector.on_result(ok(2))
    collector.on_idle()
    os.close(reader)
    collector.close_writer()
    assert collector.reader_gone
    assert (collector.summary.ok, collector.summary.not_finished) == (0, 2)


@pytest.mark.parametrize("with_state", [False, True], ids=["no-state", "state"])
@pytest.mark.parametrize("reader_goes", [True, False], ids=["killed", "stays"])
def test_a_reader_a_stop_kills_during_the_end_s_wait_leaves_its_records_not_finished(
    tmp_path, with_state, reader_goes
):
    """s35 t7 1: Ctrl-C on a pipeline as fetcher waited for its reader at the end: the stop
    cut the wait at once, and what the pipe still held counted as read, the reader killed by
    the same Ctrl-C not gone yet: 37 of 40 records never read, ok, not in --failed. After a
    stop the end still waits a moment for a reader to go. One that stays (sent no signal:
    `timeout`, kill PID) counts as having read them, as without a stop (s35 r4 5)."""
    from fetcher.state.store import State

    state = State(str(tmp_path / "s.db")) if with_state else None
    collector, reader, _ = piped_collector(state, drain=False)
    closer = threading.Thread(target=collector.close_writer, args=(lambda: True,))
    try:
        collector.on_result(ok(1))
        collector.on_result(ok(2))
        collector.on_idle()
        read_exactly(reader, 1)  # the reader is still there, and read one byte
        closer.start()
        if reader_goes:
            wait_for(lambda: in_a_call(closer, "drain"), "the stopped end's wait")
            os.close(reader)
        closer.join(10)
    finally:
        if not reader_goes:
            os.close(reader)
        if state is not None:
            state.close()
    assert not closer.is_alive()
    read = 0 if reader_goes else 2
    assert (collector.summary.ok, collector.summary.not_finished) == (read, 2 - read)
    if with_state and reader_goes:
        assert rows(tmp_path / "s.db") == {}


def test_a_body_write_error_keeps_the_rows_of_records_the_results_reader_read(tmp_path):
    """--body to a disk that fills, --results to a pipe: the rows of the records its reader
    has read stay, to be committed, as after the reader's going; the others go (s24 r3 5:
    every held row was dropped, those changes reported twice)."""
    from fetcher.state.store import State

    state = State(str(tmp_path / "s.db"))
    bodies = FillingBodies()
    collector, reader, _ = piped_collector(state, drain=False, bodies=bodies)
    try:
        collector.on_result(ok(1, body=b"one"))
        collector.on_result(ok(2, body=b"two"))
        collector.on_idle()
        read_exactly(reader, in_pipe(reader))  # both records read whole, no commit since
        collector.on_result(ok(3, body=b"three"))  # not even flushed
        bodies.full = True
        collector.on_result(ok(4, body=b"four"))  # ENOSPC: the bodies end, the run stops
        assert collector.bodies is not None and collector.bodies.broken
        collector.close_writer()
    finally:
        os.close(reader)
        state.close()
    assert set(rows(tmp_path / "s.db")) == {"http://h.test/1", "http://h.test/2"}


def test_a_drop_leaves_no_row_held():
    """A record that adds no row adds no mark; after a reader gone drops the rows it did not
    read, none is held for a reader any more: every row left counts toward the batch
    (``held`` was left as it was)."""
    from fetcher.state.writes import PendingWrites, Statement

    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (n)")
    insert = Statement("INSERT INTO t", 1, "")
    pending = PendingWrites()
    for n in range(3):
        pending.add(insert, (n,))
        pending.mark(100 * (n + 1))
    for end in range(301, 306):  # records that add no row need no mark
        pending.mark(end)
    pending.write(db, upto=0)
    assert pending.held == 3 and len(pending.marks) == 3
    pending.drop(insert, upto=100)
    assert len(pending) == 1 and pending.held == 0


# -- helpers of the in-process tests ---------------------------------------------------------


def job(n: int, url: str | None = None) -> Job:
    url = url or f"http://h.test/{n}"
    return Job(seq=n, url=url, target=url, line=n + 1, raw=url.encode())


def ok(n: int, url: str | None = None, body: bytes | None = None) -> Result:
    return Result(job(n, url), ok=True, status=200, bytes=10, sha256=f"{n:064x}",
                  body=None if body is None else io.BytesIO(body))  # fmt: skip


class FillingBodies(io.BytesIO):
    """--body's output on a disk that fills up once ``full`` is set."""

    full = False

    def write(self, data: ReadableBuffer) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def piped_collector(
    state: State | None, drain: bool = True, bodies: BinaryIO | None = None
) -> tuple[Collector, int, threading.Thread]:
    """A collector writing jsonl records to a pipe, under state; the pipe's read end; and a
    thread that reads it to its end (drain), or one that does nothing."""
    from fetcher.output.display import NullDisplay

    reader, writer = os.pipe()
    stream = open(writer, "w", encoding="utf-8")  # noqa: SIM115 - the writer closes it
    records_writer = StreamWriter(stream, "jsonl", close_stream=True, state=True)
    assert records_writer.ledger is not None
    collector = Collector(Summary(), records_writer, NullDisplay(), bodies=bodies, state=state)

    def read_all() -> None:
        while os.read(reader, 1 << 16):
            pass

    thread = threading.Thread(target=read_all if drain else lambda: None)
    thread.start()
    return collector, reader, thread


def in_a_call(thread: threading.Thread, name: str) -> bool:
    """Whether thread is inside a call of a function called name."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == name:
            return True
        frame = frame.f_back
    return False


def test_a_failure_read_late_is_still_in_the_state(tmp_path):
    """A reader that had not read a failure's record when the run ended (`| (sleep 2; cat)`):
    the rows of records it had not read were all dropped, failures too, so --retry-failed
    never saw one and --skip-fresh took the ok row before it as fresh (s24 h6 1). A failure's
    row hides no change: it is kept, here with a reader that leaves without reading (a late
    one is now waited for up to 10 s: test_a_reader_that_starts_reading_late_...)."""
    state = tmp_path / "s.db"
    with counting_server() as server:
        url = server.url("/a")
        base = [*FETCHER, "-q", "--state", str(state), "--format", "jsonl", "--retries", "0"]
        run_to_the_end([*base, url])  # ok
    # The server is gone: a connect failure, its record left unread in the pipe.
    process, reader = start_on_a_pipe([*base, url])
    try:
        wait_for(lambda: in_pipe(reader) > 0, "the failure's record in the pipe", timeout=60)
    finally:
        os.close(reader)  # gone without reading it
    stderr = finish(process)
    assert process.returncode in (3, 141), stderr
    with sqlite3.connect(state) as db:
        [(ok, kind)] = db.execute("SELECT ok, error_kind FROM urls").fetchall()
    db.close()
    assert (ok, kind) == (0, "connect")


SIGNALS = [
    pytest.param(signal.SIGINT, 130, "SIGINT", id="SIGINT"),
    pytest.param(signal.SIGTERM, 143, "SIGTERM", id="SIGTERM"),
]


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize(("signum", "status", "name"), SIGNALS)
def test_a_signal_during_the_end_s_wait_for_the_reader_is_an_interrupt(
    tmp_path, executor, signum, status, name
):
    """Every record is in the pipe, the run is over, and fetcher waits while its slow reader
    reads (``PipeLedger.drain``, which -v says as it begins). A SIGINT or SIGTERM then cuts
    the wait and drops the rows of what the reader has not read: the run was interrupted, and
    says so, 130 or 143 (s24 r8 3: exit 0, and a summary with no "stopped by")."""
    state = tmp_path / "s.db"
    with counting_server() as server:
        urls = [server.url(f"/{n}") for n in range(URLS)]
        command = [*FETCHER, *executor, "-v", "--state", str(state), "--format", "jsonl", *urls]
        process, reader = start_on_a_pipe(command)
        taken, hurry = bytearray(), threading.Event()

        def read_slowly() -> None:  # some 10 KiB at 1 KiB a second: the wait lasts its 10 s
            while piece := os.read(reader, 50):
                taken.extend(piece)
                if not hurry.is_set():
                    time.sleep(0.05)  # a slow reader's pace, not a synchronisation

        thread = threading.Thread(target=read_slowly)
        thread.start()
        try:
            assert process.stderr is not None
            said = b""
            while b"waiting for the reader" not in said:
                line = process.stderr.readline()
                assert line, said.decode()
                said += line
            process.send_signal(signum)
            stderr = said.decode() + finish(process)
        finally:
            hurry.set()
            thread.join(30)
            os.close(reader)
    assert process.returncode == status, stderr
    assert f"stopped by {name}" in stderr
    assert len(records(bytes(taken))) == URLS  # every record was written, if not read in time
    assert len(rows(state)) < URLS  # what it had not read then is not reported


def changed_run(state: Path, server_url: Callable[[str], str], flags: list[str]) -> list[str]:
    """Run the URLs at v1 into state, and return the command that fetches them at v2."""
    urls = [server_url(f"/{n}") for n in range(URLS)]
    base = [*FETCHER, "-j", "4", "--state", str(state), "--format", "jsonl"]
    run_to_the_end([*base, "-q", *urls])  # every row says v1
    return [*base, *flags, *urls]


def test_records_left_unread_at_the_end_are_said_once_on_stderr(tmp_path):
    """The reader takes 1,000 bytes and reads no more while fetcher ends: the rows of the
    records it did not read whole are dropped, and stderr says how many, with the summary
    whose "changed: 30" the state does not keep (s24 r8 4: nothing said so)."""
    state, version = tmp_path / "s.db", [1]

    with counting_server(versioned(version)) as server:
        command = changed_run(state, server.url, [])
        version[0] = 2
        process, reader = start_on_a_pipe(command)
        try:
            wait_for(lambda: in_pipe(reader) >= 3000, "records in the pipe")
            taken = read_exactly(reader, 1000)
            stderr = finish(process)  # the reader is still there, reading nothing
        finally:
            os.close(reader)
    assert process.returncode == 0, stderr
    whole = records(taken[: taken.rindex(b"\n") + 1])
    said = f"{URLS - len(whole)} records were not read by the reader of standard output"
    assert stderr.count(said) == 1, stderr
    assert len(rows(state)) == URLS  # the others keep their v1 rows


def test_a_reader_that_starts_reading_late_has_its_records_counted_as_read(tmp_path):
    """A reader that has read nothing when the run ends may be one that starts late (`| {
    sleep 2; cat; }`, an ssh that reads once its session is open): the end waits for its
    first read up to the 10 s it waits in all, not the second a reader that stopped reading
    gets; read then, the records are reported and their rows committed (s24 r8 4: every
    change of the run was dropped, and reported again by the next). The sleep is the
    reader's lateness, past that second: the wait's beginning is the -v line that says it."""
    state, version = tmp_path / "s.db", [1]

    with counting_server(versioned(version)) as server:
        command = changed_run(state, server.url, ["-v"])
        version[0] = 2
        process, reader = start_on_a_pipe(command)
        try:
            assert process.stderr is not None
            said = b""
            while b"waiting for the reader" not in said:
                line = process.stderr.readline()
                assert line, said.decode()
                said += line
            time.sleep(1.5)  # the reader's lateness (see the docstring)
            taken = b""
            while piece := os.read(reader, 1 << 16):
                taken += piece
            stderr = said.decode() + finish(process)
        finally:
            os.close(reader)
    assert process.returncode == 0, stderr
    assert len(records(taken)) == URLS
    new = {url: sha256(f"v2 {url[len(server.url()) - 1 :]}".encode()).hexdigest()
           for url in command[-URLS:]}  # fmt: skip
    assert rows(state) == new
    assert "not read by the reader" not in stderr


def test_a_socket_reader_that_goes_leaves_the_rows_of_what_it_did_not_read(tmp_path):
    """s38 t5 3: standard output on a socket (socat's EXEC:, systemd's StandardOutput=socket,
    inetd) counted a record taken once its socket's buffer had it: a reader that read 1,000
    bytes and went left every row committed, exit 0, and the next run said unchanged. A
    socket's unread bytes are its output queue (TIOCOUTQ), which Linux counts in whole
    buffers: a record read may count as unread (its change reported twice), never the other
    way."""
    import socket

    state, version = tmp_path / "s.db", [1]

    with counting_server(versioned(version)) as server:
        urls = [server.url(f"/{n}") for n in range(URLS)]
        base = [*FETCHER, "-j", "4", "-q", "--state", str(state), "--format", "jsonl"]
        run_to_the_end([*base, *urls])
        old = rows(state)
        version[0] = 2
        ours, theirs = socket.socketpair()
        process = subprocess.Popen(base + urls, stdin=subprocess.DEVNULL, stdout=theirs,
                                   stderr=subprocess.PIPE, env=clean_env())  # fmt: skip
        theirs.close()
        try:
            wait_for(lambda: server.requests >= 2 * URLS, "the second run's requests", 60)
            ours.settimeout(30)
            taken = b""
            while len(taken) < 1000:
                taken += ours.recv(1000 - len(taken))
        finally:
            ours.close()
        stderr = finish(process)
    assert process.returncode == 141, stderr
    whole = {str(record["url"]) for record in records(taken[: taken.rindex(b"\n") + 1])}
    assert whole and len(whole) < URLS
    after = rows(state)
    assert all(after[url] == old[url] for url in urls if url not in whole), stderr
    assert "were not read by the reader of standard output" not in stderr  # -q
