"""The --failed file: the input lines, verbatim, of every URL that did not end ok, ready to be
read back with ``-i FILE``."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import threading
from collections.abc import Callable

from fetcher.input.encodings import wide_encoding
from fetcher.input.formats import quotes_left_open
from fetcher.input.jobs import reads_back_as_itself
from fetcher.output.atomic import AtomicFile
from fetcher.output.atomic import moved_to as folder_moved_to
from fetcher.redact import MASK, redact_text, redact_url, visible

FAILED_BUFFER = 1 << 16  # bytes of --failed lines held before they are written
# Bytes of whole lines a write takes at most: a write to a pipe returns once all of it is read,
# and the thread's written bytes grow only then; 64 KiB to a reader of 80 KB/s was 0.8 s
# without a sign of work, and cut as stuck (s23 r6 3). A hard stop's watchdog now sees a reader
# take bytes during the write (hard_stop.WriteProgress, s24 r1 1); the small pieces still show
# work where that cannot be seen (no /proc's syscall or schedstat).
FAILED_WRITE = 1 << 13
COMMIT_WAIT = 0.05  # seconds a hard exit's commit waits for another thread's add


class FailedLines:
    """The --failed file, built as an AtomicFile (mode 0600 from the start: the lines may carry
    passwords, which they must, to be retried) and renamed over FILE by ``commit`` when the run
    ends. So ``-i FILE --failed FILE`` reads the old list while the new one is written, and a
    run killed outright leaves the old FILE whole. A symlink at FILE is replaced, never written
    through; a FIFO or a character device (``/dev/stderr``) is written in place.

    A csv input's header row comes first (again wherever it changes), so that the file reads
    back as csv; a failed line that is that header row is the header, never a line besides it.
    A csv record whose quotes are left open at its end (it ran to the end of its input) would
    swallow every line after it read back: it is held back and written by ``commit``, last. At
    most one per csv input; several held back swallow each other (the first one read is
    invalid_url again), never a record that can be fetched.

    Lines are buffered here and written with ``os.write``, whole lines at a time, not through
    a buffered file: ``commit`` may run in a signal handler that interrupted ``add``, where a
    Python file object would raise "reentrant call", or in a hard exit's hook on another
    thread, which renames the file between two writes: it never ends in the middle of a line.

    A terminal (/dev/stderr, /dev/tty) gets its lines for eyes (``shown_line``: visible and
    masked), in its encoding, shown_as, through ``show`` when the live display is on it.
    """

    def __init__(self, path: str, plain_lines: bool = True, encoding: str = "utf-8") -> None:
        """Raises OSError when the file cannot be created. plain_lines: the run reads a URL a
        line (no --input-format jsonl or csv), so that an argument can be written as a line.
        encoding: a terminal's, should path name one."""
        self.path = path
        self.plain_lines = plain_lines
        self.file = AtomicFile(path, 0o600, unnamed=True)
        self.shown_as = encoding if os.isatty(self.file.fd) else None
        self.show: Callable[[str], None] | None = None
        self._buffer = bytearray()
        # add, flush, commit: one thread at a time (reentrant: a handler's commit on its thread)
        self._lock = threading.RLock()
        self._header: bytes | None = None  # the header row written last
        self._held_back: list[tuple[bytes, bytes]] = []  # csv records left open, their headers
        self._ended = False
        self._started = False  # a line was added (a blank one may have to go first)
        self.count, self.copies = 0, 0  # copies: of count, lines FILE still holds (r6 2)
        self.unwritable = 0  # arguments that would not read back as themselves (add_argument)
        self.error: OSError | None = None  # a failed write: the old FILE is then kept

    def add(self, raw: bytes, header: bytes | None = None, lines: int = 1, rest: bool = False,
            after: bytes | None = None) -> None:  # fmt: skip
        """Keep a failed line (or, rest, lines: a block of a file's unread rest, verbatim and
        in order, never held back; of no line, a piece of a long one, which the next block
        goes on: no line end after it, s27 r3 8); header: its csv input's header row (None:
        not csv); after: such a block's header in force after it (raw_rest, s26 r8 1)."""
        with self._lock:
            self.count += lines
            if not rest and header is not None and b'"' in raw and quotes_left_open(raw):
                self._held_back.append((raw, header))
                return
            self._add_line(raw, header, b"" if rest and not lines else b"\n")
            if rest and after is not None and after != header:  # the next block's label (r6 1)
                self._header = after if self.shown_as is None else shown_line(after, self.shown_as)
            if len(self._buffer) >= FAILED_BUFFER:
                self.flush()

    def add_argument(self, raw: bytes) -> None:
        """Keep a failed command-line argument, unless read back as a line it would not be
        itself: blank or a comment (skipped, so its failure would leave the retry loop), with
        a line end inside or a byte-order mark first (other URLs fetched in its place), or in a
        jsonl or csv file (a bare URL is no line of those: as the first, the csv header).
        Those are counted in ``unwritable``: the run says so, their records say why."""
        if not (self.plain_lines and reads_back_as_itself(raw)):
            with self._lock:
                self.unwritable += 1
            return
        self.add(raw)

    def _add_line(self, raw: bytes, header: bytes | None, end: bytes = b"\n") -> None:
        if self.shown_as is not None:
            fields = None if self.plain_lines else header or b""
            raw, end = shown_line(raw, self.shown_as, fields), b"\n"
            header = None if header is None else shown_line(header, self.shown_as)
        if not self._started:
            self._started = True
            if wide_encoding(raw if header is None else header):
                # Read back, a file that starts with a UTF-16 mark is decoded as UTF-16, every
                # line of it another: a blank line first (skipped on reading) keeps it UTF-8.
                self._buffer += b"\n"
        if header is not None and raw == header:
            # The header row itself (one that cannot be read has a record of its own), or a
            # copy of it further on: written once, as the header. A line of its own besides,
            # a retry read it as a row under itself, and the loop's file grew by one a round.
            if header != self._header:
                self._buffer += raw + end
                self._header = header
            return
        if header is not None and header != self._header:
            self._buffer += header + b"\n"
            self._header = header
        self._buffer += raw + end

    def flush(self) -> None:
        """Write what was added. Never raises: a failure is kept in ``error``, so that a full
        disk under --failed cannot cost the run its records."""
        with self._lock:
            if self.error is not None or self.file.fd < 0:
                self._buffer.clear()
                return
            try:
                while self._buffer:
                    # Whole lines at a time: a hard exit may rename the file between two writes.
                    # The descriptor is read again each time: commit (in an exit hook) may have
                    # closed it, and a closed one must fail (EBADF), never write to a reused one.
                    end = self._buffer.rfind(b"\n", 0, FAILED_WRITE) + 1 or len(self._buffer)
                    del self._buffer[: self._write(self._buffer[:end])]
            except OSError as exc:
                self.error = exc
                self._buffer.clear()

    def _write(self, lines: bytearray) -> int:
        if self.show is None or self.shown_as is None:
            return os.write(self.file.fd, lines)
        self.show(lines.decode(self.shown_as, "replace").removesuffix("\n"))
        return len(lines)

    def commit(self, sync: bool = True) -> None:
        """Write the rest and rename the file over FILE. Idempotent, never raises, and safe to
        call from a hard-exit hook (sync=False there: no fsync, so it does not wait on the disk).
        After a write error the old FILE is kept and ``error`` says why."""
        if self._ended:
            return
        if not sync:  # a hard exit: never wait on the console's lock, which a stuck write holds
            self.show = None
        # Another thread adding (the calling thread, when the watchdog exits in its place) is
        # not waited for long: what is written already is whole lines.
        if self._lock.acquire(timeout=COMMIT_WAIT):
            try:
                held_back, self._held_back = self._held_back, []
                for raw, header in held_back:  # its input's last line end is inside its quote
                    self._add_line(raw, header, b"" if raw.endswith(b"\n") else b"\n")
                self.flush()
            finally:
                self._lock.release()
        if self.error is None and not only_copies_beside(self):
            try:
                self.file.commit(sync)
            except OSError as exc:
                self.error = exc
        self.abort()

    def abort(self) -> None:
        """The run did not end (an error before or during it): remove the temporary, keep the
        old FILE. Idempotent; does nothing after commit."""
        self._ended = True
        self.file.abort()


