"""What is printed on a terminal through Rich, beside the live display: records in aligned
columns with human sizes (text) or one per line (jsonl, csv), what the data says made visible
in every format, and the summary's tables.

Rich is imported only when something is printed on a terminal: a pipe of records, or a summary
on a log file, should not pay for it.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from fetcher.output.records import SKIPPED_NOTE, make_formatter, shown_url
from fetcher.output.summary import human_bytes, summary_head, summary_lines
from fetcher.redact import redact_url, visible, visible_json
from fetcher.results import Result, Summary
from fetcher.streams import readable_on_terminal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from fetcher.output.pipes import PipeLedger

REDIRECTED = "→"
REDIRECTED_ASCII = "->"  # on a terminal whose encoding has no arrow (ascii_only)
MIN_COLUMNS = 10  # a COLUMNS below this is taken for a mistake, not a terminal's width


def make_console(**options: Any) -> Console:
    """A Rich Console with options. A COLUMNS no line fits in (0, set by a script) is not taken
    at its word, as Rich takes it: it drew nothing at all, not even a record (s15 h3 10). The
    terminal's own width then, or 80. A terminal it writes to in an encoding that is not
    ASCII-compatible (PYTHONIOENCODING=utf-16) is written in UTF-8 (readable_on_terminal)."""

    target = options.get("file") or (sys.stderr if options.get("stderr") else sys.stdout)
    if target is not None:  # Rich's own stderr console reads sys.stderr at each write
        readable_on_terminal(target)

    columns = os.environ.get("COLUMNS", "")
    if columns and "width" not in options and _knows_its_size(target):
        # A terminal's own width beats an exported COLUMNS, and follows its resizes: one wider
        # than the terminal wrapped every frame, each redraw leaving a stale line (s33 t3 4);
        # one of 0 was a width fixed at the start (s33 r2 4).
        options["_environ"] = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    elif columns.isdigit() and int(columns) < MIN_COLUMNS and "width" not in options:
        width = shutil.get_terminal_size().columns  # which asks the terminal when COLUMNS is 0
        options["width"] = width if width >= MIN_COLUMNS else 80
    return _console_class()(**options)


def _knows_its_size(stream: object) -> bool:
    """Whether stream is a terminal that tells its size (TIOCGWINSZ), of at least MIN_COLUMNS."""
    try:
        return os.get_terminal_size(stream.fileno()).columns >= MIN_COLUMNS  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def ascii_only(console: Console) -> bool:
    """Whether console writes in an encoding that is not UTF (ASCII, latin-1, cp437): a
    character it cannot encode goes out as an escape, ``\u2713``, six cells where Rich counts
    one, and the live display's lines wrapped: each redraw left a stale line (s31 t4 1)."""
    encoding = (getattr(console.file, "encoding", None) or "utf-8").lower().replace("-", "")
    return not encoding.startswith("utf")


@functools.cache
def _console_class() -> type[Console]:
    """Rich's Console, whose broken pipe is a BrokenPipeError, which fetcher's writers handle
    (the display stops; a reader gone from the records is 141). Rich's own on_broken_pipe
    pointed standard output (fd 1), whichever stream broke, at /dev/null and raised
    SystemExit(1): a stderr's reader gone under --progress lost the records of a healthy
    stdout, --failed, --summary and the exit status (120) with them (s29 t5 1)."""
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # as Rich's: nothing more is written to it
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    return PipeConsole


def terminal_record(result: Result, arrow: str = REDIRECTED) -> Text:
    """A record of the text format for a person at a terminal: status, size, seconds and URL in
    aligned columns, ``→ final URL`` after a redirect, then ``kind: message`` for a failure;
    what a server or a URL list said has its control characters made visible. (Piped, the
    text format is tab-separated: ``fetcher.output.records.format_text``.)"""
    from rich.text import Text

    status = "---" if result.status is None else str(result.status)
    line = Text.assemble(
        (f"{status:>3}", "green" if result.ok else "red"),
        f"  {human_bytes(result.bytes):>8}  ",
        (f"{result.elapsed:7.3f} s", "dim"),
        "  ",
        visible(shown_url(result)),
    )
    if result.redirects and result.final_url:
        line.append(f" {arrow} {visible(redact_url(result.final_url))}", style="cyan")
    if result.error_kind is not None:
        line.append(f"  {result.error_kind}: {visible(result.error_message or '')}", style="red")
    elif result.skipped:
        line.append(f"  {SKIPPED_NOTE}", style="dim")
    return line


