"""The input that --failed replaces (the retry loop, ``-i FILE --failed FILE``), looked at again
just before --failed is renamed over FILE at the run's end: another program (a producer) may
have changed FILE while the run read it, and the rename took what it put there with no word
(s27 t2 2).

- Lines appended after the run read FILE to its end are not yet read: they are added to
  --failed as the unread rest of an interrupt is (reader.raw_rest, under the csv header in
  force), so they stay in FILE for the next run. Once per file (``-i F -i F``), from the
  furthest any of its readings got, in its own encoding (UTF-16 read on with a fresh decoder).
- A FILE replaced by another file (``mv new FILE``), rewritten in place shorter than what was
  read, or being written (its last line has no line end yet: carried, its start became a URL
  nobody gave, s27 r3 3) is left as it is, and --failed is written beside it
  (``FILE.failed-<time>``, a name that fits and replaces nothing), which stderr says, even under
  -q, once the lines are there: the retry loop would not find them in FILE.
- Until that is decided, --failed points beside FILE: a hard exit (a second signal) in the
  middle of the look or the carry puts it there, never over FILE with part of the lines
  (s27 r3 4), and its hook says where (``at_hard_exit``).

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
from typing import BinaryIO, cast

from fetcher.input.encodings import Readable, WideText
from fetcher.input.jobs import JobMaker
from fetcher.input.reader import Source, raw_rest
from fetcher.output.failed import FailedLines
from fetcher.redact import redact_text

Say = list[tuple[str, bool]]  # messages for stderr, each with whether -q shows it too
NAME_MAX = 255  # bytes of a file name, where the file system does not say (pathconf)
WRITTEN = "was being written at the end of the run (its last line had no line end yet)"


@dataclass
class InputChanges:
    """The file inputs --failed replaces (found as the run starts, ``replaced_sources``), and
    what the end found of them: ``before_commit`` then ``after_commit`` around the rename."""

    failed: FailedLines
    sources: list[Source]
    input_format: str
    # Each file read (one of its sources) and how far it was carried: to see it grow again.
    _ends: list[tuple[Source, int]] = field(default_factory=list)
    _aside: str = ""  # why --failed is beside FILE, as stderr says it ("": it is not)
    _done: bool = False  # after_commit ran: a hard exit after it has nothing to say

    def before_commit(self) -> Say:
        """Carry each file's appended lines into --failed, or, FILE no longer being the file
        read, leave --failed beside it (after_commit says so). The messages to say."""
        said: Say = []
        if not self.sources:
            return said
        self._aside = "was being looked at again for lines added to it when a second stop came"
        self.failed.file.path = beside(self.failed.path)  # the name first: see _come_back
        self.failed.file.no_replace = True
        for group in _by_file(self.sources):
            why, carried = self._look(group)
            said += carried
            if why:
                self._aside = why
                if not self.failed.count:
                    self.failed.abort()  # nothing of this run's: the file stays whole
                return said
        self._come_back()
        return said

    def _come_back(self) -> None:
        """--failed goes over FILE again. The flag first: a hard exit's commit on another thread
        that reads the two in between finds a new name beside FILE, never FILE with no
        replace (which would fail: --failed lost)."""
        self.failed.file.no_replace = False
        self.failed.file.path = self.failed.path
        self._aside = ""

    def _look(self, group: list[Source]) -> tuple[str, Say]:
        """Why FILE is not this file's list any more ("": it is), and what carrying said."""
        source = max(group, key=_position)  # the furthest reading: each line once (r3 6)
        now, read, size = _stat(self.failed.path), _position(source), _size(source)
        if now is None:
            return "", []  # FILE gone: made anew, as ever
        if now != _identity(source):
            return "was replaced during the run", []
        if size < read:
            return "was rewritten in place during the run (shorter than it was)", []
        said: Say = []
        if size > read:
            if not _line_ended(source, read, size):
                return WRITTEN, []
            said = self._carry(source, size - read)
            if _position(source) != size:  # an error: the rest is in FILE, not in --failed
                return "could not be read to its end again", said
        self._ends.append((source, size))
        return "", said

    def _carry(self, source: Source, size: int) -> Say:
        """The size bytes appended to source after it was read, to --failed as an unread
        rest: what the look found, no more (a later line is the window's, after_commit)."""
        assert source.stream is not None
        stream: Readable = _Looked(source.stream, size)
        text = source.text()
        if isinstance(text, WideText):  # its decoder was told the end came (r3 2)
            stream = text.read_on(cast(BinaryIO, stream))
        maker = JobMaker("http")  # counts the lines; nothing is parsed, nothing fetched
        try:
            for job in raw_rest(stream, self.input_format, source.header, maker):
                self.failed.add(job.raw, job.header, job.lines, True, job.header_after)
        except (OSError, ValueError):  # unreadable now: _look finds it did not get to the end
            pass
        if not maker.count:
            return []
        lines, were = _lines(maker.count, "was", "were")
        where = redact_text(repr(self.failed.path))
        told = f"fetcher: --failed: {lines} added to {where} during the run {were} not read: "
        return [(told + "kept in it for the next run", False)]

    def after_commit(self) -> Say:
        """Where --failed went when it is beside FILE; else, a line appended to the old file
        between the look and the rename, which is in no file now."""
        self._done = True
        if self._aside:
            return [self._said_aside()]
        said: Say = []
        for source, read in self._ends:
            grown = _size(source) - read
            if grown > 0 and self.failed.error is None:
                where = redact_text(repr(self.failed.path))
                said.append((f"fetcher: --failed: {grown} bytes appended to {where} while it "
                             "was replaced were lost with the old file", True))  # fmt: skip
        return said

    def at_hard_exit(self) -> str | None:
        """For a hard exit's hook, after --failed's commit: where it went, when the end's look
        had it beside FILE; None when it went over FILE (or was not written: that is said)."""
        if self._done or not self._aside or self.failed.error is not None:
            return None
        return self._said_aside()[0]

    def _said_aside(self) -> tuple[str, bool]:
        """FILE left as it is, and where this run's lines are, once they are there."""
        where, count = redact_text(repr(self.failed.path)), self.failed.count
        text = f"fetcher: --failed: {where} {self._aside}: it is left as it is"
        if self._aside == WRITTEN:
            text += ", with the lines this run read"
        if count and self.failed.error is None:
            lines, are = _lines(count, "is", "are")
            text += f", and this run's {lines} {are} in {redact_text(repr(self.failed.file.path))}"
        return text, bool(count)  # without, nothing is lost: the loop reads FILE again


