"""``--input-format jsonl`` and ``csv``: each line (or CSV record) to an Entry, what it asks for.

An Entry is a URL plus that line's own method, headers, body, output name and ``meta`` (every
other key, handed back in the record). Parsing never raises for bad input: a malformed line is an
Entry with an ``error``, which the reader turns into an ``invalid_url`` record. Memory stays flat:
jsonl takes the bounded physical lines of ``reader.read_lines``; csv takes the bounded pieces of
``reader.read_pieces`` and finds where each record ends itself, keeping at most MAX_RECORD_BYTES
of one, so that a longer record is an error, not a buffer.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fetcher.input.encodings import not_utf8
from fetcher.input.parsing import BOM, CONTROL, TOKEN, check_framing, check_sendable, over_long
from fetcher.redact import SENT_SECRET_HEADERS, hidden
from fetcher.settings import MAX_LINE_BYTES, MAX_RECORD_BYTES

# The keys fetcher itself reads; every other key is meta.
KEYS = ("url", "method", "headers", "data", "output")
_KEY_SET = frozenset(KEYS)


def _bare(key: str) -> str:
    """key in lower case without blanks or invisible characters: a sheet's "url ", a BOM'd
    csv's "\ufeffurl" as csv.DictReader gives it. An ASCII key that prints (no control, no
    blank but the space) is the common case, done at C speed: per character, a line of 10,000
    keys cost 60 ms (s36 t3 1)."""
    if key.isascii() and key.isprintable():
        return key.replace(" ", "").lower()
    return "".join(char for char in key if not char.isspace() and not hidden(char)).lower()


_HEADERS_NAMES = ("headers", "header")  # as _bare makes them: jsonl's and csv's key variants


def _like_a_key(key: str) -> bool:
    """Whether key was meant as one of fetcher's: in another case, with blanks or invisible
    characters, or "header" for headers."""
    name = _bare(key)
    return name in _KEY_SET or name in _HEADERS_NAMES


# The headers a request sends whose values are never printed (SPEC 2.4: redact's list), as
# _names_a_credential reads a key: without its dash ("proxy_authorization" too, once '_' goes
# as well), and with the British 's' a user may write for the name too.
_CREDENTIAL_HEADERS = frozenset(
    spelling
    for name in SENT_SECRET_HEADERS
    for spelling in (name.replace("-", ""), name.replace("-", "").replace("authoriz", "authoris"))
)


def _names_a_credential(key: str, value: Any) -> bool:
    """Whether key, at the top of a line with a value, names a credential header: meant for
    'headers', as meta it was not sent and every record printed it. Read past what a near
    spelling adds: a header line's ':' ("Authorization:"), CGI's 'HTTP_' ("HTTP_COOKIE", as
    Django's request.META has it too), a plural ("Cookies"). A null or empty value carries
    none, as an empty csv cell (no value at all) does not: meta, handed back as written."""
    if value is None or value == "":
        return False
    name = _bare(key).rstrip(":").replace("-", "").replace("_", "").removeprefix("http")
    return name.removesuffix("s") in _CREDENTIAL_HEADERS


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}

# The deepest nesting of objects and arrays a jsonl line (or a csv 'headers' cell) may have, the
# line's own object included. Real meta is a few levels deep; deeper lines are invalid_url
# records. The bound keeps every later step that recurses (the record's JSON, a worker's pickle)
# far from Python's recursion limit, which a meta nested ~980 deep once hit in the writer.
MAX_JSON_DEPTH = 64

Line = tuple[int, bytes, bool]  # what read_lines yields: number, bytes without the end, too long

# Where a CSV parser stands, as far as the end of a record goes: at the start of a field or just
# after a quoted one's closing quote (the two read alike: a quote opens a quoted field or is the
# second of a "" pair, a comma starts a field, a line end ends the record), in an unquoted field
# (a quote is a character like any other), or inside quotes (a line end belongs to the cell).
_FIELD_START, _UNQUOTED, _QUOTED = range(3)
# The bytes of a csv record kept: the longest record allowed and its CR LF; beyond that the
# record is too long and only its first MAX_RECORD_BYTES + 1 bytes go into its Entry.
_CSV_KEPT = MAX_RECORD_BYTES + 2


@dataclass(slots=True)
class Entry:
    """One jsonl line or csv record. ``error`` set: it cannot be fetched, and says why."""

    line: int  # the first physical line
    raw: bytes  # verbatim without its own line end (a csv record's inner ones kept), for --failed
    url: str | None = None  # the url value, stripped; None when there is none to show
    error: str | None = None
    method: str | None = None
    headers: tuple[tuple[str, str | None], ...] = ()
    data: bytes | None = None
    output: str | None = None
    meta: JsonText | None = None  # every other key, as compact JSON (meta_text)
    header: bytes | None = None  # csv: the header row, so that --failed can be read back


@dataclass(frozen=True, slots=True)
class JsonText:
    """A JSON value kept as the text that writes it. Two uses:

    - A number of a jsonl line, as the line wrote it: meta comes back untouched (SPEC 2.1), and
      Python's float or int would not keep it (``19.999999999999999999`` is 20.0, ``1E2``
      100.0, ``1e400`` infinite, an integer of 5,000 digits an error).
    - A line's whole meta, written once as compact JSON (``meta_text``): a job waits in the
      read-ahead (up to 4 x -j of them) with its meta, and parsed, a 128 KiB line of tiny values
      (65,000 zeros, or empty arrays) takes 3 MB of Python objects; as text, its own size.

    Not a str, so that no key fetcher reads takes one for text. fetcher.output.records writes
    ``text`` back as it is."""

    text: str


# Compact JSON as the meta column and the record hold it, without building an encoder each time.
_compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def meta_text(meta: dict[str, Any]) -> JsonText:
    """A line's meta as compact JSON, its numbers as the line wrote them."""
    try:
        return JsonText(_compact_json(meta))
    except TypeError:  # a number kept as its text: json cannot write a JsonText itself
        return JsonText(_with_numbers(meta))


