"""Signals while the terminal's output is stopped (Ctrl-S, XOFF): the live display's refresh
thread blocks in a write to the terminal holding the stream's lock, and the main thread blocks
on that lock at its next flush of records there, where no Python signal handler can run. A
second signal (or a first SIGQUIT) still ends the run within the hard stop's cap, status kept,
every line read that did not end ok in --failed FILE: the watch of the signals' wakeup socket
acts on it in the handler's place (s26 r4 1). A first SIGINT alone waits for the terminal.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fetcher.run.hard_stop import HARD_STOP_CAP
from tests.conftest import FETCHER
from tests.servers import counting_server, signal_twice, wait_for
from tests.terminals import controlling_terminal
from tests.test_terminal import terminal_env

XOFF = b"\x13"
SYS_WRITE, SYS_FUTEX = 1, 202  # x86_64
SLOW, MISSING = 30, 10  # URLs that take a minute, and 404s


def blocked(pid: int) -> bool:
    """Whether the main thread waits on a lock with no time limit (a futex without a timeout:
    its idle wait for results has one) while another thread of the process is in a write to
    the terminal on its stderr (/proc's syscall: the call's number, then its arguments)."""
    try:
        main = Path(f"/proc/{pid}/task/{pid}/syscall").read_text().split()
        terminal = os.readlink(f"/proc/{pid}/fd/2")
        writing = False
        for task in Path(f"/proc/{pid}/task").iterdir():
            call = (task / "syscall").read_text().split()
            if len(call) > 1 and call[0] == str(SYS_WRITE):
                writing = writing or os.readlink(f"/proc/{pid}/fd/{int(call[1], 16)}") == terminal
    except (OSError, ValueError):
        return False
    untimed = len(main) > 4 and main[0] == str(SYS_FUTEX) and int(main[4], 16) == 0
    return untimed and writing


def read_until(master: int, text: bytes, timeout: float = 20.0) -> None:
    seen, deadline = b"", time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"no {text!r} on the terminal: {seen[-500:]!r}"
        if select.select([master], [], [], 0.1)[0]:
            seen += os.read(master, 65536)


@pytest.mark.parametrize(
    ("records", "signals"),
    [
        (["--results", "/dev/tty"], [signal.SIGINT, signal.SIGINT]),
        (["--results", "/dev/stderr"], [signal.SIGINT, signal.SIGINT]),
        (["--results", "/dev/stderr"], [signal.SIGTERM, signal.SIGTERM]),
        (["--format", "text"], [signal.SIGINT, signal.SIGINT]),  # records on the terminal stdout
        (["--results", "/dev/stderr"], [signal.SIGQUIT]),
    ],
    ids=["results-tty", "results-stderr", "sigterm", "stdout", "sigquit"],
)
def test_a_hard_stop_ends_a_run_whose_terminal_output_is_stopped(tmp_path, records, signals):
    def route(path: str) -> tuple[int, dict[str, str], bytes, float]:
        if "/slow/" in path:
            return 200, {}, b"slow", 60.0
        return 404, {}, b"missing", 0.0

    with counting_server(route) as server:
        lines = [server.url(f"/slow/{n}") for n in range(SLOW)]
        lines += [server.url(f"/missing/{n}") for n in range(MISSING)]
        listing, failed = tmp_path / "many.txt", tmp_path / "fx.txt"
        listing.write_text("".join(f"{line}\n" for line in lines))
        master, slave = os.openpty()
        process = subprocess.Popen(
            [*FETCHER, "-i", str(listing), "-j", "4", "--progress", "--failed", str(failed),
             *records],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=terminal_env(),
            preexec_fn=controlling_terminal(slave),
        )  # fmt: skip
        os.close(slave)
        try:
            read_until(master, b"fetching")  # the first frame
            os.write(master, XOFF)  # the terminal stops its output: nothing more is read
            wait_for(lambda: blocked(process.pid), "the main thread blocked on the stream")
            started = time.monotonic()
            if len(signals) == 2:
                signal_twice(process, signals[0])
            else:
                process.send_signal(signals[0])
            status = process.wait(timeout=HARD_STOP_CAP + 5)
            took = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(master)
    assert status == {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGQUIT: 131}[signals[0]]
    assert took < HARD_STOP_CAP, f"{took:.2f} s"
    assert failed.exists(), "--failed was never written"
    assert sorted(failed.read_text().splitlines()) == sorted(lines)
