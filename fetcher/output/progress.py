"""The Rich progress display on standard error (a ``Display``): redrawn on a timer from the run's
Summary and the large downloads in flight, so that a stall shows as a falling rate and a running
clock, never as a frozen line."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import NamedTuple

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.constrain import Constrain
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from fetcher.http.transfers import Transfer, Transfers
from fetcher.output.summary import human_bytes
from fetcher.output.terminal import ascii_only, make_console
from fetcher.redact import redact_url, visible
from fetcher.results import Result, Summary

# A redraw costs about 0.7 ms of CPU: 4 a second (Rich's own default) is 0.3% of a core, and a
# clock that moves by quarter seconds is smooth enough to read.
REFRESH_PER_SECOND = 4
RATE_WINDOW = 5.0  # seconds: the rates are those of this window, so that a stall shows at once
SAMPLE_EVERY = 0.5 / REFRESH_PER_SECOND  # the rates' samples, however often a frame is drawn
TRANSFERS_SHOWN = 3  # the largest downloads in flight, each with its own bar
BAR_WIDTH = 30
MIN_BAR_WIDTH = 8
NAME_WIDTH = 40
MIN_NAME_WIDTH = 16


class Marks(NamedTuple):
    """The live display's own characters: Rich's spinner's name, and the run's marks."""

    spinner: str
    stopped: str
    finished: str
    download: str


MARKS = Marks("dots", "■", "✓", "↓")
PLAIN_MARKS = Marks("line", "#", "*", "v")  # Rich's "line" spinner: - \ | /
TotalCounter = Callable[[Callable[[], bool]], int | None]


class SlidingRate:
    """Rates of counters (URLs done, requests, bytes) over the last ``window`` seconds, from
    samples taken at each redraw; before the window has filled, since the first sample."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self.samples: deque[tuple[float, tuple[int, ...]]] = deque()

    def add(self, now: float, *counts: int) -> tuple[float, ...]:
        """Take a sample of counts; return each one's rate a second over the window."""
        samples = self.samples
        samples.append((now, counts))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()  # keep one sample at or beyond the window's start
        then, counts_then = samples[0]
        seconds = now - then
        if seconds <= 0:
            return tuple(0.0 for _ in counts)
        return tuple(max(n - m, 0) / seconds for n, m in zip(counts, counts_then, strict=True))


def clock(seconds: float | None) -> str:
    """``H:MM:SS``, or ``-:--:--`` when not known."""
    if seconds is None:
        return "-:--:--"
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def short_name(url: str, width: int = NAME_WIDTH) -> str:
    """A URL for a narrow column: its password masked, controls visible, its end kept."""
    shown = visible(redact_url(url)).split("://", 1)[-1]
    return shown if len(shown) <= width else "…" + shown[-(width - 1) :]


class _ConsoleLogHandler(logging.Handler):
    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(Text(self.format(record)), soft_wrap=True, highlight=False)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


