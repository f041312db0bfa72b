"""A stop hands a csv input's unread rest to --failed as raw blocks (reader.raw_rest), each
labelled with the header in force where it starts. A header row inside a block is in force
after it: the blocks after it, of the same input, go on under it, and a next input's rows get
their own header written again (s26 r6 1 and 6)."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from collections.abc import Callable

import pytest

from fetcher.input import formats, reader
from fetcher.input.formats import iter_csv, last_header_row
from fetcher.input.jobs import JobMaker
from fetcher.input.reader import raw_rest, read_pieces
from fetcher.output.failed import FailedLines
from tests.conftest import clean_env
from tests.servers import counting_server, signal_twice, wait_for

U = "http://a.test"


def read_back(path) -> list[tuple[str | None, bytes | None]]:
    """--failed read back as a run's -i reads it: each row's URL and header."""
    with open(path, "rb") as stream:
        return [(entry.url, entry.header) for entry in iter_csv(read_pieces(stream))]


def test_a_later_block_of_the_same_rest_goes_on_under_the_inner_header(tmp_path):
    """After a block holding `tag,url`, the writer wrote `url,tag` again before the next block
    of the same input (its label, the last parsed row's header): 31,762 rows read back with the
    tag as their URL, never fetched again (s26 r6 1). The block after is labelled with the
    header in force, and nothing is written before it."""
    path = tmp_path / "failed.csv"
    failed = FailedLines(str(path))
    failed.add(f"{U}/a1,t1".encode(), b"url,tag")
    failed.add(f"{U}/a2,t2\ntag,url\nm0,{U}/m0".encode(), b"url,tag", 3, True, b"tag,url")
    failed.add(f"m1,{U}/m1".encode(), b"tag,url", 1, True, b"tag,url")  # the carry
    failed.commit()
    lines = path.read_bytes().decode().splitlines()
    assert lines == ["url,tag", f"{U}/a1,t1", f"{U}/a2,t2", "tag,url", f"m0,{U}/m0", f"m1,{U}/m1"]
    assert [url for url, _ in read_back(path)] == [f"{U}/{n}" for n in ("a1", "a2", "m0", "m1")]


def test_a_next_input_after_an_inner_header_gets_its_header_again(tmp_path):
    """The next input's rows of the first header are written under it again (s26 r2 1)."""
    path = tmp_path / "failed.csv"
    failed = FailedLines(str(path))
    failed.add(f"{U}/a1,t1".encode(), b"url,tag")
    block = f'{U}/a2,t2\ntag," url "\nm0,{U}/m0'.encode()
    failed.add(block, b"url,tag", 3, True, last_header_row(block))  # as raw_rest finds it
    failed.add(f"{U}/b1,{U}/meta-of-b1".encode(), b"url,tag")
    failed.commit()
    assert read_back(path)[-1] == (f"{U}/b1", b"url,tag")


def test_raw_rest_labels_the_blocks_after_an_inner_header_with_it(monkeypatch):
    """raw_rest labelled every block, and the carry, with the last parsed row's header."""
    monkeypatch.setattr(reader, "RAW_BLOCK", 64)
    rows = [f"{U}/a{n},t{n}" for n in range(5)] + ["tag,url"]
    rows += [f"m{n},{U}/m{n}" for n in range(8)]
    text = "\n".join(rows).encode()  # no last line end: a carry
    jobs = list(raw_rest(io.BytesIO(text), "csv", b"url,tag", JobMaker("http")))
    assert b"\n".join(job.raw for job in jobs) == text
    inner = next(n for n, job in enumerate(jobs) if b"tag,url" in job.raw)
    assert inner < len(jobs) - 2, "the test needs blocks after the inner header's"
    assert {job.header for job in jobs[: inner + 1]} == {b"url,tag"}
    assert {job.header for job in jobs[inner + 1 :]} == {b"tag,url"}


SPELLINGS = [
    'tag," url "', '"URL "', '" url",tag', '"\ufeffurl",tag', "\u00a0url\u00a0,tag",
    "\x0curl,tag", "tag,url\r", "\ufefftag,url", "m0,url", "tag,URL,x", ",url",
    "curl,tag", f"{U}/url,url", '"url,tag"', "urls,tag", "tag,url\u3000",
    "127.0.0.1:8/b,URL", "example.com,page,url", "a@b,url",  # s29 t4 1: records, no header
]  # fmt: skip


def test_a_row_whose_url_has_no_scheme_and_a_url_cell_is_a_row():
    """A bare URL (the default scheme's) beside a cell 'URL' passed for a header row again: its
    line had no record, and the rows after it were fetched from their 'kind' cells (s29 t4 1).
    A cell of a header holds a name, never a '.', ':', '/', '@', '{', '}' or '='."""
    data = b"url,kind\n127.0.0.1:8/a,page\n127.0.0.1:8/b,URL\n127.0.0.1:8/c,page\n"
    entries = list(iter_csv(read_pieces(io.BytesIO(data))))
    assert [e.url for e in entries] == [f"127.0.0.1:8/{x}" for x in "abc"], entries
    assert {e.header for e in entries} == {b"url,kind"}
    assert formats.last_header_row(data) == b"url,kind"


@pytest.mark.parametrize("line", SPELLINGS)
def test_last_header_row_agrees_with_the_reader(line):
    """A header row is what the csv reader takes for one (_a_header_again), whatever its
    quotes, blanks or marks: a regular expression missed `tag," url "`, NBSP and others, and
    the next input's rows were read from their meta cells (s26 r6 6). Where the reader's own
    columns decide (an empty url cell under them: `,url`), they decide for it too (s30 r2 1)."""
    head = f"url,tag\n{U}/1,t\n"
    data = f"{head}{line}\nx,{U}/m\n".encode()
    entries = list(iter_csv(read_pieces(io.BytesIO(data))))
    found = formats.last_header_row(data)
    assert found == entries[-1].header, (found, entries[-1].header)


@pytest.mark.parametrize("line", ["intranet/a,url", "source.page,url", "note,url", "x,URL"])
def test_last_header_row_agrees_with_the_reader_under_a_header_spelled_otherwise(line):
    """s31 r1 4: the header in force was taken as written (`URL,note`), not as the reader
    names its columns (`url`): the two disagreed on rows that fit it."""
    rest = f"{U}/1,t\n{line}\nx,{U}/m\n".encode()  # a block after the header, as raw_rest's
    entries = list(iter_csv(read_pieces(io.BytesIO(b"URL,note\n" + rest))))
    found = formats.last_header_row(rest, header=b"URL,note")
    assert (found or b"URL,note") == entries[-1].header, (found, entries[-1].header)


def test_last_header_row_is_the_last_one():
    data = f"url,tag\n{U}/1,t\ntag,url\nm,{U}/m\nURL,x\n{U}/2,y\n".encode()
    assert formats.last_header_row(data) == b"URL,x"
    assert formats.last_header_row(f"{U}/1,t\n{U}/2,url_ok\n".encode()) is None


def route(path: str):
    return 200, {}, b"slow", 30.0 if path.startswith("/slow/") else 0.0


def hard_stop(tmp_path, rows_after: Callable[[str], list[str]], raw_block: int | None) -> str:
    """Run fetcher over a csv of `url,tag`, three slow rows, then rows_after(base); stop it
    with SIGINT then SIGTERM once both slow requests are in; its --failed's path and base.
    raw_block: reader.RAW_BLOCK (None: the default); parsing stops at once (PARSE_BUDGET 0)."""
    block = "" if raw_block is None else f"reader.RAW_BLOCK = {raw_block}\n"
    code = (
        f"import runpy\nimport fetcher.input.reader as reader\n{block}"
        "reader.PARSE_BUDGET = 0.0\n"
        "runpy.run_module('fetcher', run_name='__main__', alter_sys=True)\n"
    )
    failed = tmp_path / "failed.csv"
    with counting_server(route) as server:
        base = server.url("").rstrip("/")
        rows = ["url,tag", *(f"{base}/slow/{n},s{n}" for n in range(3)), *rows_after(base)]
        (tmp_path / "big.csv").write_text("\n".join(rows) + "\n")
        args = ["-q", "-j2", "--input-format", "csv", "-i", str(tmp_path / "big.csv")]
        args += ["--failed", str(failed), "--format", "jsonl"]
        process = subprocess.Popen(
            [sys.executable, "-c", code, *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env(),
        )  # fmt: skip
        try:
            wait_for(lambda: server.requests >= 2, "the two slow requests")
            signal_twice(process, 2, 15)
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 143, stderr.decode()[-2000:]
    assert b"still going" not in stderr, stderr.decode()[-2000:]
    return base


def test_a_hard_stop_over_a_csv_with_an_inner_header_hands_back_rows_that_read_back(tmp_path):
    """End to end (s26 r6 1, with small raw blocks): after SIGINT then SIGTERM, --failed read
    back gives every unread row its own URL, none a tag."""

    def rows(base: str) -> list[str]:
        inner = [f"m{n},{base}/m{n}" for n in range(3000)]
        return [f"{base}/a{n},t{n}" for n in range(30_000)] + ["tag,url"] + inner

    base = hard_stop(tmp_path, rows, 4096)
    urls = [url for url, _ in read_back(tmp_path / "failed.csv")]
    assert not [url for url in urls if url is None or "/" not in url.split("://")[-1]]
    assert {f"{base}/m{n}" for n in range(3000)} <= set(urls)


def test_a_hard_stop_over_quoted_header_like_lines_exits_in_time_with_every_row(tmp_path):
    """Each `name,url` line inside a quoted cell re-read the whole block before it to learn
    that it was inside quotes: quadratic, a hard stop over such rows missed its second, the
    watchdog exited after 10 s and --failed lost most of the rest (s27 r1 1)."""

    def rows(base: str) -> list[str]:
        return [f'{base}/a{n},"columns:\nname,url\nend"' for n in range(20_000)]

    base = hard_stop(tmp_path, rows, None)
    urls = [url for url, _ in read_back(tmp_path / "failed.csv")]
    assert {f"{base}/a{n}" for n in range(20_000)} <= set(urls)


def _quoting_reads(monkeypatch, block: bytes) -> int:
    """How many times last_header_row(block) has the csv reader's moves read a piece of text."""
    calls = 0
    real = formats._quoting_after

    def counted(text: bytes, quoting: int) -> int:
        nonlocal calls
        calls += 1
        return real(text, quoting)

    monkeypatch.setattr(formats, "_quoting_after", counted)
    assert last_header_row(block) is None
    monkeypatch.setattr(formats, "_quoting_after", real)
    return calls


@pytest.mark.parametrize("first", [b"", b'{U}/0,5" disk\n'])
def test_the_header_search_reads_a_block_once(monkeypatch, first):
    """Each header-like line inside a quoted cell had the whole block before it read again,
    line by line: 2,000 such records took 3.3 s, 8,000 113 s (s27 r1 1). Four times the
    records are at most four times the reading, with RFC 4180's quotes and with a quote
    inside an unquoted cell (5" disk), which the quotes' count alone cannot read."""
    first = first.replace(b"{U}", U.encode())

    def block(records: int) -> bytes:
        notes = (b'%s/%d,"note\nurl,x\n"\n' % (U.encode(), n) for n in range(records))
        return first + b"".join(notes)

    small, large = (_quoting_reads(monkeypatch, block(n)) for n in (200, 800))
    assert large <= 4 * small + 8, (small, large)


def _reader_stands_after(text: bytes, quoting: int) -> int:
    """Where the reader stands after whole lines of text (an unended last one ended)."""
    return formats.csv_record_ends(text + b"\n", quoting)[1]


def test_the_header_search_reads_quotes_as_the_reader_does():
    """csv_state_after took an even number of quotes for "between records" (RFC 4180), but the
    reader takes a quote inside an unquoted cell (5" disk) for a plain character: after one, a
    header-like line inside a quoted cell was taken for a header (s27 r1 2). Every text of up to
    6 of the bytes that matter, from each state the search starts in, agrees with the reader."""
    field_start, quoted = formats.CSV_RECORD_START, formats._QUOTED
    for size in range(7):
        for letters in itertools.product(b'",a\n', repeat=size):
            text = bytes(letters)
            for quoting in (field_start, quoted):
                state = _reader_stands_after(text, quoting)
                assert formats.csv_state_after(text, quoting) == state, (text, quoting)
                block = b"url,1\n" + text + b"\nurl,2"
                inner = _reader_stands_after(b"url,1\n" + text, quoting)
                expected = b"url,2" if inner != quoted else None
                expected = expected or (b"url,1" if quoting != quoted else None)
                assert last_header_row(block, quoting) == expected, (text, quoting)


def test_a_quote_in_an_unquoted_cell_leaves_the_next_input_its_header(tmp_path):
    """The reviewer's case (s27 r1 2): `5" disk`, then a note quoting `tag,url` on a line of
    its own; the next input's rows of `tag,url` were written without their header."""
    block = f'{U}/x,5" disk,"a note quoting the other file:\ntag,url\nend"\n{U}/y,n,m\n'
    jobs = list(raw_rest(io.BytesIO(block.encode()), "csv", b"url,size,note", JobMaker("https")))
    assert {job.header_after for job in jobs} == {b"url,size,note"}
    path = tmp_path / "failed.csv"
    failed = FailedLines(str(path))
    failed.add(f"{U}/a,5,n".encode(), b"url,size,note")
    for job in jobs:
        failed.add(job.raw, job.header, job.lines, True, job.header_after)
    failed.add(f"t1,{U}/b1".encode(), b"tag,url")
    failed.commit()
    back = read_back(path)
    assert [url for url, _ in back] == [f"{U}/a", f"{U}/x", f"{U}/y", f"{U}/b1"]
    assert back[-1] == (f"{U}/b1", b"tag,url")


def test_a_header_like_line_inside_a_quoted_cell_is_no_header(monkeypatch):
    """A note quoting `tag,url` on a line of its own, inside a quoted cell, was taken for a
    header: the next input's rows of `tag,url` were written without their header, and read
    back under `url,note` (s26 r8 2). Also across blocks: a block may start inside quotes."""
    block = f'{U}/x,"a note quoting the other file:\ntag,url\nend"\n{U}/y,n'.encode()
    assert last_header_row(block) is None
    assert last_header_row(b'tag,url\nend"\nm0,x', formats.csv_state_after(b'a,"open')) is None
    monkeypatch.setattr(reader, "RAW_BLOCK", 16)
    jobs = list(raw_rest(io.BytesIO(block + b"\n"), "csv", b"url,note", JobMaker("https")))
    assert {job.header_after for job in jobs} == {b"url,note"}, jobs


def test_a_url_ending_in_url_is_not_parsed_as_a_header_candidate(monkeypatch):
    """Every line of a list of /…/url paths was parsed as a possible header: a hard stop over
    300,000 such csv lines took 1.9 s (s26 r8 1). Only a cell that is `url` is a candidate."""
    rows = b"".join(b"127.0.0.1:9/q/%d/url,%d\n" % (n, n) for n in range(20_000))
    calls = 0
    real = formats._cells

    def counted(line: bytes) -> list[str] | None:
        nonlocal calls
        calls += 1
        return real(line)

    monkeypatch.setattr(formats, "_cells", counted)
    assert last_header_row(rows) is None
    assert calls == 0


@pytest.mark.parametrize(
    "header",
    ["id,Date/Time,url", "id,No.,url", "url,Notes: internal", "url,a=b", "{x},url", "url,e-mail"],
)
def test_a_later_header_with_a_dot_colon_or_slash_in_a_name_is_a_header(header):
    """s30 r1 2: a sheet's column names hold '.', ':', '/' (No., Date/Time): the later file's
    header row was read as a row, its rows with the first file's columns: the meta cell's URL
    fetched, the row's own never retried. A cell that is a URL (a host's '.', ':', '@' with more
    host after it) is still a row's."""
    later = header.encode()
    row = ",".join("http://127.0.0.1:8/b" if cell == "url" else "x" for cell in header.split(","))
    data = b"url,id\nhttp://127.0.0.1:8/a,1\n" + later + b"\n" + row.encode() + b"\n"
    entries = list(iter_csv(read_pieces(io.BytesIO(data))))
    assert [(e.url, e.header) for e in entries] == [
        ("http://127.0.0.1:8/a", b"url,id"), ("http://127.0.0.1:8/b", later)], entries  # fmt: skip
    assert formats.last_header_row(data) == later


@pytest.mark.parametrize("bare", ["intranet/a", "localhost/x", "intranet?q=1", "h#frag"])
def test_a_row_of_a_dotless_host_with_a_path_beside_a_url_cell_is_a_row(bare):
    """s30 r2 1: bd70c90's rule let `intranet/a,URL` pass for a header again: its line had no
    record and the rows after it were fetched from their meta cells. A row that fits the
    columns is a header only when its cell under url holds nothing a URL does."""
    data = f"url,kind\n{U}/a,page\n{bare},URL\n{U}/c,page\n".encode()
    entries = list(iter_csv(read_pieces(io.BytesIO(data))))
    assert [e.url for e in entries] == [f"{U}/a", bare, f"{U}/c"], entries
    assert {e.header for e in entries} == {b"url,kind"}
    assert formats.last_header_row(data) == b"url,kind"