def only_copies_beside(failed: FailedLines) -> bool:
    """Whether failed goes beside FILE (input_changes) with no line of this run's, only lines
    carried from FILE (``copies``), which FILE still holds: then nothing is written, as the
    docs say. A hard exit in the end's look left an empty FILE.failed-<time> (s27 r6 2)."""
    return failed.file.no_replace and failed.count <= failed.copies


def moved_to(failed: FailedLines) -> str | None:
    """Where FILE will be, when its folder was moved during the run (AtomicFile.moved_to): the
    list is made there, not lost, and the run says where (s36 t6 5). Asked before the commit,
    which closes the folder; None when nothing is to be written."""
    return None if only_copies_beside(failed) else folder_moved_to(failed.file)


def shown_line(raw: bytes, encoding: str, fields: bytes | None = None) -> bytes:
    """A failed line as a terminal shows it, for eyes: what is not UTF-8 as \\x escapes, every
    control and format character made visible (the text form's ``visible``: a URL list's
    ESC[2J or OSC 52 must not clear the screen or set the clipboard), in the terminal's
    encoding, what it lacks escaped. A csv record's own line end is one escape more; a block
    of a file's unread rest is shown line by line (record by record: s36 r2 3).

    Its secrets masked, as the records mask them (s36 t4 1: a terminal's copy cannot be read
    back, and it showed them beside the records that did not): a URL's password, and in a
    jsonl object or a csv row (fields: its header row, b"" for jsonl) every credential
    (``_object_masked``, ``_rows_masked``)."""
    text = raw.removesuffix(b"\n").decode("utf-8", "backslashreplace")
    if fields:
        rows = _rows_masked(text, fields.decode("utf-8", "backslashreplace"))
    else:
        mask = redact_text if fields is None else _object_masked
        rows = [mask(line) for line in text.split("\n")]
    return "\n".join(map(visible, rows)).encode(encoding, "backslashreplace")


