"""What the dispatcher asks the state about each job as it is read: its Prior, which the job
carries to the HTTP layer, and, under --skip-fresh, whether it needs fetching at all.

Lookups are made a batch at a time when the input is a file (``Prefetching`` reads up to
PREFETCH lines ahead): sqlite3 lets go of the GIL at each statement step, and a step per URL
handed the GIL to a worker thread and back once per URL. A pipe is never read ahead."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace

from fetcher.errors import ErrorKind
from fetcher.http.request import EMPTY_BODY
from fetcher.input.jobs import Job, row_key
from fetcher.output.bodies import Bodies
from fetcher.output.paths import OutputDir, deal_name, deal_name_of, top_of
from fetcher.results import Result
from fetcher.run.shared_input import JobSource
from fetcher.state.prior import Prior
from fetcher.state.store import State

PREFETCH = 64


class StateLookup:
    """Called by the dispatcher for every valid job, in input order (one thread)."""

    def __init__(
        self,
        state: State,
        key: Callable[[Job], str],
        skip_fresh: float | None = None,
        bodies: Bodies | None = None,
        part: Callable[[Job], bool] | None = None,
        in_workers: bool = False,
    ) -> None:
        self.state = state
        # the row of a job's request (request.state_key): no default, as a job's URL alone is
        # not the key of a POST's row
        self.key = key
        self.skip_fresh = skip_fresh
        self.bodies = bodies  # with -o: a fresh URL is skipped only if its file is there
        # --processes: with -o, a worker process keeps a fresh URL's file and skips it (_kept)
        self.in_workers = in_workers
        self.part = part  # whether a job asks for a part (asks_a_part): never skipped
        self._ahead: dict[int, Prior | None] = {}  # by seq: what a prefetch found
        self._refused: dict[int, str] = {}  # by seq: why a prefetched job may not be sent
        # key -> the older key (_older_keys) a job of this run took for it: another spelling of
        # that URL read later takes it too (rare: a few entries in a run)
        self._adopted: dict[str, str] = {}

    def reading_ahead(self, source: JobSource) -> Prefetching:
        """source, read ahead so that its jobs are looked up a batch at a time."""
        return Prefetching(source, self)

    def prefetch(self, jobs: list[Job]) -> None:
        """Look jobs up in one statement; their calls then need no query of their own."""
        valid = [job for job in jobs if job.invalid is None]
        if not valid:
            return
        for job in valid:
            if (refused := self._keyed(job)) is not None:
                self._refused[job.seq] = refused
        older = {job.seq: keys for job in valid if (keys := self._older_keys(job))}
        found = self.state.lookup_many(
            [row_key(job) for job in valid] + [key for keys in older.values() for key in keys]
        )
        # those with an older key first: another spelling of their URL read before them in
        # the batch takes the row they take
        for job in sorted(valid, key=lambda job: job.seq not in older):
            self._ahead[job.seq] = self._row_of(job, found, older.get(job.seq, []))

    def _keyed(self, job: Job) -> str | None:
        """Give job the key of its request's row, and return the reason it may not be sent
        when it came from a row (--retry-failed) of another request: the run's -X or -d (or
        their absence) would send a GET to a POST's row, or a body to a GET's, and the answer
        would stand for the request that failed (s21 h2 1)."""
        key = self.key(job)
        if job.key is None or job.key == key:
            job.key = key
            return None
        row, sent = _request_of(job.key), _request_of(key)
        this_run = "another body" if row == sent else sent
        return (
            f"not retried: the state's row is of {row}, this run would send {this_run}: give "
            "the -X and -d of the run that made it"
        )

    def _older_keys(self, job: Job) -> list[str]:
        """The keys earlier fetchers gave job's request, where they differ from job's: the
        URL as typed (Job.typed), whose scheme and host kept their capitals there, and the
        target as fetchers before s37 mapped it (Job.was: an empty path without its '/'), or
        the one a job of this run that typed them took (_row_of). None for most jobs."""
        adopted = self._adopted.get(row_key(job))
        if adopted is not None:
            return [adopted]
        keys: list[str] = []
        for text in (job.typed, job.was):
            if text is not None and (older := self.key(replace(job, target=text))) != job.key:
                keys += [] if older in keys else [older]
        return keys

    def __call__(self, job: Job) -> Result | None:
        """Attach job's Prior; return its record now if it is fresh (ok, skipped, unchanged),
        or None when it is to be fetched."""
        if job.seq in self._ahead:
            prior = job.prior = self._ahead.pop(job.seq)
            refused = self._refused.pop(job.seq, None)
        elif (refused := self._keyed(job)) is None:
            if not (older := self._older_keys(job)):
                prior = job.prior = self.state.lookup(row_key(job))
            else:  # rare: a host typed with capitals
                found = self.state.lookup_many([row_key(job), *older])
                prior = job.prior = self._row_of(job, found, older)
        if refused is not None:
            return Result.failure(job, ErrorKind.INVALID_URL, refused)
        if prior is None or self.skip_fresh is None:
            return None
        if not prior.fresh(time.time(), self.skip_fresh):
            return None
        if self.part is not None and self.part(job):
            return None  # a Range of the user's: the part is what was asked for, not the whole
        path = None
        if self.bodies is not None:
            if self.bodies.spool:
                return None  # --body, --include-body: the body is asked for, not the record
            if self.bodies.folder is not None:
                path = self._kept(job, prior, self.bodies.folder)
                if path is None:
                    return None
        return Result.fresh(job, prior.sha256, path)

    def _kept(self, job: Job, prior: Prior, folder: OutputDir) -> str | None:
        """The file job's fresh row names, kept for job's request for the rest of the run:
        another request saved there would replace the file its record vouches for (s23 r4 1).
        None when job is to be fetched: the file is gone, under another -o, never saved (a
        HEAD's), or given to another request of the run already; or, under --processes, the
        worker process that places job's names is to keep it (job.keep).

        That worker must: names are given there, and one kept here was never seen there (s24 f3
        1). It gets every name of the folders dealt as job's first folder under DIR (deal_name:
        a de-clashed ``host~<hash>`` with the host), so a file in a folder dealt otherwise (a
        row saved under a line's ``output`` name) is fetched again.

        Kept for the request's key (self.key), not for the row's (Job.key): files are owned by
        the former, which fetch._owner gives a file saved (a GET's is its URL: its file's name
        is its own), and a row an earlier fetcher keyed with capitals kept its file for one key
        while the run saved another spelling's body for the other, to a ~<hash> name (t4 1)."""
        assert self.bodies is not None
        path = self.bodies.held(prior.path, prior.saved_mark)
        if path is None:
            return None
        if self.in_workers:
            top = top_of(folder, path)
            if top is not None and deal_name_of(top) == deal_name(job.target, job.output):
                job.keep = path
            return None
        return path if folder.claim(path, self.key(job)) else None

    def _row_of(self, job: Job, found: dict[str, Prior], older: list[str]) -> Prior | None:
        """job's row among the rows found: its key's, or else the first one under older (the
        keys earlier fetchers gave its request, _older_keys), whose key job then takes, so that
        its answer updates that row: a new row under the folded key was a second row of one
        URL, and its file, claimed by another key, took a ~<hash> name beside the row's. The
        other spellings of that URL read later in the run take it too (t4 1)."""
        key = row_key(job)
        prior = found.get(key)
        adopted = self._adopted.get(key)  # another job's of the batch, taken just now
        for other in older or ([] if adopted is None else [adopted]):
            if prior is None and (prior := found.get(other)) is not None:
                self._adopted[key] = job.key = other
        return prior


def _request_of(key: str) -> str:
    """A row's request, as its key names it (request.state_key), its body unsaid (a hash of a
    short body tells it)."""
    method, _, rest = key.partition(" ")
    if " " not in rest:
        return "a GET or HEAD"
    return f"a {method}" + ("" if rest.endswith(" " + EMPTY_BODY) else " with a body")


class Prefetching:
    """A JobSource that reads up to PREFETCH jobs ahead while the input is files, and has the
    state look them up together; otherwise (a pipe) one job at a time, as read."""

    def __init__(self, source: JobSource, lookup: StateLookup) -> None:
        self.source = source
        self.lookup = lookup
        self._ahead: deque[Job] = deque()

    @property
    def count(self) -> int:
        return self.source.count

    @property
    def current_is_finite(self) -> bool:
        return bool(self._ahead) or self.source.current_is_finite

    @property
    def rest_is_finite(self) -> bool:
        return self.source.rest_is_finite

    def let_go(self) -> bool:
        return self.source.let_go()

    def next_job(self) -> Job | None:
        if not self._ahead:
            first = self.source.next_job()  # may wait on a pipe, as without a state
            if first is None:
                return None
            # Each job is kept as it is read: if a read or the lookup fails, drain has them.
            self._ahead.append(first)
            while len(self._ahead) < PREFETCH and self.source.rest_is_finite:
                job = self.source.next_job()
                if job is None:
                    break
                self._ahead.append(job)
            if len(self._ahead) > 1:
                self.lookup.prefetch(list(self._ahead))
        return self._ahead.popleft()

    def drain(self, lines_only: bool = False) -> Iterator[Job]:
        while self._ahead:
            yield self._ahead.popleft()
        yield from self.source.drain(lines_only)