def _with_numbers(value: Any) -> str:
    """Compact JSON of value, JsonTexts written as their text; recursive, but what the parsers
    accept nests at most MAX_JSON_DEPTH levels."""
    if isinstance(value, JsonText):
        return value.text
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{_compact_json(k)}:{_with_numbers(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_with_numbers(item) for item in value) + "]"
    return _compact_json(value)


class _Malformed(ValueError):
    """A value of a line that fetcher cannot use; its message goes into the record."""


def iter_jsonl(lines: Iterable[Line]) -> Iterator[Entry]:
    """An Entry per non-blank line; each line must be a JSON object with a ``url``."""
    for number, raw, too_long in lines:
        if not raw.strip():
            continue
        entry = Entry(number, raw)
        try:
            if too_long:
                raise _Malformed(f"line longer than {MAX_RECORD_BYTES} bytes")
            value = _load_json(raw)
            if not isinstance(value, dict):
                raise _Malformed(f"a jsonl line must be a JSON object, not {_json_type(value)}")
        except _Malformed as exc:
            entry.error = str(exc)
            yield entry
            continue
        yield _jsonl_entry(entry, value)


def _jsonl_entry(entry: Entry, value: dict[str, Any]) -> Entry:
    """The Entry of a jsonl object. A key that is one of fetcher's own in another case ("URL",
    "Headers") was meant for fetcher, not as meta: as meta, the line was fetched without it (a
    GET without its method, body or credentials) and its record printed the value, an
    Authorization header or a URL's password. Such a line is an error naming the keys; their
    values are neither used nor shown."""
    variants = [key for key in value if key not in _KEY_SET and _like_a_key(key)]
    return _without_variants(entry, value, variants, headers_as_text=False)


def _without_variants(
    entry: Entry, values: dict[str, Any], variants: list[str], headers_as_text: bool
) -> Entry:
    """The Entry of a line's values (_fill), an error naming the variants of fetcher's keys
    among them (_jsonl_entry, _row_entry), whose values are neither used nor shown."""
    if not variants:
        return _fill(entry, values, headers_as_text)
    kept = {key: item for key, item in values.items() if key not in variants}
    entry = _fill(entry, kept, headers_as_text)
    named = ", ".join(map(repr, variants[:5])) + (", ..." if len(variants) > 5 else "")
    if headers_as_text:  # a csv row: a sheet's own column may be named so (s30 r1 8)
        entry.error = (f"column names are lower case and exact: fetcher reads none of {named} "
                       "(not used, not shown): rename such a column of your own")  # fmt: skip
        return entry
    entry.error = (
        f"keys are lower case and exact: fetcher reads none of {named} (not used, not shown)"
    )
    return entry


HeaderSeen = Callable[[bytes], None]  # told of each csv header row read (iter_csv)


def _told(header: bytes) -> None:
    """iter_csv's on_header when nobody asks."""


def iter_csv(pieces: Iterable[bytes], on_header: HeaderSeen = _told) -> Iterator[Entry]:
    """An Entry per CSV record after the header row (blank records, and those of separators and
    blanks alone, a sheet's empty rows, are skipped). The header names the columns: ``url``
    (required), ``method``, ``headers`` (a JSON object in its cell), ``data``, ``output``; the
    others are meta. An empty cell means absent. A wrong header makes every row under it an
    error, or, with no row that could be read, itself one: a file of it alone is never an empty
    list. A header row further on (_a_header_again: files joined with cat, a --failed of several
    csv inputs) names the columns of the rows under it. on_header: told of each header row as
    it is read, with or without rows under it (the header in force for lines appended later,
    output.input_changes: the last entry's was none under a header alone, s27 r3 5)."""
    columns: list[str] | None = None
    header_error: str | None = None
    header_raw: bytes | None = None
    header_line, rows = 0, 0
    for record in _csv_records(pieces):
        try:
            row = _csv_row(record)
        except _Malformed as exc:
            if columns is None:  # the header itself: it and every record after it say so
                columns, header_raw = [], record.raw
                on_header(header_raw)
                header_error = f"the csv header (line {record.line}) cannot be read: {exc}"
                # Its own header: --failed writes it once, as the header of the rows after it.
                yield Entry(record.line, record.raw, error=header_error, header=header_raw)
                continue
            yield Entry(record.line, record.raw, error=str(exc), header=header_raw)
            continue
        if not any(cell.strip() for cell in row):  # a sheet's empty row (',,'): a blank line
            continue
        if columns is None or _a_header_again(row, columns):
            yield from _header_alone(header_line, header_raw, header_error, rows)
            columns, header_raw = [_column_name(name) for name in row], record.raw
            on_header(header_raw)
            header_error = _header_problem(columns, record.line, record.raw)
            header_line, rows = record.line, 0
            continue
        rows += 1
        entry = Entry(record.line, record.raw, header=header_raw)
        yield _row_entry(entry, row, columns, header_error)
    yield from _header_alone(header_line, header_raw, header_error, rows)


def _header_alone(line: int, raw: bytes | None, error: str | None, rows: int) -> list[Entry]:
    """The record of a wrong header with no row under it (it gets none of its own otherwise):
    a file of such a header alone is never an empty list."""
    if line and error is not None and not rows:
        return [Entry(line, raw or b"", error=error, header=raw)]
    return []


@dataclass(slots=True)
class _CsvRecord:
    line: int  # its first physical line
    raw: bytes  # as read, without its own line end; cut when too long (see _csv_record)
    problem: str | None  # found while reading it: too long, or a quote never closed


def _csv_records(pieces: Iterable[bytes]) -> Iterator[_CsvRecord]:
    """The records of a CSV file, each whole: a record ends at a line end outside quotes.

    Whatever goes wrong inside a record (a byte that is not UTF-8, too many bytes, a stray
    quote) is then that record's error, never the start of another one: Python's csv.reader,
    fed line by line, starts afresh at the next line after an error, and the rest of a quoted
    cell became records (and a URL in it was fetched). The pieces are read on to the record's
    end, however far, keeping at most _CSV_KEPT bytes. Whitespace-only records are skipped: they
    are blank lines (a line end inside quotes is never one).
    """
    line = first = 1
    kept = bytearray()
    size = 0  # the bytes of the record so far, its line ends included
    end = 0  # how many of them are CRs and LFs at its end so far
    quoting = _FIELD_START
    visible = False
    for piece in pieces:
        if not size:  # a record's start: files joined with cat keep their marks, as lines do
            piece = piece.removeprefix(BOM)
        if len(kept) < _CSV_KEPT:
            kept += piece[: _CSV_KEPT - len(kept)]
        size += len(piece)
        text = len(piece.rstrip(b"\r\n"))
        end = end + len(piece) if not text else len(piece) - text
        visible = visible or not piece.isspace()
        quoting = _quoting_after(piece, quoting)
        if not piece.endswith(b"\n"):
            continue
        line += 1
        if quoting == _QUOTED:
            continue
        if visible:
            yield _csv_record(first, kept, size - end, ended=True)
        kept, size, end, quoting, visible = bytearray(), 0, 0, _FIELD_START, False
        first = line
    if size and visible:
        ended = quoting != _QUOTED
        yield _csv_record(first, kept, size - end if ended else size, ended)


def _csv_record(line: int, kept: bytearray, size: int, ended: bool) -> _CsvRecord:
    """The record read from line on: size bytes without its line end, the first of which are
    kept; ended says that it ended at a line end or at the end of the input outside quotes.
    Its line end is the CRs and LF after its last cell, as a plain line's (read_lines): a
    record of MAX_RECORD_BYTES that ended in CR CR LF was too long, and the same jsonl line not.

    A record too long to keep keeps its first MAX_RECORD_BYTES + 1 bytes, and a closing quote
    when they stop inside quotes: read back from --failed, it is the same error again, and its
    cut does not open a quote that would swallow the records after it.
    """
    raw = bytes(kept[:size])  # whole, or cut: without its line end either way
    never_closed = "a quoted field is never closed: the record runs to the end of the input"
    if size > MAX_RECORD_BYTES:
        raw = over_long(raw, MAX_RECORD_BYTES)
        if quotes_left_open(raw):
            raw += b'"'
        problem = f"record longer than {MAX_RECORD_BYTES} bytes"
        return _CsvRecord(line, raw, problem if ended else f"{problem}; {never_closed}")
    return _CsvRecord(line, raw, None if ended else f"malformed CSV: {never_closed}")


def quotes_left_open(raw: bytes) -> bool:
    """Whether a CSV parser reading raw from a record's start ends inside quotes."""
    return _quoting_after(raw, _FIELD_START) == _QUOTED


CSV_RECORD_START = _FIELD_START  # where a csv parser stands between records


def csv_record_ends(data: bytes, quoting: int = _FIELD_START) -> tuple[int, int]:
    """Where the last csv record that ends in data ends (0: none), data read from where a
    parser stood (quoting); and where it stands after data. A record ends at a line end
    outside quotes; a quote inside an unquoted cell (5" screen) is a plain character."""
    end = at = 0
    while at < len(data):
        line_end = data.find(b"\n", at)
        stop = len(data) if line_end < 0 else line_end + 1
        quoting = _quoting_after(data[at:stop], quoting)
        if line_end >= 0 and quoting != _QUOTED:
            end, quoting = stop, _FIELD_START
        at = stop
    return end, quoting


def _quoting_after(text: bytes, quoting: int) -> int:
    """Where a CSV parser stands after text, from where it stood before it. The moves are
    those of Python's csv module that decide where a record ends; where its strict mode
    refuses a record (text after a closing quote), the record is read on as its lenient mode
    would, and the strict parse of the whole record then says what is wrong.

    Only a quote can enter or leave quotes, so text is read from quote to quote (a C search
    each), not cell by cell: between two, outside quotes, the last byte alone says whether the
    next quote starts a cell (after a comma: it opens one) or is a plain character (5" screen).
    A reading byte by byte, kept in the tests, gives the same answer for every text."""
    at = 0
    while True:
        quote = text.find(b'"', at)
        if quoting == _QUOTED:
            if quote < 0:
                return _QUOTED
            quoting, at = _FIELD_START, quote + 1  # a closing quote, or the first of a pair
            continue
        stop = len(text) if quote < 0 else quote
        if stop > at:
            quoting = _FIELD_START if text[stop - 1] == 0x2C else _UNQUOTED
        if quote < 0:
            return quoting
        quoting, at = (_QUOTED if quoting == _FIELD_START else _UNQUOTED), quote + 1


def _csv_row(record: _CsvRecord) -> list[str]:
    """The cells of a record, parsed whole; line ends inside quotes are kept as they are."""
    if record.problem is not None:
        raise _Malformed(record.problem)
    try:
        text = record.raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = record.line + record.raw.count(b"\n", 0, exc.start)
        raise _Malformed(not_utf8(record.raw, exc, f"line {line}")) from None
    try:
        # strict: a stray quote is an error, not a guess
        return next(csv.reader([text], strict=True), [])
    except csv.Error as exc:
        if str(exc).startswith("new-line character"):  # not a line end: those end the record
            raise _Malformed(_CR_OUTSIDE_QUOTES) from None
        raise _Malformed(f"malformed CSV: {exc}") from None


# Python's own message asks "do you need to open the file in universal-newline mode?", which no
# option of fetcher's does; records end at LF (or CR LF), as plain lines do.
_CR_OUTSIDE_QUOTES = (
    "malformed CSV: a carriage return outside quotes; records end at LF or CR LF (with CR-only "
    "line ends, as old Mac files have, a file is one record: convert them to LF)"
)


def _column_name(cell: str) -> str:
    """A header cell's column name, as written: meta keeps it. ``url`` in any case (a
    spreadsheet's header says URL): the one column every file has. The others only as
    written: a sheet's own "Data" or "Output" column would make a POST or name a file."""
    name = cell.strip()
    return "url" if name.lower() == "url" else name


def _header_problem(columns: list[str], line: int, raw: bytes) -> str | None:
    if "url" not in columns:
        return f"the csv header (line {line}) has no 'url' column{_header_read(raw)}"
    seen: set[str] = set()
    for name in filter(None, columns):  # unnamed columns may repeat: they must stay empty
        if name in seen:
            return f"the csv header (line {line}) has the column {name!r} twice"
        seen.add(name)
    return None


# Separators a spreadsheet writes instead of a comma: Excel's CSV in many locales (';'), its
# "Unicode text" (tabs). Named in the error of a header they split, not read: RFC 4180 is commas.
_SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}
_HEADER_SHOWN = 60  # characters of a header without 'url' shown in its error
# What column names do not hold and a record may: a URL (with a password), a JSON object of
# headers (a credential), a form's fields. Such a first row is not shown.
_NOT_NAMES = re.compile(r"[@{}=:/]")


