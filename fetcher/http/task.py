"""A URL on its way through its attempts: what a retry carries to the next worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fetcher.input.jobs import Job
from fetcher.results import Partial, Result

if TYPE_CHECKING:  # only annotations: the scheduler imports Task without urllib3
    from fetcher.http.deadline import Deadline
    from fetcher.http.request import EffectiveRequest
    from fetcher.output.bodies import BodyOutput
    from fetcher.output.paths import Owner


@dataclass(slots=True)
class Task:
    """A job and the state of its attempts. The first attempt (fetcher.http.fetch) sets
    ``started``, ``max_time`` and ``request``; later attempts reuse them."""

    job: Job
    host: str
    attempt: int = 0  # what --retries counts
    # Requests made again at once within an attempt, after an answer that cannot be used (a
    # 206 that cannot continue the partial file, a 304 that is no answer about the stored
    # body): no retry, but requests the server saw, which `attempts` counts (s28 t1 5).
    again: int = 0
    started: float | None = None  # perf_counter() at the first attempt
    # Dealt to a worker process, which tells of it only when it ends: this process does not
    # know whether it was sent (fetcher.run.books.abandoned_record).
    dealt: bool = False
    max_time: Deadline | None = None  # --max-time, counted from the first attempt
    request: EffectiveRequest | None = None  # what every attempt sends
    last: Result | None = None  # the previous attempt's result, while a retry is pending
    due: float | None = None  # clock() time its retry is due, while a retry is pending
    # Whether that wait is its own host's Retry-After pause (a 429/503 it got), not a backoff:
    # only such a retry may go inside a pause a sibling renewed (fetcher.run.scheduler).
    waits_pause: bool = False
    partial: Partial | None = None  # --continue: the file holding the body so far
    # Under -o: the request's state key (request.state_key), the owner of its file in the run:
    # another method or body for the URL is another request, whose answer gets a file of its
    # own; with the path its row names, which it keeps (Owner). None before the first
    # attempt, and without -o.
    owner: Owner | None = None
    # The Result of the attempt in flight, which its fetch fills in as the answer arrives
    # (status once its headers are read, bytes as its body is): what a stop that abandons the
    # task keeps of it (fetcher.run.books.abandoned_record). Another thread's, read only then.
    answer: Result | None = None
    # --continue: the output of the last answer's body to the partial file, which a stop that
    # abandons the task cuts (BodyOutput.cut): its record's bytes are the file's (s27 f1 2).
    writing: BodyOutput | None = None

    @property
    def requests(self) -> int:
        """The requests made for the URL so far: a record's ``attempts``."""
        return self.attempt + self.again

    @property
    def deadline(self) -> float | None:
        """When --max-time runs out, on ``time.monotonic()``: what the scheduler compares with
        its clock. None without a --max-time, or before the first attempt."""
        return None if self.max_time is None else self.max_time.at
