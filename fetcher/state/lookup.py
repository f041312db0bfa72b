"""What the dispatcher asks the state about each job as it is read: its Prior, which the job
carries to the HTTP layer, and, under --skip-fresh, whether it needs fetching at all."""

from __future__ import annotations

import time

from fetcher.input.jobs import Job
from fetcher.results import Result
from fetcher.state.store import State


class StateLookup:
    """Called by the dispatcher for every valid job, in input order (one thread)."""

    def __init__(self, state: State, skip_fresh: float | None = None) -> None:
        self.state = state
        self.skip_fresh = skip_fresh

    def __call__(self, job: Job) -> Result | None:
        """Attach job's Prior; return its record now if it is fresh (ok, skipped, unchanged),
        or None when it is to be fetched."""
        prior = job.prior = self.state.lookup(job.target)
        if prior is None or self.skip_fresh is None:
            return None
        if not prior.fresh(time.time(), self.skip_fresh):
            return None
        return Result(job, ok=True, skipped=True, changed=False, sha256=prior.sha256,
                      path=prior.path)  # fmt: skip