def _header_read(raw: bytes) -> str:
    """What a header without a 'url' column was read as (bounded, quoted with escapes), and
    the separator it is written with when that splits off a 'url'. A first row that looks like
    a record (the header row left out) is not shown: records never show a line's secrets."""
    text = raw.decode("utf-8", "replace")
    if _NOT_NAMES.search(text):
        return ": the first row looks like a record, not names (not shown: it may hold a secret)"
    shown = text if len(text) <= _HEADER_SHOWN else text[:_HEADER_SHOWN] + "..."
    said = f": it reads {shown!r}"
    for separator, name in _SEPARATORS.items():
        if any(cell.strip().lower() == "url" for cell in text.split(separator)):
            return f"{said}, separated by {name}: the separator must be a comma"
    return said


# A cell that is a URL, with a scheme or without (127.0.0.1:8080/a, example.com, u@host): a
# '://', or a host's '.', ':' or '@' with more of the host after it, before any '/', '?', '#'
# or blank. A row of a bare URL and a cell "URL" was a header again (s29 t4 1); a sheet's names
# hold a '.', ':' or '/' too (No., Date/Time, Notes: internal), which made a later file's header
# row a row (s30 r1 2): only a name like a host's (source.page) is still taken for a URL.
_URL_LIKE = re.compile(r"://|^\s*[^\s/?#]*[.:@][^\s/?#:]")
# What a url cell holds, with a scheme or without, and a column name seldom does: a row that
# fits the columns is a header again only when its cell under url holds none of these, so that
# intranet/a beside a cell "URL" is a row (s30 r2 1); "No." there is then read as a URL too.
_IN_A_URL = re.compile(r"[.:/@?#=]")


