"""One requests.Session per worker thread, connections reused, and a bounded dispatch window.

Proved against a real keep-alive server: the server counts the TCP connections it accepts.
"""

import collections
import io
import json
import os
import threading

import pytest

import fetcher.cli
from fetcher.http.fetch import Fetcher
from fetcher.http.session import SessionPool
from fetcher.input.reader import InputReader, Source
from fetcher.output.collector import Collector
from fetcher.output.display import NullEvents
from fetcher.results import Summary
from fetcher.run.engine import Run
from fetcher.settings import Settings
from tests.conftest import invoke


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No proxy between us and 127.0.0.1, and no FETCHER_* setting from the caller's shell."""
    for key in list(os.environ):
        if key.startswith("FETCHER_") or "proxy" in key.lower():
            monkeypatch.delenv(key)


class MemoryWriter:
    """A RecordWriter that keeps the results in a list."""

    def __init__(self):
        self.results = []

    def write(self, result):
        self.results.append(result)

    def flush(self):
        pass

    def close(self):
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


def run_urls(settings, sources, fetch):
    """Wire a Run as cli.main does, with records kept in memory; return (summary, writer)."""
    writer = MemoryWriter()
    summary = Summary()
    reader = InputReader(sources, settings.default_scheme, settings.unique)
    collector = Collector(summary, writer, NullEvents())
    stopped_by = Run(settings, reader, fetch, collector).run()
    assert stopped_by is None
    return summary, writer


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


def test_the_command_closes_every_session(server, monkeypatch):
    pools = []

    class KeptPool(SessionPool):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(fetcher.cli, "SessionPool", KeptPool)
    urls = [server.url(f"/{n}") for n in range(20)]
    result = invoke(["-q", "-j", "3", *urls])

    assert result.exit_code == 0, result.output
    [pool] = pools
    assert pool.closed is True
    assert 1 <= len(pool.sessions) <= 3
    assert all(pool_count(session) == 0 for session in pool.sessions)


# -- the engine, through its API -------------------------------------------------------------


def test_each_session_belongs_to_one_worker_thread_and_is_closed(server):
    settings = Settings(workers=4)
    pool = RecordingPool(settings)
    urls = tuple(server.url(f"/item/{n}") for n in range(40))
    try:
        fetch = Fetcher(settings, pool)
        summary, writer = run_urls(settings, [Source("arguments", arguments=urls)], fetch)

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
        assert any(pool_count(session) > 0 for session in pool.sessions)
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
    writer = MemoryWriter()
    stream = CountingStream(urls.encode(), writer)
    reader = InputReader([Source("slow list", stream=stream)], settings.default_scheme)
    collector = Collector(Summary(), writer, NullEvents())
    try:
        assert Run(settings, reader, Fetcher(settings, pool), collector).run() is None
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
