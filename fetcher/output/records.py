"""Record writers (text, jsonl, csv) and the end-of-run summary, for files, pipes and terminals.

Files and pipes get plain buffered writes, flushed whenever the run is idle; a terminal gets a
Rich console, so records share it with the live progress display without garbling it. Rich is
imported only for terminals: a pipe of records should not pay for it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from fetcher.redact import visible
from fetcher.results import Result, Summary

if TYPE_CHECKING:
    from rich.console import Console

FORMATS = ("text", "jsonl", "csv")
CSV_FIELDS = (
    "url", "final_url", "ok", "status", "reason", "bytes", "elapsed", "attempts", "redirects",
    "content_type", "sha256", "path", "line", "error_kind", "error_message",
)  # fmt: skip
# The last CSV column when the input is jsonl or csv: each line's meta as compact JSON, empty
# when the line had none. JSON, because meta values may be objects and arrays.
CSV_META_FIELD = "meta"
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def format_text(result: Result) -> str:
    """``status  bytes  seconds  url`` and, for a failure, ``kind: message``; tab-separated.

    The text is for humans, piped or not: the URL and the message (which may quote a server's
    reason phrase) have their control characters made visible, so that a record is one line of
    five fields and never drives the terminal. jsonl and csv keep the exact text.
    """
    record = result.as_record()
    status = str(result.status) if result.status is not None else "---"
    line = f"{status}\t{result.bytes}\t{result.elapsed:.3f}\t{visible(record['url'])}"
    if result.error_kind is not None:
        line += f"\t{result.error_kind}: {visible(result.error_message or '')}"
    return line + "\n"


def escape_surrogates(text: str) -> str:
    """Lone surrogates (bytes that were not UTF-8, in a file name) as the six characters
    ``\\udce9``: they are the only characters of a str that UTF-8 cannot encode. Used for CSV
    cells, where it is plain text; everything else is left as it is."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(_escape, text)


def to_json(value: Any, **options: Any) -> str:
    """JSON that a strict UTF-8 stream always accepts and that is one line for every reader.

    Beyond json.dumps, lone surrogates, DEL, the C1 controls and U+2028/U+2029 are escaped as
    ``\\uXXXX``: the string's own escape, so json.loads gives the same str back (a path with a
    surrogate then opens the saved file); no line splitter (str.splitlines) breaks a record and no
    terminal acts on a C1 control. Cannot raise for what the input parsers accept: their meta is
    nested at most MAX_JSON_DEPTH levels.
    """
    text = json.dumps(value, ensure_ascii=False, **options)
    if text.isascii() or not _JSON_UNSAFE.search(text):
        return text
    return _JSON_UNSAFE.sub(_escape, text)  # only inside strings: the rest is ASCII


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def format_jsonl(result: Result) -> str:
    return to_json(result.as_record()) + "\n"


def format_jsonl_with_body(result: Result) -> str:
    return to_json(result.as_record(include_body=True)) + "\n"


def csv_row(result: Result, meta_column: bool = False) -> list[Any]:
    record = result.as_record()
    error = record.pop("error")
    record["error_kind"] = error["kind"] if error else None
    record["error_message"] = error["message"] if error else None
    row = [_cell(record[name]) for name in CSV_FIELDS]
    if meta_column:
        meta = record.get("meta")
        row.append("" if meta is None else to_json(meta, separators=(",", ":")))
    return row


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return escape_surrogates(value) if isinstance(value, str) else value