def _a_header_again(row: list[str], columns: list[str]) -> bool:
    """Whether row, after the first header, is a header row again: a cell ``url`` (in any
    case), and the names of the columns read so far in another order (a joined file's header
    of the same columns, whatever its names hold: `Date/Time,url` after `url,Date/Time` was
    read as a row, s31 r1 2); else no cell that is a URL (_URL_LIKE, s31 r1 3: a fitting row's
    other cells went unlooked at) and, when it fits the columns read so far, a url cell that
    holds nothing a URL does (_IN_A_URL) but something (a row's meta cell may say "url"; a row
    with a URL, or with an empty url cell, keeps its own record, s26 r2 2). --failed writes
    each csv input's header where it changes, and read with the first header's columns a later
    one's rows were fetched from their meta cells, their own URLs never again (s25 h3 3)."""
    names = [_column_name(cell) for cell in row]
    if "url" not in names:
        return False
    if sorted(names) == sorted(columns):
        return True
    if any(_URL_LIKE.search(cell) for cell in row):
        return False
    if "url" not in columns or len(row) != len(columns):
        return True
    under_url = row[columns.index("url")].strip()
    return under_url != "" and not _IN_A_URL.search(under_url)


# Where a cell `url` may end, searched for in a lowered block (only ASCII letters lower to
# "url"): blanks (a UTF-8 one's bytes are >= 0x80) and a cell's end after it. It starts with a
# literal, which the regex engine finds as fast as bytes.find: a pattern tried at every line
# start took 0.07 s for 300,000 lines, this one 0.01.
# A cell that may be ``url`` once unquoted and stripped: at a cell's start (a line's, or after a
# comma or an opening quote, blanks allowed), nothing but blanks after it to the cell's end. A
# URL ending in /url is no such cell: every line of such a list was parsed, 0.9 s a MiB (s26 r8 1).
# Searched from the literal "url" (a pattern that starts with a choice is tried at every byte:
# 0.19 s for 300,000 lines), its cell's start then checked (_at_a_cell_start).
_BLANK_BYTES = frozenset(b" \t\x0b\x0c\r" + bytes(range(0x1C, 0x20)) + bytes(range(0x80, 0x100)))
_URL_CELL = re.compile(rb'(?m)url[ \t\x0b\x0c\r\x1c-\x1f\x80-\xff]*(?:[,"\r]|$)')


