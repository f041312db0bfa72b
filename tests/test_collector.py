"""The Collector, the run's one consumer of results: counting, --failed lines, the display, and
what happens when records cannot be written (a full disk, a reader that went away).

Pure objects and real files: /dev/full for a disk that is full, a pipe whose reader is closed
for EPIPE.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import select
import stat
from collections.abc import Iterator
from typing import BinaryIO, TextIO

import pytest

from fetcher.errors import ErrorKind
from fetcher.input.jobs import Job
from fetcher.observer import Observer
from fetcher.output.collector import Collector
from fetcher.output.display import NullDisplay
from fetcher.output.failed import FailedLines
from fetcher.output.writers import NullWriter, RecordWriter, StreamWriter
from fetcher.results import Result, Summary


def job(n: int, header: bytes | None = None) -> Job:
    url = f"http://h{n % 3}.test/{n}"
    return Job(seq=n, url=url, target=url, line=n + 1, raw=f"line {n}".encode(), header=header)


def ok(n: int, body: bytes | None = None) -> Result:
    return Result(job(n), ok=True, status=200, bytes=10 * n,
                  body=None if body is None else io.BytesIO(body))  # fmt: skip


def failed(n: int, kind: ErrorKind = ErrorKind.HTTP) -> Result:
    return Result.failure(job(n), kind, "no", status=500)


class RecordingDisplay(NullDisplay):
    """A NullDisplay that remembers what it was told, and what the summary said at the time."""

    def __init__(self, summary: Summary) -> None:
        self.summary = summary
        self.seen: list[tuple[str, int]] = []  # (url, records counted when it was shown)
        self.total: int | None = None

    def on_result(self, result: Result) -> None:
        self.seen.append((result.url, self.summary.done))

    def on_total(self, count: int) -> None:
        self.total = count


def collector_with(
    writer: RecordWriter,
    failed_path: str | None = None,
    bodies: BinaryIO | None = None,
    records_to: str = "<stdout>",
) -> tuple[Collector, list[str]]:
    """A Collector on writer (and --failed at failed_path); and the messages it reported."""
    reported: list[str] = []
    summary = Summary()
    failed_lines = FailedLines(failed_path) if failed_path else None
    display = RecordingDisplay(summary)
    collector = Collector(summary, writer, display, failed_lines, bodies, records_to,
                          on_write_error=reported.append)  # fmt: skip
    return collector, reported


def committed(collector: Collector) -> bytes:
    assert collector.failed is not None
    collector.failed.commit()
    with open(collector.failed.path, "rb") as file:
        return file.read()


@pytest.fixture
def full_stream() -> Iterator[TextIO]:
    """A text stream on /dev/full: every flush fails with ENOSPC, as on a full disk."""
    stream = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115 - closed below
    yield stream
    try:
        stream.close()
    except OSError:
        pass


@pytest.fixture
def closed_pipe() -> Iterator[TextIO]:
    """A text stream on a pipe whose reader is gone: a flush fails with EPIPE."""
    reader, writer = os.pipe()
    os.close(reader)
    stream = open(writer, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    yield stream
    try:
        stream.close()
    except OSError:
        pass


# -- counting -------------------------------------------------------------------------------------


def test_the_collector_is_an_observer():
    collector: Observer = Collector(Summary(), NullWriter(), NullDisplay())
    assert callable(collector.on_result) and callable(collector.on_idle)


def test_it_counts_every_result_before_the_display_sees_it():
    out = io.StringIO()
    collector, reported = collector_with(StreamWriter(out, "text"))
    for n in range(6):
        collector.on_result(ok(n) if n % 2 else failed(n, ErrorKind.CONNECT))
    collector.on_total(6)
    summary = collector.summary
    assert (summary.ok, summary.failed, summary.done, summary.total) == (3, 3, 6, 6)
    assert summary.bytes == 10 * (1 + 3 + 5)
    assert summary.by_kind[ErrorKind.CONNECT].count == 3
    assert dict(summary.top_hosts()) == {"h0.test:80": 1, "h1.test:80": 1, "h2.test:80": 1}
    display = collector.display
    assert isinstance(display, RecordingDisplay)
    assert [count for _, count in display.seen] == [1, 2, 3, 4, 5, 6]
    assert display.total == 6
    collector.on_idle()
    assert len(out.getvalue().splitlines()) == 6 and reported == []


def test_a_skipped_line_is_counted_and_goes_to_failed(tmp_path):
    path = str(tmp_path / "failed.txt")
    collector, _ = collector_with(NullWriter(), path)
    collector.on_result(ok(1))
    collector.on_skipped(job(2))
    collector.on_result(failed(3))
    assert collector.summary.not_attempted == 1 and collector.summary.done == 2
    assert committed(collector) == b"line 2\nline 3\n"


def test_failed_lines_keep_csv_headers_and_are_0600(tmp_path):
    path = tmp_path / "failed.csv"
    path.write_bytes(b"old\n")
    collector, _ = collector_with(NullWriter(), str(path))
    first, second = b"url,n", b"n,url"
    for n, header in [(1, first), (2, first), (3, second), (4, first)]:
        collector.on_result(Result.failure(job(n, header), ErrorKind.DNS, "no"))
    collector.on_result(ok(5))
    collector.on_idle()
    assert path.read_bytes() == b"old\n"  # replaced only when the run ends
    assert committed(collector) == b"url,n\nline 1\nline 2\nn,url\nline 3\nurl,n\nline 4\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["failed.csv"]  # no temporary left


def test_an_aborted_failed_file_leaves_the_old_one(tmp_path):
    path = tmp_path / "failed.txt"
    path.write_bytes(b"old\n")
    failed_lines = FailedLines(str(path))
    failed_lines.add(b"new")
    failed_lines.flush()
    failed_lines.abort()
    failed_lines.commit()  # after abort: nothing
    assert path.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["failed.txt"]


def test_a_failed_file_that_cannot_be_written_keeps_the_error_and_never_raises():
    failed_lines = FailedLines("/dev/full")  # a character device: written in place
    failed_lines.add(b"x" * 100)
    failed_lines.flush()
    failed_lines.commit()
    assert failed_lines.error is not None and failed_lines.error.errno == errno.ENOSPC


def test_bodies_go_to_their_stream_and_every_result_is_closed():
    bodies = io.BytesIO()
    collector, _ = collector_with(NullWriter(), bodies=bodies)
    results = [ok(1, b"first "), ok(2), ok(3, b"third")]
    for result in results:
        collector.on_result(result)
    collector.on_idle()
    assert bodies.getvalue() == b"first third"
    assert all(result.body is None for result in results)


# -- write errors ---------------------------------------------------------------------------------


def test_a_full_disk_is_reported_once_and_lost_records_go_to_failed(tmp_path, full_stream):
    path = str(tmp_path / "failed.txt")
    collector, reported = collector_with(StreamWriter(full_stream, "jsonl"), path,
                                         records_to="'records.jsonl'")  # fmt: skip
    collector.on_result(ok(1))  # buffered in the stream: lost when the flush fails
    collector.on_result(failed(2))
    collector.on_idle()  # the flush fails: ENOSPC
    assert reported == ["cannot write records to 'records.jsonl': No space left on device"]
    assert collector.write_error == reported[0]
    collector.on_result(ok(3))  # nothing written any more: to --failed, ok or not
    collector.on_result(failed(4))
    collector.on_idle()
    collector.close_writer()
    assert len(reported) == 1 and not collector.output_broken
    assert (collector.summary.ok, collector.summary.failed) == (1, 1)
    assert collector.summary.not_finished == 2  # ok(3), failed(4): no record, in --failed
    assert committed(collector) == b"line 2\nline 1\nline 3\nline 4\n"


def test_a_write_error_without_failed_is_still_reported(full_stream):
    collector, reported = collector_with(StreamWriter(full_stream, "text"))
    collector.on_result(ok(1))
    collector.close_writer()
    assert reported == ["cannot write records to <stdout>: No space left on device"]


def test_a_body_stream_that_fails_is_reported_as_bodies(tmp_path):
    with open("/dev/full", "wb", buffering=0) as bodies:
        collector, reported = collector_with(NullWriter(), bodies=bodies)
        collector.on_result(ok(1, b"x" * 10))
    assert reported == ["cannot write bodies to <stdout>: No space left on device"]


def test_a_body_stream_that_fails_leaves_the_records_of_results_their_own_io(tmp_path):
    """s31 t4 5: --body to a full disk stopped every record, --results' too, which could still
    be written: the URLs had none, only a not finished count. The body's output failing is its
    URL's io failure, with a record, as a body's reader gone is; the run is still stopped."""
    records = io.StringIO()
    with open("/dev/full", "wb", buffering=0) as bodies:
        collector, reported = collector_with(StreamWriter(records, "jsonl"),
                                             str(tmp_path / "f.txt"), bodies)  # fmt: skip
        collector.on_result(ok(1, b"x" * 10))
        collector.on_result(ok(2, b"y" * 10))  # in flight as the run stopped: as the first
        collector.on_idle()
        collector.close_writer()
    assert reported == ["cannot write bodies to <stdout>: No space left on device"]
    written = [json.loads(line) for line in records.getvalue().splitlines()]
    assert [(r["ok"], r["error"]["kind"]) for r in written] == [(False, "io")] * 2, written
    assert all("No space left on device" in r["error"]["message"] for r in written), written
    assert (collector.summary.failed, collector.summary.not_finished) == (2, 0)
    assert committed(collector) == b"line 1\nline 2\n"


def test_a_closed_reader_raises_broken_pipe_once_and_nothing_is_lost(tmp_path, closed_pipe):
    path = str(tmp_path / "failed.txt")
    collector, reported = collector_with(StreamWriter(closed_pipe, "text"), path)
    collector.on_result(ok(1))
    collector.on_result(failed(2))
    with pytest.raises(BrokenPipeError):
        collector.on_idle()
    assert collector.output_broken
    collector.on_result(failed(3))  # counted and kept, not written, not raised again
    collector.on_idle()
    collector.close_writer()
    assert reported == [] and collector.write_error is None
    assert (collector.summary.ok, collector.summary.failed) == (1, 2)
    assert committed(collector) == b"line 2\nline 3\n"


def test_an_ok_result_after_the_reader_went_is_not_counted_ok(tmp_path, closed_pipe):
    """s30 t1 3: its record went nowhere, and the summary counted it ok: the summary's ok counts
    records. It is not finished, and its line goes to --failed, as the abandoned requests'
    (s33 t1 1: a retry loop lost what the reader never read)."""
    collector, _ = collector_with(StreamWriter(closed_pipe, "text"), str(tmp_path / "f.txt"))
    collector.on_result(ok(1))
    with pytest.raises(BrokenPipeError):
        collector.on_idle()
    collector.on_result(ok(2))
    collector.on_idle()
    collector.close_writer()
    assert (collector.summary.ok, collector.summary.not_finished) == (1, 1)
    assert committed(collector) == b"line 2\n"


def read_one_line(descriptor: int) -> bytes:
    """Exactly one line from a pipe, a byte at a time: a reader that takes no more."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(descriptor, 1)
        assert byte, f"the pipe ended after {line!r}"
        line += byte
    return line