class CsvFormatter:
    """Formats one CSV row at a time, so that rows can go to a stream or a console alike."""

    def __init__(self, meta_column: bool = False) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")
        self.meta_column = meta_column

    def header(self) -> str:
        return self._format([*CSV_FIELDS, CSV_META_FIELD] if self.meta_column else list(CSV_FIELDS))

    def __call__(self, result: Result) -> str:
        return self._format(csv_row(result, self.meta_column))

    def _format(self, row: list[Any]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(row)
        return self._buffer.getvalue()


def make_formatter(
    name: str, include_body: bool = False, meta_column: bool = False
) -> tuple[Callable[[Result], str], str]:
    """The formatting function for a format name, and the header line it needs first.
    meta_column adds CSV_META_FIELD to csv (jsonl has ``meta`` when the input gave one)."""
    if name == "jsonl":
        return (format_jsonl_with_body if include_body else format_jsonl), ""
    if name == "csv":
        formatter = CsvFormatter(meta_column)
        return formatter, formatter.header()
    return format_text, ""


class StreamWriter:
    """Writes records to a text stream (stdout, a pipe, a --results file)."""

    def __init__(
        self,
        stream: TextIO,
        format_name: str,
        close_stream: bool = False,
        include_body: bool = False,
        meta_column: bool = False,
    ) -> None:
        self.stream = stream
        self.format, header = make_formatter(format_name, include_body, meta_column)
        self.close_stream = close_stream
        if header:
            stream.write(header)

    def write(self, result: Result) -> None:
        try:
            self.stream.write(self.format(result))
        except BrokenPipeError:
            raise
        except OSError:
            self._discard()
            raise

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError:
            self._discard()
            raise

    def close(self) -> None:
        self.flush()
        if self.close_stream:
            self.stream.close()

    def _discard(self) -> None:
        """After a failed write (a full disk): point the descriptor at /dev/null, so that what
        is still buffered is dropped quietly by a later flush, close, or the interpreter's exit
        instead of failing again with a traceback. Records are lost either way; the caller
        reports it once."""
        try:
            descriptor = self.stream.fileno()
        except (OSError, ValueError):
            return  # not backed by a descriptor (a test runner's capture)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, descriptor)
        finally:
            os.close(devnull)


class ConsoleWriter:
    """Writes records to a terminal through a Rich console: coloured text, whole lines.

    When the live progress display is on the same terminal, the console is the display's own,
    so each record is printed above the display instead of through it.
    """

    def __init__(
        self,
        console: Console,
        format_name: str,
        include_body: bool = False,
        meta_column: bool = False,
    ) -> None:
        self.console = console
        self.format, header = make_formatter(format_name, include_body, meta_column)
        self.colour = format_name == "text"
        if header:
            self._print(header, "")

    def write(self, result: Result) -> None:
        style = ("green" if result.ok else "red") if self.colour else ""
        self._print(self.format(result), style)

    def _print(self, line: str, style: str) -> None:
        from rich.text import Text

        self.console.print(Text(line.rstrip("\n"), style=style), soft_wrap=True, highlight=False)

    def flush(self) -> None:
        self.console.file.flush()

    def close(self) -> None:
        self.flush()


class NullWriter:
    """Where records go with --body and no --results: nowhere (stdout carries the bodies)."""

    def write(self, result: Result) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def summary_head(summary: Summary) -> list[str]:
    """The headline and the notes of the summary, the same on every kind of stderr."""
    lines = [
        f"fetcher: {summary.ok} ok, {summary.failed} failed, {_human_bytes(summary.bytes)}, "
        f"{summary.elapsed:.2f} s, {summary.rate:.1f} req/s"
    ]
    if summary.interrupted_by:
        lines.append(f"  stopped by {summary.interrupted_by}")
    if summary.not_attempted:
        lines.append(f"  not attempted: {summary.not_attempted}")
    if summary.duplicates:
        lines.append(f"  duplicates skipped: {summary.duplicates}")
    if summary.other_shards:
        lines.append(f"  left to other shards: {summary.other_shards}")
    return lines


def summary_lines(summary: Summary) -> list[str]:
    """The whole summary as plain lines, for logs and pipes."""
    lines = summary_head(summary)
    for kind, group in summary.kinds_by_count():
        examples = ", ".join(map(visible, group.examples))
        lines.append(f"  {kind:<20} {group.count:>8}  {examples}")
    hosts = summary.top_hosts()
    if hosts:
        lines.append("  most failures: " + ", ".join(f"{visible(h)} ({n})" for h, n in hosts))
    return lines


def print_summary(summary: Summary, stream: TextIO, console: Console | None) -> None:
    """Print the summary: Rich tables on a terminal console, plain lines otherwise."""
    if console is None:
        stream.write("\n".join(summary_lines(summary)) + "\n")
        stream.flush()
        return
    from rich.table import Table
    from rich.text import Text

    # Cells as Text: a URL holding "[/x]" is not Rich markup (as a str it raised MarkupError).
    for line in summary_head(summary):
        console.print(line, highlight=False, markup=False)
    if summary.by_kind:
        table = Table(title="errors by kind", title_justify="left")
        table.add_column("kind", style="red")
        table.add_column("count", justify="right")
        table.add_column("examples", overflow="fold")
        for kind, group in summary.kinds_by_count():
            examples = Text("\n".join(map(visible, group.examples)))
            table.add_row(str(kind), str(group.count), examples)
        console.print(table)
    hosts = summary.top_hosts()
    if hosts:
        table = Table(title="failures by host", title_justify="left")
        table.add_column("host")
        table.add_column("failed", justify="right")
        for host, count in hosts:
            table.add_row(Text(visible(host)), str(count))
        console.print(table)


def write_summary_json(summary: Summary, path: str, exit_status: int) -> None:
    """Write the --summary file atomically: a monitor never reads half of it."""
    from fetcher.output.atomic import write_atomically

    text = json.dumps(summary.as_dict(exit_status), indent=2) + "\n"
    write_atomically(path, text.encode())


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
