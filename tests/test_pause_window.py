"""URLs parked behind a Retry-After pause do not hold the run's window of lines read shut
(SPEC 2.3: "other hosts go on"), and memory stays bounded: past a cap of parked URLs, reading
waits as before (fetcher.run.window).

The run's own tests use two real servers on 127.0.0.1: host A pauses the run with its first
answer; host B's URLs, alternating with A's in the list, must all arrive while A is paused."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from fetcher.run.window import PARKED_PER_WINDOW, Window
from tests.conftest import run_background
from tests.servers import Route, counting_server, records

PAUSE = 60  # seconds A asks for: --max-retry-wait's default, far longer than B's URLs take
EACH = 16  # URLs of each host: with -j 2 (a window of 8) the old window filled with A's at 8
B_WITHIN = 30.0  # seconds B's URLs get: they take well under one; the old run waited PAUSE


@dataclass
class MixedRun:
    """A run over host A's URLs and B's, stopped once B's all came (or B_WITHIN passed)."""

    finished: bool  # B's URLs all reached it
    took: float
    b_seen: int
    a_requests: int
    b_records: list[dict[str, Any]]
    err: bytes


def mixed_run(tmp_path, a_route: Callable[[str], Route], lines: Callable[[str, str], str],
              args: list[str]) -> MixedRun:  # fmt: skip
    """Run fetcher over lines(A's URL /, B's), A answering with a_route, B with 200; stop it
    with SIGINT once B's EACH URLs came: A's would wait out their pause or backoff."""
    b_done = threading.Event()
    b_seen: list[str] = []

    def other_host(path: str) -> Route:
        b_seen.append(path)
        if len(b_seen) == EACH:
            b_done.set()
        return 200, {}, b"ok", 0.0

    with counting_server(a_route) as a, counting_server(other_host) as b:
        urls = tmp_path / "urls.txt"
        urls.write_text(lines(a.url("/"), b.url("/")))
        process = run_background([*args, "--format", "jsonl", "-i", str(urls)])
        try:
            started = time.monotonic()
            finished = b_done.wait(B_WITHIN)
            took = time.monotonic() - started
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
        finally:
            process.kill()
            process.wait()
    done = [r for r in records(out) if r["url"].startswith(b.url("/b"))]
    return MixedRun(finished, took, len(b_seen), a.requests, done, err)


def check_b_done(run: MixedRun) -> None:
    assert run.finished, f"{run.b_seen} of B's {EACH} URLs reached it in {run.took:.1f} s"
    assert len(run.b_records) == EACH and all(r["ok"] for r in run.b_records), run.err.decode()


@pytest.mark.parametrize("processes", [[], ["--processes", "2"]], ids=["threads", "processes"])
def test_a_paused_host_in_a_mixed_list_does_not_hold_up_the_other_host(tmp_path, processes):
    def paused_host(path: str) -> Route:
        return 503, {"Retry-After": str(PAUSE)}, b"busy", 0.0

    def alternating(a: str, b: str) -> str:
        return "".join(f"{a}a{n}\n{b}b{n}\n" for n in range(EACH))

    run = mixed_run(tmp_path, paused_host, alternating, ["-j", "2", *processes])
    check_b_done(run)
    assert run.a_requests <= 2  # the pause held: A was asked once (by each worker process, at most)


@pytest.mark.parametrize("processes", [[], ["--processes", "2"]], ids=["threads", "processes"])
def test_urls_waiting_out_a_backoff_do_not_hold_up_the_other_host(tmp_path, processes):
    """A host that fails without a Retry-After (a 500, a refused connection) has its retries
    wait a --backoff: they held their window places, and with the window full of them no other
    host's URL was read, every worker idle for the backoff (s30 t2 3). They park as a paused
    host's do."""

    def failing_host(path: str) -> Route:
        return 500, {}, b"down", 0.0

    def a_first(a: str, b: str) -> str:  # the window (4 x -j) fills with A's before B's first
        return "".join(f"{a}a{n}\n" for n in range(EACH)) + "".join(
            f"{b}b{n}\n" for n in range(EACH)
        )

    args = ["-j", "2", *processes, "--backoff", str(PAUSE), "--max-retry-wait", str(PAUSE)]
    run = mixed_run(tmp_path, failing_host, a_first, args)
    check_b_done(run)
    assert run.a_requests == EACH  # each of A's URLs tried once, its retry still waiting


def test_parked_urls_are_capped_so_an_endless_list_of_a_paused_host_is_not_read_whole():
    window = Window(4)
    for _ in range(4):
        assert window.take("a", timeout=0)
    assert not window.take("b", timeout=0)  # full, nothing paused: reading waits as before
    window.paused("a", PAUSE)
    taken = 0
    while window.take("a", timeout=0):
        taken += 1
    assert taken == 4 * PARKED_PER_WINDOW  # every line read is A's: parked up to the cap
    assert not window.take("b", timeout=0)  # and then even another host's waits
    window.ended("a")
    window.free(1)
    assert window.take("b", timeout=0)


def test_a_pause_that_ended_parks_nothing_more():
    now = [0.0]
    window = Window(2, clock=lambda: now[0])
    assert window.take("a", timeout=0) and window.take("a", timeout=0)
    window.paused("a", 5)
    assert window.take("b", timeout=0) and window.take("b", timeout=0)
    now[0] = 5.0  # A may go again: its URLs hold the window as any host's do
    assert not window.take("b", timeout=0)
    for _ in range(2):  # 4 read and not written, then 3, then 2: still not under the window
        window.ended("b")
        window.free(1)
        assert not window.take("b", timeout=0)
    window.ended("a")
    window.free(1)
    assert window.take("b", timeout=0)
