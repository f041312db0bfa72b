"""One requests.Session per worker thread, connections reused, and a bounded dispatch window.

Proved against a real keep-alive server: the server counts the TCP connections it accepts.
"""

import collections
import gc
import io
import json
import os
import sys
import threading

import pytest

from fetcher.http.session import SessionPool
from fetcher.input.reader import InputReader, Source
from fetcher.results import Summary
from fetcher.run.build import build_run
from fetcher.run.placement import allowed_cpus
from fetcher.settings import Settings
from tests.conftest import invoke
from tests.servers import counting_server


class MemoryObserver:
    """An Observer that keeps the results in a list and counts them in a Summary."""

    def __init__(self):
        self.results = []
        self.summary = Summary()

    def on_finished(self, result):
        pass

    def on_result(self, result):
        self.summary.add(result)
        self.results.append(result)

    def on_skipped(self, job):
        raise AssertionError(f"{job.url} was not attempted")

    def on_total(self, count):
        self.summary.total = count

    def on_idle(self):
        pass


class RecordingPool(SessionPool):
    """A SessionPool that notes which threads were handed which session."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.record_lock = threading.Lock()
        self.threads_by_session = collections.defaultdict(set)

    def get(self):
        session = super().get()
        with self.record_lock:
            self.threads_by_session[id(session)].add(threading.get_ident())
        return session

    def close_all(self):
        if not self.closed:  # the connections each session still held when it was closed
            self.pools_at_close = [pool_count(session) for session in self.sessions]
        super().close_all()


def run_urls(settings, sources, pool):
    """A run built as the command builds it, with records kept in memory; returns
    (summary, observer)."""
    observer = MemoryObserver()
    reader = InputReader(sources, settings.default_scheme, settings.unique)
    stopped_by = build_run(settings, reader, observer, sessions=pool).run()
    assert stopped_by is None
    return observer.summary, observer


def pool_count(session):
    return sum(len(adapter.poolmanager.pools) for adapter in session.adapters.values())


# -- the command -----------------------------------------------------------------------------


def test_200_urls_with_4_workers_open_at_most_4_connections(server):
    urls = "".join(server.url(f"/page/{n}") + "\n" for n in range(200))
    result = invoke(["--format", "jsonl", "-q", "-j", "4", "-"], input=urls)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 200
    assert all(record["ok"] for record in records)
    assert server.requests == 200
    assert 1 <= server.connections <= 4


def test_a_run_closes_every_session(server):
    """The command builds its run with build_run; the run closes its sessions at the end."""
    settings = Settings(workers=3)
    pool = SessionPool(settings)
    urls = tuple(server.url(f"/{n}") for n in range(20))
    summary, _ = run_urls(settings, [Source("arguments", arguments=urls)], pool)

    assert summary.ok == 20
    assert pool.closed is True
    assert 1 <= len(pool.sessions) <= 3
    assert all(pool_count(session) == 0 for session in pool.sessions)


# -- the engine, through its API -------------------------------------------------------------


def test_each_session_belongs_to_one_worker_thread_and_is_closed(server):
    settings = Settings(workers=4)
    pool = RecordingPool(settings)
    urls = tuple(server.url(f"/item/{n}") for n in range(40))
    try:
        summary, writer = run_urls(settings, [Source("arguments", arguments=urls)], pool)

        assert summary.ok == 40 and summary.failed == 0
        assert sorted(result.job.url for result in writer.results) == sorted(urls)
        assert 1 <= len(pool.sessions) <= 4
        assert len({id(session) for session in pool.sessions}) == len(pool.sessions)
        assert set(pool.threads_by_session) == {id(session) for session in pool.sessions}
        for threads in pool.threads_by_session.values():
            assert len(threads) == 1  # never shared between threads
        all_threads = set().union(*pool.threads_by_session.values())
        assert len(all_threads) == len(pool.sessions)  # and one per thread
        assert threading.get_ident() not in all_threads  # made in the workers, not the caller
        assert server.connections <= len(pool.sessions)  # each kept its connection alive
        assert any(count > 0 for count in pool.pools_at_close)
    finally:
        pool.close_all()

    assert pool.closed is True
    for session in pool.sessions:
        for adapter in session.adapters.values():
            assert len(adapter.poolmanager.pools) == 0


def test_a_thread_gets_the_same_session_every_time_and_others_get_their_own():
    pool = SessionPool(Settings())
    barrier = threading.Barrier(3)
    seen = {}

    def worker(name):
        first = pool.get()
        barrier.wait(timeout=5)  # all three threads alive at once: no thread id is reused
        seen[name] = (first, pool.get())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    try:
        assert all(first is again for first, again in seen.values())
        assert len({id(first) for first, _ in seen.values()}) == 3
        assert sorted(map(id, pool.sessions)) == sorted(id(first) for first, _ in seen.values())
    finally:
        pool.close_all()


class CountingStream(io.BytesIO):
    """An input whose lines are counted as the reader takes them, against the records written."""

    def __init__(self, data, writer):
        super().__init__(data)
        self.writer = writer
        self.lines_read = 0
        self.most_ahead = 0

    def readline(self, size=-1):
        line = super().readline(size)
        if line:
            self.lines_read += 1
            ahead = self.lines_read - len(self.writer.results)
            self.most_ahead = max(self.most_ahead, ahead)
        return line


def test_lines_read_ahead_of_the_records_written_are_bounded(server):
    settings = Settings(workers=2)
    pool = SessionPool(settings)
    urls = "".join(server.url(f"/slow/0.01/{n}") + "\n" for n in range(40))
    writer = MemoryObserver()
    stream = CountingStream(urls.encode(), writer)
    reader = InputReader([Source("slow list", stream=stream)], settings.default_scheme)
    try:
        assert build_run(settings, reader, writer, sessions=pool).run() is None
    finally:
        pool.close_all()

    assert len(writer.results) == 40 and all(result.ok for result in writer.results)
    assert stream.lines_read == 40
    # A slot is taken per line read and given back just before its record is written: the
    # reader is at most the window, plus the line waiting for a slot, plus one record being
    # handed over, ahead of the writer.
    assert stream.most_ahead <= settings.window + 2
    # The workers are slow and the reader is not: the window really was filled.
    assert stream.most_ahead >= settings.window
    assert server.max_in_flight <= settings.workers


def seen_during_a_run(server, count, read, paths=None, settings=None):
    """What read() returns as each record is written, in a thread run (of 2 workers unless
    settings says otherwise) of count URLs, or of the paths given, in turn."""
    seen = []

    class ReadingObserver(MemoryObserver):
        def on_result(self, result):
            seen.append(read())
            super().on_result(result)

    settings = settings or Settings(workers=2)
    observer = ReadingObserver()
    urls = tuple(server.url(path) for path in paths or [f"/{n}" for n in range(count)])
    reader = InputReader([Source("arguments", arguments=urls)], settings.default_scheme, False)
    assert build_run(settings, reader, observer).run() is None
    assert observer.summary.ok == len(urls)
    return seen


def test_a_thread_run_raises_the_switch_interval_while_it_runs_and_restores_it(server):
    """Many workers hand the GIL to each other at every socket call; the interpreter's 5 ms
    interval added a forced hand-off on top (fetcher.run.threads.SWITCH_INTERVAL)."""
    from fetcher.run.threads import SWITCH_INTERVAL

    before = sys.getswitchinterval()
    assert before < SWITCH_INTERVAL
    seen = seen_during_a_run(server, 5, sys.getswitchinterval)
    assert seen == pytest.approx([SWITCH_INTERVAL] * 5)
    assert sys.getswitchinterval() == pytest.approx(before)


def test_a_thread_run_raises_the_collectors_threshold_while_it_runs_and_restores_it(server):
    """At -j 256 the objects of 256 requests in flight swing the collector's count of young
    objects past CPython's 700 many times a second: collections that find nothing (a request
    makes no cycle) took 2.5% of the run's CPU (fetcher.run.threads.YOUNG_THRESHOLD)."""
    from fetcher.run.threads import YOUNG_THRESHOLD

    before = gc.get_threshold()
    assert before[0] < YOUNG_THRESHOLD
    seen = seen_during_a_run(server, 3, gc.get_threshold)
    assert seen == [(YOUNG_THRESHOLD, *before[1:])] * 3
    assert gc.get_threshold() == before


