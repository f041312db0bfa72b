"""``--input-format jsonl`` and ``csv``: each line (or CSV record) to an Entry, what it asks for.

An Entry is a URL plus that line's own method, headers, body, output name and ``meta`` (every
other key, handed back in the record). Parsing never raises for bad input: a malformed line is an
Entry with an ``error``, which the reader turns into an ``invalid_url`` record. Both parsers take
the bounded physical lines of ``sources.read_lines``, so memory stays flat: csv.reader is fed
one line at a time, and a record longer than MAX_RECORD_BYTES is an error, not a buffer.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fetcher.input.parsing import TOKEN, check_sendable
from fetcher.settings import MAX_LINE_BYTES, MAX_RECORD_BYTES

# The keys fetcher itself reads; every other key is meta.
KEYS = ("url", "method", "headers", "data", "output")
# No line breaks, tabs or other controls in a URL: a plain line cannot hold a line break either,
# and records in text format are one line each.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}

# The deepest nesting of objects and arrays a jsonl line (or a csv 'headers' cell) may have, the
# line's own object included. Real meta is a few levels deep; deeper lines are invalid_url
# records. The bound keeps every later step that recurses (the record's JSON, a worker's pickle)
# far from Python's recursion limit, which a meta nested ~980 deep once hit in the writer.
MAX_JSON_DEPTH = 64

Line = tuple[int, bytes, bool]  # what read_lines yields: number, bytes without the end, too long


@dataclass(slots=True)
class Entry:
    """One jsonl line or csv record. ``error`` set: it cannot be fetched, and says why."""

    line: int  # the first physical line
    raw: bytes  # verbatim, line ends between a csv record's lines kept as \n, for --failed
    url: str | None = None  # the url value, stripped; None when there is none to show
    error: str | None = None
    method: str | None = None
    headers: tuple[tuple[str, str | None], ...] = ()
    data: bytes | None = None
    output: str | None = None
    meta: dict[str, Any] | None = None
    header: bytes | None = None  # csv: the header row, so that --failed can be read back


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
        yield _fill(entry, value, headers_as_text=False)


def iter_csv(lines: Iterable[Line]) -> Iterator[Entry]:
    """An Entry per CSV record after the header row (blank records are skipped).

    The header names the columns: ``url`` (required), ``method``, ``headers`` (a JSON object in
    its cell), ``data``, ``output``; the other columns are meta. An empty cell means absent.
    """
    feed = _Feed(lines)
    rows = csv.reader(feed, strict=True)  # strict: a stray quote is an error, not a guess
    columns: list[str] | None = None
    header_error: str | None = None
    header_raw: bytes | None = None
    while True:
        feed.start()
        try:
            row = next(rows)
        except StopIteration:
            return
        except (csv.Error, _Malformed) as exc:
            message = str(exc) if isinstance(exc, _Malformed) else f"malformed CSV: {exc}"
            if columns is None:  # the header itself: it and every record after it say so
                columns, header_raw = [], feed.raw
                header_error = f"the csv header (line {feed.first}) cannot be read: {message}"
                yield Entry(feed.first, feed.raw, error=header_error)
                continue
            yield Entry(feed.first, feed.raw, error=message, header=header_raw)
            continue
        if not row:
            continue
        if columns is None:
            columns, header_raw = [name.strip() for name in row], feed.raw
            header_error = _header_problem(columns, feed.first)
            continue
        entry = Entry(feed.first, feed.raw, header=header_raw)
        yield _row_entry(entry, row, columns, header_error)


def _header_problem(columns: list[str], line: int) -> str | None:
    if "url" not in columns:
        return f"the csv header (line {line}) has no 'url' column"
    seen: set[str] = set()
    for name in filter(None, columns):  # unnamed columns may repeat: they must stay empty
        if name in seen:
            return f"the csv header (line {line}) has the column {name!r} twice"
        seen.add(name)
    return None


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
    return _fill(entry, values, headers_as_text=True)


def _fill(entry: Entry, values: dict[str, Any], headers_as_text: bool) -> Entry:
    """Entry's fields from a line's keys (None is absent); the first bad value is its error,
    but the url and the meta are kept, for the record."""
    meta = {key: value for key, value in values.items() if key not in KEYS}
    entry.meta = meta or None
    try:
        entry.url = _url(values.get("url"))
        if len(entry.url.encode()) > MAX_LINE_BYTES:
            raise _Malformed(f"'url' longer than {MAX_LINE_BYTES} bytes")
        entry.method = _method(values.get("method"))
        headers = values.get("headers")
        if headers_as_text and headers is not None:
            headers = _load_json(headers.encode(), "'headers' is not valid JSON")
        entry.headers = _headers(headers)
        entry.data = _data(values.get("data"))
        entry.output = _output(values.get("output"))
    except _Malformed as exc:
        entry.error = str(exc)
    return entry


def _url(value: Any) -> str:
    if value is None:
        raise _Malformed("no 'url'")
    if not isinstance(value, str):
        raise _Malformed(f"'url' must be a string, not {_json_type(value)}")
    url = value.strip()
    if not url:
        raise _Malformed("empty 'url'")
    if _CONTROL.search(url):
        raise _Malformed("'url' has a control character (a line break, a tab or the like)")
    return url


def _method(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not TOKEN.match(value.strip()):
        raise _Malformed("'method' must be an HTTP method such as GET (a token)")
    return value.strip().upper()  # as -X


def _headers(value: Any) -> tuple[tuple[str, str | None], ...]:
    """``{"Name": "value", "Other": null}``: null removes a header, as ``-H 'Other:'``."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _Malformed(f"'headers' must be an object, not {_json_type(value)}")
    headers: list[tuple[str, str | None]] = []
    for number, (name, text) in enumerate(value.items(), 1):
        if not TOKEN.match(name):  # not shown: 'Authorization: Bearer ...' as a name happens
            raise _Malformed(f"the name of header {number} is not a token (no blank, no colon)")
        if text is None:
            headers.append((name, None))
            continue
        if not isinstance(text, str):
            raise _Malformed(f"header {name!r} must be a string or null, not {_json_type(text)}")
        try:
            check_sendable(f"header {name!r}", text)  # as -H: no CR, LF or NUL; Latin-1
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
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _Malformed(f"'output' must be a non-empty string, not {_json_type(value)}")
    return value


