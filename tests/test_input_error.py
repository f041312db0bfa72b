"""An input that cannot be read to its end mid-run (the --state lookup failing, an I/O error
reading a file): the run says why, the lines read get their records, and the rest that can still
be read goes to --failed as after an interrupt; nothing read vanishes (SPEC 2.5)."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from pathlib import Path
from typing import BinaryIO

import pytest

from fetcher.input.reader import InputReader, Source
from fetcher.output.collector import Collector
from fetcher.output.display import NullDisplay
from fetcher.output.failed import FailedLines
from fetcher.output.writers import StreamWriter
from fetcher.results import Summary
from fetcher.run.build import build_run
from fetcher.run.dispatcher import Lookup
from fetcher.run.engine import Run
from fetcher.settings import Settings
from tests.conftest import run_process
from tests.servers import counting_server

LINES = 1500
BREAKS_AT = 1000


class BrokenAfter(io.BufferedReader):
    """A file whose reads fail with EIO once `limit` lines have been read."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(io.FileIO(path))
        self.left = limit

    def readline(self, size: int | None = -1) -> bytes:
        if self.left == 0:
            raise OSError(5, "Input/output error")
        self.left -= 1
        return super().readline(size)


def url_file(path: Path, lines: list[str]) -> BinaryIO:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path.open("rb")


def run_over(
    tmp_path: Path, sources: list[Source], lookup: Lookup | None = None
) -> tuple[list[str], list[str], Run]:
    """A run as the command builds it, jsonl records in memory; (records, --failed lines, run).
    A StateLookup reads file input ahead, as the command has it do."""
    out, failed = io.StringIO(), FailedLines(str(tmp_path / "failed.txt"))
    collector = Collector(Summary(), StreamWriter(out, "jsonl"), NullDisplay(), failed)
    reader = InputReader(sources, "https")
    reading_ahead = getattr(lookup, "reading_ahead", None)
    source = reader if reading_ahead is None else reading_ahead(reader)
    run = build_run(Settings(workers=4), source, collector, lookup=lookup)
    assert run.run() is None
    collector.close_writer()
    failed.commit()
    records = [json.loads(line)["url"] for line in out.getvalue().splitlines()]
    return records, (tmp_path / "failed.txt").read_text().splitlines(), run


def test_a_state_lookup_failing_mid_run_hands_the_rest_of_the_input_to_failed(tmp_path):
    looked_up = 0

    def lookup(job):
        nonlocal looked_up
        looked_up += 1
        if looked_up > BREAKS_AT:
            raise sqlite3.DatabaseError("file is not a database")
        return None

    with counting_server() as server:
        lines = [server.url(f"/f?i={n}") for n in range(LINES)]
        with url_file(tmp_path / "urls.txt", lines) as stream:
            records, failed, run = run_over(tmp_path, [Source("urls", stream=stream)], lookup)
    assert len(records) == BREAKS_AT
    assert sorted(records + failed) == sorted(lines), "a line read vanished"
    assert run.books.input_error is not None
    assert "--state" in run.books.input_error and "not a database" in run.books.input_error


def run_over_a_broken_file(tmp_path: Path, lookup: Lookup | None = None):
    """A run over two files, the first failing with EIO after BREAKS_AT of its LINES lines:
    (the first file's lines, the second's, records, --failed lines, the run)."""
    with counting_server() as server:
        first = [server.url(f"/a?i={n}") for n in range(LINES)]
        second = [server.url(f"/b?i={n}") for n in range(100)]
        url_file(tmp_path / "one.txt", first).close()
        with BrokenAfter(tmp_path / "one.txt", BREAKS_AT) as broken, \
                url_file(tmp_path / "two.txt", second) as rest:  # fmt: skip
            sources = [Source("one", stream=broken), Source("two", stream=rest)]
            records, failed, run = run_over(tmp_path, sources, lookup)
    return first, second, records, failed, run


def test_a_file_that_cannot_be_read_on_leaves_the_next_ones_to_failed(tmp_path):
    first, second, records, failed, run = run_over_a_broken_file(tmp_path)
    assert sorted(records) == sorted(first[:BREAKS_AT])
    assert failed == second  # the unread rest of the next input, never attempted
    assert run.books.input_error is not None
    assert run.books.input_error.startswith("reading the input failed: ")