def test_two_runs_at_once_keep_the_interval_raised_until_the_last_ends(server):
    """A process may hold several runs (tests do): the first run to end must not lower the
    interval under a later one still running, and the last to end restores the interpreter's."""
    from fetcher.run.threads import SWITCH_INTERVAL, YOUNG_THRESHOLD

    before = sys.getswitchinterval()
    threshold_before = gc.get_threshold()
    seen = []

    class HeldObserver(MemoryObserver):
        """Holds its run inside its one record until released."""

        def __init__(self):
            super().__init__()
            self.entered, self.release = threading.Event(), threading.Event()

        def on_result(self, result):
            self.entered.set()
            assert self.release.wait(10)
            seen.append((sys.getswitchinterval(), gc.get_threshold()[0]))
            super().on_result(result)

    def start(observer):
        settings = Settings(workers=1)
        reader = InputReader([Source("arguments", arguments=(server.url("/x"),))], "http", False)
        thread = threading.Thread(target=build_run(settings, reader, observer).run)
        thread.start()
        assert observer.entered.wait(10)
        return thread

    first, second = HeldObserver(), HeldObserver()
    first_thread = start(first)
    second_thread = start(second)
    first.release.set()
    first_thread.join(10)  # the first run has ended; the second is still inside its record
    second.release.set()
    second_thread.join(10)
    assert first.summary.ok == second.summary.ok == 1
    assert [interval for interval, _ in seen] == pytest.approx([SWITCH_INTERVAL] * 2)
    assert [threshold for _, threshold in seen] == [YOUNG_THRESHOLD] * 2
    assert sys.getswitchinterval() == pytest.approx(before)
    assert gc.get_threshold() == threshold_before


