"""--results and --failed that reach a terminal by a name (/dev/stderr, /dev/stdout, /dev/fd/N,
/dev/tty) are for eyes, as records on a terminal standard output are: escaped (what a server or
a URL list says never drives the terminal) and printed above the live display, never glued into
one of its frames (s26 h5 1). The same options naming a regular file or a pipe still get the
exact data, byte for byte. And a terminal is written in UTF-8 when PYTHONIOENCODING names an
encoding that is not ASCII-compatible (s26 h5 4).
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from tests.conftest import FETCHER, clean_env
from tests.servers import slow_urls
from tests.terminals import controlling_terminal
from tests.test_terminal import (
    COLUMNS,
    TerminalRun,
    progress_fragments,
    read_until_closed,
    run_on_terminal,
    strip_escapes,
    terminal_env,
)
from tests.test_terminal_csv import REASON, hostile, hostile_answer, shown  # noqa: F401

ESCAPED_REASON = "\\x1b[31mRED\\x1b]0;title\\x07\\x9b31m"
# A URL list's line that would clear the screen and set the clipboard (OSC 52), and a bidi one.
LIST_LINES = ["http://127.0.0.1:9/x\x1b[2J\x1b[H\x1b]52;c;SGVsbG8=\x07",
              "http://127.0.0.1:9/\u202eevil"]  # fmt: skip
SHOWN_LINES = ["http://127.0.0.1:9/x\\x1b[2J\\x1b[H\\x1b]52;c;SGVsbG8=\\x07",
               "http://127.0.0.1:9/\\u202eevil"]  # fmt: skip


def on_stderr_terminal(args: list[str], tmp_path: Path, **options: object) -> TerminalRun:
    return run_on_terminal(args, tmp_path, stdout_on_terminal=False, stderr_on_terminal=True,
                           **options)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.parametrize("target", ["/dev/stderr", "/dev/fd/2"])
@pytest.mark.parametrize("format_name", ["csv", "jsonl"])
def test_results_to_a_terminal_are_escaped(hostile, tmp_path, target, format_name):  # noqa: F811
    run = on_stderr_terminal(
        ["-q", "--retries", "0", "--format", format_name, "--results", target,
         hostile.url("/x\u202eevil")],
        tmp_path,
    )  # fmt: skip
    assert run.status == 3, run.terminal
    assert run.stdout == ""
    [line] = [piece for piece in shown(run.terminal).splitlines() if "127.0.0.1" in piece]
    if format_name == "jsonl":
        record = json.loads(line)  # JSON's own escapes: the line still parses to the data
        assert record["reason"] == REASON
        assert record["url"].endswith("/x\u202eevil") and "\\u202e" in line
    else:
        [row] = csv.DictReader([run_header(run), line])
        assert row["reason"] == ESCAPED_REASON
        assert row["url"].endswith("/x\\u202eevil")


def run_header(run: TerminalRun) -> str:
    return next(piece for piece in shown(run.terminal).splitlines() if piece.startswith("url,"))


def test_results_to_the_terminal_stdout_is_by_name_are_escaped(hostile, tmp_path):  # noqa: F811
    run = run_on_terminal(
        ["-q", "--retries", "0", "--format", "csv", "--results", "/dev/stdout", hostile.url("/a")],
        tmp_path, stdout_on_terminal=True, stderr_on_terminal=False,
    )  # fmt: skip
    assert run.status == 3, run.stderr
    assert ESCAPED_REASON in shown(run.terminal)


def test_failed_to_a_terminal_is_escaped(tmp_path):
    listing = tmp_path / "in.txt"
    listing.write_text("\n".join(LIST_LINES) + "\n", encoding="utf-8")
    run = on_stderr_terminal(["-q", "-i", str(listing), "--failed", "/dev/stderr"], tmp_path)
    assert run.status == 3, run.terminal
    lines = shown(run.terminal).splitlines()
    assert lines == SHOWN_LINES


@pytest.mark.parametrize("option", ["--results", "--failed"])
def test_a_terminal_by_name_gets_its_lines_above_the_live_display(server, tmp_path, option):
    """Records and --failed lines were glued to the end of a stale frame and erased by the next
    redraw: they are printed through the display's console, above it, each whole."""
    urls = [*slow_urls(server, 12, 0.1), *(server.url(f"/status/404?{n}") for n in range(4))]
    run = on_stderr_terminal(
        ["-q", "--progress", "-j", "3", "--format", "jsonl", option, "/dev/stderr", *urls],
        tmp_path,
    )
    assert run.status == 1, run.terminal
    assert progress_fragments(run), "the live display was not shown"
    expected = urls if option == "--results" else urls[-4:]
    for url in expected:
        this_url = re.compile(re.escape(url) + r"(?![\d/])")  # /slow/0.1/1 is not .../10
        holding = [piece for piece in run.fragments if this_url.search(piece)]
        assert len(holding) == 1, (url, holding)
        [piece] = holding
        if option == "--results":
            assert json.loads(piece)["url"] == url
        else:
            assert piece == url
    for piece in run.fragments:
        if "fetching" in piece:
            assert "http://" not in piece, f"a line mixed with the progress display: {piece!r}"


