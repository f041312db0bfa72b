"""The dispatcher: one thread reads the input and hands each line to the executor, never more
than a window of lines read and not yet recorded, so memory is flat on endless input (the URLs
of a paused host, parked, count apart: fetcher.run.window)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from fetcher.errors import ErrorKind
from fetcher.http.classify import describe
from fetcher.http.task import Task
from fetcher.input.jobs import Job
from fetcher.input.pipes import say_what_waits
from fetcher.results import Result, host_of
from fetcher.run.books import Books
from fetcher.run.executor import Executor, start_thread
from fetcher.run.messages import DispatchEnd, Inbox, InputEnd, Known, Skipped
from fetcher.run.shared_input import JobSource, SharedInput
from fetcher.run.window import Window

KNOWN_WINDOW = 4096  # records known without a fetch, read and not yet written, at most
KNOWN_BATCH = 256  # of those, handed to the writer in one message
# Said when lines read, or left to read, may not have reached --failed (the hard stop says it
# too, fetcher.run.hard_stop).
LACKS_LINES = "--failed may lack lines read"

# Called for each valid job as it is read: a Result to record at once instead of fetching it
# (--skip-fresh), or None. May attach what it knows to the job (fetcher.state.lookup).
Lookup = Callable[[Job], Result | None]


class Dispatcher:
    """Reads jobs, admits each into the window (whose places the calling thread frees as
    records are written), adds it to the books and hands it on in batches of the executor's
    size: at once before a read that may block and before waiting for room."""

    def __init__(
        self,
        source: JobSource,
        executor: Executor,
        books: Books,
        inbox: Inbox,
        stopping: threading.Event,
        lookup: Lookup | None = None,
        window: Window | None = None,
    ) -> None:
        self.source = source
        self.input = SharedInput(source)
        self.lookup = lookup
        self.executor = executor
        self.books = books
        self.inbox = inbox
        self.stopping = stopping
        self.hard = False  # stop after the line being read: the calling thread reads the rest
        self.window = window or Window(executor.window)  # the run's hears of pauses (Run)
        # Records known without a fetch take no room from the fetches: a window of their own.
        self._known_window = Window(KNOWN_WINDOW)
        self._batch: list[Task] = []
        self._known: list[Result] = []
        self._thread = threading.Thread(target=self._run, name="fetcher-dispatch", daemon=True)

    def start(self) -> None:
        start_thread(self._thread)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def release(self, freed: tuple[int, int]) -> None:
        """Room for more lines: as many records were written, (fetched, known without a
        fetch), since the last call (calling thread)."""
        fetched, known = freed
        if fetched:
            self.window.free(fetched)
        if known:
            self._known_window.free(known)

    def stop_reading(self, limit: float) -> bool:
        """After a stop: this thread stops after its line (handed on) and is waited for, limit
        seconds, unless it is blocked on a terminal. A pipe is let go of first, so that its
        read waits no more, and then waited for, so that the line it takes is handed on: the
        calling thread, seeing it wait there, ended the run at once, as the line the read then
        returned went unrecorded (s29 r2 5). Whether it ended (see ``take_unread``)."""
        self.hard = True
        if self.source.let_go() or not self.blocked_on_pipe():
            self._thread.join(limit)
        return not self.is_alive()

    def take_unread(self, limit: float) -> Iterator[Job]:
        """After a stop, for the calling thread: the rest of file inputs, raw (InputReader.drain),
        once this thread ended, or taken from it when it waits on another thing than a read
        (SharedInput.take_rest); one thread reads at a time. After a hard stop, which waited
        for this thread already (stop_reading), it is not waited for again: two waits of
        limit used up the second the accounting has, and the watchdog's exit cut the rest
        off (lines lost, not even in --failed)."""
        if self.stop_reading(0.0 if self.hard else limit):
            return self.source.drain(lines_only=True)
        if self.blocked_on_pipe():
            say_what_waits()  # the start of a line it waits for the rest of, if it has one
            return iter(())
        return self.input.take_rest(limit)

    def blocked_on_pipe(self) -> bool:
        """Waiting for a line from a pipe, which may never come."""
        return self.input.reading and not self.source.current_is_finite

    def _run(self) -> None:
        error = None
        try:
            error = read_all(self._dispatch, self._drain, self.stopping.is_set)
        finally:
            self._hand_on()
            self.inbox(DispatchEnd(error))

    def _drain(self) -> None:
        """The lines of files not yet read, as never attempted (not a pipe's: it may not end)."""
        # After a hard stop, the calling thread reads the rest itself, at once.
        self.input.drain(self._skip, lambda: self.hard)

    def _dispatch(self) -> None:
        while True:
            if (self._batch or self._known) and not self.source.rest_is_finite:
                self._hand_on()  # the next read may wait on a pipe for hours: nothing waits too
            job, ours = self.input.next_job()
            if not ours:
                return
            if job is None:
                self._hand_on()
                self.inbox(InputEnd(self.source.count))
                return
            try:
                known = self._known_now(job)
            except Exception:
                self.input.give_back(self._skip, job)
                raise
            host = host_of(job.target) if job.host is None else job.host
            window, counted = (self.window, host) if known is None else (self._known_window, None)
            if not take_place(window, counted, self.stopping, self._hand_on):
                self.input.give_back(self._skip, job)
                return
            task = Task(job, host)
            if not self.input.admit(self.books.add, task):
                return  # the calling thread took it, with the rest
            if known is not None:
                self._known.append(known)
                if len(self._known) >= KNOWN_BATCH:
                    self._hand_on()
                continue
            self._batch.append(task)
            if len(self._batch) >= self.executor.batch_size:
                self._hand_on()

    def _skip(self, job: Job) -> None:  # read, it goes unattempted (to --failed)
        self.inbox(Skipped(job, dispatched=False))

    def _known_now(self, job: Job) -> Result | None:
        """The record of a job that needs no fetch: an invalid line, a URL fresh in --state."""
        if job.invalid is not None:
            return Result.failure(job, ErrorKind.INVALID_URL, job.invalid)
        if self.lookup is not None:
            return self.lookup(job)
        return None

    def _hand_on(self) -> None:
        """Hand the known records to the writer, and the batch to the executor; after a stop,
        the batch goes back as never attempted."""
        known, self._known = self._known, []
        if known:
            self.inbox(Known(known))
        batch, self._batch = self._batch, []
        if not batch:
            return
        if self.stopping.is_set():
            for task in batch:
                self.inbox(Skipped(task.job, dispatched=True))
            return
        self.executor.submit(batch)


def take_place(
    window: Window, host: str | None, stopping: threading.Event, hand_on: Callable[[], None]
) -> bool:
    """A place in window for the line in hand, a fetch of host (None: a record known without a
    fetch, in a window of its own): at once, or after hand_on (what is batched goes now, as the
    wait may be long). False once stopped, holding none."""
    if not stopping.is_set() and window.take(host, 0):
        return True
    hand_on()
    return window.take_unless_stopped(host, stopping)


def read_all(
    dispatch: Callable[[], None], drain: Callable[[], None], stopped: Callable[[], bool]
) -> str | None:
    """dispatch the input; after a stop, or a failure, drain what can still be read to
    --failed (a broken state leaves the input file readable, a broken file the next ones).
    Why the run could not read it all, or None."""
    error = None
    try:
        dispatch()
    except Exception as exc:  # noqa: BLE001 - reading the input failed; report, end cleanly
        error = f"{failed_step(exc)} failed: {describe(exc)}; the rest was not fetched"
    try:
        if error is not None or stopped():
            drain()
    except Exception as exc:  # noqa: BLE001 - a file could not be read to its end
        # The other files were drained still (InputReader.drain), not this one's rest: that
        # was said nowhere, and a retry loop on --failed lost those lines (t4 4a).
        error = error or f"{failed_step(exc)} failed: {describe(exc)}"
        return f"{error}; {LACKS_LINES}"
    return error


def failed_step(exc: BaseException) -> str:
    """What was being done when exc came: asking --state about the URLs read (its lookups run
    as the input is read), or reading the input itself."""
    if type(exc).__module__ == "sqlite3":  # the run layer never imports sqlite3 itself
        return "looking the URLs up in --state"
    return "reading the input"
