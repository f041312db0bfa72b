"""Records on a terminal are for a person whatever the format (docs/guarantees.md): csv and jsonl
printed to a terminal show control characters, bidi overrides and line separators as ``\\x1b``
-style escapes, as the text format does; piped, or to --results FILE, they keep the exact data.

A hostile server puts CSI and OSC sequences (an unterminated one would swallow what follows) and
a C1 CSI in its reason phrase and Content-Type; one URL carries a bidi override, another U+2028
(whitespace: an invalid_url record, the URL shown as read).
"""

from __future__ import annotations

import csv
import io
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import FaultServer, read_request
from tests.test_terminal import ESCAPES, run_on_terminal

REASON = "\x1b[31mRED\x1b]0;title\x07\x9b31m"  # CSI, OSC + BEL, C1 CSI (U+009B)
CONTENT_TYPE = "text/html\x1b]0;ct"  # an OSC left open
# A bidi override and a format character beyond U+FFFF (a tag) in the URL as read: in jsonl the
# latter needs JSON's surrogate pair, \U000e0041 did not parse (s17 h1 D3).
BIDI_PATH = "/x\u202eevil\U000e0041"
SEPARATOR_PATH = "/y\u2028line"  # a line separator: whitespace, so an invalid URL
# What must never reach the terminal from the data: C0 but LF, DEL, C1, bidi, separators.
RAW = "[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]"


def hostile_answer(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 404 " + REASON.encode("latin-1") + b"\r\n")
    conn.sendall(b"Content-Type: " + CONTENT_TYPE.encode("latin-1") + b"\r\n")
    conn.sendall(b"Content-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def hostile() -> Iterator[FaultServer]:
    with FaultServer(hostile_answer) as running:
        yield running


def shown(terminal: str) -> str:
    """What the terminal shows once Rich's own escapes are gone (records print no colour)."""
    text = ESCAPES.sub("", terminal).replace("\r\n", "\n")
    assert not re.search(RAW, text), repr(text)
    return text


def urls(server: FaultServer) -> list[str]:
    return [server.url(BIDI_PATH), server.url(SEPARATOR_PATH)]


def records_on_a_terminal(record_format: str, server: FaultServer, tmp_path):
    """Both URLs fetched with the records on a terminal (and stderr not), exit status 3."""
    run = run_on_terminal(
        ["--format", record_format, "-q", "--retries", "0", *urls(server)],
        tmp_path,
        stdout_on_terminal=True,
        stderr_on_terminal=False,
    )
    assert run.status == 3, run.stderr
    return run


def test_csv_on_a_terminal_shows_escapes_not_control_sequences(hostile, tmp_path):
    run = records_on_a_terminal("csv", hostile, tmp_path)
    assert "\x1b]" not in run.terminal and "\x07" not in run.terminal
    lines = shown(run.terminal).splitlines()
    assert len(lines) == 3, lines  # the header and two records: U+2028 broke no line
    rows = {row["error_kind"]: row for row in csv.DictReader(lines)}
    assert rows["http"]["reason"] == "\\x1b[31mRED\\x1b]0;title\\x07\\x9b31m"
    assert rows["http"]["content_type"] == "text/html\\x1b]0;ct"
    assert rows["http"]["url"].endswith("/x\\u202eevil\\udb40\\udc41")
    assert rows["invalid_url"]["url"].endswith("/y\\u2028line")


def test_jsonl_on_a_terminal_shows_escapes_and_still_parses_to_the_data(hostile, tmp_path):
    run = records_on_a_terminal("jsonl", hostile, tmp_path)
    lines = shown(run.terminal).splitlines()
    assert len(lines) == 2, lines
    assert "\\u202e" in lines[0] + lines[1] and "\\u2028" in lines[0] + lines[1]
    # The escapes are JSON's own: the exact data comes back.
    records = {record["url"]: record for record in map(json.loads, lines)}
    assert set(records) == set(urls(hostile))
    assert records[hostile.url(BIDI_PATH)]["reason"] == REASON
    assert records[hostile.url(BIDI_PATH)]["content_type"] == CONTENT_TYPE


def test_csv_to_a_results_file_keeps_the_exact_data_beside_a_terminal(hostile, tmp_path):
    url = hostile.url(BIDI_PATH)
    results = tmp_path / "records.csv"
    run = run_on_terminal(
        ["--format", "csv", "-q", "--retries", "0", "--results", str(results), url],
        tmp_path,
        stdout_on_terminal=True,
        stderr_on_terminal=True,
    )
    assert run.status == 3, run.terminal
    text = Path(results).read_text(encoding="utf-8")
    (row,) = csv.DictReader(io.StringIO(text, newline=""))
    assert row["reason"] == REASON
    assert row["content_type"] == CONTENT_TYPE
    assert row["url"] == url


def soft_hyphen_answer(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 404 caf\xe9\xad\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize("encoding", [None, "ascii"], ids=["utf-8", "ascii-terminal"])
def test_jsonl_on_a_terminal_parses_whatever_it_escapes(tmp_path, encoding):
    """A soft hyphen (U+00AD, a format character) in a reason phrase was shown as Python's
    \\xad, and on an ASCII terminal 'é' as \\xe9: neither is JSON, the line no longer parsed
    (s17 r1 7). jsonl takes JSON's own escapes (\\u00ad), every one it needs."""
    with FaultServer(soft_hyphen_answer) as server:
        run = run_on_terminal(
            ["--format", "jsonl", "-q", "--retries", "0", server.url("/x")],
            tmp_path,
            stdout_on_terminal=True,
            stderr_on_terminal=False,
            env={"PYTHONIOENCODING": encoding} if encoding else None,
        )
    [line] = shown(run.terminal).splitlines()
    assert json.loads(line)["reason"] == "caf\u00e9\u00ad", line
    assert "\\u00ad" in line and (encoding is None or line.isascii()), line
