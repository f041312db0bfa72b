"""Resources that must not grow with the input: the memory of a run fed through a pipe without
end, and the descriptors and threads of worker processes (--processes) over thousands of URLs.

Each test runs ``python -m fetcher`` reading a pipe that a thread of the test keeps full, and
samples the process (and its workers) in /proc while the lines go through. Linux only, as the
rest of the process tests.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.conftest import FETCHER, clean_env
from tests.servers import client_ports, counting_server, has_ended, wait_for, worker_pids

MB = 1024 * 1024


def rss(pid: int) -> int:
    """The resident memory of process pid, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def descriptors_and_threads(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


@contextlib.contextmanager
def fed_without_end(
    args: list[str], line: Callable[[int], str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], threading.Event]]:
    """fetcher reading standard input, which a thread keeps full of line(0), line(1)... until
    the event yielded is set; then its input ends and the block waits for it to exit."""
    with (tmp_path / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [*FETCHER, *args], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr,
            env=clean_env(),
        )  # fmt: skip
    assert process.stdin is not None
    stdin, enough = process.stdin, threading.Event()

    def feed() -> None:
        start = 0
        try:
            while not enough.is_set():  # each write waits while the pipe is full
                stdin.write("".join(f"{line(n)}\n" for n in range(start, start + 200)).encode())
                stdin.flush()
                start += 200
        except BrokenPipeError:
            pass  # fetcher ended: the test says why
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield process, enough
        enough.set()
        feeder.join(30)
        process.wait(30)
    finally:
        enough.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        feeder.join(5)


def test_memory_stays_flat_while_a_pipe_is_fed_without_end(tmp_path):
    """Six seconds of lines, most of them invalid (tens of thousands of records) and every tenth a
    URL of a local server: once URLs are being fetched, the resident memory of the last two
    seconds is never more than 2 MB above that of the first two."""
    with counting_server() as server:

        def line(n: int) -> str:
            return server.url(f"/n/{n}") if n % 10 == 0 else f"ftp://invalid.test/{n}"

        args = ["-j", "8", "--format", "jsonl", "--failed", str(tmp_path / "failed.txt")]
        with fed_without_end(args, line, tmp_path) as (process, _):
            # Warm: the threads, sessions and connections are up once URLs are being fetched.
            wait_for(lambda: server.requests >= 100, "the first 100 requests", 20)
            samples: list[int] = []
            ends = time.monotonic() + 6.0
            while time.monotonic() < ends and process.poll() is None:
                samples.append(rss(process.pid))
                time.sleep(0.1)  # the sampling rate, not a synchronisation
            requests = server.requests
    stderr = (tmp_path / "stderr").read_text()
    assert process.returncode == 1, stderr  # the invalid lines failed; the run was not stopped
    assert requests > 500, f"only {requests} URLs fetched"
    read = len((tmp_path / "failed.txt").read_text().splitlines())
    assert read > 10_000, f"only {read} lines went through"
    third = len(samples) // 3
    first, last = max(samples[:third]), max(samples[-third:])
    assert last - first < 2 * MB, (
        f"resident memory grew from {first / MB:.1f} MB to {last / MB:.1f} MB "
        f"over {read} lines: {[round(s / MB, 1) for s in samples]}"
    )


def sample_workers(process: subprocess.Popen[bytes], workers: list[int]) -> list[tuple[int, int]]:
    assert process.poll() is None, "fetcher ended while the pipe was still fed"
    return [descriptors_and_threads(pid) for pid in workers]


def test_worker_processes_keep_their_descriptors_and_threads_over_thousands_of_urls(tmp_path):
    """Each worker's open descriptors and threads, once all its threads are fetching, do not grow
    while thousands more URLs go through; and none outlives fetcher."""
    with counting_server() as server:
        with fed_without_end(
            ["-j", "8", "--processes", "2", "-q"], lambda n: server.url(f"/n/{n}"), tmp_path
        ) as (process, enough):
            wait_for(lambda: len(worker_pids(process.pid)) == 2, "two workers", 20)
            workers = worker_pids(process.pid)
            # Settled: each of a worker's four threads has its connection to the server.
            wait_for(lambda: all(len(client_ports(pid, server.port)) == 4 for pid in workers),
                     "four connections from each worker", 20)  # fmt: skip
            settled = sample_workers(process, workers)
            counted = server.requests
            later: list[list[tuple[int, int]]] = []
            while server.requests < counted + 2000:
                later.append(sample_workers(process, workers))
                wait_for(lambda n=server.requests: server.requests >= n + 200, "200 more", 20)
            enough.set()
        assert process.returncode == 0, (tmp_path / "stderr").read_text()
        # The parent waits for its workers: by the time it has exited, none is left running.
        assert [pid for pid in workers if not has_ended(pid)] == []
    check_bounded(settled, later)


def check_bounded(settled: list[tuple[int, int]], later: list[list[tuple[int, int]]]) -> None:
    """No worker, in any later sample, holds more than 2 descriptors or any thread more than it
    held when it had settled (a connection may be replaced: closed, then a new one opened)."""
    assert later, "no sample taken while the URLs went through"
    for index, (descriptors, threads) in enumerate(settled):
        assert max(sample[index][0] for sample in later) <= descriptors + 2, (settled, later)
        assert max(sample[index][1] for sample in later) <= threads, (settled, later)