def _at_a_cell_start(text: bytes, at: int) -> bool:
    """Whether only blanks stand between a cell's start (a line's, a comma, a quote) and at."""
    while at > 0 and text[at - 1] in _BLANK_BYTES:
        at -= 1
    return at == 0 or text[at - 1] in b',"\n'


def last_header_row(
    block: bytes, quoting: int = _FIELD_START, header: bytes | None = None
) -> bytes | None:
    """The last line of a raw csv block (reader.raw_rest: a stop's unread rest) that the reader
    takes for a header row, as its header would be labelled (no BOM first, no line end); None:
    none. The blocks after it, and a --failed line after it, are under that header, not the last
    parsed row's (s26 r6 1). By the reader's own rule (_a_header_again), each candidate under the
    header in force before it, header at the block's start (s30 r2 1: a rule of its own that
    knew no columns disagreed with the reader's), so that quotes, BOMs and Unicode blanks agree
    with it (s26 r6 6). quoting: where a csv parser stands at the block's start
    (csv_state_after of the blocks before): a line inside a quoted cell is none (s26 r8 2). The
    block is read once for all the candidates (s27 r1 1: each one re-read all before it).
    """
    starts = _header_candidates(block.lower())
    inside = _inside_quotes_at(block, quoting, starts)
    columns = None if header is None else [_column_name(cell) for cell in _cells(header) or []]
    found = None
    for start, quoted in zip(starts, inside, strict=True):  # in order: each under the last
        if quoted:
            continue
        end = block.find(b"\n", start)
        line = block[start : end if end >= 0 else len(block)].rstrip(b"\r").removeprefix(BOM)
        row = _cells(line)
        if row and _a_header_again(row, columns or []):
            columns, found = [_column_name(cell) for cell in row], line
    return found


