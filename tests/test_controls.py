"""Terminal injection (SPEC §2.4): what a server or a URL list says reaches a human's terminal
with its control characters made visible, never raw.

A hostile server answers with escape sequences in its reason phrase (clear the screen, set the
window title, ring the bell, a C1 CSI) and in a Location; a URL of the list carries some too.
The text format (piped or on a terminal), the summary (plain and Rich) and the -v log show them
as ``\\x1b``-style escapes; jsonl and csv records keep the exact data.
"""

from __future__ import annotations

import csv
import io
import json
import re
import socket

import pytest

from fetcher.redact import visible
from tests.conftest import run_process
from tests.servers import FaultServer, read_request
from tests.test_terminal import ESCAPES, run_on_terminal

REASON = "\x1b[2J\x1b]0;pwned\x07\x9b31m\r"  # clear, title + BEL, C1 CSI (U+009B), CR
LOCATION_TAIL = "\x1b]0;title\x07"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what must never come from the data


def hostile_answer(conn: socket.socket) -> None:
    """/start redirects with escapes in the Location; every other path is a 404 whose reason
    phrase is REASON (sent as Latin-1 bytes, as http.client reads them)."""
    head = read_request(conn)
    if head.startswith(b"GET /start "):
        location = b"/next" + LOCATION_TAIL.encode("latin-1")
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\n")
        conn.sendall(b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        return
    conn.sendall(b"HTTP/1.1 404 " + REASON.encode("latin-1") + b"\r\n")
    conn.sendall(b"Content-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def server():
    with FaultServer(hostile_answer) as running:
        yield running


def urls(server: FaultServer) -> list[str]:
    return [server.url("/start"), server.url("/esc\x1b[5mblink"), server.url("/plain")]


def test_visible_escapes_controls_and_keeps_the_rest():
    assert visible("a\x1b[2Jb\x07\x9b\r\n\t\x00\x7f") == "a\\x1b[2Jb\\x07\\x9b\\r\\n\\t\\x00\\x7f"
    assert visible("\u202eevil\u2066") == "\\u202eevil\\u2066"  # bidi overrides reorder text
    assert visible("café ✓ https://a.test/?q=1&x=\\") == "café ✓ https://a.test/?q=1&x=\\"


def test_text_format_summary_and_log_on_pipes_carry_no_control_character(server):
    done = run_process(["-v", "--retries", "0", *urls(server)])
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 3, stderr
    assert not RAW.search(stdout), repr(stdout)
    assert not RAW.search(stderr), repr(stderr)
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m" in stdout  # the reason, made visible
    assert "/esc\\x1b[5mblink" in stdout and "/esc\\x1b[5mblink" in stderr  # summary examples
    assert "INFO" in stderr  # the log was on
    assert len(stdout.splitlines()) == 3  # one line per record
    assert all(line.count("\t") == 4 for line in stdout.splitlines())


def test_jsonl_and_csv_keep_the_exact_data(server):
    done = run_process(["--format", "jsonl", "--retries", "0", *urls(server)])
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    answered = [record for record in records if record["status"] is not None]
    assert {record["reason"] for record in answered} == {REASON.rstrip("\r")}
    assert server.url("/esc\x1b[5mblink") in {record["url"] for record in records}  # invalid_url
    done = run_process(["--format", "csv", "--retries", "0", *urls(server)])
    rows = list(csv.DictReader(io.StringIO(done.stdout.decode(), newline="")))
    assert {row["reason"] for row in rows if row["status"]} == {REASON.rstrip("\r")}


def test_on_a_terminal_nothing_from_the_data_is_a_control_sequence(server, tmp_path):
    run = run_on_terminal(
        ["-v", "--retries", "0", *urls(server)],
        tmp_path,
        stdout_on_terminal=True,
        stderr_on_terminal=True,
    )
    assert run.status == 3, run.terminal
    shown = ESCAPES.sub("", run.terminal)  # Rich's own colours and cursor moves
    assert not RAW.search(shown.replace("\r", "")), repr(shown)  # Rich redraws after a CR
    assert "\x1b]0;" not in run.terminal and "\x07" not in run.terminal
    assert "\x1b[2J" not in run.terminal and "\x1b[5m" not in run.terminal
    assert "\x9b" not in run.terminal
    assert "\\x1b[2J" in shown  # the reason phrase, visible
    assert "\\x1b[5mblink" in shown  # the URL, in a record, the log and the summary table


def test_rich_summary_shows_a_url_that_looks_like_markup(server, tmp_path):
    odd = server.url("/[/x][bold]not bold")
    run = run_on_terminal(
        ["--retries", "0", odd], tmp_path, stdout_on_terminal=False, stderr_on_terminal=True
    )
    assert run.status == 3, run.terminal
    assert "Traceback" not in run.terminal
    assert "/[/x][bold]not" in ESCAPES.sub("", run.terminal)  # in the examples, as it is