def test_a_file_that_cannot_be_drained_either_leaves_the_later_ones_to_failed(tmp_path):
    """t4 4a: after a read failed, the rest of the input goes to --failed; when a later file's
    read failed too, that drain stopped there, and the files after it never reached --failed,
    unsaid. Each file is drained on its own now, and the run's message says --failed may lack
    lines."""
    with counting_server() as server:
        first = [server.url(f"/a?i={n}") for n in range(LINES)]
        second = [server.url(f"/b?i={n}") for n in range(100)]
        third = [server.url(f"/c?i={n}") for n in range(100)]
        for name, lines in (("one.txt", first), ("two.txt", second)):
            url_file(tmp_path / name, lines).close()
        with BrokenAfter(tmp_path / "one.txt", BREAKS_AT) as one, \
                BrokenAfter(tmp_path / "two.txt", 10) as two, \
                url_file(tmp_path / "three.txt", third) as three:  # fmt: skip
            sources = [Source("one", stream=one), Source("two", stream=two),
                       Source("three", stream=three)]  # fmt: skip
            records, failed, run = run_over(tmp_path, sources)
    assert sorted(records) == sorted(first[:BREAKS_AT])
    assert failed == second[:10] + third  # what two held before its read failed, and three
    assert run.books.input_error is not None
    assert run.books.input_error.startswith("reading the input failed: ")
    assert run.books.input_error.endswith("; --failed may lack lines read")


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="Linux: opens, fails on read")
def test_an_input_that_fails_on_read_does_not_exit_0(tmp_path):
    """/proc/self/mem opens, and its first read fails (EIO): the run cannot say that every
    URL ended ok when it could not read its input; before, it exited 0."""
    failed = tmp_path / "failed.txt"
    done = run_process(["-i", "/proc/self/mem", "--failed", str(failed)])
    assert done.returncode == 1, done.stderr
    assert b"reading the input failed" in done.stderr
    assert b"Traceback" not in done.stderr


def test_a_batch_lookup_failing_leaves_the_lines_it_read_ahead_to_failed(tmp_path):
    """With --state, file input is read PREFETCH lines ahead and looked up in one statement:
    when that statement fails, the lines read ahead must go to --failed too. Before, the
    batch was kept only after its lookup returned: up to 64 lines read vanished."""
    from fetcher.state.lookup import StateLookup
    from fetcher.state.store import State

    state = State(str(tmp_path / "s.db"))
    batches = 0
    real = state.lookup_many

    def lookup_many(urls):
        nonlocal batches
        batches += 1
        if batches > 3:
            raise sqlite3.DatabaseError("file is not a database")
        return real(urls)

    state.lookup_many = lookup_many  # type: ignore[method-assign]
    try:
        with counting_server() as server:
            lines = [server.url(f"/f?i={n}") for n in range(LINES)]
            with url_file(tmp_path / "urls.txt", lines) as stream:
                records, failed, run = run_over(
                    tmp_path,
                    [Source("urls", stream=stream)],
                    StateLookup(state, lambda job: job.target),
                )
    finally:
        state.close()
    assert records, "the first batches were fetched"
    assert sorted(records + failed) == sorted(lines), "a line read vanished"
    assert run.books.input_error is not None and "--state" in run.books.input_error


def test_a_read_failing_while_a_batch_is_read_ahead_loses_none_of_it(tmp_path):
    """With --state, file input is read 64 lines ahead: a read that fails part-way through a
    batch must leave the lines of that batch read so far to their records or --failed."""
    from fetcher.state.lookup import StateLookup
    from fetcher.state.store import State

    state = State(str(tmp_path / "s.db"))
    try:
        first, second, records, failed, run = run_over_a_broken_file(
            tmp_path, StateLookup(state, lambda job: job.target)
        )
    finally:
        state.close()
    assert BREAKS_AT % 64, "the read must fail inside a batch"
    assert sorted(records + failed) == sorted(first[:BREAKS_AT] + second), "a line read vanished"
    assert run.books.input_error is not None