def test_the_controlling_terminal_by_its_name_is_the_display_s_terminal(server, tmp_path):
    """/dev/tty is the terminal stderr is (its own device number is not): lines above the
    display there too, and escaped."""
    urls = [*slow_urls(server, 6, 0.1), server.url("/status/404")]
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
    with (tmp_path / "stdout").open("wb") as out:
        process = subprocess.Popen(
            [*FETCHER, "-q", "--progress", "-j", "2", "--format", "csv", "--results", "/dev/tty",
             *urls],
            stdin=subprocess.DEVNULL, stdout=out, stderr=slave, env=terminal_env(),
            preexec_fn=controlling_terminal(slave), pass_fds=(slave,),  # noqa: PLW1509
        )  # fmt: skip
    os.close(slave)
    try:
        terminal = read_until_closed(master, 30).decode("utf-8", "backslashreplace")
        status = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    run = TerminalRun(status, terminal, "", "")
    assert run.status == 1 and progress_fragments(run), terminal
    for url in urls:
        this_url = re.compile(re.escape(url) + r"(?![\d/])")
        holding = [piece for piece in run.fragments if this_url.search(piece)]
        assert len(holding) == 1 and holding[0].startswith(url + ","), (url, holding)


def test_files_and_pipes_still_get_the_exact_data(hostile, tmp_path):  # noqa: F811
    """Named a regular file or a pipe, --results and --failed are unchanged, byte for byte."""
    listing = tmp_path / "in.txt"
    listing.write_text("\n".join([*LIST_LINES, hostile.url("/a")]) + "\n", encoding="utf-8")
    results, failed = tmp_path / "results.csv", tmp_path / "failed.txt"
    args = ["-q", "--retries", "0", "--format", "csv", "-i", str(listing)]
    to_files = fetch([*args, "--results", str(results), "--failed", str(failed)])
    to_pipes = fetch([*args, "--results", "/dev/stdout", "--failed", "/dev/stderr"])
    assert to_files.returncode == to_pipes.returncode == 3, to_files.stderr
    expected_failed = sorted(line.encode() + b"\n" for line in [*LIST_LINES, hostile.url("/a")])
    assert sorted(failed.read_bytes().splitlines(keepends=True)) == expected_failed
    assert sorted(to_pipes.stderr.splitlines(keepends=True)) == expected_failed
    assert REASON.encode() in results.read_bytes()
    assert without_times(results.read_bytes()) == without_times(to_pipes.stdout)


def fetch(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*FETCHER, *args], capture_output=True, env=clean_env(), timeout=30)


def without_times(records: bytes) -> list[bytes]:
    """The csv records, sorted, their seconds taken out (the one field two runs differ in)."""
    return sorted(re.sub(rb"[0-9]+\.[0-9]+", b"T", line) for line in records.splitlines())


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-16-le"])
def test_a_terminal_is_written_in_utf_8_whatever_a_wide_pythonioencoding(
    server, tmp_path, encoding
):
    """choices.md: records in UTF-8 whatever the locale. PYTHONIOENCODING=utf-16 wrote records,
    the display and messages to the terminal in UTF-16."""
    urls = [server.url("/a?caf\u00e9"), server.url("/status/404")]
    run = run_on_terminal(["--format", "jsonl", *urls], tmp_path, stdout_on_terminal=True,
                          stderr_on_terminal=True, env={"PYTHONIOENCODING": encoding})  # fmt: skip
    assert "\x00" not in run.terminal and "\\x" not in run.terminal, run.terminal[:200]
    assert run.status == 1
    text = strip_escapes(run.terminal)
    assert "caf\u00e9" in text and "fetching" in text
    assert "\\u" not in text  # UTF-8: nothing needed escaping
