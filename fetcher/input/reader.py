"""Lazy reading of URL lists from arguments, files and standard input, one Job per URL line.

Lines are read one at a time with a bounded ``readline`` so that neither an endless pipe nor a
line of a gigabyte makes memory grow. A line that cannot be fetched still becomes a Job, carrying
the reason, so that it gets its record like every other URL. Files and standard input are plain
URL lines, or jsonl or csv (``fetcher.input.formats``), in UTF-8 or, behind its byte-order mark,
UTF-16 or UTF-32 (``fetcher.input.encodings``); lines of other shards are counted, not kept.
"""

from __future__ import annotations

import io
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from fetcher.input.encodings import Readable, WideText, as_utf8, wide_encoding
from fetcher.input.formats import (
    CSV_RECORD_START,
    csv_state_after,
    iter_csv,
    iter_jsonl,
    last_header_row,
)
from fetcher.input.jobs import Job, JobMaker, has_scheme, skipped_line
from fetcher.input.parsing import BOM, over_long, unmarked
from fetcher.input.pipes import DECODED_AHEAD, PipeInput, is_pipe
from fetcher.input.shards import Shard
from fetcher.settings import MAX_LINE_BYTES, MAX_RECORD_BYTES

COUNT_CHUNK = 1 << 20  # bytes read at a time when counting a file's URLs ahead of the run
PIECE_BYTES = 1 << 16  # the most bytes read at a time for csv
# Seconds a hard stop's hand-back of the unread rest parses lines for --unique, --shard, jsonl or
# csv before it takes the rest as it is (see InputReader.drain): well inside its second.
PARSE_BUDGET = 0.1
RAW_BLOCK = 1 << 20  # bytes of such a rest read at a time
# A line kept in the state for --retry-failed: its input format, the line, its csv header (or
# b""), and the URL fetched for it then.
StoredLine = tuple[str, bytes, bytes, str, str]  # format, line, csv header, URL, state key


@dataclass(slots=True)
class Source:
    """One place URLs come from: a list of command-line arguments, an open binary stream, or
    stored lines (--retry-failed's, from the state: each with its input format and csv header)."""

    name: str
    stream: BinaryIO | None = None
    arguments: tuple[str, ...] = ()
    stored: Iterable[StoredLine] | None = None
    # True when the rest can be read at once after an interrupt (not a pipe or terminal);
    # asked before every read, so worked out once: a regular file stays one.
    finite: bool = field(init=False)
    _text: Readable | None = field(default=None, init=False)  # what text() found
    _pipe: PipeInput | None = field(default=None, init=False)  # a pipe's stream, read through
    csv: bool = field(default=False, init=False)  # its lines are csv (InputReader says)
    # Where its lines of other shards go (raw, csv header): --failed, when it replaces this
    # file (outputs.keep_other_shards); else they are only counted.
    other_shards_to: Callable[[bytes, bytes | None], None] | None = field(default=None, init=False)
    # A csv stream's header in force where its reading stands, the parser's last header row
    # (take_header; a row under it or not, s27 r3 5): the label of lines another program
    # appends to it during the run, which --failed keeps (output.input_changes).
    header: bytes | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.finite = True
        if self.stream is not None:
            try:
                self.finite = stat.S_ISREG(os.fstat(self.stream.fileno()).st_mode)
            except (OSError, ValueError, AttributeError):  # closed, or not backed by a file
                self.finite = False
            if is_pipe(self.stream):
                self._pipe = PipeInput(self.stream)

    def text(self) -> Readable:
        """The stream to read, as UTF-8: a UTF-16 or UTF-32 one (with its mark) decoded.
        Looked at when first asked, which is when reading it starts."""
        if self._text is None:
            assert self.stream is not None
            if self._pipe is not None:
                self._pipe.csv = self.csv
            self._text = as_utf8(self.stream if self._pipe is None else cast(BinaryIO, self._pipe))
        return self._text

    def stop_waiting(self) -> bool:
        """After an interrupt: whether the rest can now be read without waiting, being what a
        pipe's reader had taken ahead of the record the run stood at (pipes.PipeInput). A pipe
        not read yet holds nothing of the run's: it stays as it is. Nor is a UTF-16 or UTF-32
        one's handed back: its decoder holds more than the pipe's reader, and a line end is
        not the byte it looks for (a NUL after it would be cut off, the pipe left astray)."""
        if self._pipe is None or self._text is None:
            return False
        if isinstance(self._text, WideText):
            self._pipe.left_out(self._text.held(), DECODED_AHEAD)  # said, at least
            return False
        self._pipe.stop_waiting()
        return True

    def let_go(self) -> bool:
        """After a stop: whether a read of this source cannot wait any more. A file's ends by
        itself; a pipe's no longer waits (PipeInput.shut); a terminal's cannot be made to."""
        if self._pipe is not None:
            self._pipe.shut()
        return self.finite or self._pipe is not None

    def take_header(self, header: bytes) -> None:
        """The csv parser read a header row: the one in force for what comes after it."""
        self.header = header

    def start(self) -> int | None:
        """Where the stream of a regular file stands now (before the run reads it), for
        counting it ahead; None for arguments and for anything that can be read only once."""
        try:
            if self.stream is None or not self.finite:
                return None
            return self.stream.tell()
        except (AttributeError, OSError, ValueError):  # a stream without a descriptor
            return None


