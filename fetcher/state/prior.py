"""What the state knew about a URL before this run: it travels with the URL's Job, to the HTTP
layer (conditional and range requests) and back to the state writer (``changed``)."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from fetcher.http.headers import http_date


class Reach(enum.Enum):
    """How far a URL is from the one a body came from (reach): which conditions it gets."""

    OWN = "own"  # that very URL
    SIGNED = "signed"  # its scheme, host, port and path under another query: a signed target
    OTHER = "other"  # another resource


def reach(url: str | None, body_url: str) -> Reach:
    """The rule of which of the state's conditions go to a URL (redirects.Conditions), and how
    its answer is judged (Prior.another_version): the very URL the body came from gets them
    all, and its answer is the body's own; the same scheme, host, port and path under another
    query, as a signed or rotating target (a presigned link, a release asset) is each time,
    gets only those of a strong ETag (If-None-Match, If-Range with its Range), and counts only
    when it names that very ETag (s24 r11 1, 2); any other URL is another resource and gets
    none (RFC 9110 8.8): an ETag of a file's time and size (nginx, Apache) is unique within
    one path only, and 67784d0 sent it everywhere: a moved permalink's other file of the same
    tag answered 304 (kept for good) or 206 (spliced onto the first's), and the tag went to
    other hosts and over http (s25 r2 2, 3, 6). A target whose path changes each time loses
    its 304 and its resume: the limit of the rule."""
    if url == body_url:
        return Reach.OWN
    if url is None:
        return Reach.OTHER
    place = _place(url)
    return Reach.SIGNED if place is not None and place == _place(body_url) else Reach.OTHER


def _place(url: str) -> tuple[str, str | None, int | None, str] | None:
    """url's scheme, host, port (a scheme's default spelt out) and path; None if unreadable."""
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    return parts.scheme.lower(), parts.hostname, port, parts.path or "/"


_DEFAULT_PORTS = {"http": 80, "https": 443}


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
        self, etag: str | None, last_modified: str | None, where: Reach = Reach.OWN
    ) -> bool | None:
        """Whether an answer's validators (etag, last_modified) name another version than the
        stored body's: the ETag decides when both have one, as If-None-Match does (W/ aside:
        RFC 9110's weak comparison, as a server that compresses weakens its tags), else the
        Last-Modified date (as a moment); None when no validator is in both. One rule for a
        HEAD's ``changed`` (state.store) and a GET's 304 that has the body read whole
        (fetch.names_another_version): -I said changed on every run where the GET kept the old
        file, changed false, for a weak tag or another date (s24 r11 3). A date that differs
        is another version however grained dates are (a rollback answered 304 by a server
        that checks If-Modified-Since with <=). where: the answer's URL's reach (came_from).
        From the body's path under another query (a signed target), only the same strong ETag
        says it is the same body: a date or a weak tag is that URL's (RFC 9110 8.8). From
        another path, host, port or scheme, nothing does: an ETag of a file's time and size
        (nginx, Apache) is one per path only, and two files had one (s25 r2 3); -I took two
        files of one date for one (s24 r11 5). A row that holds no validator (a URL the state
        only saw HEADs of) vouches for no version: None, wherever the answer came from (s25 h6
        1: -I said changed on every run of a redirecting URL)."""
        if self.etag is None and self.last_modified is None:
            return None
        if where is Reach.OTHER:
            return True
        if where is Reach.SIGNED:
            mine = self.etag
            return not (etag is not None and mine is not None and _strong(etag)
                        and etag.strip() == mine.strip())  # fmt: skip
        if etag is not None and self.etag is not None:
            return opaque(etag) != opaque(self.etag)
        if last_modified is not None and self.last_modified is not None:
            return moment(last_modified) != moment(self.last_modified)
        return None

    def came_from(self, url: str | None, redirects: int, asked: str) -> Reach:
        """The reach (reach) of an answer from url, after redirects, to the URL whose body the
        row's validators are of: its final_url, or for a row from before schema 6 that does
        not say, the URL asked (as redirects.Conditions takes it), its own when it answered
        without a redirect."""
        if self.final_url is None:
            return Reach.OWN if redirects == 0 else reach(url, asked)
        return reach(url, self.final_url)

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
