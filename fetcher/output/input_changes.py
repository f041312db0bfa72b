"""The input that --failed replaces (the retry loop, ``-i FILE --failed FILE``), looked at again
just before --failed is renamed over FILE at the run's end: another program (a producer) may
have changed FILE while the run read it, and the rename took what it put there with no word
(s27 t2 2).

- Lines appended after the run read FILE to its end are not yet read: they are added to
  --failed as the unread rest of an interrupt is (reader.raw_rest, under the csv header in
  force), so they stay in FILE for the next run.
- A FILE replaced by another file (``mv new FILE``), or rewritten in place shorter than what
  was read, is not this run's list any more: it is left as it is, and --failed is written
  beside it (``FILE.failed-<time>``), which stderr says even under -q: the retry loop would
  not find those lines in FILE.

The look and the rename are two steps: a line appended between them (milliseconds: --failed's
fsync) is lost with the old file; only a lock the producer takes too could close that window,
and fetcher knows of none. After the rename the old file, still open, is looked at once more,
so that such a loss is at least said. A rewrite in place that is not shorter than what was
read cannot be told from an append without reading FILE again: it is read as one stream."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field

from fetcher.input.jobs import JobMaker
from fetcher.input.reader import Source, raw_rest
from fetcher.output.failed import FailedLines
from fetcher.redact import redact_text

Say = list[tuple[str, bool]]  # messages for stderr, each with whether -q shows it too


@dataclass
class InputChanges:
    """The file inputs --failed replaces (found as the run starts, ``replaced_sources``), and
    what the end found of them: ``before_commit`` then ``after_commit`` around the rename."""

    failed: FailedLines
    sources: list[Source]
    input_format: str
    # Each source and how far it was read once carried: the old file, to see it grow again.
    _ends: list[tuple[Source, int]] = field(default_factory=list)

    def before_commit(self) -> Say:
        """Carry each source's appended lines into --failed, or, FILE no longer being the file
        read, point --failed at a name beside it. The messages to say."""
        said: Say = []
        for source in self.sources:
            found, identity = _looked_at(source, self.failed.path), _identity(source)
            if found is None or identity is None:
                continue  # FILE gone, or not a file read to its end: made anew, as ever
            now, size, position = found
            if now != identity:
                return said + self._put_aside("replaced")
            if size < position:
                return said + self._put_aside("rewritten in place", " (shorter than it was)")
            if size > position:
                said += self._carry(source)
            self._ends.append((source, _position(source)))
        return said

    def _carry(self, source: Source) -> Say:
        """The lines appended to source after it was read, to --failed as an unread rest."""
        assert source.stream is not None
        maker = JobMaker("http")  # counts the lines; nothing is parsed, nothing fetched
        try:
            for job in raw_rest(source.text(), self.input_format, source.header, maker):
                self.failed.add(job.raw, job.header, job.lines, True, job.header_after)
        except (OSError, ValueError):  # unreadable now: what was read is what there is
            pass
        if not maker.count:
            return []
        lines = f"{maker.count} line{'s' if maker.count > 1 else ''}"
        where = redact_text(repr(self.failed.path))
        text = f"fetcher: --failed: {lines} added to {where} during the run were not read: "
        return [(text + "kept in it for the next run", False)]

    def _put_aside(self, what: str, detail: str = "") -> Say:
        """FILE is another list now: --failed goes beside it, or nowhere when it holds nothing."""
        if not self.failed.count:
            self.failed.abort()
            return []
        self.failed.file.path = aside = beside(self.failed.path)
        count = f"{self.failed.count} line{'s' if self.failed.count > 1 else ''}"
        text = (f"fetcher: --failed: {self.failed.path!r} was {what} during the run{detail}: "
                f"it is left as it is, and this run's {count} are in {aside!r}")  # fmt: skip
        return [(redact_text(text), True)]

    def after_commit(self) -> Say:
        """A line appended to the old file between the look and the rename is in no file now."""
        said: Say = []
        for source, read in self._ends:
            grown = _size(source) - read
            if grown > 0 and self.failed.error is None:
                where = redact_text(repr(self.failed.path))
                said.append((f"fetcher: --failed: {grown} bytes appended to {where} while it "
                             "was replaced were lost with the old file", True))  # fmt: skip
        return said


def beside(path: str) -> str:
    """A name beside path that no file holds: path.failed-<time>, a number after if taken."""
    base = f"{path}.failed-{time.strftime('%Y%m%d-%H%M%S')}"
    name, number = base, 1
    while os.path.lexists(name):
        name, number = f"{base}-{number}", number + 1
    return name


def _looked_at(source: Source, path: str) -> tuple[tuple[int, int], int, int] | None:
    """What path leads to now, the size of the file read and how far it was read; None when
    either cannot be looked at."""
    try:
        now = os.stat(path)
        assert source.stream is not None
        return (now.st_dev, now.st_ino), _size(source), source.stream.tell()
    except (OSError, ValueError):
        return None


def _identity(source: Source) -> tuple[int, int] | None:
    """The regular file source's stream reads, by device and inode."""
    try:
        found = os.fstat(source.stream.fileno())  # type: ignore[union-attr]
    except (OSError, ValueError, AttributeError):  # no stream, or not backed by a descriptor
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISREG(found.st_mode) else None


def _position(source: Source) -> int:
    """How far source's stream was read (its end, once carried)."""
    try:
        return source.stream.tell()  # type: ignore[union-attr]
    except (OSError, ValueError, AttributeError):
        return 0


def _size(source: Source) -> int:
    try:
        return os.fstat(source.stream.fileno()).st_size  # type: ignore[union-attr]
    except (OSError, ValueError, AttributeError):
        return 0