def test_a_stop_lowers_the_interval_at_once_and_close_keeps_it_lowered():
    """A second signal must end the run within a second: with threads holding the GIL for
    50 ms at a time the hard stop took 0.5-0.8 s instead of 0.2 s (tests/test_hard_stop.py)."""
    from fetcher.http.fetch import Fetcher
    from fetcher.run.threads import SWITCH_INTERVAL, YOUNG_THRESHOLD, ThreadExecutor

    before, threshold_before = sys.getswitchinterval(), gc.get_threshold()
    settings = Settings(workers=2)
    executor = ThreadExecutor(settings, Fetcher(settings, SessionPool(settings)), threading.Event())
    executor.start(lambda message: None)
    try:
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    finally:
        executor.stop()  # the workers end even when an assertion fails
    assert sys.getswitchinterval() == pytest.approx(before)
    assert gc.get_threshold() == threshold_before
    executor.close(stopped=True, abandoned=False)
    assert sys.getswitchinterval() == pytest.approx(before)
    assert gc.get_threshold() == threshold_before


def every_threads_cpus():
    """The CPUs of this process's threads, when they all have the same ones (else fails)."""
    masks = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            masks.add(frozenset(os.sched_getaffinity(int(tid))))
        except ProcessLookupError:
            continue  # a thread that ended meanwhile (the server's, for a closed connection)
    assert len(masks) == 1, masks
    return set(masks.pop())


two_cpus = pytest.mark.skipif(
    len(allowed_cpus()) < 2, reason="needs a process that may run on two CPUs or more"
)