def test_ok_records_the_pipe_held_unread_when_its_reader_went_are_not_finished(tmp_path):
    """s30 r2 2: records written to the pipe, which its reader left unread when it went away,
    stayed counted ok: the summary's ok counts records somebody has. Only the one it read is
    ok; the failure stays failed, its line in --failed, and so are the lines of those not
    finished (s33 t1 1)."""
    read_end, write_end = os.pipe()
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 - the writer closes it
    collector, _ = collector_with(StreamWriter(stream, "text", close_stream=True),
                                  str(tmp_path / "f.txt"))  # fmt: skip
    collector.on_result(ok(1))
    collector.on_idle()
    assert read_one_line(read_end).endswith(b"/1\n")
    for result in (ok(2), failed(3), dataclasses.replace(ok(4), attempts=1)):
        collector.on_result(result)
    collector.on_idle()  # in the pipe, unread
    os.close(read_end)
    collector.on_result(ok(5))
    with pytest.raises(BrokenPipeError):
        collector.on_idle()
    collector.on_result(ok(6))
    collector.close_writer()
    summary = collector.summary
    assert (summary.ok, summary.failed, summary.not_finished) == (1, 1, 4)
    assert summary.requested == 0  # ok(4) made one (the others none): taken back with it
    assert committed(collector) == b"line 3\nline 2\nline 4\nline 5\nline 6\n"


