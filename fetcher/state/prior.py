"""What the state knew about a URL before this run: it travels with the URL's Job, to the HTTP
layer (conditional and range requests) and back to the state writer (``changed``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Prior:
    """One state row, as far as a run needs it. Validators and the hash are those of the last
    complete ok body; a failure since then leaves them as they were."""

    ok: bool  # the last result was ok
    fetched_at: int  # unix seconds of the last result
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None  # hex, as in the record
    path: str | None = None
    saved_mark: int | None = None  # the file at path then (atomic.file_mark); None: unknown
    partial: str | None = None  # --continue: the temporary file of a download cut short
    partial_from: str | None = None  # its If-Range validator: an ETag or a Last-Modified date
    partial_bytes: int | None = None  # its size when cut short; None: not known (killed)
    partial_changed: int | None = None  # its st_ctime_ns then, when known
    partial_total: int | None = None  # the resource's length when it began, when known
    final_url: str | None = None  # the URL the body came from (its validators'); None: unknown
    partial_url: str | None = None  # the URL the partial's body came from; None: unknown

    @property
    def has_validators(self) -> bool:
        return self.etag is not None or self.last_modified is not None

    def fresh(self, now: float, within: float) -> bool:
        """A body fetched ok less than within seconds before now (--skip-fresh): a HEAD's row
        holds none (no sha256); a time after now (a clock set ahead then) is no age."""
        return self.ok and self.sha256 is not None and 0 <= now - self.fetched_at < within