def read_lines(
    stream: Readable, max_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes, bool]]:
    """Yield (line number, line without its end, too long) for every physical line, without a
    UTF-8 byte-order mark at its start.

    A line longer than max_bytes is cut to that length and one byte more (parsing.over_long),
    and its rest is skipped in bounded chunks, so that memory does not depend on the input.
    The byte more: such a line goes to --failed as it is kept, and the next run must read it
    as too long again; cut to max_bytes, it read as a shorter, valid URL, fetched in its place.
    """
    number = 0
    limit = max_bytes + 2  # room for CRLF around the longest line
    while True:
        raw = _unmarked_start(stream, limit)
        if not raw:
            return
        number += 1
        complete = raw.endswith(b"\n") or len(raw) < limit  # a whole line, or the last one
        raw = unmarked(raw)  # any line's: files joined by cat keep their marks
        visible = bool(raw.strip())  # anything but whitespace, also beyond the cut
        rest, after = raw, b""  # after: the first visible byte past what raw holds
        line_end_only = True  # what lies past the cut is CRs and the line's end
        while not complete and rest and not rest.endswith(b"\n"):
            rest = stream.readline(65536)
            after = after or rest.strip()[:1]
            visible = visible or bool(after)
            line_end_only = line_end_only and not rest.strip(b"\r\n")
        if not complete and line_end_only and raw.endswith(b"\r"):
            complete = True  # a line of max_bytes whose end is CR CR LF: not cut, but ended
        line = raw.rstrip(b"\r\n") if complete else raw  # a cut line has no end to drop
        too_long = not complete or len(line) > max_bytes
        kept = over_long(line, max_bytes, after) if too_long and visible else line
        yield number, kept, too_long and visible


def _unmarked_start(stream: Readable, limit: int) -> bytes:
    """A line's first limit bytes past the byte-order marks it starts with (still on them when
    the line holds only marks and its end), as readline(limit) reads them: marks read in the
    limit were dropped after the cut, so that 100 marks made an 8,100-byte URL too long and
    its --failed line a shorter URL (s28 r2 2), and a cut inside a mark left '\\xef' (r2 3).
    Memory stays within limit: the marks are dropped as they come."""
    raw = stream.readline(limit)
    while len(raw) == limit and not raw.endswith(b"\n") and (rest := unmarked(raw)) != raw:
        raw = rest + stream.readline(limit - len(rest))
    return raw


