"""What is printed on a terminal through Rich, beside the live display: coloured records and the
summary's tables.

Rich is imported only when something is printed on a terminal: a pipe of records, or a summary
on a log file, should not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from fetcher.output.records import make_formatter
from fetcher.output.summary import summary_head, summary_lines
from fetcher.redact import visible
from fetcher.results import Result, Summary

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


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
        state: bool = False,
    ) -> None:
        self.console = console
        self.format, header = make_formatter(format_name, include_body, meta_column, state)
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