def test_ok_records_all_read_leave_nothing_unread(tmp_path):
    """The ok records kept until read are let go of as their reader reads them: after
    thousands read, none is taken for unread when the reader then goes."""
    read_end, write_end = os.pipe()
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 - the writer closes it
    collector, _ = collector_with(StreamWriter(stream, "text", close_stream=True))
    for n in range(3000):
        collector.on_result(ok(n))
        if n % 100 == 99:
            collector.on_idle()
            while os.read(read_end, 1 << 16) and select_readable(read_end):
                pass
    os.close(read_end)
    with pytest.raises(BrokenPipeError):
        collector.on_idle()
    collector.close_writer()
    assert (collector.summary.ok, collector.summary.not_finished) == (3000, 0)


def select_readable(descriptor: int) -> bool:
    return bool(select.select([descriptor], [], [], 0)[0])


class RaisingStream(io.StringIO):
    """A stream whose write raises the given error: a reader gone mid-record."""

    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error

    def write(self, text: str) -> int:
        raise self.error


def test_a_broken_pipe_on_write_is_raised_after_the_bookkeeping(tmp_path):
    path = str(tmp_path / "failed.txt")
    stream = RaisingStream(BrokenPipeError(errno.EPIPE, "Broken pipe"))
    collector, reported = collector_with(StreamWriter(stream, "jsonl"), path)
    with pytest.raises(BrokenPipeError):
        collector.on_result(failed(7))
    assert collector.output_broken and collector.summary.failed == 1 and reported == []
    assert committed(collector) == b"line 7\n"