def read_pieces(stream: Readable, size: int = PIECE_BYTES) -> Iterator[bytes]:
    """Yield the stream's bytes in pieces of at most size bytes, each ending at the first line
    end (\\n) or before it, without a UTF-8 byte-order mark at the start, line ends kept as
    they are: for csv, which finds itself where its records end (inside quotes a line end is
    part of a cell, and a record may be any number of lines long)."""
    piece = stream.readline(size).removeprefix(BOM)
    while piece:
        yield piece
        piece = stream.readline(size)


def _holds_url(line: bytes) -> bool:
    """Whether a line becomes a job: it is not blank and not a comment (JobMaker's rule, after
    read_lines drops a byte-order mark)."""
    visible = unmarked(line).lstrip()
    return bool(visible) and visible[0] != 0x23  # '#'


def count_url_lines(fd: int, start: int, stopped: Callable[[], bool]) -> int | None:
    """The lines of a regular file from start on that hold a URL, read with pread (the
    file's position, shared with its reader, does not move). None when stopped, and for a
    UTF-16 or UTF-32 file (its lines are not those of its bytes)."""
    count, carry, offset = 0, b"", start
    if wide_encoding(os.pread(fd, 4, start)):
        return None
    while chunk := os.pread(fd, COUNT_CHUNK, offset):
        if stopped():
            return None
        offset += len(chunk)
        lines = (carry + chunk).split(b"\n")
        carry = _line_start(lines.pop())
        count += sum(map(_holds_url, lines))
    return count + _holds_url(carry)


def _line_start(part: bytes) -> bytes:
    """An unfinished line's part, as short as the verdict of _holds_url on the whole line
    allows: its start decides. Kept whole, a line of a GB was held and copied each MiB (s26
    h2 1: 371 MB and 32 s with the progress display on)."""
    if len(part) <= 4096:
        return part
    rest = unmarked(part)
    if BOM.startswith(rest):  # marks only so far (and a mark's first bytes, whose rest may come)
        return rest
    visible = rest.lstrip()
    return visible[:1] if visible else b" "  # blanks so far: the verdict is still open


