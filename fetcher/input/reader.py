"""Lazy reading of URL lists from arguments, files and standard input, one Job per URL line.

Lines are read one at a time with a bounded ``readline`` so that neither an endless pipe nor a
line of a gigabyte makes memory grow. A line that cannot be fetched still becomes a Job, carrying
the reason, so that it gets its record like every other URL. Files and standard input are plain
URL lines, or jsonl or csv (``fetcher.input.formats``); lines of other shards are counted, not
kept.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from fetcher.input.formats import Entry, iter_csv, iter_jsonl
from fetcher.input.shards import Shard, shard_key
from fetcher.settings import MAX_LINE_BYTES, MAX_RECORD_BYTES

BOM = b"\xef\xbb\xbf"
SCHEMES = ("http", "https")


@dataclass(slots=True)
class Job:
    """One URL to fetch, or one line that could not be a URL (``invalid`` says why)."""

    seq: int  # position among the jobs of this run, for --ordered
    url: str  # as read: the stripped line
    target: str  # what is fetched: the URL with the default scheme applied
    line: int | None  # line number in its input; None for a command-line argument
    raw: bytes  # the line verbatim, without its line end, for --failed
    invalid: str | None = None
    # Per-URL settings from --input-format jsonl or csv; None: the command line's.
    method: str | None = None
    headers: tuple[tuple[str, str | None], ...] = ()
    data: bytes | None = None
    output: str | None = None  # a file name under -o DIR instead of the URL's path
    meta: dict[str, Any] | None = None  # every other key of the line, back in the record
    header: bytes | None = None  # csv: the header row, written before the line to --failed


@dataclass(slots=True)
class Source:
    """One place URLs come from: a list of command-line arguments or an open binary stream."""

    name: str
    stream: BinaryIO | None = None
    arguments: tuple[str, ...] = ()

    @property
    def finite(self) -> bool:
        """True when the rest can be read at once after an interrupt (not a pipe or terminal)."""
        if self.stream is None:
            return True
        try:
            return stat.S_ISREG(os.fstat(self.stream.fileno()).st_mode)
        except (OSError, ValueError):
            return False


def validate(url: str) -> str | None:
    """Return why url cannot be fetched, or None when it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"malformed URL: {exc}"
    if parts.scheme.lower() not in SCHEMES:
        return f"unsupported scheme {parts.scheme!r} (only http and https are fetched)"
    if not parts.hostname:
        return "no host in URL"
    return None


