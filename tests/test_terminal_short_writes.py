"""Records on a terminal under PYTHONUNBUFFERED=1 (set in many Docker images), when a signal
comes while a record's write is blocked (the terminal at XOFF, a pager, a slow link).

The kernel then returns the part of the write already taken, and Python's unbuffered standard
stream (a TextIOWrapper over a raw FileIO) drops the count: the rest of the record was never
written, and its line was in neither the output nor --failed (s24 r1 2). A record is written
whole, or its line goes to --failed.

A pseudo-terminal nobody reads stands in for the blocked terminal: the test waits until the
main thread (which writes the records) is stuck in its write to the terminal, sends SIGINT,
waits until the kernel has delivered it (the write has returned by then), and only then reads.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import FETCHER
from tests.servers import counting_server, is_pending, wait_for
from tests.test_hard_stop_blocked import end, wait_until_stuck_writing
from tests.test_terminal import read_until_closed, strip_escapes, terminal_env

BODY = b"x" * 200_000  # far more than a pty holds: each record's write blocks part-way
URLS = 30


def big(path: str) -> tuple[int, dict[str, str], bytes, float]:
    return 200, {}, BODY, 0.0


def interrupted_on_terminal(tmp_path: Path, extra: list[str]) -> tuple[str, list[str], list[str]]:
    """Run over URLS big bodies, stdout and stderr on one pty; SIGINT once the main thread is
    stuck writing to it. Returns what the terminal got, the input lines and --failed's."""
    master, slave = os.openpty()
    with counting_server(big) as server:
        lines = [server.url(f"/big/{n}") for n in range(URLS)]
        (tmp_path / "urls.txt").write_text("".join(f"{line}\n" for line in lines))
        args = ["-j", "2", "--format", "jsonl", "--include-body", "-i", "urls.txt"]
        process = subprocess.Popen(
            [*FETCHER, *args, "--failed", "failed.txt", *extra],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=tmp_path,
            env={**terminal_env(), "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        os.close(slave)
        try:
            wait_until_stuck_writing(process, 1, "a record's write blocked on the terminal")
            process.send_signal(signal.SIGINT)
            wait_for(lambda: not is_pending(process.pid, signal.SIGINT), "SIGINT delivered")
            terminal = read_until_closed(master, timeout=60)
            process.wait(timeout=20)
        finally:
            end(process)
            os.close(master)
    failed = tmp_path / "failed.txt"
    return terminal.decode("utf-8", "replace"), lines, failed.read_text().splitlines()


@pytest.mark.parametrize("extra", [["-q"], ["--progress"]], ids=["own-console", "display-console"])
def test_a_signal_during_a_blocked_write_to_a_terminal_cuts_no_record(tmp_path, extra):
    """-q: records go through a console of their own on stdout; with the live display on the
    same terminal, through the display's console on stderr. Both were cut."""
    terminal, lines, failed = interrupted_on_terminal(tmp_path, extra)
    whole, cut = set(), []
    for piece in re.split(r"[\r\n]", strip_escapes(terminal)):
        if not piece.startswith("{"):
            continue  # the display's lines, the summary
        try:
            record = json.loads(piece)
        except ValueError:
            cut.append(f"{piece[:80]}... ({len(piece)} characters)")
            continue
        assert record["body"] == BODY.decode(), record["url"]
        whole.add(record["url"])
    assert not cut, f"records cut on the terminal: {cut}"
    missing = set(lines) - whole - set(failed)
    assert not missing, f"{len(missing)} lines neither whole on the terminal nor in --failed"