class InputReader:
    """Iterates the Jobs of all sources in order; reading stops where the caller stops.
    ``drain()`` continues after an interrupt, yielding only what finite sources still hold, so
    that the lines never attempted can be handed back to the user. input_format applies to
    streams; command-line arguments are always plain URLs."""

    def __init__(
        self,
        sources: list[Source],
        default_scheme: str,
        unique: bool = False,
        input_format: str = "lines",
        shard: Shard | None = None,
    ) -> None:
        self.sources = sources
        self.input_format = input_format
        for source in sources:
            source.csv = input_format == "csv"
        self.jobs = JobMaker(default_scheme, unique, shard)
        self._current: Iterator[Job] | None = None
        self._position = 0
        self._starts = [source.start() for source in sources]  # before anything is read
        # rest_is_finite from each source on (and past the last): asked before every line by
        # the dispatcher, and a source's finite never changes (0.9 us a line, s25 p1).
        self._finite_from = [all(s.finite for s in sources[at:]) for at in range(len(sources) + 1)]

    @property
    def count(self) -> int:
        """Jobs read so far (the input's total once it has ended)."""
        return self.jobs.count

    @property
    def duplicates(self) -> int:
        return self.jobs.duplicates

    @property
    def other_shards(self) -> int:
        return self.jobs.other_shards

    def count_ahead(self, stopped: Callable[[], bool] = lambda: False) -> int | None:
        """How many jobs the input holds, counted without disturbing its reading: regular
        files are read with pread from where they stood when the reader was made. None when
        the count cannot be known now or exactly: a pipe, a FIFO or a terminal (they can be
        read once only), input other than plain lines, --unique or --shard. Safe to call
        from another thread; it returns None soon after stopped() becomes true."""
        if self.input_format != "lines" or self.jobs.unique or self.jobs.shard is not None:
            return None
        return _count_jobs(list(zip(self.sources, self._starts, strict=True)), stopped)

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
        return self._finite_from[self._position]

    @property
    def current_is_finite(self) -> bool:
        if self._position >= len(self.sources):
            return True
        return self.sources[self._position].finite

    def let_go(self) -> bool:
        """Source.let_go of this source and the next ones (the dispatcher may be moving on)."""
        return all([source.let_go() for source in self.sources[self._position :]])

    def drain(self, lines_only: bool = False) -> Iterator[Job]:
        """Yield the jobs left in the current and later sources that are finite (a pipe or
        terminal is never read further: it may never end; what a pipe's reader had taken is
        yielded, Source.stop_waiting).

        With lines_only (a hard stop writing --failed within a second), only each job's ``raw``
        and csv header count: plain lines are not parsed unless --unique or --shard need the
        URL, and after PARSE_BUDGET seconds no line is (``raw_rest``: 300,000 parsed took
        seconds, and the exit cut --failed short). Repeats and other shards' lines then go too;
        a next run with the same options skips them again: nothing is lost.

        A source whose read fails is left there, and the next ones are still drained: the
        first such failure is raised after them, so that the caller can say that --failed may
        lack lines (t4 4a: a second failure lost the lines of every later file, unsaid)."""
        plain = lines_only and self.input_format == "lines" and not self.jobs.unique
        plain, until = plain and self.jobs.shard is None, time.monotonic() + PARSE_BUDGET
        failure = None
        while self._position < len(self.sources):
            source = self.sources[self._position]
            try:
                if source.finite or source.stop_waiting():
                    self._current = self._rest_of(source, lines_only, plain, until)
                    # Not `yield from`: a caller that drops this generator (the dispatcher,
                    # stopped after its line) would close the reader's own, read on next.
                    while (job := next(self._current, None)) is not None:
                        yield job
            except Exception as exc:  # noqa: BLE001 - raised below, once the others are read
                failure = failure or exc
            self._current = None
            self._position += 1
        if failure is not None:
            raise failure

    def _rest_of(
        self, source: Source, lines_only: bool, plain: bool, until: float
    ) -> Iterator[Job]:
        """The jobs source still holds, for drain: the stream stands after the last line read,
        and a csv header row is parsed first."""
        stream = None if source.stream is None else source.text()
        late = lines_only and self.input_format != "csv" and time.monotonic() > until
        if stream is not None and (plain or late):
            return raw_rest(stream, self.input_format, None, self.jobs)
        jobs = self._current or self._jobs(source)
        if lines_only and stream is not None:
            return self._parsed_until(jobs, stream, until)
        return jobs

    def _parsed_until(self, jobs: Iterator[Job], stream: Readable, until: float) -> Iterator[Job]:
        """jobs, until the moment until; then, from the entry after, the stream as it is."""
        for job in jobs:
            yield job
            if time.monotonic() > until:
                yield from raw_rest(stream, self.input_format, job.header, self.jobs)
                return

    def _jobs(self, source: Source) -> Iterator[Job]:
        self.jobs.other_shard_lines = source.other_shards_to  # set as its reading starts
        if source.stored is not None:
            yield from stored_jobs(self.jobs, source.stored)
            return
        if source.stream is None:
            for argument in source.arguments:
                job = self.jobs.argument_job(argument)
                if job is not None:
                    yield job
            return
        stream = source.text()
        jobs = stream_jobs(self.jobs, stream, self.input_format, source.take_header)
        yield from explained(jobs, stream) if isinstance(stream, WideText) else jobs


def _count_jobs(starts: list[tuple[Source, int | None]], stopped: Callable[[], bool]) -> int | None:
    """InputReader.count_ahead's count of sources from where they stood (starts); None when
    a stream's start is not known, or counting it gave up (count_url_lines)."""
    if any(source.stream is not None and start is None for source, start in starts):
        return None
    count = 0
    for source, start in starts:
        if source.stream is None:
            count += len(source.arguments)  # each one a job, even an empty one
            continue
        assert start is not None
        found = count_url_lines(source.stream.fileno(), start, stopped)
        if found is None:
            return None
        count += found
    return count


