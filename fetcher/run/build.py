"""The one place a run is put together, for the command line and for each worker process."""

from __future__ import annotations

import threading
from http.cookiejar import CookieJar

from fetcher.http.fetch import Fetcher
from fetcher.http.session import SessionPool
from fetcher.http.transfers import Transfers
from fetcher.observer import Observer
from fetcher.output.bodies import Bodies
from fetcher.run.dispatcher import Lookup
from fetcher.run.engine import Run
from fetcher.run.executor import Executor, PauseListener
from fetcher.run.placement import placement
from fetcher.run.shared_input import JobSource
from fetcher.run.threads import ThreadExecutor
from fetcher.settings import Settings


def build_run(
    settings: Settings,
    source: JobSource,
    observer: Observer,
    *,
    bodies: Bodies | None = None,
    jar: CookieJar | None = None,
    on_pause: PauseListener | None = None,
    on_backoff: PauseListener | None = None,
    sessions: SessionPool | None = None,
    lookup: Lookup | None = None,
    transfers: Transfers | None = None,
    cpu: int | None = None,
) -> Run:
    """A run over source whose records go to observer: fetched by this process's threads, or
    by ``settings.processes`` worker processes (each of which builds its own run here).

    sessions: the pool of this process's threads (made here when None); the run closes every
    session in it at the end unless a request was abandoned mid-flight. lookup: the state's,
    for each job read (the parent's only: a worker process gets its jobs with their Prior).
    transfers: where this process's threads show their large bodies in flight (worker
    processes show none: their bytes are counted in the parent only when a record arrives);
    made here when None, since the threads' placement hears of large bodies through it. cpu:
    the CPU a worker process's threads keep to, chosen by its parent (fetcher.run.placement)."""
    stopping = threading.Event()
    executor: Executor
    if settings.processes > 1:
        # Only here: multiprocessing's pipes are a start-up cost a run of threads need not pay.
        from fetcher.run.processes import ProcessExecutor

        folder = bodies.folder if bodies is not None else None  # DIR, opened once, here
        executor = ProcessExecutor(settings, settings.output_dir, settings.log_levels, jar,
                                   folder=folder, stopping=stopping, bodies=bodies)  # fmt: skip
    else:
        sessions = sessions or SessionPool(settings, jar)
        transfers = transfers or Transfers()
        transfers.listener = placement
        fetcher = Fetcher(settings, sessions, bodies, transfers)
        executor = ThreadExecutor(settings, fetcher, stopping, on_pause, cpu, on_backoff)
    return Run(settings, source, executor, observer, stopping, lookup)
