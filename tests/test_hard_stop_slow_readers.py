"""A stop whose output has a reader that is slow but still reading (s24 r1 1): its writer is
live, not stuck. After a second signal (or SIGQUIT) every line of --failed reaches a FIFO's slow
reader, and after a first signal's grace every record reaches a slow reader of standard output;
no "stuck" line on stderr. A write to a pipe returns only once the reader made room for all of
it, so the bytes a thread wrote (/proc's io) stand still while a slow reader reads: the pipe's
fill going down, or the writer going on inside its write, is the sign of work. A reader that
never reads is still cut as fast (tests/test_hard_stop_blocked.py, tests/test_stop_edges.py)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fetcher.run.hard_stop import HARD_STOP_LIMIT, QUIET_LIMIT, WATCH_EVERY, Quiet, RunningClock
from tests.conftest import FETCHER, clean_env
from tests.servers import counting_server, signal_twice, wait_for

# Bytes a pipe of the test holds (F_SETPIPE_SZ, one page): the writer meets the slow reader at
# once, not after the 64 KiB a pipe holds by default.
PIPE_SIZE = 4096
SYS_WRITE = 1  # x86_64


class SlowReader:
    """Reads fd a KiB at a time, at about rate bytes a second, until its end (a paced reader,
    as a script that does some work for each line it reads)."""

    def __init__(self, fd: int, rate: float, piece: int = 1024) -> None:
        self.fd, self.pause, self.piece = fd, piece / rate, piece
        self.taken = bytearray()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(self.fd, self.piece):
                self.taken += chunk
                time.sleep(self.pause)  # the pace of the reader, not a wait for the writer

    def start(self) -> SlowReader:
        self.thread.start()
        return self

    def join(self) -> bytes:
        self.thread.join(60)
        assert not self.thread.is_alive(), "the reader never saw the end"
        return bytes(self.taken)


def fifo_fd(pid: int, name: str) -> int | None:
    """The descriptor on which process pid has the test's FIFO open, if it has."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(f"/{name}"):
                return int(fd)
    return None


@pytest.mark.parametrize("piece", [1024, 4096], ids=["1KiB", "a-page"])
def test_failed_lines_to_a_reader_of_10_kb_a_second_are_seen_moving(tmp_path, piece):
    """An 8 KiB write of --failed to a reader of 10 KB/s lasts 0.8 s: its written bytes grow
    only at its end, and the hard stop took the thread for stuck (QUIET_LIMIT, 0.4 s). A reader
    of 1 KiB at a time lowers the pipe's fill; one of a page at a time leaves it full (the
    writer fills the page it freed at once), and the writer is seen woken in its write. Judged
    as the hard stop judges: not before HARD_STOP_LIMIT (a page reader's first pause, 0.41 s,
    comes before it was ever seen reading)."""
    from fetcher.output.failed import FailedLines

    fifo = tmp_path / "failed"
    os.mkfifo(fifo)
    read_end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader there: --failed opens
    failed, ids, done = FailedLines(str(fifo)), [], threading.Event()
    os.set_blocking(read_end, True)
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    reader = SlowReader(read_end, 10_000, piece).start()  # after the writer opened
    for n in range(400):
        failed.add(f"http://h.test/{n:048d}".encode())  # 70 bytes a line: 28 KB

    def write() -> None:
        ids.append(threading.get_native_id())
        failed.flush()
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    wait_for(lambda: ids, "the writer's id")
    quiet, stuck, clock = Quiet(ids[0]), False, RunningClock()
    while not done.is_set():
        seen_stuck = quiet.stuck(QUIET_LIMIT)
        stuck = stuck or (seen_stuck and clock.seconds() >= HARD_STOP_LIMIT)
        time.sleep(WATCH_EVERY)
    writer.join()
    failed.commit(sync=False)
    taken = reader.join()  # the end: the writer's descriptor closed by commit
    os.close(read_end)
    assert taken.count(b"\n") == 400 and failed.error is None
    assert not stuck, "seen stuck while the reader read"