def explained(jobs: Iterator[Job], stream: WideText) -> Iterator[Job]:
    """jobs of a UTF-16 or UTF-32 stream, an invalid line's reason told in its encoding."""
    for job in jobs:
        job.invalid = job.invalid and stream.explain(job.invalid)
        yield job


def stream_jobs(
    maker: JobMaker,
    stream: Readable,
    input_format: str,
    on_header: Callable[[bytes], None] = lambda header: None,
) -> Iterator[Job]:
    """The Jobs of a stream's lines (or jsonl lines, or csv records); on_header: told of each
    csv header row read (formats.iter_csv)."""
    if input_format == "lines":
        for number, raw, too_long in read_lines(stream):
            job = maker.line_job(number, raw, too_long)
            if job is not None:
                yield job
        return
    if input_format == "jsonl":
        entries = iter_jsonl(read_lines(stream, MAX_RECORD_BYTES))
    else:
        entries = iter_csv(read_pieces(stream), on_header)
    for entry in entries:
        job = maker.entry_job(entry)
        if job is not None:
            yield job


def raw_rest(
    stream: Readable, input_format: str, header: bytes | None, maker: JobMaker
) -> Iterator[Job]:
    """The rest of a stream as Jobs holding only raw bytes (see InputReader.drain): blocks of
    whole lines, verbatim (blank lines and comments too, which a run reading --failed skips
    again), in order, each line counted in C. A line at a time took 0.45 s for 300,000 lines,
    half of the second a hard stop has. A csv block may end inside a quoted cell: the next one
    goes on from there, and --failed gets the bytes as the file has them. A csv block's label
    is the header in force where it starts: a header row inside one (files joined with cat, a
    --failed of several inputs) labels the blocks after it, which --failed writes under it
    without the old header again (s26 r6 1). A line longer than a block is not held whole: it
    goes on in pieces, Jobs of no line (``lines`` 0), which --failed writes with no line end
    after them; only the new block is searched for a line end. Held whole, and copied at each
    block, 150 MB with no line end took 12.5 s and 478 MB (s27 r3 8)."""
    comments, quoting = input_format == "lines", CSV_RECORD_START  # after a parsed record
    carry, continued = b"", False  # continued: carry ends a line that went on in pieces
    while chunk := stream.read(RAW_BLOCK):
        cut = chunk.rfind(b"\n")
        if cut < 0 and len(carry) + len(chunk) > RAW_BLOCK:
            piece, carry, continued = carry + chunk, b"", True
            quoting = _header_after(piece, input_format, None, quoting)[1]
            yield Job(-1, "", "", None, piece, header=header, input_format=input_format,
                      lines=0, rest=True, header_after=header)  # fmt: skip
            continue
        if cut < 0:
            carry += chunk
            continue
        block, carry = carry + chunk[:cut], chunk[cut + 1 :]
        after, quoting = _header_after(block, input_format, header, quoting, continued)
        if job := _raw_block(block, input_format, comments, (header, after), maker, continued):
            yield job
        header, continued = after, False
    after, _ = _header_after(carry, input_format, header, quoting, continued)
    if job := _raw_block(carry, input_format, comments, (header, after), maker, continued):
        yield job


def _header_after(
    block: bytes, input_format: str, header: bytes | None, quoting: int, continued: bool = False
) -> tuple[bytes | None, int]:
    """The csv header in force after block (its last header row outside quotes, else header),
    found once for the reader and --failed alike (s26 r8 1), and where a parser stands then.
    continued: block's first line is the end of one that went on in pieces: never a header."""
    if input_format != "csv":
        return header, quoting
    if continued:
        first, _, block = block.partition(b"\n")
        quoting = csv_state_after(first, quoting)
    return last_header_row(block, quoting, header) or header, csv_state_after(block, quoting)