def test_an_oserror_on_write_is_not_raised(tmp_path):
    stream = RaisingStream(OSError(errno.EIO, "Input/output error"))
    collector, reported = collector_with(StreamWriter(stream, "jsonl"), str(tmp_path / "f"))
    collector.on_result(ok(1))
    collector.on_result(ok(2))
    assert reported == ["cannot write records to <stdout>: Input/output error"]
    assert committed(collector) == b"line 1\nline 2\n"


def test_a_write_error_commits_no_state_row_whose_record_was_lost(tmp_path, full_stream):
    """The state took each result before its record; after a full disk, its rows for records
    never written were committed at the end anyway, so a changed body's retry said 'changed:
    false' and the change was reported never (s17 h4 2). They are dropped with the records:
    reported twice rather than never, as the module promises."""
    import sqlite3

    from fetcher.state.store import State

    state = State(str(tmp_path / "state.db"))
    summary = Summary()
    collector = Collector(summary, StreamWriter(full_stream, "jsonl"), NullDisplay(), state=state)
    first = ok(1)
    first.sha256 = "00" * 32
    collector.on_result(first)  # buffered: lost when the flush fails
    collector.on_idle()
    assert collector.write_error is not None
    collector.on_result(ok(2))  # nothing written any more
    collector.on_idle()
    state.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT url FROM urls WHERE ok = 1").fetchall() == []


def test_a_reader_gone_commits_no_state_row_of_a_record_it_did_not_take(tmp_path, closed_pipe):
    """As a write error (above): a record in the buffer when the pipe's reader went away was
    never reported, nor is one after; yet their rows went in at the end with their new hashes
    (s23 h1 1). A record flushed before, taken whole by the pipe, keeps its row."""
    import sqlite3

    from fetcher.state.store import State

    state = State(str(tmp_path / "state.db"))
    out = io.StringIO()
    collector = Collector(Summary(), StreamWriter(out, "jsonl"), NullDisplay(), state=state)
    collector.on_result(ok(0))
    collector.on_idle()  # flushed whole: its row committed
    collector.writer = StreamWriter(closed_pipe, "jsonl")  # its reader goes away
    collector.on_result(ok(1))  # buffered: lost when the flush fails
    with pytest.raises(BrokenPipeError):
        collector.on_idle()
    collector.on_result(ok(2))  # nothing written any more
    collector.on_result(failed(3))
    collector.on_idle()
    collector.close_writer()
    state.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT url FROM urls").fetchall() == [("http://h0.test/0",)]


def test_a_commit_of_a_full_batch_of_rows_comes_after_their_records_are_flushed(tmp_path):
    """The state commits every COMMIT_ROWS rows as well as at idle moments; that commit came
    from the state's own record(), before the records of its rows were written, let alone
    flushed: a SIGKILL in between left changes in the state whose records were never out, and
    the next run's 304 reported them never (s17 note, section 6). It now goes as the idle
    commit does: --failed, records and bodies flushed first."""
    import json
    import sqlite3

    from fetcher.state.store import COMMIT_ROWS, State

    state = State(str(tmp_path / "state.db"))
    path = tmp_path / "records.jsonl"
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as stream:
        collector = Collector(Summary(), StreamWriter(stream, "jsonl"), NullDisplay(), state=state)
        seen_at_commit: list[tuple[int, int]] = []  # (rows committed, records on disk)
        commit = state.commit

        def watched_commit(upto: int | None = None) -> None:
            commit(upto)
            with sqlite3.connect(tmp_path / "state.db") as db:
                rows = db.execute("SELECT count(*) FROM urls").fetchone()[0]
            seen_at_commit.append((rows, len(path.read_text().splitlines())))

        state.commit = watched_commit  # type: ignore[method-assign]
        for n in range(COMMIT_ROWS + 10):  # no idle moment: only the batch's commit
            result = ok(n)
            result.sha256 = f"{n:064x}"
            collector.on_result(result)
        assert seen_at_commit, "no commit of a full batch"
        for rows, on_disk in seen_at_commit:
            assert rows <= on_disk  # every committed row's record is out
        state.close()
    assert len([json.loads(line) for line in path.read_text().splitlines()]) == COMMIT_ROWS + 10


