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
- A hard exit before the look (a second signal during the run) carries nothing: it has a
  second. Its first hook (``before_hard_commit``) looks at each file once (fstat, stat): one
  that grew past what was read, was replaced or cut is left whole, --failed beside it (r6 1).
- A tail that starts with a UTF-16 or UTF-32 byte-order mark, of a file read as UTF-8 (it was
  empty), is a file of another kind now: left whole, never carried as bytes (r6 5).
- A --failed beside FILE with no line of this run's (only lines carried, which FILE still
  holds) is not written (FailedLines.copies, r6 2).

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

from fetcher.input.encodings import Readable, WideText, wide_encoding
from fetcher.input.jobs import JobMaker
from fetcher.input.reader import Source, raw_rest
from fetcher.output.failed import FailedLines
from fetcher.redact import redact_text

Say = list[tuple[str, bool]]  # messages for stderr, each with whether -q shows it too
NAME_MAX = 255  # bytes of a file name, where the file system does not say (pathconf)
WRITTEN = "was being written at the end of the run (its last line had no line end yet)"
REPLACED = "was replaced during the run"
WIDE_TAIL = "was filled during the run with UTF-16 or UTF-32 text, which its reading was not"
UNREAD = "had lines added to it that were not read yet when a second stop came"
WRITTEN_MEANWHILE = "was written during the run, by another run or program"
WIDE_MARK = 4  # bytes of the longest byte-order mark (UTF-32's)


@dataclass
class InputChanges:
    """The file inputs --failed replaces (found as the run starts, ``replaced_sources``), and
    what the end found of them: ``before_commit`` then ``after_commit`` around the rename."""

    failed: FailedLines
    sources: list[Source]
    input_format: str
    at_start: FileState | None = None  # FILE as the run began, when it is no input (file_state)
    # Each file read (one of its sources) and how far it was carried: to see it grow again.
    _ends: list[tuple[Source, int]] = field(default_factory=list)
    _aside: str = ""  # why --failed is beside FILE, as stderr says it ("": it is not)
    _done: bool = False  # after_commit ran: a hard exit after it has nothing to say
    _started: bool = False  # before_commit began: the look, not the hard exit's hook, decides

    def before_commit(self) -> Say:
        """Carry each file's appended lines into --failed, or, FILE no longer being the file
        read, leave --failed beside it (after_commit says so). The messages to say."""
        self._started = True
        said: Say = []
        if written_meanwhile(self.failed.path, self.at_start):
            self._go_aside(WRITTEN_MEANWHILE)
        if not self.sources:
            return said
        self._go_aside("was being looked at again for lines added to it when a second stop came")
        for group in _by_file(self.sources):
            why, carried = self._look(group)
            said += carried
            if why:
                self._aside = why
                return said  # with no line of this run's, nothing is written (commit)
        self._come_back()
        return said

    def before_hard_commit(self) -> None:
        """A hard exit's first hook, before --failed's commit, when the look has not begun (a
        second signal during the run): a file that grew past what was read (a producer's lines
        the run never read), was replaced or cut is left whole, --failed goes beside it, and
        at_hard_exit says so. --failed renamed over it took those lines with no word (s27 r6
        1). Nothing is carried: one stat and fstat a file fit the exit's second."""
        if not self._started and written_meanwhile(self.failed.path, self.at_start):
            self._go_aside(WRITTEN_MEANWHILE)
        if self._started or not self.sources:
            return
        for group in _by_file(self.sources):
            source = max(group, key=_position)
            why = _changed(source, self.failed.path)
            if why is None and _size(source) > _position(source):
                why = UNREAD
            if why:
                self._go_aside(why)
                return

    def _go_aside(self, why: str) -> None:
        """--failed beside FILE, for why: the name first, then no replace (see _come_back)."""
        self._aside = why
        self.failed.file.path = beside(self.failed.path)
        self.failed.file.no_replace = True

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
        read, size = _position(source), _size(source)
        if (why := _changed(source, self.failed.path)) is not None:
            return why, []
        said: Say = []
        if size > read:
            if _wide_tail(source, read):
                return WIDE_TAIL, []
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
                self.failed.copies += job.lines  # after: a hard exit in add writes the file
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
        """FILE left as it is, and where this run's lines are, once they are there: counted
        apart from the lines carried with them, which FILE still holds (r6 2: a merge of the
        file beside, as this invites, fetched millions of them twice)."""
        failed = self.failed
        where, count = redact_text(repr(failed.path)), failed.count - failed.copies
        text = f"fetcher: --failed: {where} {self._aside}: it is left as it is"
        if self._aside in (WRITTEN, UNREAD):
            text += ", with the lines this run read"
        if count > 0 and failed.error is None:
            lines, are = _lines(count, "is", "are")
            text += f", and this run's {lines} {are} in {redact_text(repr(failed.file.path))}"
            if failed.copies:  # a partial carry: the message must not count them as the run's
                copies = _lines(failed.copies, "", "")[0]
                text += f" (after a copy of {copies} added to {where}, which it still holds)"
        return text, count > 0  # without, nothing is lost: the loop reads FILE again


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


