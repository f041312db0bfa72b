"""Inside a worker process (--processes): an ordinary run with a thread executor, built by the
same function as the command line's, reading its jobs from a pipe and sending results back."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from types import FrameType

from fetcher.exiting import skip_exit_collections
from fetcher.http.cookies import jar_of
from fetcher.http.request import state_key
from fetcher.http.session import SessionPool
from fetcher.input.jobs import Job
from fetcher.logs import configure_logging
from fetcher.output.bodies import Bodies, remove_live_temporaries
from fetcher.output.paths import OutputDir, first_component
from fetcher.results import Partial, Result
from fetcher.run.build import build_run
from fetcher.run.dispatcher import Lookup
from fetcher.run.engine import Run
from fetcher.run.executor import RunStartError, start_thread
from fetcher.run.wire import (
    BATCH,
    HostPause,
    Outbox,
    PartialNote,
    StartReport,
    WireJob,
    WireResult,
    WorkerCookies,
    WorkerSetup,
    job_from_wire,
    result_to_wire,
)
from fetcher.run.worker_logs import send_logs_to_parent
from fetcher.run.worker_process import EXIT_NOW
from fetcher.settings import Settings
from fetcher.status import ExitStatus

log = logging.getLogger("fetcher")


class WireReader:
    """The jobs a worker receives, as a JobSource for its run. Its first read tells the parent
    that the run started: a run's dispatcher, which reads, is the last of its threads to start."""

    current_is_finite = False  # the pipe waits for the parent's dispatcher
    rest_is_finite = False

    def __init__(
        self, connection: Connection, results: Outbox, folder: OutputDir | None = None
    ) -> None:
        self.connection = connection
        self.results = results
        self.folder = folder  # -o DIR: a job of an adopted key adopts its folder there
        self.count = 0
        self._buffer: list[Job] = []
        self._started = False

    def let_go(self) -> bool:
        return False  # the parent's pipe: its dispatcher stops, and the pipe then ends

    def next_job(self) -> Job | None:
        if not self._started:
            self._started = True
            with contextlib.suppress(OSError):  # the parent is gone: the pipe below ends too
                self.results.send(StartReport(None))
        while not self._buffer:
            try:
                batch = self.connection.recv()
            except (EOFError, OSError):
                return None
            self._buffer = [self._job(wire) for wire in reversed(batch)]
        self.count += 1
        return self._buffer.pop()

    def drain(self, lines_only: bool = False) -> Iterator[Job]:
        """Jobs received and never started, and those already waiting in the pipe."""
        yield from reversed(self._buffer)
        self._buffer = []
        with contextlib.suppress(EOFError, OSError):
            while self.connection.poll(0):
                for wire in self.connection.recv():
                    yield self._job(wire)

    def _job(self, wire: WireJob) -> Job:
        """The job; its folder adopted first when its key came from a worker that died: files
        the dead one saved there are not to be replaced (fetcher.output.paths.OutputDir)."""
        job, adopted = job_from_wire(wire)
        if adopted and self.folder is not None:
            self.folder.adopt(first_component(job.target, job.output))
        return job


class WireObserver:
    """Sends a worker's results back in batches: each record whole, each job once."""

    def __init__(self, outbox: Outbox, kept: Lookup | None = None) -> None:
        self.outbox = outbox
        self.kept = kept  # -o: whether a job sent to keep its fresh file keeps it (kept_as_fresh)
        self.batch: list[WireResult] = []

    def on_finished(self, result: Result) -> None:
        """Nothing to do yet: the parent writes the state."""

    def on_result(self, result: Result) -> None:
        result.close()  # bodies are only saved to files in a worker (-o); never sent
        self.batch.append(result_to_wire(result))
        if len(self.batch) >= BATCH:
            self.on_idle()

    def on_skipped(self, job: Job) -> None:
        """A job never started: its bare seq, which the parent hands back (not attempted). But
        a job sent to keep its fresh file (Job.keep) that a stop reached before this worker's
        lookup did is skipped now, if the file is still kept for it here, as one process skips
        it when it reads its line (s24 f10); claimed here, no request of this worker replaces
        it afterwards. Given to another request already: a fetch never started, handed back."""
        fresh = None if self.kept is None else self.kept(job)
        self.batch.append(job.seq if fresh is None else result_to_wire(fresh))
        self.on_idle()

    def on_partial(self, job: Job, partial: Partial) -> None:
        self.on_idle()  # results first: the parent hears of this job's partial in order
        self.outbox.send(PartialNote(job.seq, partial))

    def on_total(self, count: int) -> None:
        """Nothing to tell: the parent counts its own input."""

    def on_idle(self) -> None:
        if self.batch:
            self.outbox.send(self.batch)
            self.batch = []