def _header_candidates(lowered: bytes) -> list[int]:
    """The starts of the lines of a lowered block with a cell that may be ``url``, in order."""
    starts: list[int] = []
    for found in _URL_CELL.finditer(lowered):
        if _at_a_cell_start(lowered, found.start()):
            start = lowered.rfind(b"\n", 0, found.start()) + 1
            if not starts or starts[-1] != start:
                starts.append(start)
    return starts


def _inside_quotes_at(block: bytes, quoting: int, starts: list[int]) -> list[bool]:
    """Whether each of starts (line starts of block, in order) is inside a quoted cell, block
    read once, from where a parser stood at its start (quoting): counted in C where the quotes
    are RFC 4180's (_rfc_quotes), else read by the reader's moves."""
    if not starts:
        return []
    rfc, inside, at = _rfc_quotes(block, quoting), [], 0
    for start in starts:
        if rfc:
            opened = (block.count(b'"', at, start) + (quoting == _QUOTED)) % 2
            quoting = _QUOTED if opened else _FIELD_START
        else:
            quoting = csv_record_ends(block[at:start], quoting)[1]
        inside.append(quoting == _QUOTED)
        at = start
    return inside


def csv_state_after(block: bytes, quoting: int = _FIELD_START) -> int:
    """Where a csv parser stands after block, whole lines read from where it stood (quoting):
    inside a quoted cell (_QUOTED) or between records. Counted in C where the quotes are RFC
    4180's (_rfc_quotes), else read line by line (0.3 s for 300,000 lines, s26 r8 1)."""
    if _rfc_quotes(block, quoting):
        opened = (block.count(b'"') + (quoting == _QUOTED)) % 2
        return _QUOTED if opened else _FIELD_START
    return csv_record_ends(block + b"\n", quoting)[1]


