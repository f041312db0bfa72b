"""A stopped run lets go of the pipe it reads: the read that waits there ends, and nothing is
taken from the pipe after it (SPEC 2.5: nothing read is lost). The calling thread, seeing the
dispatcher wait on the pipe, ended the run, while that read returned a line a writer had just
written: the line was neither recorded, nor in --failed, nor in the pipe any more (s29 r2 5:
6 of 10 runs of a FIFO with --processes 2 stopped as its workers started)."""

from __future__ import annotations

import os
import threading

import pytest

from fetcher.input.reader import InputReader, Source
from fetcher.run.build import build_run
from fetcher.settings import Settings
from fetcher.status import ExitStatus
from tests.servers import counting_server, wait_for
from tests.test_sessions import MemoryObserver


class StopObserver(MemoryObserver):
    """Records, and the lines that went unattempted (to --failed)."""

    def __init__(self):
        super().__init__()
        self.skipped = []

    def on_skipped(self, job):
        self.skipped.append(job.url)


@pytest.fixture
def pipe():
    read_end, write_end = os.pipe()
    stream = open(read_end, "rb")  # noqa: SIM115 - closed below
    yield stream, write_end
    os.close(write_end)
    stream.close()


def pipe_holds(stream, data: bytes) -> bool:
    """Whether the pipe holds data still, taken by nobody."""
    os.set_blocking(stream.fileno(), False)
    try:
        return os.read(stream.fileno(), 1 << 16) == data
    except BlockingIOError:
        return False


def test_a_read_waiting_on_a_pipe_ends_when_let_go_and_takes_nothing_after(pipe):
    from fetcher.input.pipes import InputAbandoned, PipeInput

    stream, write_end = pipe
    reader = PipeInput(stream)
    ended = []

    def read():
        try:
            reader.readline()
        except InputAbandoned:
            ended.append("let go")

    waiting = threading.Thread(target=read, daemon=True)
    waiting.start()
    reader.shut()
    waiting.join(5)
    assert ended == ["let go"]
    os.write(write_end, b"http://127.0.0.1:9/after\n")
    assert pipe_holds(stream, b"http://127.0.0.1:9/after\n")


def test_a_stopped_run_leaves_no_read_waiting_on_its_pipe(pipe):
    stream, write_end = pipe
    observer = StopObserver()
    with counting_server() as server:
        os.write(write_end, (server.url("/first") + "\n").encode())
        source = InputReader([Source("<pipe>", stream=stream)], "http", False)
        run = build_run(Settings(workers=2), source, observer)

        def stop_once_waiting():
            wait_for(lambda: len(observer.results) == 1, "the first record")
            wait_for(run.dispatcher.blocked_on_pipe, "the dispatcher to wait on the pipe")
            run.request_stop(ExitStatus.INTERRUPTED)

        stopper = threading.Thread(target=stop_once_waiting, daemon=True)
        stopper.start()
        assert run.run() is ExitStatus.INTERRUPTED
        stopper.join(5)
    assert [result.ok for result in observer.results] == [True]
    # No read is left on the pipe to take the next line, which the run would never record.
    wait_for(lambda: not run.dispatcher.is_alive(), "the dispatcher to end", timeout=5)
    os.write(write_end, b"http://127.0.0.1:9/written-at-the-stop\n")
    assert pipe_holds(stream, b"http://127.0.0.1:9/written-at-the-stop\n")
    assert observer.skipped == []


def stop_and_write(run, write_end: int, line: bytes) -> None:
    wait_for(run.dispatcher.blocked_on_pipe, "the dispatcher to wait on the pipe")
    run.request_stop(ExitStatus.INTERRUPTED)
    os.write(write_end, line)


@pytest.mark.parametrize("attempt", range(20))
def test_a_line_written_as_the_run_stops_is_recorded_or_left_in_the_pipe(pipe, attempt):
    """The race itself: a line written just as the stop comes is in --failed or still in the
    pipe, never taken and dropped."""
    stream, write_end = pipe
    observer = StopObserver()
    source = InputReader([Source("<pipe>", stream=stream)], "http", False)
    run = build_run(Settings(workers=2), source, observer)
    line = f"http://127.0.0.1:9/race-{attempt}\n".encode()
    writer = threading.Thread(target=stop_and_write, args=(run, write_end, line), daemon=True)
    writer.start()
    run.run()
    writer.join(5)
    wait_for(lambda: not run.dispatcher.is_alive(), "the dispatcher to end", timeout=5)
    handed = [url.encode() + b"\n" for url in observer.skipped]
    assert handed == [line] or pipe_holds(stream, line), handed