def worker_process(jobs_descriptor: int, results_descriptor: int, control_descriptor: int) -> None:
    """The entry point of a worker process (see fetcher.run.worker_process.WORKER_CODE)."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):  # a terminal's, to the group:
        signal.signal(signum, signal.SIG_IGN)  # the parent decides, whatever reaches us
    # A process group of its own is a background job to the terminal: under `stty tostop` its
    # first -v line would stop it (SIGTTOU). It writes where its run writes; the run's own
    # stops (Ctrl-Z, its SIGTTOU) stop it with SIGSTOP.
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    jobs = Connection(jobs_descriptor, writable=False)
    results = Outbox(Connection(results_descriptor, readable=False))
    control = Connection(control_descriptor, writable=False)
    try:
        setup = jobs.recv()
    except (EOFError, OSError):
        return  # the parent ended before it could say what to do
    try:
        worker_main(setup, jobs, results, control)
    finally:
        skip_exit_collections()


def worker_main(setup: WorkerSetup, jobs: Connection, results: Outbox, control: Connection) -> None:
    """A worker process: fetch the jobs that arrive, send back the results, until the end."""
    configure_logging(setup.log_levels)
    logs = send_logs_to_parent(results)
    jar = jar_of(setup.cookies) if setup.cookies is not None else None
    sessions = SessionPool(setup.settings, jar)  # kept: its cookie changes go to the parent
    bodies = bodies_of(setup)
    kept = kept_as_fresh(bodies, setup.settings)
    observer = WireObserver(results, kept)
    reader = WireReader(jobs, results, bodies.folder if bodies is not None else None)
    run = build_run(
        setup.settings, reader, observer, sessions=sessions,
        bodies=bodies, lookup=kept,
        on_pause=lambda host, seconds: _send_report(results, HostPause(host, seconds)),
        on_backoff=lambda host, seconds: _send_report(results, HostPause(host, seconds, True)),
        cpu=setup.cpu,
    )  # fmt: skip
    try:
        follow_pauses(run, control)
        stop_on_term(run)
        stopped = run.run()
        observer.on_idle()
        if setup.settings.cookie_jar and sessions.sessions:
            results.send(WorkerCookies(sessions.change_list()))
    except (BrokenPipeError, EOFError, OSError):
        stopped = ExitStatus.BROKEN_PIPE  # the parent is gone; nobody is left to tell
    except RunStartError as exc:  # before any job came: the parent refuses the run
        _send_report(results, StartReport(str(exc)))
        stopped = ExitStatus.SOME_FAILED
    if logs is not None:
        logs.close()
    results.close()
    if stopped is not None:
        remove_live_temporaries()
        os._exit(0)  # threads may be blocked on a server; their jobs have their records


def bodies_of(setup: WorkerSetup) -> Bodies | None:
    """-o: DIR from the descriptor the parent opened and passed (never by its name, which may
    lead elsewhere by now); DIR's name only shown in the records."""
    if setup.output_dir is None or setup.output_descriptor is None:
        return None
    return Bodies(OutputDir(setup.output_dir, setup.output_descriptor), False)


def kept_as_fresh(bodies: Bodies | None, settings: Settings) -> Lookup | None:
    """The worker's lookup, with -o: a job the parent found fresh (--skip-fresh) keeps the file
    of its row (Job.keep) for the run, and is skipped, unless the run gave that file to another
    request already, and then it is fetched (again), as without --processes
    (fetcher.state.lookup). Here, not in the parent: this worker gives the names of that
    file's folder (processes.deal_key), and one kept in the parent was never seen here, so
    another URL of its name was saved over the skipped file (s24 f3 1). One dict entry a skip.
    Kept for its request's key (state_key), the owner fetch._owner gives the files it saves."""
    folder = None if bodies is None else bodies.folder
    if folder is None:
        return None

    def keep(job: Job) -> Result | None:
        if job.keep is None or job.prior is None:
            return None
        if not folder.claim(job.keep, state_key(job, settings)):
            return None
        return Result.fresh(job, job.prior.sha256, job.keep)

    return keep


def _send_report(results: Outbox, report: HostPause | StartReport) -> None:
    with contextlib.suppress(OSError):  # the parent is gone: nobody is left to tell
        results.send(report)


def follow_pauses(run: Run, control: Connection) -> None:
    """A thread that applies the pauses other workers received, relayed by the parent, until
    the pipe ends. The parent closes it only once this process has ended: its end while this
    process runs means the parent was killed outright, and a worker does not outlive it (it
    would go on writing files, under --continue the very partial files the next run resumes)."""

    def follow() -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                pause = control.recv()
                run.executor.pause(pause.host, pause.seconds)
        remove_live_temporaries()
        os._exit(int(ExitStatus.TERMINATED))

    start_thread(threading.Thread(target=follow, name="fetcher-pauses", daemon=True))


def stop_on_term(run: Run) -> None:
    """SIGTERM stops gracefully (again and again: only the parent's EXIT_NOW is final, whoever
    else sends SIGTERM); EXIT_NOW removes the temporaries and exits now."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGTERM:
            run.request_stop(ExitStatus.TERMINATED)
        else:
            remove_live_temporaries()
            os._exit(int(ExitStatus.TERMINATED))

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(EXIT_NOW, on_signal)