# A name that carries a credential, as a key, a header line or a csv column spells it
# (`"Authorization":`, `HTTP_COOKIE=`, `Proxy-Authorisation`, `Cookies`); with what may stand
# between it and its value's start (blanks, quotes, a JSON escape's backslash) and ':' or '='.
_CREDENTIAL_NAME = re.compile(r"(?i)(?:authori[sz]ation|cookie)s?")
_CREDENTIAL_NAMED = re.compile(_CREDENTIAL_NAME.pattern + r"[\s\"'\\]*[:=]")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _object_masked(line: str) -> str:
    """A jsonl line with every credential masked: read as JSON, a value named like one (at any
    depth, its name's escapes decoded: `"\\u0041uthorization"` is sent as Authorization), and
    in every other string what _masked_text masks; the url masked as the records mask it, in
    its place. A line that is not JSON, as _masked_text masks it."""
    try:
        found = json.loads(line)
    except (ValueError, RecursionError):
        return _masked_text(line)
    return json.dumps(_masked_value(found), ensure_ascii=False)


def _rows_masked(text: str, header: str) -> list[str]:
    """The csv rows of text (one record, or a block of a file's unread rest), under header,
    each with every cell from the first column the header names a credential on masked (such
    a value with a ',' in it is split over the cells after it: s36 r2 5), and every other
    cell as _masked_cell masks it. Rows the csv module cannot split (it raised, and stopped
    the run: s36 r1 2) are masked line by line, whole under such a column."""
    try:
        columns = next(csv.reader([header]), [])
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        rows = None
    first = next((n for n, name in enumerate(columns) if _CREDENTIAL_NAME.search(name)), None)
    if rows is None:
        return [MASK if first is not None else _masked_text(line) for line in text.split("\n")]
    shown = []
    for cells in rows:
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(
            MASK if first is not None and n >= first and cell else _masked_cell(cell)
            for n, cell in enumerate(cells)
        )
        shown.append(out.getvalue())
    return shown


def _masked_value(value: object, key: str = "") -> object:
    """A jsonl line's value (under key) with its credentials masked (_object_masked)."""
    if isinstance(value, dict):
        return {
            name: MASK if _CREDENTIAL_NAME.search(name) and inner not in (None, "")
            else _masked_value(inner, name)
            for name, inner in value.items()
        }  # fmt: skip
    if isinstance(value, list):  # a [name, value] pair named like a credential: its value
        if len(value) == 2 and isinstance(value[0], str) and _CREDENTIAL_NAME.search(value[0]):
            return [value[0], MASK]  # (headers as pairs, refused, shown all the same: s36 r3 2)
        return [_masked_value(inner) for inner in value]
    if isinstance(value, str):
        return redact_url(value) if key == "url" else _masked_text(value)
    return value


def _masked_cell(cell: str) -> str:
    """A csv cell: a JSON object (a 'headers' cell, blanks around it: s36 r2 1) masked as a
    jsonl line is, else as text."""
    if cell.strip().startswith("{"):
        with contextlib.suppress(ValueError, RecursionError):
            return json.dumps(_masked_value(json.loads(cell)), ensure_ascii=False)
    return _masked_text(cell)


def _masked_text(text: str) -> str:
    """text with its JSON escapes decoded (a name or an '@' so written is seen: s36 r2 1, 6),
    its URL passwords masked, and all from a credential's name followed by ':' or '=' on."""
    text = redact_text(_JSON_ESCAPE.sub(lambda escape: chr(int(escape[1], 16)), text))
    named = _CREDENTIAL_NAMED.search(text)
    return text if named is None else f"{text[: named.end()]} {MASK}"