class Frame:
    """The live display's renderable: the run's line, then a line per large download in flight,
    drawn from the figures of the moment each time Rich renders it (on its timer, and when a
    record is printed above it, so that the two always agree). Thread-safe."""

    def __init__(self, summary: Summary, transfers: Transfers, plain: bool = False) -> None:
        self.summary = summary
        self.transfers = transfers
        # plain: a terminal whose encoding is not UTF (terminal.ascii_only) gets ASCII marks.
        self.marks = PLAIN_MARKS if plain else MARKS
        self.total: int | None = None  # set by the display, from any thread
        self.finished = False
        self.stopped = False  # finished by a stop (a signal, a closed output), not complete
        # The jobs (seqs) of results abandoned in flight (the grace ended, a second signal, a
        # hop cut by a stop), recorded with their bytes: the bodies their threads may still read
        # are counted, no longer in flight. Replaced whole, never changed: Rich's thread reads it.
        self.abandoned: frozenset[int] = frozenset()
        self.spinner = Spinner(self.marks.spinner)
        self.lock = threading.Lock()  # Rich's timer thread and the thread printing records
        self.rate = SlidingRate()
        # URLs done, requests and bytes a second, as of the last sample: the ETA goes by URLs
        # (one skipped as fresh is done at once), "req/s" by requests (Summary.rate).
        self.rates: tuple[float, ...] = (0.0, 0.0, 0.0)
        self.sampled = -SAMPLE_EVERY
        self.transfer_rates: dict[int, SlidingRate] = {}
        self.speeds: dict[int, float] = {}
        self.bytes_shown = 0

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The frame one column short of the terminal's width: a line that filled it left the
        cursor in the last column, where the tty's echo of a typed ^C wrapped to a line of its
        own, and the next redraw, going up a line too few, left a stale frame line (s31 t4 4)."""
        width = max(1, options.max_width - 1)
        with self.lock:
            yield Constrain(self.render(time.monotonic(), width), width)

    def render(self, now: float, width: int = 120) -> RenderableType:
        summary, done = self.summary, self.summary.done
        gone = self.abandoned
        downloads = [] if self.finished else self.transfers.largest(TRANSFERS_SHOWN, gone)
        # Bytes of downloads in flight count at once; never backwards as one of them ends. Once
        # abandoned, they are the records' (s33 t3 2: counted twice, 22.3 MB for 11.3).
        counted = summary.bytes + self.transfers.bytes_in_flight(gone)
        self.bytes_shown = summary.bytes if self.finished else max(self.bytes_shown, counted)
        if now - self.sampled >= SAMPLE_EVERY:
            self._sample(now, done, downloads)
        per_second, requests_per_second, bytes_per_second = self.rates
        if self.finished:  # the last frame: the whole run's figures, as in the summary
            requests_per_second, bytes_per_second = summary.rate, summary.bytes / summary.elapsed
        total = None if self.total is None else max(self.total, done)
        eta = None if total is None or per_second <= 0 else (total - done) / per_second
        if eta is not None and downloads:  # the run ends no sooner than its downloads
            eta = max([eta, *(self._eta(t) or 0.0 for t in downloads)])
        figures = [
            Text(f"{done}/{'?' if total is None else total}"),
            Text(f"{summary.ok} ok", style="green"),
            Text(f"{summary.failed} failed", style="red" if summary.failed else ""),
            Text(f"{requests_per_second:.1f} req/s"),
            Text(human_bytes(self.bytes_shown)),
            Text(f"{human_bytes(bytes_per_second)}/s"),
            Text(clock(summary.elapsed), style="yellow"),
        ]
        if not self.stopped:  # a stopped run has no time left: the rest was never to be done
            figures.append(Text(f"eta {clock(0.0 if self.finished else eta)}", style="cyan"))
        head = [self._mark(), Text("stopped" if self.stopped else "fetching")]
        figures = fitted(figures, width - 11)  # the mark, "fetching", their gaps
        if sum(len(text) + 1 for text in figures) > width - 11:  # nor the counts with it
            head.pop()  # the word goes; past that, the counts fold (s33 r2 3)
        room = width - sum(len(text) + 1 for text in figures) - 12
        if room >= MIN_BAR_WIDTH:  # a narrow terminal drops the bar rather than wrap the line
            head.append(ProgressBar(total, done, min(BAR_WIDTH, room), pulse=total is None))
        grid = Table.grid(padding=(0, 1))
        grid.add_row(*head, *figures)
        rows = self._transfer_rows(downloads, width) if downloads else None
        return grid if rows is None else Group(grid, rows)

    def _mark(self) -> RenderableType:
        """The spinner while the run goes; a tick once complete. A stopped run's last frame
        must not look complete: it read "✓ ... eta 0:00:00" above "not attempted: 26"."""
        if self.stopped:
            return Text(self.marks.stopped, style="yellow")
        return Text(self.marks.finished, style="green") if self.finished else self.spinner

    def _sample(self, now: float, done: int, downloads: list[Transfer]) -> None:
        """Take the rates' samples: at most every SAMPLE_EVERY seconds, however often drawn."""
        self.sampled = now
        self.rates = self.rate.add(now, done, self.summary.requested, self.bytes_shown)
        rates = {id(t): self.transfer_rates.get(id(t)) or SlidingRate() for t in downloads}
        self.transfer_rates = rates  # forget the ones that ended
        self.speeds = {id(t): rates[id(t)].add(now, t.done)[0] for t in downloads}

    def _eta(self, transfer: Transfer) -> float | None:
        speed, total = self.speeds.get(id(transfer), 0.0), transfer.total
        return None if total is None or speed <= 0 else max(total - transfer.done, 0) / speed

    def _transfer_rows(self, downloads: list[Transfer], width: int) -> Table | None:
        """A row for each download: its name takes what the other cells leave, from
        MIN_NAME_WIDTH to NAME_WIDTH, then the bar; a row that would wrap drops its bar, and
        where MIN_NAME_WIDTH does not fit, there are none (they wrapped: s33 t3 3)."""
        grid = Table.grid(padding=(0, 1))
        cells = []
        for transfer in downloads:
            rate, total = self.speeds.get(id(transfer), 0.0), transfer.total
            size = human_bytes(transfer.done)
            size = size if total is None else f"{size} / {human_bytes(total)}"
            cells.append((transfer, size, f"{human_bytes(rate)}/s", clock(self._eta(transfer))))
        # what the name (and the bar, with its gap) may take: the width less "  ↓", the size,
        # the speed, "eta ..." and the gaps between them
        left = width - max((len(c[1]) + len(c[2]) + len(c[3]) + 11 for c in cells), default=0)
        if left < MIN_NAME_WIDTH:
            return None
        bar = BAR_WIDTH // 2 if left - MIN_NAME_WIDTH > BAR_WIDTH // 2 else 0
        name_width = max(MIN_NAME_WIDTH, min(NAME_WIDTH, left - (bar + 1 if bar else 0)))
        for transfer, size, speed, eta in cells:
            name = Text(short_name(transfer.url, name_width).ljust(name_width))
            shown = [ProgressBar(transfer.total, transfer.done, bar, pulse=transfer.total is None)]
            grid.add_row(Text(f"  {self.marks.download}"), name, *(shown if bar else []),
                         Text(size), Text(speed), Text(f"eta {eta}", style="cyan"))  # fmt: skip
        return grid


