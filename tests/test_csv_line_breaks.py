"""A csv record is one row for every csv reader (SPEC §2.4), whatever its cells hold.

Python's csv writer quotes a cell only for the characters of its line terminator ("\\n" here),
while every reader (Python's, RFC 4180's, spreadsheets') also ends a row at a bare CR: a server's
reason phrase, or an input line, holding one would forge rows. A cell holding a CR is quoted;
every other row is written exactly as before (minimal quoting, "\\n" line ends).
"""

from __future__ import annotations

import csv
import io

import pytest

from fetcher.input.jobs import Job
from fetcher.output.records import CSV_FIELDS, CsvFormatter, csv_row
from fetcher.results import Result
from tests.conftest import invoke
from tests.servers import FaultServer, respond


def rows_of(text: str) -> list[list[str]]:
    """The rows Python's csv reader reads from text, as from a file opened with newline=""."""
    return list(csv.reader(io.StringIO(text, newline="")))


def result_with(url: str, reason: str) -> Result:
    result = Result(Job(seq=1, url=url, target=url, line=1, raw=url.encode()))
    result.status, result.reason = 404, reason
    return result


@pytest.mark.parametrize("reason", ["Not Found\rINJECTED", "\r", "a\r\nb", "end\r", "\rstart"])
def test_a_cell_with_a_carriage_return_is_read_back_as_one_cell(reason):
    line = CsvFormatter()(result_with("http://h/a", reason))
    (row,) = rows_of(line)
    quoted = "'" if reason.startswith("\r") else ""  # as a formula's start (test_csv_formulas)
    assert row[CSV_FIELDS.index("reason")] == quoted + reason
    assert line.endswith("\n") and not line.endswith("\r\n")


@pytest.mark.parametrize("reason", ["Not Found", "a,b", 'say "x"', "two\nlines", "tab\there"])
def test_rows_without_a_carriage_return_are_written_as_before(reason):
    """The same bytes as csv.writer with lineterminator "\\n" has always written."""
    result = result_with("http://h/a", reason)
    expected = io.StringIO()
    formatter = CsvFormatter()
    csv.writer(expected, lineterminator="\n").writerow(csv_row(result))
    assert formatter(result) == expected.getvalue()
    assert formatter.header() == ",".join(CSV_FIELDS) + "\n"


def test_a_reason_phrase_with_a_bare_cr_stays_in_its_row(tmp_path):
    head = b"HTTP/1.1 404 Not Found\rINJECTED\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    results = tmp_path / "r.csv"
    with FaultServer(respond(head)) as server:
        url = server.url("/cr")
        result = invoke(["-q", "--retries", "0", "--format", "csv", "--results", str(results), url])
    assert result.exit_code == 3, result.stderr  # every URL failed
    with results.open(newline="") as stream:
        header, *rows = list(csv.reader(stream))
    assert header == list(CSV_FIELDS)
    (row,) = rows
    record = dict(zip(header, row, strict=True))
    assert record["url"] == url
    # A bare CR in the status line is read as a space (RFC 9112 2.2, s24 h2 4), in one row.
    assert record["reason"] == "Not Found INJECTED"
    assert record["error_message"] == "404 Not Found INJECTED"


def test_an_input_line_with_a_cr_is_one_invalid_url_row(tmp_path):
    listing = tmp_path / "crin.txt"
    listing.write_bytes(b"http://127.0.0.1:9/a\rINJ\n")  # a list with CR-only line ends
    result = invoke(["-q", "--format", "csv", "-i", str(listing)])
    header, *rows = rows_of(result.stdout)
    (row,) = rows
    record = dict(zip(header, row, strict=True))
    assert record["url"] == "http://127.0.0.1:9/a\rINJ"
    assert record["error_kind"] == "invalid_url"
    assert record["ok"] == "false"