# The lines of "\n" + block + "\n" that hold no entry: blank (and, in a plain list, a '#'
# comment). Counted by a pattern that starts only at a line end: a pattern tried at every line
# start took 0.57 s for 3,000,000 lines, this one 0.13.
_SKIPPED_LINES = {
    True: re.compile(rb"\n[ \t\r\f\v]*(?=[\n#])"),
    False: re.compile(rb"\n[ \t\r\f\v]*(?=\n)"),
}


def _raw_block(
    block: bytes,
    input_format: str,
    comments: bool,
    headers: tuple[bytes | None, bytes | None],
    maker: JobMaker,
    continued: bool = False,
) -> Job | None:
    """A Job of the lines of block, as they are; None when none of them holds an entry.
    headers: the csv header in force at its start, and after it. continued: its first line
    ends one that went on in pieces, a line whatever its end holds: the Job is never None,
    as --failed must write that line's end."""
    if continued:
        _, ended, others = block.partition(b"\n")
        count = 1 + (_entries(others, comments) if ended else 0)
    else:
        count = _entries(block, comments) if block else 0
    if not count:
        return None
    maker.count += count
    return Job(-1, "", "", None, block, header=headers[0], input_format=input_format,
               lines=count, rest=True, header_after=headers[1])  # fmt: skip


def _entries(block: bytes, comments: bool) -> int:
    """The lines of block that hold an entry: not blank, and not a comment when comments."""
    skipped = len(_SKIPPED_LINES[comments].findall(b"\n" + block + b"\n"))
    return block.count(b"\n") + 1 - skipped


def names_url(job: Job, url: str) -> bool:
    """Whether job's line names url (a state row's), as typed or as checked, its scheme that
    of url when the line has none (the run that wrote the row may have had another default
    scheme)."""
    if url in (job.target, job.typed, job.was):
        return True
    if has_scheme(job.url):
        return False
    rest = url.partition("://")[2]
    return any(text is not None and text.partition("://")[2] == rest
               for text in (job.target, job.typed, job.was))  # fmt: skip


def stored_jobs(maker: JobMaker, stored: Iterable[StoredLine]) -> Iterator[Job]:
    """Jobs of lines kept in the state, each read as its own run read it (a jsonl line with
    its options and meta, a csv record under its header), whatever --input-format says, and
    fetching the URL that run fetched (a line without a scheme got that run's default scheme).
    A line that names another URL than its row's (a row edited by hand) is not the line of
    that fetch: the row's URL alone is retried, and its record names it (the line's URL in a
    record of another's fetch was a record that lied: s27 t7 7).
    They have no line number: the state is not a file the user can open at a line."""
    for input_format, line, header, fetched, key in stored:
        if input_format == "lines":
            job = maker.line_job(None, line, len(line) > MAX_LINE_BYTES)
            no_line = skipped_line(line)
        else:
            if input_format == "jsonl":
                entries = iter_jsonl([(1, line, False)])
            else:  # the record, whose line ends inside quotes are kept, under its header
                stored_text = header + b"\n" + line if header else line
                entries = iter_csv(read_pieces(io.BytesIO(stored_text)))
            entry = next(entries, None)
            job = None if entry is None else maker.entry_job(entry)
            no_line = entry is None
        if no_line or (
            job is not None and (job.invalid is not None or not names_url(job, fetched))
        ):
            # the row's URL alone: its line names another, or none (a row edited by hand: only
            # a fetched URL has a row, so a line that is blank, a comment or no URL was never
            # the line of this fetch; it gave no record, or an invalid one: s32 t1 1)
            job = maker.line_job(None, fetched.encode(), False)
        if job is not None:  # None: --unique or --shard leave it out
            job.line, job.key = None, key  # its result goes to the row it came from
            if job.invalid is None:
                # the row's URL: the host its check found, and the URL typed, were the line's
                job.target, job.host, job.typed, job.was = fetched, None, None, None
            yield job