# Text whose every quote opens or closes quotes, as RFC 4180 reads them: each one that opens
# stands at a cell's start (the text's, or after a comma, a line end or a closing quote: the
# look-behind), and the last one may leave its cell open. From inside quotes, the first quote
# closes them. One match, in C, never going back (possessive): 2 ms for a MiB of quoted cells.
_RFC_CELLS = rb'(?:[^"]*+(?<![^,\n"])"[^"]*+")*+[^"]*+(?:(?<![^,\n"])"[^"]*+)?'
_RFC_QUOTES = {
    _FIELD_START: re.compile(_RFC_CELLS),
    _QUOTED: re.compile(rb'[^"]*+"' + _RFC_CELLS),
}


def _rfc_quotes(block: bytes, quoting: int) -> bool:
    """Whether every quote of block, read from where a parser stood (quoting), opens or closes
    quotes: then the count of the quotes before a line start says whether it is inside them.
    The reader takes a quote inside an unquoted cell (5" disk) for a plain character, which
    shifts that count: a line inside a quoted cell after one was taken for a header (s27 r1 2).

    A "" leaves the reader where it stood, whatever the state (a quote in a quoted cell, an
    empty quoted cell, two plain characters) and never holds a line end: the check reads the
    block without them (a cell of JSON headers, {""Accept"": ...}, is then two quotes, not ten).
    """
    if b'"' not in block:
        return True
    pattern = _RFC_QUOTES.get(quoting)
    return pattern is not None and pattern.fullmatch(block.replace(b'""', b"")) is not None


def _cells(line: bytes) -> list[str] | None:
    """A csv line's cells, each header row's; None when it is none (not UTF-8, bad quoting),
    or has no cell that _column_name makes ``url``."""
    try:
        row = next(csv.reader([line.decode("utf-8").removeprefix("\ufeff")], strict=True), [])
    except (UnicodeDecodeError, csv.Error):
        return None
    return row if any(_column_name(cell) == "url" for cell in row) else None


def _row_entry(entry: Entry, row: list[str], columns: list[str], header_error: str | None) -> Entry:
    if header_error is not None:
        entry.error = header_error
        return entry
    if len(row) != len(columns):
        entry.error = f"{len(row)} fields where the header has {len(columns)}"
        return entry
    values: dict[str, Any] = {}
    for number, (name, cell) in enumerate(zip(columns, row, strict=True), 1):
        if cell == "":
            continue
        if not name:
            entry.error = f"a value in column {number}, which has no name in the header"
            return entry
        values[name] = cell
    # A sheet's "Headers" column, an Authorization in it, was meta: shown in every record, the
    # request sent without it (s29 t4 2). "Data" and "Output" stay a sheet's own meta.
    variants = [name for name in values if name != "headers" and _bare(name) in _HEADERS_NAMES]
    return _without_variants(entry, values, variants, headers_as_text=True)


def _fill(entry: Entry, values: dict[str, Any], headers_as_text: bool) -> Entry:
    """Entry's fields from a line's keys (None is absent); the first bad value is its error,
    but the url and the meta are kept, for the record. A key naming a credential header is
    no meta: the line is an error naming it, its value neither used nor shown."""
    credentials = [k for k, v in values.items() if k not in KEYS and _names_a_credential(k, v)]
    meta = {k: value for k, value in values.items() if k not in KEYS and k not in credentials}
    entry.meta = meta_text(meta) if meta else None
    try:
        entry.url = _url(values.get("url"))
        if len(entry.url.encode()) > MAX_LINE_BYTES:
            raise _Malformed(f"'url' longer than {MAX_LINE_BYTES} bytes")
        entry.method = _method(values.get("method"))
        headers = values.get("headers")
        if headers_as_text and headers is not None:
            headers = _load_json(headers.encode(), "'headers'")
        entry.headers = _headers(headers)
        entry.data = _data(values.get("data"))
        entry.output = _output(values.get("output"))
    except _Malformed as exc:
        entry.error = str(exc)
    if credentials:
        named = ", ".join(map(repr, credentials))
        entry.error = (
            f"{named} at the top of a line is neither used nor shown: a header goes in "
            """'headers', a JSON object ({"Authorization": "..."}), to be sent"""
        )
    return entry


def _url(value: Any) -> str:
    """The url value, stripped of blanks and of byte-order marks first: a value copied from a
    file that kept its mark, which a plain line's reader drops (str.strip keeps U+FEFF, and
    the URL went to a host named '\ufeffhttp')."""
    if value is None:
        raise _Malformed("no 'url'")
    if not isinstance(value, str):
        raise _Malformed(f"'url' must be a string, not {_json_type(value)}")
    url = value.strip()
    while url.startswith("\ufeff"):
        url = url.lstrip("\ufeff").lstrip()
    if not url:
        raise _Malformed("empty 'url'")
    if CONTROL.search(url):
        raise _Malformed("'url' has a control character (a line break, a tab or the like)")
    return url


