"""The record of one URL (§2.4), its schema written once in ``record_of``, and its three formats:
text for humans (control characters made visible), jsonl and csv for programs (the exact text,
escaped only as far as their syntax and UTF-8 require: the one place text is made safe to store;
printed on a terminal, fetcher.output.terminal makes their control characters visible too).
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import json
import re
from collections.abc import Callable
from typing import Any

from fetcher.input.formats import JsonText
from fetcher.input.jobs import Job
from fetcher.redact import redact_url, visible
from fetcher.results import Result

FORMATS = ("text", "jsonl", "csv")


def shown_url(result: Result) -> str:
    """The URL as read, its password masked: the same in every format."""
    return redact_url(result.job.url)


def record_of(result: Result, include_body: bool = False, state: bool = False) -> dict[str, Any]:
    """The record as a dict: the schema, FIELDS in this order, with state (--state) the
    STATE_FIELDS, then ``meta`` when the input gave one; with include_body, the body too, as
    ``body`` when it is UTF-8 text and ``body_base64`` otherwise (null when there was none).
    Reads the body from its start."""
    record: dict[str, Any] = {
        "url": shown_url(result),
        "final_url": redact_url(result.final_url) if result.final_url else None,
        "ok": result.ok,
        "status": result.status,
        "reason": result.reason,
        "bytes": result.bytes,
        "elapsed": round(result.elapsed, 6),
        "attempts": result.attempts,
        "redirects": result.redirects,
        "content_type": result.content_type,
        "sha256": result.sha256,
        "path": result.path,
        "line": result.job.line,
        "error": None
        if result.error_kind is None
        else {"kind": str(result.error_kind), "message": result.error_message or ""},
    }  # a dict display: this runs once per record, and a table of getters cost twice the time
    if state:
        record["changed"] = result.changed
        record["not_modified"] = result.not_modified
        record["skipped"] = result.skipped
    if result.job.meta is not None:
        record["meta"] = result.job.meta
    if include_body:
        record.update(_body_fields(result))
    return record


def _body_fields(result: Result) -> dict[str, str | None]:
    if result.body is None:
        return {"body": None}
    result.body.seek(0)
    data = result.body.read()
    try:
        return {"body": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(data).decode("ascii")}


# The field names, read off an empty record so that the schema is written once, above.
FIELDS = tuple(record_of(Result(Job(seq=0, url="", target="", line=None, raw=b""))))
# What a record says of earlier runs, with --state (spec section 3).
STATE_FIELDS = ("changed", "not_modified", "skipped")
ERROR_COLUMNS = ("error_kind", "error_message")  # csv cells cannot nest: error is two columns
CSV_FIELDS = tuple(c for name in FIELDS for c in (ERROR_COLUMNS if name == "error" else (name,)))
# The last CSV column when the input is jsonl or csv: each line's meta as compact JSON, empty
# when the line had none. JSON, because meta values may be objects and arrays.
CSV_META_FIELD = "meta"


# -- text -----------------------------------------------------------------------------------------


# The fifth column of a URL that --skip-fresh did not fetch: ok, but no answer to show.
SKIPPED_NOTE = "skipped: fetched ok within --skip-fresh"


def format_text(result: Result) -> str:
    """``status  bytes  seconds  url`` and, for a failure, ``kind: message``; tab-separated.

    The text is for humans, piped or not: the URL and the message (which may quote a server's
    reason phrase) have their control characters made visible, so that a record is one line of
    five fields and never drives the terminal. jsonl and csv keep the exact text.
    """
    status = str(result.status) if result.status is not None else "---"
    line = f"{status}\t{result.bytes}\t{result.elapsed:.3f}\t{visible(shown_url(result))}"
    if result.error_kind is not None:
        line += f"\t{result.error_kind}: {visible(result.error_message or '')}"
    elif result.skipped:
        line += f"\t{SKIPPED_NOTE}"
    return line + "\n"


# -- jsonl ----------------------------------------------------------------------------------------

# What a JSON text may hold raw but a reader may not take: lone surrogates (UTF-8 cannot encode
# them), DEL and the C1 controls (a terminal acts on them), U+2028/U+2029 (str.splitlines breaks
# a line there).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# json.dumps with ensure_ascii=False, without building an encoder for every record.
_encode_json = json.JSONEncoder(ensure_ascii=False).encode


def _unicode_escape(match: re.Match[str]) -> str:
    """A character as JSON's (and Python's) own six-character escape, ``\\udce9``."""
    return f"\\u{ord(match.group()):04x}"


def to_json(value: Any) -> str:
    """JSON that a strict UTF-8 stream always accepts and that is one line for every reader.

    Beyond json.dumps, lone surrogates, DEL, the C1 controls and U+2028/U+2029 are escaped as
    ``\\uXXXX``: the string's own escape, so json.loads gives the same str back (a path with a
    surrogate then opens the saved file); no line splitter (str.splitlines) breaks a record and no
    terminal acts on a control. DEL is ASCII: the all-ASCII shortcut looks for it (a memchr),
    or it went out raw when nothing else in the record was non-ASCII (s25 h3 6). A record's
    meta, already JSON (JsonText), is written as it is, but for those escapes: its values come
    back equal to the line's, not its bytes (see ``meta_text``).
    """
    if isinstance(value, JsonText):
        text = value.text
    elif type(value) is dict and isinstance(value.get("meta"), JsonText):
        text = _with_meta(value)
    else:
        text = _encode_json(value)
    if (text.isascii() and "\x7f" not in text) or not _JSON_UNSAFE.search(text):
        return text
    return _JSON_UNSAFE.sub(_unicode_escape, text)  # only inside strings: the rest is ASCII


def _with_meta(record: dict[str, Any]) -> str:
    """The record's JSON with its meta's text in its place, the rest as json.dumps writes it."""
    keys = list(record)
    at = keys.index("meta")
    before = _encode_json({key: record[key] for key in keys[:at]})
    text = f'{before[:-1]}{", " if at else ""}"meta": {record["meta"].text}'
    if at + 1 == len(keys):
        return text + "}"
    return f"{text}, {_encode_json({key: record[key] for key in keys[at + 1 :]})[1:]}"


def format_jsonl(result: Result) -> str:
    return to_json(record_of(result)) + "\n"


def format_jsonl_with_body(result: Result) -> str:
    return to_json(record_of(result, include_body=True)) + "\n"


# -- csv ------------------------------------------------------------------------------------------


def csv_text(text: str) -> str:
    """A CSV cell's text: lone surrogates (bytes that were not UTF-8, in a file name) as the six
    characters ``\\udce9``, the only characters of a str that UTF-8 cannot encode; everything
    else as it is, for csv quoting takes care of the rest."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(_unicode_escape, text)