def _load_json(raw: bytes, what: str = "not valid JSON") -> Any:
    """Parse strictly: valid UTF-8, no NaN or infinite numbers, no lone surrogate escapes, so
    that whatever comes back in the record is valid JSON and valid UTF-8 again."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Malformed(f"line is not valid UTF-8 ({exc.reason})") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise _Malformed(f"{what}: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise _Malformed(f"{what}: nested too deeply") from None
    except ValueError as exc:  # from the hooks below, or an integer of thousands of digits
        raise _Malformed(f"{what}: {exc}") from None
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise _Malformed(f"{what}: nested more than {MAX_JSON_DEPTH} levels")
    if "\\u" in text:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
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


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), "a number")


class _Feed:
    """Feeds csv.reader one decoded line at a time and keeps the lines of the current record.

    An iterator object rather than a generator: a generator that raised could not go on, and a
    bad record (_Malformed) must not end the file.
    """

    def __init__(self, lines: Iterable[Line]) -> None:
        self._lines = iter(lines)
        self._record: list[tuple[int, bytes]] = []
        self._size = 0

    def start(self) -> None:
        """A new record begins with the next line."""
        self._record = []
        self._size = 0

    @property
    def first(self) -> int:
        return self._record[0][0] if self._record else 0

    @property
    def raw(self) -> bytes:
        return b"\n".join(raw for _, raw in self._record)

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        number, raw, too_long = next(self._lines)
        self._size += len(raw) + (1 if self._record else 0)  # + the \n between two lines
        self._record.append((number, raw))
        if too_long or self._size > MAX_RECORD_BYTES:
            raise _Malformed(f"record longer than {MAX_RECORD_BYTES} bytes")
        try:
            return raw.decode("utf-8") + "\n"  # the reader needs the line end inside quotes
        except UnicodeDecodeError as exc:
            raise _Malformed(f"line {number} is not valid UTF-8 ({exc.reason})") from None