def _method(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not TOKEN.fullmatch(value.strip()):
        raise _Malformed("'method' must be an HTTP method such as GET (a token)")
    return value.strip().upper()  # as -X


def _headers(value: Any) -> tuple[tuple[str, str | None], ...]:
    """``{"Name": "value", "Other": null}``: null removes a header, as ``-H 'Other:'``."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _Malformed(f"'headers' must be an object, not {_json_type(value)}")
    headers: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for number, (name, text) in enumerate(value.items(), 1):
        if not TOKEN.fullmatch(name):  # not shown: 'Authorization: Bearer ...' as a name happens
            raise _Malformed(f"the name of header {number} is not a token (no blank, no colon)")
        if name.lower() in seen:  # X-Key and x-key: one was dropped, unsaid (s29 t4 3), as -H
            raise _Malformed(f"the header {name!r} is given twice (names ignore case)")
        seen.add(name.lower())
        if text is None:
            headers.append((name, None))
            continue
        if not isinstance(text, str):
            raise _Malformed(f"header {name!r} must be a string or null, not {_json_type(text)}")
        try:
            check_sendable(f"header {name!r}", text)  # as -H: no CR, LF or NUL
            check_framing(name)
        except ValueError as exc:
            raise _Malformed(str(exc)) from None
        headers.append((name, text.strip()))  # surrounding blanks are not part of a value
    return tuple(headers)


def _data(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed(f"'data' must be a string, not {_json_type(value)}")
    return value.encode("utf-8")  # _load_json has refused lone surrogates


def _output(value: Any) -> str | None:
    """An empty one is none, as a csv cell's: the line was invalid_url, with -o or without,
    where the docs say output is ignored without -o (s30 t1 5)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Malformed(f"'output' must be a non-empty string, not {_json_type(value)}")
    return value


def _load_json(raw: bytes, name: str | None = None) -> Any:
    """Parse strictly: valid UTF-8, no NaN or Infinity, no lone surrogate escapes, so that
    whatever comes back in the record is valid JSON and valid UTF-8 again; numbers as
    JsonText. name: the cell parsed (``'headers'``), named in every error; None: the line."""
    what = "not valid JSON" if name is None else f"{name} is not valid JSON"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Malformed(not_utf8(raw, exc)) from None
    if text.startswith("\ufeff"):  # json.loads says so; the decoder itself, "Expecting value"
        raise _Malformed(f"{what}: it starts with a byte-order mark (U+FEFF)")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise _Malformed(f"{what}: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise _Malformed(f"{what}: nested too deeply") from None
    except _Twice as exc:
        raise _Malformed(str(exc) if name is None else f"{name}: {exc}") from None
    except ValueError as exc:  # from _refuse_constant
        raise _Malformed(f"{what}: {exc}") from None
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise _Malformed(f"{what}: nested more than {MAX_JSON_DEPTH} levels")
    if "\\u" in text:
        try:
            json.dumps(value, ensure_ascii=False, default=lambda _: 0).encode("utf-8")
        except UnicodeEncodeError:
            raise _Malformed(f"{what}: a \\u escape of a lone surrogate") from None
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than limit levels (the line's own object is the
    first); a walk with a list, not recursion, so that any depth json.loads took is safe."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _Twice(ValueError):
    """A key given twice in one JSON object."""


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's dict, refusing a key given twice: JSON keeps the last one without a word,
    so meta was not "passed through untouched" (SPEC 2.1), and a line of two joined objects
    fetched its second 'url', not the one shown first. Raises _Twice, naming the key when it
    is a short token (a key may be anything, a credential too)."""
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            break
        seen.add(key)
    name = repr(key) if len(key) <= 40 and TOKEN.fullmatch(key) else "a key"
    raise _Twice(f"the key {name} twice in one object (JSON keeps only the last): say it once")


# One decoder for every line (shared by threads, as json.loads shares its default one): json.loads
# with any hook builds a new one each call, which took as long as the parse itself (0.59 s for
# _load_json of 200,000 short lines, 0.34 s with this one, its pairs hook included).
_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant,
    parse_float=JsonText,
    parse_int=JsonText,
    object_pairs_hook=_once_each,
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), "a number")