def collector_on_a_full_state(tmp_path):
    """A Collector writing jsonl records to a StringIO, --failed at tmp_path/failed.txt, and a
    --state whose database is full as SQLite sees a full disk: the collector, the state, the
    records' StringIO and the write errors it reported."""
    from fetcher.state.store import State

    state = State(str(tmp_path / "state.db"))
    pages = state._writer.execute("PRAGMA page_count").fetchone()[0]
    state._writer.execute(f"PRAGMA max_page_count = {pages}")  # full, as SQLite sees a disk
    out, reported = io.StringIO(), []
    collector = Collector(Summary(), StreamWriter(out, "jsonl"), NullDisplay(),
                          FailedLines(str(tmp_path / "failed.txt")),
                          on_write_error=reported.append, state=state)  # fmt: skip
    return collector, state, out, reported


def test_an_ok_result_after_the_state_cannot_be_written_is_not_counted_ok(tmp_path):
    """A full disk under --state stopped the run; the ok results still coming had no record
    and their lines went to --failed, yet the summary counted them ok: 16 more successes than
    records, and --metrics too (s21 h2 6). They count as not finished, as the run cut them:
    total is ok + failed + not_finished, ok the records written."""
    import json

    collector, state, out, reported = collector_on_a_full_state(tmp_path)
    for n in range(200):
        collector.on_result(ok(n))
    collector.on_idle()  # the records out, then the state's commit fails
    assert [m.endswith("database or disk is full") for m in reported] == [True], reported
    collector.on_result(ok(200))  # no record any more: to --failed
    collector.on_result(failed(201))
    collector.on_idle()
    collector.close_writer()
    state.close()
    summary = collector.summary
    assert summary.ok == len(out.getvalue().splitlines()) == 200 == summary.changed
    assert (summary.failed, summary.not_finished) == (0, 2)  # no record either (s25 h1 6)
    assert summary.as_dict(1)["total"] == 202
    assert committed(collector) == b"line 200\nline 201\n"
    assert json.loads(out.getvalue().splitlines()[0])["url"] == "http://h0.test/0"


def test_a_failed_result_after_the_state_cannot_be_written_is_not_counted_failed(tmp_path):
    """After a write error stopped the run, an ok result with no record counted not finished,
    a failed one still failed, by kind and by host: the summary said 1,044 failed where the
    records held 755 (s25 h1 6). Both are counted as what the records show: no record, its
    line in --failed, not finished."""
    from fetcher.output.metrics import metrics_text, run_families

    collector, state, out, reported = collector_on_a_full_state(tmp_path)
    for n in range(200):
        collector.on_result(ok(n))
    collector.on_result(failed(200, ErrorKind.CONNECT))  # recorded: counted failed
    collector.on_idle()  # the records out, then the state's commit fails
    assert len(reported) == 1, reported
    collector.on_result(failed(201, ErrorKind.CONNECT))  # no record any more: to --failed
    collector.on_result(failed(202, ErrorKind.IO))
    collector.on_idle()
    collector.close_writer()
    state.close()
    summary = collector.summary
    written = [line for line in out.getvalue().splitlines() if '"ok": false' in line]
    assert summary.failed == len(written) == 1
    assert summary.not_finished == 2
    assert {kind: group.count for kind, group in summary.by_kind.items()} == {"connect": 1}
    assert summary.top_hosts() == [("h2.test:80", 1)]  # 200's host alone
    assert summary.as_dict(1)["total"] == 203
    assert committed(collector) == b"line 200\nline 201\nline 202\n"
    metrics = metrics_text(run_families(summary, 1, 0.0))
    assert 'fetcher_urls_total{outcome="failed"} 1\n' in metrics, metrics
    assert 'fetcher_errors_total{kind="connect"} 1\n' in metrics, metrics