@pytest.mark.parametrize(
    ("signals", "status"),
    [((signal.SIGINT, signal.SIGINT), 130), ((signal.SIGQUIT,), 131)],
    ids=["two-sigints", "sigquit"],
)
def test_a_hard_stop_lets_a_slow_failed_reader_take_every_line(tmp_path, signals, status):
    """s24 r1 1: 1500 lines to a --failed FIFO read at 12-16 KB/s, and a second signal cut the
    accounting as stuck: 1193 of them reached the reader."""
    with counting_server() as server:
        lines = [server.url(f"/slow/30/{n:06d}?pad={'p' * 60}") for n in range(400)]  # 40 KB
        (tmp_path / "in.txt").write_text("".join(f"{line}\n" for line in lines))
        os.mkfifo(tmp_path / "ff")
        read_end = os.open(tmp_path / "ff", os.O_RDONLY | os.O_NONBLOCK)
        fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        with (tmp_path / "stderr").open("wb") as stderr:
            process = subprocess.Popen(
                [*FETCHER, "-q", "-j", "4", "-i", "in.txt", "--failed", "ff"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                env=clean_env(), cwd=tmp_path,
            )  # fmt: skip
        try:
            wait_for(lambda: fifo_fd(process.pid, "ff") is not None, "--failed open")
            os.set_blocking(read_end, True)
            reader = SlowReader(read_end, 10_000).start()
            wait_for(lambda: server.requests >= 4, "4 requests in flight")
            if len(signals) == 2:
                signal_twice(process, *signals)
            else:
                process.send_signal(signals[0])
            process.wait(timeout=30)
            taken = reader.join()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(read_end)
    said = (tmp_path / "stderr").read_text()
    assert process.returncode == status, said[-2000:]
    assert "stuck" not in said and "still going" not in said, said[-2000:]
    assert sorted(taken.decode().splitlines()) == lines


def wait_until_writing(pid: int, fd: int) -> None:
    """Until the main thread of pid is blocked in write(fd, ...) (/proc/PID/syscall)."""

    def writing() -> bool:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/syscall").read_text().split()
            return len(fields) > 1 and fields[0] == str(SYS_WRITE) and int(fields[1], 16) == fd
        return False

    wait_for(writing, "the writer blocked on the slow reader", timeout=30)


BIG = 100_000  # bytes of a body: at 40 KB/s, one write of it (or of a 64 KiB piece) takes 1.6 s


@pytest.mark.parametrize(
    "extra",
    [["--include-body"], ["--body", "--results", "records.jsonl"]],
    ids=["include-body", "body"],
)
def test_one_signal_lets_a_slow_stdout_reader_take_every_record(tmp_path, extra):
    """After a first signal's grace, a write of the calling thread that lasted 1 s was taken
    for stuck (GRACE_STUCK_WRITE): a --include-body record, or a 64 KiB piece of a --body, to a
    reader slower than 64 KB/s was cut, and its line sent to --failed."""
    body = b"b" * BIG
    with counting_server(lambda path: (200, {}, body, 0.0)) as server:
        urls = [server.url(f"/big/{n}") for n in range(2)]
        read_end, write_end = os.pipe()
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        with (tmp_path / "stderr").open("wb") as stderr:
            process = subprocess.Popen(
                [*FETCHER, "-q", "-j", "2", "--failed", "retry.txt", "--format", "jsonl", *extra,
                 *urls],
                stdin=subprocess.DEVNULL, stdout=write_end, stderr=stderr,
                env=clean_env(), cwd=tmp_path,
            )  # fmt: skip
        os.close(write_end)
        reader = SlowReader(read_end, 40_000).start()
        try:
            wait_until_writing(process.pid, 1)
            wait_for(lambda: server.requests >= 2, "both fetched")
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
            taken = reader.join()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(read_end)
    said = (tmp_path / "stderr").read_text()
    assert process.returncode == 130, said[-2000:]
    assert "stuck" not in said, said[-2000:]
    assert (tmp_path / "retry.txt").read_text() == "", "a line went to --failed"
    if "--body" in extra:
        assert taken == body * 2
        records = (tmp_path / "records.jsonl").read_text().splitlines()
    else:
        records = taken.decode().splitlines()
    assert sorted(json.loads(line)["ok"] for line in records) == [True, True]


def test_a_look_that_finds_the_writer_running_keeps_what_the_last_one_saw(monkeypatch):
    """A page reader frees a page; the writer, woken inside its write, refills it and waits
    again. A look that caught it running dropped both baselines, so the next look (back in the
    same write, run once more) was compared with nothing, and the live reader was cut as stuck
    in about one run in four (s24 r6 1). The looks here are the ones r6's trace shows."""
    from fetcher.run import hard_stop

    progress = hard_stop.WriteProgress("/proc/self/task/0")
    looks = iter([((4, 4069), (3, 187), True), (None, None, False), ((4, 4096), (3, 188), True)])
    seen: dict[str, object] = {}

    def next_look() -> None:
        seen["queue"], seen["counts"], seen["waits"] = next(looks)

    monkeypatch.setattr(progress, "_look_queue", lambda: seen["queue"])
    monkeypatch.setattr(progress, "_look_counts", lambda: seen["counts"])
    monkeypatch.setattr(hard_stop, "waits_to_write", lambda task: seen["waits"])
    verdicts = []
    for _ in range(3):
        next_look()
        verdicts.append(progress.moved())
    assert verdicts == [False, False, True]


def test_a_second_signal_cuts_a_body_its_reader_takes_slowly_but_steadily(tmp_path):
    """s36 t7 1: a --body to a reader taking 2 MB/s wrote each 64 KiB piece in ~32 ms, never
    'stuck' (STUCK_WRITE), so the watchdog waited HARD_STOP_CAP (10 s) after the second Ctrl-C,
    said the accounting was still going, and left --results empty. The body's write is taken
    over at once; its line goes to --failed."""
    body = b"b" * (40 << 20)
    with counting_server(lambda path: (200, {}, body, 0.0)) as server:
        read_end, write_end = os.pipe()
        with (tmp_path / "stderr").open("wb") as stderr:
            process = subprocess.Popen(
                [*FETCHER, "-q", "--body", "--failed", "retry.txt", "--results", "r.jsonl",
                 "--format", "jsonl", server.url("/big")],
                stdin=subprocess.DEVNULL, stdout=write_end, stderr=stderr,
                env=clean_env(), cwd=tmp_path,
            )  # fmt: skip
        os.close(write_end)
        reader = SlowReader(read_end, 2_000_000, piece=1 << 16).start()
        try:
            wait_for(lambda: len(reader.taken) > (1 << 20), "the body under way", timeout=30)
            process.send_signal(signal.SIGINT)
            time.sleep(0.3)  # the second Ctrl-C, as a user's
            process.send_signal(signal.SIGINT)
            second = time.monotonic()
            process.wait(timeout=30)
            took = time.monotonic() - second
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join()
            os.close(read_end)
    said = (tmp_path / "stderr").read_text()
    assert process.returncode == 130, said[-2000:]
    assert took < 3.0, (took, said[-2000:])  # HARD_STOP_CAP (10 s) before
    assert (tmp_path / "retry.txt").read_text() == server.url("/big") + "\n", said[-2000:]