def _changed(source: Source, path: str) -> str | None:
    """Why path is no longer the file source reads (replaced, or cut shorter than what was
    read); "" when it is gone (made anew, as ever); None when it is that file still."""
    now = _stat(path)
    if now is None:
        return ""
    if now != _identity(source):
        return REPLACED
    if _size(source) < _position(source):
        return "was rewritten in place during the run (shorter than it was)"
    return None


def _wide_tail(source: Source, start: int) -> bool:
    """Whether the bytes from start begin with a UTF-16 or UTF-32 byte-order mark, source
    having been read as UTF-8 (it was empty then): carried as bytes after a blank line, the
    list read as UTF-8 and its URLs were invalid for good (s27 r6 5)."""
    if isinstance(source.text(), WideText):
        return False
    if (fd := _descriptor(source)) is None:
        return False
    try:
        head = os.pread(fd, WIDE_MARK, start)
    except (OSError, ValueError):
        return False
    return wide_encoding(head) is not None


def _line_ended(source: Source, start: int, size: int) -> bool:
    """Whether the bytes from start to size end with a whole line end, in the file's encoding."""
    text = source.text()
    end = text.line_end if isinstance(text, WideText) else b"\n"
    if (size - start) % len(end):
        return False  # a character cut: being written
    if (fd := _descriptor(source)) is None:
        return False
    try:
        return os.pread(fd, len(end), size - len(end)) == end
    except (OSError, ValueError):
        return False


# A --failed FILE that is no input as the run begins: its device, inode, size and time, or ()
# when there is none. None: not looked at (an input, looked at as one; a FIFO, written in place).
FileState = tuple[int, ...]


def file_state(path: str) -> FileState | None:
    """FILE's state (FileState), not followed: a link there is replaced, as FailedLines does."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return ()
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(found.st_mode):
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def written_meanwhile(path: str, at_start: FileState | None) -> bool:
    """Whether FILE, no input, is a regular file that was not there as the run began: another
    run with the same --failed renamed its list there, or a program wrote it. Renamed over,
    that list was lost with no word (s29 t2 3); it is left, and this run's lines go beside it
    (_go_aside). A FILE gone is made anew, and a link or a FIFO planted there is no list: it
    is replaced, as ever (AtomicFile)."""
    if at_start is None:
        return False
    now = file_state(path)
    return bool(now) and now != at_start


def _stat(path: str) -> tuple[int, int] | None:
    """The file path leads to now, by device and inode; None when it cannot be looked at."""
    try:
        now = os.stat(path)
    except (OSError, ValueError):
        return None
    return now.st_dev, now.st_ino


def _identity(source: Source) -> tuple[int, int] | None:
    """The regular file source's stream reads, by device and inode."""
    if (fd := _descriptor(source)) is None:
        return None
    try:
        found = os.fstat(fd)
    except (OSError, ValueError):
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISREG(found.st_mode) else None


def _position(source: Source) -> int:
    """How far source's stream was read (its end, once carried)."""
    if source.stream is None:
        return 0
    try:
        return source.stream.tell()
    except (OSError, ValueError):
        return 0


def _size(source: Source) -> int:
    if (fd := _descriptor(source)) is None:
        return 0
    try:
        return os.fstat(fd).st_size
    except (OSError, ValueError):
        return 0


def _descriptor(source: Source) -> int | None:
    """The descriptor source's stream reads; None with no stream (not opened, or closed), or
    one not backed by a descriptor (a test's BytesIO): each look then sees nothing to look at,
    rather than an AttributeError caught beside the real errors (s28 t4 5)."""
    if source.stream is None:
        return None
    try:
        return source.stream.fileno()
    except (OSError, ValueError):
        return None
