"""--input-format csv (§2.1): one CSV record, however many physical lines it spans, gives exactly
one result. An error inside a quoted cell (a byte that is not UTF-8, a record over 128 KiB, a
quote never closed) makes that record invalid_url at the line where it starts, and reading goes
on after the record's end, never inside it: a URL written in a quoted cell is never fetched.
Line ends inside a quoted cell are kept as they are; whitespace-only lines are skipped."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from fetcher.input.reader import InputReader, Source
from fetcher.settings import MAX_RECORD_BYTES
from tests.conftest import invoke, run_background
from tests.servers import (
    CountingServer,
    Route,
    counting_server,
    default_route,
    read_with_peak,
    records,
)
from tests.test_http import serve


def run_csv(listing: Path, *options: str) -> tuple[int, list[dict[str, Any]]]:
    """Run fetcher on a csv file; its exit status and its records in input order."""
    result = invoke(
        ["--input-format", "csv", "--format", "jsonl", "--ordered", "-i", str(listing), *options]
    )
    return result.exit_code, records(result.stdout)


def outcome(record: dict[str, Any]) -> tuple[int, str]:
    """A record's line and what happened to it: ``ok`` or its error's message."""
    return record["line"], "ok" if record["ok"] else record["error"]["message"]


# -- 1. an error inside a quoted cell stays inside its record ---------------------------------


def bad_byte_record(server: CountingServer) -> tuple[bytes, int, str]:
    """A record over lines 2-5 whose quoted cell has a bad byte (line 3) and a URL (line 4)."""
    text = (
        server.url("/u1").encode() + b',"first\n'
        b"\xff second\n" + server.url("/INSIDE").encode() + b',x\nend"\n'
    )
    return text, 6, "line 3 is not valid UTF-8"


def long_record(server: CountingServer) -> tuple[bytes, int, str]:
    """A record over lines 2-143, past 128 KiB near its end, with a URL on line 142."""
    cell = (b"x" * 1000 + b"\n") * 140 + server.url("/INSIDE").encode() + b',y\nend"'
    return server.url("/big").encode() + b',"' + cell + b"\n", 144, "record longer than"


def text_after_quote_record(server: CountingServer) -> tuple[bytes, int, str]:
    """A stray quote: text after a cell's closing quote, then a quoted cell over 3 lines."""
    text = server.url("/s").encode() + b',"a"b,"c\n' + server.url("/INSIDE").encode() + b',x\nd"\n'
    return text, 5, "malformed CSV"


@pytest.mark.parametrize("make", [bad_byte_record, long_record, text_after_quote_record])
def test_an_error_inside_a_quoted_cell_gives_one_record_and_fetches_nothing_in_it(
    server: CountingServer, tmp_path: Path, make: Any
) -> None:
    record, next_line, reason = make(server)
    listing = tmp_path / "in.csv"
    listing.write_bytes(b"url,note\n" + record + server.url("/after").encode() + b",z\n")
    failed = tmp_path / "failed.csv"
    status, got = run_csv(listing, "--failed", str(failed))
    assert status == 1
    assert [outcome(r)[0] for r in got] == [2, next_line]
    assert reason in outcome(got[0])[1] and got[0]["error"]["kind"] == "invalid_url"
    assert outcome(got[1]) == (next_line, "ok")
    assert server.paths == ["/after"]  # nothing inside the quoted cell was fetched
    # --failed holds the one record, which reads back as one invalid_url record again.
    status, again = run_csv(failed)
    assert (status, [outcome(r)[0] for r in again]) == (3, [2])  # all failed
    assert reason in outcome(again[0])[1]
    assert server.paths == ["/after"]


def test_the_failed_file_keeps_a_bad_record_byte_for_byte(
    server: CountingServer, tmp_path: Path
) -> None:
    record, _, _ = bad_byte_record(server)
    listing = tmp_path / "in.csv"
    listing.write_bytes(b"url,note\n" + record)
    failed = tmp_path / "failed.csv"
    run_csv(listing, "--failed", str(failed))
    assert failed.read_bytes() == b"url,note\n" + record