class ConsoleWriter:
    """Writes records to a terminal through a Rich console, whole lines: the text format as
    ``terminal_record``, jsonl and csv with their control characters, bidi overrides and line
    separators made visible (``visible``, as in the text format): on a terminal a record is read
    by a person, whatever its format, and a server's escape sequence must not drive the
    terminal. (Piped or to --results FILE, jsonl and csv keep the exact data.) In jsonl, to_json
    has escaped every control below U+0100 already, so what is left (bidi overrides) takes
    JSON's own escape, ``\\u202e``, and the line still parses to the exact data.

    When the live progress display is on the same terminal, the console is the display's own,
    so each record is printed above the display instead of through it. The same goes for a
    --results naming a terminal (/dev/stderr, /dev/tty): close_file, its console's file is
    that terminal, opened for the run, and closed with the writer.
    """

    ledger: PipeLedger | None = None  # a record written to a terminal is taken

    def __init__(
        self,
        console: Console,
        format_name: str,
        include_body: bool = False,
        meta_column: bool = False,
        state: bool = False,
        close_file: bool = False,
    ) -> None:
        self.console = console
        self.close_file = close_file
        self.format, header = make_formatter(format_name, include_body, meta_column, state)
        self.aligned = format_name == "text"
        self.json = format_name == "jsonl"  # its escapes must be JSON's: the line still parses
        self.ascii_only = ascii_only(console)
        self.arrow = REDIRECTED_ASCII if self.ascii_only else REDIRECTED
        if header:
            self._print(header, "")

    def prepare(self, result: Result) -> Callable[[], None]:
        """The record built (as Rich text, made visible), and the call that prints it."""
        text = (terminal_record(result, self.arrow) if self.aligned
                else self._shown(self.format(result), ""))  # fmt: skip
        return functools.partial(self.console.print, text, soft_wrap=True, highlight=False)

    def _print(self, line: str, style: str) -> None:
        self.console.print(self._shown(line, style), soft_wrap=True, highlight=False)

    def _shown(self, line: str, style: str) -> Text:
        from rich.text import Text

        line = line.rstrip("\n")  # a newline inside a csv cell too: one record, one line
        shown = visible_json(line, self.ascii_only) if self.json else visible(line)
        return Text(shown, style=style)

    def flush(self) -> None:
        self.console.file.flush()

    def close(self) -> None:
        self.flush()
        if self.close_file:
            self.console.file.close()


def print_lines(console: Console, text: str) -> None:
    """text, made visible already (--failed's lines on the display's terminal), printed above
    the live display as it is: as Text, so that no markup or :emoji: code in a URL is read."""
    from rich.text import Text

    console.print(Text(text), soft_wrap=True, highlight=False)


def print_summary(summary: Summary, stream: TextIO, console: Console | None) -> None:
    """Print the summary: Rich tables on a terminal console, plain lines on stream otherwise."""
    if console is None:
        stream.write("\n".join(summary_lines(summary)) + "\n")
        stream.flush()
        return
    for line in summary_head(summary):
        console.print(line, highlight=False, markup=False)
    if summary.by_kind:
        console.print(_kinds_table(summary))
    if summary.top_hosts():
        console.print(_hosts_table(summary))


# Cells as Text: a URL holding "[/x]" is not Rich markup (as a str it raised MarkupError).


def _kinds_table(summary: Summary) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="errors by kind", title_justify="left")
    table.add_column("kind", style="red")
    table.add_column("count", justify="right")
    table.add_column("examples", overflow="fold")
    for kind, group in summary.kinds_by_count():
        examples = Text("\n".join(map(visible, group.examples)))
        table.add_row(str(kind), str(group.count), examples)
    return table


def _hosts_table(summary: Summary) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="failures by host", title_justify="left")
    table.add_column("host")
    table.add_column("failed", justify="right")
    for host, count in summary.top_hosts():
        table.add_row(Text(visible(host)), str(count))
    return table