@two_cpus
def test_a_thread_run_keeps_its_threads_on_one_cpu_and_gives_the_others_back(server):
    """Handing the GIL to a thread on the other CPU is a wake-up across CPUs; on one CPU it is
    a context switch (fetcher.run.placement). Every thread of the process keeps to it: the
    calling thread, which writes the records, too."""
    before = os.sched_getaffinity(0)
    seen = seen_during_a_run(server, 3, every_threads_cpus)
    assert len(seen[0]) == 1 and seen[0] <= before
    assert seen == [seen[0]] * 3
    assert every_threads_cpus() == before


@two_cpus
def test_no_pin_leaves_the_threads_on_every_cpu_they_had(server):
    before = os.sched_getaffinity(0)
    seen = seen_during_a_run(server, 3, lambda: os.sched_getaffinity(0),
                             settings=Settings(workers=2, pin=False))  # fmt: skip
    assert seen == [before] * 3


linux_policies = pytest.mark.skipif(
    not hasattr(os, "SCHED_BATCH"), reason="needs Linux's scheduling policies"
)


def policies_during_a_run(server, settings):
    """The scheduling policies of the run's worker threads, and of its calling thread, as each
    record is written."""
    earlier = {thread.ident for thread in threading.enumerate()}

    def read():
        workers = {
            os.sched_getscheduler(thread.native_id)
            for thread in threading.enumerate()
            if thread.name.startswith("fetcher-worker") and thread.ident not in earlier
        }
        return workers, os.sched_getscheduler(0)

    return seen_during_a_run(server, 3, read, settings=settings)


@linux_policies
def test_pinned_workers_are_scheduled_as_a_batch_and_the_calling_thread_is_not(server):
    """A worker woken by its socket while another thread runs Python would preempt it only to
    find the GIL taken (fetcher.run.placement.schedule_as_batch): as batch threads, they wait
    for the running one to block. The calling thread, which writes the records, is left as it
    is, and so is every thread once the run is over."""
    before = os.sched_getscheduler(0)
    if before == os.SCHED_BATCH:
        pytest.skip("this process is already scheduled as a batch")
    seen = policies_during_a_run(server, Settings(workers=2))
    assert seen == [({os.SCHED_BATCH}, before)] * 3
    assert os.sched_getscheduler(0) == before


@linux_policies
def test_no_pin_leaves_the_workers_scheduled_as_the_kernel_does(server):
    before = os.sched_getscheduler(0)
    seen = policies_during_a_run(server, Settings(workers=2, pin=False))
    assert seen == [({before}, before)] * 3


@two_cpus
def test_while_a_large_body_is_read_the_threads_may_use_every_cpu(monkeypatch):
    """Copying a large body out of the kernel and onto disk needs no GIL and runs beside the
    thread running Python, on another CPU: on one CPU large downloads lost a quarter of their
    MB/s. The threads stay spread for HOLD seconds after the last one ends. Others' use of the
    CPU is not weighed here: that rule has tests of its own. The large answer waits until the
    first record has looked: the one worker goes on to /large while that record is written, and
    on a loaded machine its body was being read, the threads spread, before the record looked
    (this test failed once in a full run in s27 and once in s31)."""
    import fetcher.run.placement
    from fetcher.http.transfers import LARGE_BODY

    monkeypatch.setattr(fetcher.run.placement, "CONTENDED", float("inf"))
    first_seen = threading.Event()  # the large body's answer waits for it: with the one worker
    # on to /large as /small's record is written, its record could see the threads spread

    def route(path):
        if path == "/large":
            first_seen.wait(30)
        size = LARGE_BODY * 2 if path == "/large" else 10
        return 200, {"Content-Type": "application/octet-stream"}, b"x" * size, 0.0

    def read():
        cpus = os.sched_getaffinity(0)
        first_seen.set()
        return cpus

    before = os.sched_getaffinity(0)
    with counting_server(route) as server:
        seen = seen_during_a_run(server, 0, read, paths=["/small", "/large", "/small-after"],
                                 settings=Settings(workers=1))  # fmt: skip
    assert len(seen[0]) == 1
    assert seen[1:] == [before, before]
    assert os.sched_getaffinity(0) == before