# "mailto:", "javascript:", "data:"... at the start of a line: a scheme, unless what follows the
# colon is a port ("localhost:8080/x") or "user:password@host" (see _OPAQUE_SCHEMES).
_SCHEME_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?!\d*(?:[/?#]|$))")
_WHITESPACE = re.compile(r"\s")
# Schemes whose URLs have no "//" and may hold an "@" ("mailto:a@b.org"): never read as
# "user:password@host". Any other "word:...@host" is a host with credentials.
_OPAQUE_SCHEMES = frozenset(
    "mailto javascript data tel sms urn news about blob magnet geo cid mid xmpp sip sips fax "
    "callto bitcoin".split()
)


def not_a_url(text: str) -> str | None:
    """Why a stripped line is not a URL at all, before any default scheme is applied; None when it
    may be one. A line with whitespace inside, or with a scheme and no "//" (``mailto:x@y``), is
    not, though gluing "https://" on would make it parse (as user "mailto" at a host)."""
    if _WHITESPACE.search(text):
        return "whitespace inside the URL"
    if "://" in text or not _SCHEME_PREFIX.match(text):
        return None
    scheme = text.split(":", 1)[0]
    authority = re.split(r"[/?#]", text, maxsplit=1)[0]
    if "@" in authority and scheme.lower() not in _OPAQUE_SCHEMES:
        return None  # "user:password@host/x": a host with credentials
    return f"unsupported scheme {scheme!r} (only http and https are fetched)"


def read_lines(
    stream: BinaryIO, max_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes, bool]]:
    """Yield (line number, line without its end, too long) for every physical line.

    A line longer than max_bytes is cut to that length and its rest is skipped in bounded
    chunks, so that memory does not depend on the input.
    """
    number = 0
    limit = len(BOM) + max_bytes + 2  # room for a BOM and CRLF around the longest line
    while True:
        raw = stream.readline(limit)
        if not raw:
            return
        number += 1
        complete = raw.endswith(b"\n") or len(raw) < limit  # a whole line, or the last one
        visible = bool(raw.strip())  # anything but whitespace, also beyond the cut
        rest = raw
        while not complete and rest and not rest.endswith(b"\n"):
            rest = stream.readline(65536)
            visible = visible or bool(rest.strip())
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        line = raw.rstrip(b"\r\n")
        too_long = not complete or len(line) > max_bytes
        yield number, line[:max_bytes], too_long and visible


class InputReader:
    """Iterates the Jobs of all sources in order; reading stops where the caller stops.

    ``drain()`` continues after an interrupt, yielding only what finite sources still hold, so
    that the lines never attempted can be handed back to the user. input_format applies to
    streams; command-line arguments are always plain URLs.
    """

    def __init__(
        self,
        sources: list[Source],
        default_scheme: str,
        unique: bool = False,
        input_format: str = "lines",
        shard: Shard | None = None,
    ) -> None:
        self.sources = sources
        self.default_scheme = default_scheme
        self.unique = unique
        self.input_format = input_format
        self.shard = shard
        self.seen: set[str] = set()
        self.duplicates = 0
        self.other_shards = 0  # lines left to the other shards of --shard
        self.count = 0
        self._current: Iterator[Job] | None = None
        self._position = 0

    def __iter__(self) -> Iterator[Job]:
        while (job := self.next_job()) is not None:
            yield job

    def next_job(self) -> Job | None:
        """The next job of any source, or None at the end of the last one."""
        while self._position < len(self.sources):
            if self._current is None:
                self._current = self._jobs(self.sources[self._position])
            job = next(self._current, None)
            if job is not None:
                return job
            self._current = None
            self._position += 1
        return None

    @property
    def rest_is_finite(self) -> bool:
        """Whether every source from the current one on is a file or arguments: reading the
        next line cannot wait on a pipe or a terminal."""
        return all(source.finite for source in self.sources[self._position :])

    @property
    def current_is_finite(self) -> bool:
        if self._position >= len(self.sources):
            return True
        return self.sources[self._position].finite

    def drain(self, lines_only: bool = False) -> Iterator[Job]:
        """Yield the jobs left in the current and later sources that are finite.

        A pipe or terminal is skipped, never read: it may never end. With lines_only, the
        caller needs nothing but each job's ``raw`` line (a hard stop writing --failed within
        a second): plain-line files are then not parsed, unless --unique or --shard need the
        URL, so that 100,000 unread lines take a few hundredths of a second.
        """
        fast = lines_only and self.input_format == "lines" and not self.unique
        fast = fast and self.shard is None
        while self._position < len(self.sources):
            source = self.sources[self._position]
            if source.finite:
                if fast and source.stream is not None:
                    # The stream stands after the last line read: read on from there.
                    self._current = self._raw_jobs(source.stream)
                elif self._current is None:
                    self._current = self._jobs(source)
                while (job := next(self._current, None)) is not None:
                    yield job
            self._current = None
            self._position += 1

    def _raw_jobs(self, stream: BinaryIO) -> Iterator[Job]:
        """The rest of a plain-line stream as Jobs holding their raw line only (see drain)."""
        for _, raw, too_long in read_lines(stream):
            visible = raw.lstrip()
            if not visible or visible[0] >= 0x80:
                # Blank, or a line that only decoding can tell (a non-ASCII space before a '#'):
                # the ordinary rules decide.
                job = self._make_job(None, raw, too_long)
                if job is not None:
                    yield job
            elif visible[0] != 0x23:  # not a '#' comment
                self.count += 1
                yield Job(-1, "", "", None, raw)

    def _jobs(self, source: Source) -> Iterator[Job]:
        if source.stream is None:
            for argument in source.arguments:
                job = self._make_job(None, os.fsencode(argument), False)
                if job is not None:
                    yield job
            return
        if self.input_format == "lines":
            for number, raw, too_long in read_lines(source.stream):
                job = self._make_job(number, raw, too_long)
                if job is not None:
                    yield job
            return
        parse = iter_jsonl if self.input_format == "jsonl" else iter_csv
        for entry in parse(read_lines(source.stream, MAX_RECORD_BYTES)):
            job = self._entry_job(entry)
            if job is not None:
                yield job

    def _make_job(self, line: int | None, raw: bytes, too_long: bool) -> Job | None:
        visible = raw.lstrip()
        if visible.startswith(b"#") or not (visible or too_long):
            return None  # a comment, whatever its encoding, or a blank line
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            if raw.decode("utf-8", "surrogateescape").lstrip().startswith("#"):
                return None  # a comment after a non-ASCII space ("\xa0# caf\xe9"), bytes or not
            text = raw.decode("utf-8", "backslashreplace").strip()
            return self._admit(
                Job(-1, text, text, line, raw, f"line is not valid UTF-8 ({exc.reason})")
            )
        if not (text or too_long) or text.startswith("#"):
            return None
        if too_long:
            return self._admit(
                Job(-1, text, text, line, raw, f"line longer than {MAX_LINE_BYTES} bytes")
            )
        return self._admit(self._url_job(text, line, raw), dedupe=True)

    def _entry_job(self, entry: Entry) -> Job | None:
        """The Job of a jsonl line or csv record: its URL under the rules of a plain line, and
        its own method, headers, body, output name and meta."""
        if entry.url is not None:
            job = self._url_job(entry.url, entry.line, entry.raw)
        else:
            # No URL to show. Not the line instead: it may hold an Authorization header.
            job = Job(-1, "", "", entry.line, entry.raw)
        if entry.error is not None:
            job.invalid = entry.error
        job.method, job.headers, job.data = entry.method, entry.headers, entry.data
        job.output, job.meta, job.header = entry.output, entry.meta, entry.header
        # A malformed line always gets its record: only well-formed ones can be repeats.
        return self._admit(job, dedupe=entry.error is None)

    def _url_job(self, url: str, line: int | None, raw: bytes) -> Job:
        if (problem := not_a_url(url)) is not None:
            return Job(-1, url, url, line, raw, problem)
        target = url if "://" in url else f"{self.default_scheme}://{url}"
        return Job(-1, url, target, line, raw, validate(target))

    def _admit(self, job: Job, dedupe: bool = False) -> Job | None:
        """Number job and return it, or None when it belongs to another shard or, with dedupe
        and --unique, repeats a URL already read."""
        if self.shard is not None and not self.shard.holds(shard_key(job.target, job.raw)):
            self.other_shards += 1
            return None
        if dedupe and self.unique:
            if job.target in self.seen:
                self.duplicates += 1
                return None
            self.seen.add(job.target)
        job.seq = self.count
        self.count += 1
        return job
