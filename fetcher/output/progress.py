"""The Rich progress display on standard error (a ``Display``), updated by the writer thread."""

from __future__ import annotations

import logging
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from fetcher.output.summary import human_bytes
from fetcher.results import Result, Summary

# A redraw costs about 0.7 ms of CPU here: 4 a second (Rich's own default) is 0.3% of a core.
REFRESH_PER_SECOND = 4
UPDATE_INTERVAL = 0.5 / REFRESH_PER_SECOND


class _DoneColumn(ProgressColumn):
    """done/total, with ``?`` while the input is still being read."""

    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else str(int(task.total))
        return Text(f"{int(task.completed)}/{total}")


class _StatsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        fields = task.fields
        text = Text()
        text.append(f"{fields.get('ok', 0)} ok", style="green")
        text.append("  ")
        text.append(
            f"{fields.get('failed', 0)} failed", style="red" if fields.get("failed") else ""
        )
        text.append(f"  {fields.get('rate', 0.0):.1f}/s  {human_bytes(fields.get('bytes', 0))}")
        return text


class _ConsoleLogHandler(logging.Handler):
    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(Text(self.format(record)), soft_wrap=True, highlight=False)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


class RichProgress:
    """Shows done/total, ok and failed counts, req/s, bytes, elapsed time and ETA on stderr,
    read from the run's summary.

    Rich refreshes from its own thread at most REFRESH_PER_SECOND times; ``on_result`` only
    updates numbers under Rich's lock, so its cost per record is small.
    """

    def __init__(self, summary: Summary, console: Console | None = None) -> None:
        self.summary = summary
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("fetching"),
            BarColumn(),
            _DoneColumn(),
            _StatsColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            refresh_per_second=REFRESH_PER_SECOND,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._shown = 0.0
        self.task = self.progress.add_task("fetch", total=None, ok=0, failed=0, rate=0.0, bytes=0)

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def say(self, line: str) -> None:
        """Print line above the live display, through its console."""
        try:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        except OSError:
            pass

    def take_over_logging(self) -> None:
        """Print log lines above the live display, through its console, not across it."""
        root = logging.getLogger()
        handler = _ConsoleLogHandler(self.console)
        handler.setFormatter(root.handlers[0].formatter if root.handlers else None)
        root.handlers[:] = [handler]

    def on_total(self, count: int) -> None:
        self.progress.update(self.task, total=count)

    def on_result(self, result: Result) -> None:
        # Rich redraws at most REFRESH_PER_SECOND times; updating its task for every record
        # cost 8% of the throughput of a fast run (bench E), twice a refresh costs nothing.
        now = time.monotonic()
        if now - self._shown >= UPDATE_INTERVAL:
            self._shown = now
            self._show(self.summary)

    def on_finish(self, summary: Summary) -> None:
        self._show(summary)
        self.progress.refresh()

    def _show(self, summary: Summary) -> None:
        self.progress.update(
            self.task,
            completed=summary.done,
            ok=summary.ok,
            failed=summary.failed,
            rate=summary.rate,
            bytes=summary.bytes,
        )