class _Looked:
    """The bytes of stream from where it stands, at most size: what the look found there."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream = stream
        self._left = size

    def read(self, size: int = -1, /) -> bytes:
        wanted = self._left if size < 0 else min(size, self._left)
        data = self._stream.read(wanted) if wanted else b""
        self._left -= len(data)
        return data

    read1 = read

    def readline(self, size: int = -1, /) -> bytes:
        wanted = self._left if size < 0 else min(size, self._left)
        data = self._stream.readline(wanted) if wanted else b""
        self._left -= len(data)
        return data


def beside(path: str) -> str:
    """A name beside path that no file holds: path.failed-<time>, a number after if taken; the
    name cut at its end to fit the file system's longest (s27 r3 7: 236 characters and the
    stamp were too long, and --failed was in no file)."""
    folder, name = os.path.split(path)
    try:
        longest = os.pathconf(folder or ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = NAME_MAX
    stamp, number = f".failed-{time.strftime('%Y%m%d-%H%M%S')}", 0
    while True:
        ending = stamp + (f"-{number}" if number else "")
        while name and len(os.fsencode(name + ending)) > longest:
            name = name[:-1]
        found = os.path.join(folder, name + ending)
        if not os.path.lexists(found):
            return found
        number += 1


def _lines(count: int, one: str, more: str) -> tuple[str, str]:
    """'1 line' with one, or 'N lines' with more: the verb that goes with it."""
    return (f"{count} line", one) if count == 1 else (f"{count} lines", more)


def _by_file(sources: list[Source]) -> list[list[Source]]:
    """The sources read from a regular file, grouped by that file (``-i F -i F --unique``)."""
    files: dict[tuple[int, int], list[Source]] = {}
    for source in sources:
        if (identity := _identity(source)) is not None:
            files.setdefault(identity, []).append(source)
    return list(files.values())


def _line_ended(source: Source, start: int, size: int) -> bool:
    """Whether the bytes from start to size end with a whole line end, in the file's encoding."""
    text = source.text()
    end = text.line_end if isinstance(text, WideText) else b"\n"
    if (size - start) % len(end):
        return False  # a character cut: being written
    try:
        return os.pread(source.stream.fileno(), len(end), size - len(end)) == end  # type: ignore[union-attr]
    except (OSError, ValueError, AttributeError):
        return False


def _stat(path: str) -> tuple[int, int] | None:
    """The file path leads to now, by device and inode; None when it cannot be looked at."""
    try:
        now = os.stat(path)
    except (OSError, ValueError):
        return None
    return now.st_dev, now.st_ino


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
