"""What the state knew about a URL before this run: it travels with the URL's Job, to the HTTP
layer (conditional and range requests) and back to the state writer (``changed``)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from fetcher.http.headers import http_date


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

    def another_version(
        self, etag: str | None, last_modified: str | None, elsewhere: bool = False
    ) -> bool | None:
        """Whether an answer's validators (etag, last_modified) name another version than the
        stored body's: the ETag decides when both have one, as If-None-Match does (W/ aside:
        RFC 9110's weak comparison, as a server that compresses weakens its tags), else the
        Last-Modified date (as a moment); None when no validator is in both. One rule for a
        HEAD's ``changed`` (state.store) and a GET's 304 that has the body read whole
        (fetch.names_another_version): -I said changed on every run where the GET kept the old
        file, changed false, for a weak tag or another date (s24 r11 3). A date that differs
        is another version however grained dates are (a rollback answered 304 by a server
        that checks If-Modified-Since with <=). From elsewhere (an answer from another URL
        than the body's: came_from), only the same strong ETag says it is the same body (a
        signed target): a date or a weak tag is that other resource's, and says nothing of
        this body (RFC 9110 8.8); -I took two files of one date for one (s24 r11 5)."""
        if elsewhere:
            mine = self.etag
            return not (etag is not None and mine is not None and _strong(etag)
                        and etag.strip() == mine.strip())  # fmt: skip
        if etag is not None and self.etag is not None:
            return opaque(etag) != opaque(self.etag)
        if last_modified is not None and self.last_modified is not None:
            return moment(last_modified) != moment(self.last_modified)
        return None

    def came_from(self, final_url: str | None, redirects: int) -> bool:
        """Whether an answer from final_url, after redirects, came from the URL whose body the
        row's validators are of (final_url, the redirects followed): its own, or, for a row
        from before schema 6 that does not say, the URL asked, when it answered without a
        redirect (as redirects.Conditions sends them)."""
        if self.final_url is None:
            return redirects == 0
        return final_url == self.final_url

    def fresh(self, now: float, within: float) -> bool:
        """A body fetched ok less than within seconds before now (--skip-fresh): a HEAD's row
        holds none (no sha256); a time after now (a clock set ahead then) is no age."""
        return self.ok and self.sha256 is not None and 0 <= now - self.fetched_at < within


def opaque(etag: str) -> str:
    """An ETag as RFC 9110's weak comparison sees it (8.8.3.2): W/ or not, the same tag (a
    server that compresses may weaken it)."""
    return etag.strip().removeprefix("W/")


def moment(value: str) -> datetime.datetime | str:
    """A Last-Modified date as a moment (headers.http_date), so that two spellings of one
    agree; unreadable, as given."""
    return http_date(value) or value.strip()


def _strong(etag: str) -> bool:
    """Whether etag is a strong one: a quoted tag, not W/."""
    return etag.lstrip().startswith('"')