def csv_row(result: Result, meta_column: bool = False, state: bool = False) -> list[Any]:
    """The CSV_FIELDS cells of result (then the STATE_FIELDS with state, and the meta cell with
    meta_column). None is an empty cell; a boolean is ``true`` or ``false``, as in the jsonl
    record and the meta column (spec 2.4), not Python's ``True``."""
    record = record_of(result, state=state)
    error = record.pop("error")
    record["error_kind"] = error["kind"] if error else None
    record["error_message"] = error["message"] if error else None
    row = [_cell(record[name], name in _FOREIGN_CELLS) for name in csv_columns(state)]
    if meta_column:
        meta = record.get("meta")
        row.append("" if meta is None else to_json(meta))
    return row


# What makes Excel, LibreOffice or Google Sheets read a cell as a formula, quoted or not. A server
# writes the reason, the Content-Type and where a redirect led, a list from anywhere the URL:
# such a cell gets a ' first, as OWASP's advice on CSV injection has it (s29 t1 1). The cells
# fetcher writes (an error message, '--max-time of 2 s reached'; a path under -o +dl) are exact.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FOREIGN_CELLS = frozenset({"url", "final_url", "reason", "content_type"})


def _cell(value: Any, foreign: bool = False) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return value
    if foreign and value.startswith(_FORMULA_STARTS):
        return "'" + csv_text(value)
    return csv_text(value)


def csv_columns(state: bool = False) -> tuple[str, ...]:
    """The csv columns of a record, but the meta column."""
    return (*CSV_FIELDS, *STATE_FIELDS) if state else CSV_FIELDS


class CsvFormatter:
    """Formats one CSV row at a time, so that rows can go to a stream or a console alike.

    Rows end in "\n". The writer is told "\r\n", which _format turns back into "\n": csv's
    writer quotes a cell only for the characters of its line terminator, and every reader
    (Python's, RFC 4180's, spreadsheets') also ends a row at a bare CR, so a CR in a cell (a
    server's reason phrase, an input line) left unquoted would forge rows. Rows without a CR
    are the same bytes either way."""

    def __init__(self, meta_column: bool = False, state: bool = False) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")
        self.meta_column = meta_column
        self.state = state

    def header(self) -> str:
        columns = csv_columns(self.state)
        return self._format([*columns, CSV_META_FIELD] if self.meta_column else list(columns))

    def __call__(self, result: Result) -> str:
        return self._format(csv_row(result, self.meta_column, self.state))

    def _format(self, row: list[Any]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(row)
        return self._buffer.getvalue()[:-2] + "\n"


def make_formatter(
    name: str, include_body: bool = False, meta_column: bool = False, state: bool = False
) -> tuple[Callable[[Result], str], str]:
    """The formatting function for a format name, and the header line it needs first.
    meta_column adds CSV_META_FIELD to csv (jsonl has ``meta`` when the input gave one); state
    adds the STATE_FIELDS to jsonl and csv."""
    if name == "jsonl":
        if not state:
            return (format_jsonl_with_body if include_body else format_jsonl), ""
        return functools.partial(_jsonl_with, include_body=include_body, state=state), ""
    if name == "csv":
        formatter = CsvFormatter(meta_column, state)
        return formatter, formatter.header()
    return format_text, ""


def _jsonl_with(result: Result, include_body: bool, state: bool) -> str:
    return to_json(record_of(result, include_body, state)) + "\n"