def test_a_quote_never_closed_makes_one_record_of_the_rest_of_the_file(
    server: CountingServer, tmp_path: Path
) -> None:
    listing = tmp_path / "in.csv"
    listing.write_bytes(
        b"url,note\n"
        + server.url("/a").encode() + b",ok\n"
        + server.url("/b").encode() + b',"open\n'
        + server.url("/c").encode() + b",x\n"
        + server.url("/d").encode() + b",y\n"
    )  # fmt: skip
    status, got = run_csv(listing)
    assert status == 1
    assert [outcome(r)[0] for r in got] == [2, 3]
    assert outcome(got[0]) == (2, "ok")
    assert "never closed" in outcome(got[1])[1]
    assert server.paths == ["/a"]


def one_file(header: bytes, good: bytes, unclosed: bytes) -> list[bytes]:
    return [header + b"\r\n" + good + b"\r\n" + unclosed + b"\r\n"]


def two_files(header: bytes, good: bytes, unclosed: bytes) -> list[bytes]:
    """The record never closed in the first file, read (and failed) before the second."""
    return [header + b"\r\n" + unclosed + b"\r\n", header + b"\r\n" + good + b"\r\n"]


@pytest.mark.parametrize("layout", [one_file, two_files])
def test_a_quote_never_closed_goes_last_to_failed_and_swallows_no_record_there(
    tmp_path: Path, layout: Any
) -> None:
    """§2.4: the record is kept verbatim, its quote open, so it is written after every other
    failed line: read back, it is invalid_url again and the records before it are retried."""
    released = threading.Event()

    def route(path: str) -> Route:
        if path == "/slow500":  # answer once the invalid record is out: it completes first
            released.wait(10)
            return 500, {"Content-Type": "text/plain"}, b"no", 0.0
        return default_route(path)

    with counting_server(route) as server:
        slow = server.url("/slow500").encode() + b",a"
        unclosed = b'"' + server.url("/unclosed").encode() + b",b"
        inputs: list[str] = []
        for number, text in enumerate(layout(b"url,note", slow, unclosed)):
            (tmp_path / f"{number}.csv").write_bytes(text)
            inputs += ["-i", str(tmp_path / f"{number}.csv")]
        failed = tmp_path / "failed.csv"
        options = ["--input-format", "csv", "--format", "jsonl", "--retries", "0"]
        process = run_background([*options, *inputs, "--failed", str(failed)])
        assert process.stdout is not None
        first = records(process.stdout.readline())
        released.set()
        rest, errors = process.communicate(timeout=60)
        assert process.returncode == 3, errors  # all failed
        assert [r["error"]["kind"] for r in first + records(rest)] == ["invalid_url", "http"]
        # Verbatim, open quote and all (the record runs to the end of its input), and last.
        assert failed.read_bytes() == b"url,note\n" + slow + b"\n" + unclosed + b"\r\n"
        status, again = run_csv(failed, "--retries", "0")
        assert status == 3
        assert [(r["line"], r["error"]["kind"]) for r in again] == [
            (2, "http"),
            (3, "invalid_url"),
        ]
        assert "never closed" in again[1]["error"]["message"]
        assert server.paths == ["/slow500", "/slow500"]  # fetched again; nothing in the quote


class _GeneratedBytes(io.RawIOBase):
    """A stream whose bytes are made as they are read: a test input of any size in no memory."""

    def __init__(self, parts: Iterator[bytes]) -> None:
        self._parts = parts
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending:
            self._pending = next(self._parts, b"")
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def test_an_enormous_quoted_cell_is_one_record_read_in_bounded_memory() -> None:
    """40 MB in one quoted cell of 40,000 lines: one invalid_url record, the record after it
    read with its right line number, and memory never holding more than a few records."""
    lines = 40_000

    def parts() -> Iterator[bytes]:
        yield b'url,note\nhttp://a.test/,"'
        for _ in range(lines):
            yield b"a" * 999 + b"\n"
        yield b'"\nhttp://b.test/,after\n'

    stream = io.BufferedReader(_GeneratedBytes(parts()))
    reader = InputReader([Source("big", stream=stream)], "https", input_format="csv")
    jobs, peak = read_with_peak(reader)
    assert [(job.line, job.invalid is None) for job in jobs] == [(2, False), (lines + 3, True)]
    assert jobs[0].invalid is not None and "record longer than" in jobs[0].invalid
    assert (jobs[1].url, jobs[1].meta.text) == ("http://b.test/", '{"note":"after"}')
    assert len(jobs[0].raw) <= MAX_RECORD_BYTES + 2  # kept cut, not whole
    assert peak < 8 * MAX_RECORD_BYTES, peak