def test_a_record_that_cannot_be_built_is_its_urls_failure_and_the_run_goes_on(tmp_path):
    """Building a record raised out of the run (s25 h1 1: a MemoryError under --include-body,
    tests/test_out_of_memory.py): the URL had no record and no --failed line, and the state
    kept its ok row. Any exception there now makes the URL a failure of kind other, with its
    record and its line, its ok row taken back; the next URL is recorded as ever."""
    import json
    import sqlite3

    from fetcher.state.store import State

    state = State(str(tmp_path / "state.db"))
    out, reported = io.StringIO(), []
    collector = Collector(Summary(), StreamWriter(out, "jsonl", include_body=True, state=True),
                          NullDisplay(), FailedLines(str(tmp_path / "failed.txt")),
                          on_write_error=reported.append, state=state)  # fmt: skip
    broken = ok(1, b"gone")
    assert broken.body is not None
    broken.body.close()  # reading it for the record raises ValueError
    for result in (ok(0, b"first"), broken, ok(2, b"third")):
        result.sha256 = "00" * 32
        collector.on_result(result)
    collector.on_idle()
    state.close()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["ok"], line["body"]) for line in lines] == [
        (True, "first"), (False, None), (True, "third")
    ]  # fmt: skip
    error = lines[1]["error"]
    assert error["kind"] == "other" and error["message"].startswith("record not written: ")
    assert lines[1]["changed"] is None and reported == []
    summary = collector.summary
    assert (summary.ok, summary.failed, summary.by_kind[ErrorKind.OTHER].count) == (2, 1, 1)
    assert committed(collector) == b"line 1\n"
    with sqlite3.connect(tmp_path / "state.db") as db:
        rows = db.execute("SELECT url, ok FROM urls ORDER BY url").fetchall()
    assert rows == [("http://h0.test/0", 1), ("http://h1.test/1", 0), ("http://h2.test/2", 1)]


class FailingDisplay(NullDisplay):
    """A display that fails on one URL: an exception no guard expects (a bug)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def on_result(self, result: Result) -> None:
        if result.url == self.url:
            raise RuntimeError("a bug")


def test_an_unexpected_exception_for_one_url_ends_the_records_as_a_write_error(tmp_path):
    """Any exception out of one URL's handling went up through the run and out of the
    command (s25 h1 1): no --failed, no summary, the state's pending rows committed. Where it
    struck is unknown, so what was written is too: the records end as after a write error,
    reported once, their lines to --failed; the state keeps no row of a record not written."""
    import sqlite3

    from fetcher.state.store import State

    state = State(str(tmp_path / "state.db"))
    reported: list[str] = []
    collector = Collector(Summary(), StreamWriter(io.StringIO(), "jsonl"),
                          FailingDisplay("http://h1.test/1"),
                          FailedLines(str(tmp_path / "failed.txt")),
                          on_write_error=reported.append, state=state)  # fmt: skip
    for n in range(3):
        collector.on_result(ok(n))
    collector.on_idle()
    state.close()
    assert reported == ["cannot write records to <stdout>: RuntimeError: a bug"]
    assert (collector.summary.ok, collector.summary.not_finished) == (2, 1)
    assert committed(collector) == b"line 0\nline 1\nline 2\n"
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT url FROM urls").fetchall() == []


def test_a_memory_error_on_write_is_a_write_error(tmp_path):
    stream = RaisingStream(MemoryError())  # type: ignore[arg-type]
    collector, reported = collector_with(StreamWriter(stream, "jsonl"), str(tmp_path / "f"))
    collector.on_result(ok(1))
    collector.on_result(ok(2))
    assert reported == ["cannot write records to <stdout>: out of memory"]
    assert committed(collector) == b"line 1\nline 2\n"


def test_a_csv_row_after_an_unread_rest_gets_its_header_again(tmp_path):
    """A stop hands a csv input's unread rest back as raw blocks labelled with the header of
    its last parsed row, though a block may hold a later header row (cat-joined or --failed
    files): a next input's rows of that first header were written under the block's last
    header, and read back fetched from their meta cells (s26 r2 1)."""
    path = tmp_path / "failed.csv"
    failed_lines = FailedLines(str(path))
    failed_lines.add(b"http://a.test/1,t1", b"url,tag")
    block = b"http://a.test/2,t2\ntag,url\nm0,http://a.test/m0"
    failed_lines.add(block, b"url,tag", 3, True, b"tag,url")  # raw_rest's header after it
    failed_lines.add(b"http://b.test/k0,kt0", b"url,tag")  # the next input's first row
    failed_lines.commit()
    lines = path.read_bytes().splitlines()
    assert lines[-2:] == [b"url,tag", b"http://b.test/k0,kt0"], lines