def _stderr_is_a_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (OSError, ValueError):  # closed
        return False


# The figures a narrow frame drops first, by their place in Frame.render's list: bytes a
# second, the clock, requests a second, the bytes, then the ETA. The counts stay.
DROPPED_FIRST = (5, 6, 3, 4, 7)


def fitted(figures: list[Text], room: int) -> list[Text]:
    """figures, those DROPPED_FIRST left out one by one until the rest, a blank between each,
    take at most room columns: at 80 columns, a run of 4,000 URLs wrapped its line and cut its
    total (s33 t3 3)."""
    kept: list[Text | None] = list(figures)
    for place in DROPPED_FIRST:
        if sum(len(text) + 1 for text in kept if text is not None) <= room:
            break
        if place < len(kept):
            kept[place] = None
    return [text for text in kept if text is not None]


class RichProgress:
    """Shows done/total, ok and failed counts, req/s and bytes/s over the last RATE_WINDOW
    seconds, bytes, elapsed time and ETA on stderr, and a bar for each of the largest downloads
    in flight (threads of this process only: with --processes, the totals alone).

    Rich's own thread redraws REFRESH_PER_SECOND times a second, reading the Summary (which the
    writer thread updates) and polling ``transfers`` (which the reading threads update): a
    record costs the display nothing. With a counter, the total is counted in a thread of its
    own as the run starts; an input that can be read once only stays ``?`` until read.
    """

    def __init__(
        self,
        summary: Summary,
        console: Console | None = None,
        count_total: TotalCounter | None = None,
    ) -> None:
        self.summary = summary
        # Drawn in place only on a terminal: FORCE_COLOR (a CI log's colours) made Rich take a
        # file for one, and every frame went into `--progress 2>log` (s33 t3 6); but where
        # TTY_INTERACTIVE=1 asks for it, which alone Rich, drawing only on what it takes for a
        # terminal, did not do (s34 r1 4).
        asked = os.environ.get("TTY_INTERACTIVE", "") not in ("", "0")
        drawn = None if asked or _stderr_is_a_terminal() else False
        options = {"force_terminal": True} if asked else {}
        self.console = console or make_console(stderr=True, force_interactive=drawn, **options)
        self.transfers: Transfers | None = Transfers()
        self.frame = Frame(summary, self.transfers, ascii_only(self.console))
        self.count_total = count_total
        self.total_known = False  # the input has ended: its count beats the one counted ahead
        self.total_lock = threading.Lock()
        self.stop_counting = threading.Event()
        self.live = Live(
            self.frame,
            console=self.console,
            refresh_per_second=REFRESH_PER_SECOND,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> RichProgress:
        if self.count_total is not None:
            counter = threading.Thread(target=self._count, name="fetcher-count", daemon=True)
            counter.start()
        self.live.start(refresh=True)  # the first frame now: rates count from it
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_counting.set()
        try:
            self.live.stop()  # its last frame
            if not self.console.is_terminal:  # the one frame of --progress on a file: end it
                self.console.line()  # (Rich ends it on a terminal, a dumb one too: s31 t4 6)
        except OSError:
            # A terminal closed under the run (EIO), a full disk: the display is lost, and only
            # it. Raised from here, it took --failed, --summary and the exit status with it.
            pass

    def at_hard_exit(self) -> None:
        """The line ended and the cursor the live display hid shown again, as its stop would:
        a second signal exits at once, and the shell's prompt came back with no cursor."""
        if not (self.live.is_started and self.console.is_terminal):
            return
        with contextlib.suppress(OSError, ValueError):
            os.write(self.console.file.fileno(), b"\r\n\x1b[?25h")

    def at_job_stop(self, relayed: int) -> None:
        """The cursor the live display hid is shown while the shell has the terminal, and
        hidden again when the run is back in its foreground (a prompt came back with no cursor
        after a Ctrl-Z). Nothing written from the background: under `stty tostop` that write
        would stop the run again."""
        if not (self.live.is_started and self.console.is_terminal):
            return
        with contextlib.suppress(OSError, ValueError):
            terminal = self.console.file.fileno()
            if os.tcgetpgrp(terminal) == os.getpgrp():
                os.write(terminal, b"\x1b[?25h" if relayed == signal.SIGSTOP else b"\x1b[?25l")

    def _count(self) -> None:
        """Count the input's lines ahead, for the total. An input that cannot be read (EIO) is
        the reader's to report: the total is then not known, and no traceback is printed over
        the display (s23 r4 5)."""
        assert self.count_total is not None
        try:
            count = self.count_total(self.stop_counting.is_set)
        except OSError:
            return
        with self.total_lock:
            if count is not None and not self.total_known:
                self.frame.total = count

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
        with self.total_lock:
            self.total_known = True
            self.frame.total = count

    def on_result(self, result: Result) -> None:
        """Nothing to do but note an abandoned result: the next redraw reads the Summary."""
        if result.abandoned:
            self.frame.abandoned = self.frame.abandoned | {result.job.seq}

    def on_finish(self, summary: Summary, stopped: bool = False) -> None:
        self.frame.finished = True
        self.frame.stopped = stopped
        self.live.refresh()