# -- 2. a line end inside a quoted cell is kept as it is --------------------------------------


def test_crlf_inside_a_quoted_cell_is_sent_and_kept_as_it_is(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    # A 500 makes the record fail, so that --failed keeps it: the retry must send the same.
    seen = serve(httpserver, "/crlf", Response("no", status=500))
    url = httpserver.url_for("/crlf").encode()
    record = url + b',"a\r\nb","multi\r\nline"'
    listing = tmp_path / "in.csv"
    listing.write_bytes(b"\xef\xbb\xbfurl,data,note\r\n" + record + b"\r\n")
    failed = tmp_path / "failed.csv"
    status, got = run_csv(listing, "--failed", str(failed), "--retries", "0")
    assert status == 3 and len(got) == 1  # all failed
    assert got[0]["meta"] == {"note": "multi\r\nline"}
    assert seen.requests[0].get_data() == b"a\r\nb"  # 4 bytes, the CR kept
    assert failed.read_bytes() == b"url,data,note\n" + record + b"\n"
    run_csv(failed, "--retries", "0")
    assert [r.get_data() for r in seen.requests] == [b"a\r\nb", b"a\r\nb"]
    # --state keeps the record for --retry-failed just as well.
    state = str(tmp_path / "s.db")
    run_csv(listing, "--state", state, "--retries", "0")
    retried = invoke(["--state", state, "--retry-failed", "--format", "jsonl", "--retries", "0"])
    assert [r["meta"] for r in records(retried.stdout)] == [{"note": "multi\r\nline"}]
    assert [r.get_data() for r in seen.requests] == [b"a\r\nb"] * 4


def test_crlf_ends_records_and_is_not_part_of_the_last_cell(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    seen = serve(httpserver, "/end")
    listing = tmp_path / "in.csv"
    url = httpserver.url_for("/end")
    listing.write_bytes(f'url,data\r\n{url},one\r\n{url},"two"\r\n'.encode())
    status, got = run_csv(listing)
    assert (status, [outcome(r) for r in got]) == (0, [(2, "ok"), (3, "ok")])
    assert sorted(r.get_data() for r in seen.requests) == [b"one", b"two"]


# -- 3. whitespace-only lines are blank lines ------------------------------------------------


def test_whitespace_only_lines_are_skipped_like_blank_lines(
    server: CountingServer, tmp_path: Path
) -> None:
    listing = tmp_path / "in.csv"
    listing.write_bytes(
        b" \t\r\n"  # 1: before the header
        b"url,note\n"  # 2: the header
        + server.url("/w1").encode() + b",1\n"  # 3
        + b"   \n"  # 4
        + b"\t\n"  # 5
        + server.url("/w2").encode() + b',"2\n \n"\n'  # 6-8: blank inside quotes is data
        + b"  \r\n"  # 9
        + b" "  # 10: the last line, without a line end
    )  # fmt: skip
    status, got = run_csv(listing)
    assert (status, [outcome(r) for r in got]) == (0, [(3, "ok"), (6, "ok")])
    assert got[1]["meta"] == {"note": "2\n \n"}
    assert sorted(server.paths) == ["/w1", "/w2"]


def test_a_comment_line_is_a_record_in_csv(server: CountingServer, tmp_path: Path) -> None:
    """usage.md: a line whose first non-blank character is '#' is not a comment in csv."""
    listing = tmp_path / "in.csv"
    listing.write_bytes(b"url\n  # not a comment\n" + server.url("/x").encode() + b"\n")
    status, got = run_csv(listing)
    assert status == 1
    assert [outcome(r)[0] for r in got] == [2, 3]
    assert got[0]["error"]["kind"] == "invalid_url" and outcome(got[1]) == (3, "ok")


def test_the_retry_loop_keeps_a_record_never_closed_as_it_was(tmp_path: Path) -> None:
    """``-i f.csv --failed f.csv`` over and over: a last record whose quote is never closed
    holds the file's last line end, and --failed added one more each round, so the file grew
    by an empty line a round (s16 h2 F2). It is written as read: the loop's file stays the same."""
    failed = tmp_path / "f.csv"
    failed.write_bytes(b'url,x\nhttp://127.0.0.1:9/status/404,1\n"unterminated,1\n')
    rounds = []
    for _ in range(3):
        status, got = run_csv(failed, "--retries", "0", "--failed", str(failed))
        assert status == 3 and len(got) == 2
        rounds.append(failed.read_bytes())
    assert rounds[0] == rounds[1] == rounds[2], rounds


_UNREADABLE = b'"url"x,tag\n'
_ROW = b"http://127.0.0.1:9/a,1\n"


@pytest.mark.parametrize(
    ("text", "kept", "count"),
    [
        (_UNREADABLE + _ROW + b"http://127.0.0.1:9/b,2\n", None, 3),
        (_UNREADABLE, None, 1),
        (_UNREADABLE + _ROW + _UNREADABLE, _UNREADABLE + _ROW, 2),  # a copy: a header again
        (b'"url,tag\n' + _ROW, None, 1),  # its quote never closed: the whole file
    ],
    ids=["rows", "alone", "again", "never-closed"],
)
def test_the_retry_loop_keeps_a_header_that_cannot_be_read_once(
    tmp_path: Path, text: bytes, kept: bytes | None, count: int
) -> None:
    """A header row that cannot be parsed has a record of its own, and went to --failed as a
    line of its own and then again as the header of the rows after it: ``-i f.csv --failed
    f.csv`` grew by a header row (and a record) a round (s21 h1 4). It is written once, as the
    header (a copy of it further on is left out, as a readable header row met again is): the
    loop's file stays the same from the first round on, and so do its records."""
    failed = tmp_path / "f.csv"
    failed.write_bytes(text)
    rounds, counts = [], []
    for _ in range(3):
        status, got = run_csv(failed, "--retries", "0", "--failed", str(failed))
        assert status == 3 and all(r["error"]["kind"] == "invalid_url" for r in got)
        rounds.append(failed.read_bytes())
        counts.append(len(got))
    assert rounds == [kept or text] * 3
    assert counts[1:] == [count] * 2, counts


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (b"url,tag\rhttp://127.0.0.1:9/x,1\r", 1),  # CR-only line ends: the header is all of it
        (b"url,tag\nhttp://127.0.0.1:9/x,1\rhttp://127.0.0.1:9/y,2\n", 2),
    ],
    ids=["cr-only", "inside-a-row"],
)
def test_a_carriage_return_outside_quotes_is_named_for_what_it_is(
    tmp_path: Path, text: bytes, line: int
) -> None:
    """Python's csv said "new-line character seen in unquoted field - do you need to open the
    file in universal-newline mode?", which no option of fetcher's does (s21 h1 8). The record
    says what it is, as a plain line's does: a CR outside quotes, CR-only line ends."""
    listing = tmp_path / "cr.csv"
    listing.write_bytes(text)
    _, got = run_csv(listing)
    [(number, message)] = [outcome(record) for record in got]
    assert number == line and "universal-newline" not in message
    assert "carriage return" in message and "CR-only line ends" in message


@pytest.mark.parametrize("end", [b"\r\r\n", b"\r\n", b"\n"], ids=["cr-cr-lf", "crlf", "lf"])
def test_a_csv_record_of_the_longest_length_is_read_whatever_its_line_end(
    server: CountingServer, tmp_path: Path, end: bytes
) -> None:
    """A record of exactly MAX_RECORD_BYTES that ended in CR CR LF was too long, while the same
    jsonl line, and a shorter record with that end, were read (s21 h1 8): the CRs before a
    line's LF are part of its end, in both."""
    url = server.url("/longest").encode() + b","
    listing = tmp_path / "long.csv"
    listing.write_bytes(b"url,note\n" + url + b"x" * (MAX_RECORD_BYTES - len(url)) + end)
    status, got = run_csv(listing)
    assert [outcome(record) for record in got] == [(2, "ok")] and status == 0
