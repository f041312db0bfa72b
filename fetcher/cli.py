"""The ``fetcher`` command: parse options, build Settings, pick display and writer, run, exit.

This module and the display modules are the only ones that import click or rich.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TextIO

import click
from click.decorators import FC

from fetcher import __version__
from fetcher.collector import Collector, FailedLines, RecordWriter
from fetcher.engine import Fetcher, Run
from fetcher.events import NullEvents
from fetcher.report import FORMATS, ConsoleWriter, StreamWriter, print_summary, write_summary_json
from fetcher.results import Summary
from fetcher.session import SessionPool
from fetcher.settings import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WORKERS,
    OkStatus,
    Settings,
)
from fetcher.signals import hard_exit, stop_on_signals
from fetcher.sources import InputReader, Source
from fetcher.status import ExitStatus, exit_status

EXAMPLES = """\b
Examples:
  fetcher https://example.org/ https://example.com/
  fetcher -i urls.txt -j 32 --format jsonl > records.jsonl
  grep -o 'https://[^ ]*' log | fetcher --format jsonl | jq -r 'select(.ok|not).url'
  fetcher -q -i urls.txt --failed retry.txt --summary summary.json || echo "exit $?"
  FETCHER_WORKERS=64 fetcher -i urls.txt --ordered

\b
Exit status: 0 all ok (or no URL), 1 some failed, 3 all failed, 2 usage error,
130 after SIGINT, 143 after SIGTERM, 141 when the reader of standard output went away.
"""


class OkStatusType(click.ParamType):  # type: ignore[type-arg]
    name = "STATUSES"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, OkStatus):
            return value
        try:
            return OkStatus.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
ENV_PREFIX = "FETCHER_"


def option(*decls: str, **attrs: Any) -> Callable[[FC], FC]:
    """click.option whose environment variable is FETCHER_<LONG OPTION NAME>, shown in --help."""
    long_name = next(d for d in decls if d.startswith("--")).split("/")[0]
    attrs.setdefault("envvar", ENV_PREFIX + long_name[2:].replace("-", "_").upper())
    return click.option(*decls, show_envvar=True, **attrs)


@click.command(
    epilog=EXAMPLES,
    context_settings={
        "show_default": True,
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
    },
)
@click.argument("urls", nargs=-1, metavar="[URL]...")
@option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="FILE",
    help="Read URLs from FILE, one per line ('-' for standard input). Repeatable.",
)
@option(
    "--default-scheme",
    type=click.Choice(["https", "http"]),
    default="https",
    help="Scheme for lines that have no '://'.",
)
@option(
    "--unique",
    is_flag=True,
    help="Skip URLs already seen in this run (exact match).",
)
@option(
    "-j",
    "--workers",
    type=click.IntRange(1, 1024),
    default=DEFAULT_WORKERS,
    help="Worker threads, each with its own keep-alive session.",
)
@option(
    "--connect-timeout",
    type=POSITIVE_FLOAT,
    default=DEFAULT_CONNECT_TIMEOUT,
    metavar="S",
    help="Seconds to wait for a connection.",
)
@option(
    "-t",
    "--timeout",
    "read_timeout",
    type=POSITIVE_FLOAT,
    default=DEFAULT_READ_TIMEOUT,
    metavar="S",
    help="Seconds to wait for each read from the server.",
)
@option(
    "--format",
    "format_name",
    type=click.Choice(FORMATS),
    default="text",
    help="Record format.",
)
@option(
    "--results",
    metavar="FILE",
    help="Write the records to FILE instead of standard output.",
)
@option(
    "--failed",
    metavar="FILE",
    help="Write the input lines of URLs that did not end ok to FILE (mode 0600).",
)
@option(
    "--ordered",
    is_flag=True,
    help="Write records in input order instead of as they complete.",
)
@option(
    "--ok-status",
    type=OkStatusType(),
    default=None,
    help="Statuses that count as ok, e.g. '200-299,304'.  [default: below 400]",
)
@option(
    "--summary",
    "summary_path",
    metavar="FILE",
    help="Also write the summary to FILE as one JSON object (even with -q).",
)
@option(
    "--progress/--no-progress",
    default=None,
    help="Show the live progress display.  [default: when stderr is a terminal]",
)
@option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print nothing on stderr unless the run cannot start.",
)
@option(
    "-v",
    "--verbose",
    count=True,
    help="Log to stderr; -vv adds urllib3's connection log.",
)
@click.version_option(__version__, "-V", "--version", prog_name="fetcher")
def main(
    urls: tuple[str, ...],
    inputs: tuple[str, ...],
    default_scheme: str,
    unique: bool,
    workers: int,
    connect_timeout: float,
    read_timeout: float,
    format_name: str,
    results: str | None,
    failed: str | None,
    ordered: bool,
    ok_status: OkStatus | None,
    summary_path: str | None,
    progress: bool | None,
    quiet: bool,
    verbose: int,
) -> None:
    """Fetch URLs concurrently and print one record per URL, then a summary of every error.

    URLs come from the arguments, from --input files and, when neither is given and standard
    input is not a terminal, from standard input. '-' means standard input.
    """
    configure_logging(verbose, quiet)
    settings = Settings(
        workers=workers,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        default_scheme=default_scheme,
        ok_status=ok_status or OkStatus(),
        unique=unique,
        ordered=ordered,
    )
    with ExitStack() as stack:
        sources = open_sources(urls, inputs, stack)
        reader = InputReader(sources, settings.default_scheme, settings.unique)
        failed_lines = stack.enter_context(_closing(open_failed(failed)))
        show_progress = (not quiet and sys.stderr.isatty()) if progress is None else progress
        display = make_display(show_progress)
        writer = make_writer(format_name, results, display)
        summary = Summary()
        collector = Collector(summary, writer, display or NullEvents(), failed_lines)
        sessions = SessionPool(settings)
        run = Run(settings, reader, Fetcher(settings, sessions), collector)
        with stop_on_signals(run.request_stop):
            with display or ExitStack():
                stopped_by = run.run()
                summary.finish()
                if display is not None:
                    display.on_finish(summary)
            finish(run, summary, writer, sessions, stopped_by, quiet, summary_path, display)
            status = exit_status(summary, stopped_by)
            if collector.output_broken:
                silence_stdout()
            if stopped_by is not None and run.abandoned:
                hard_exit(status)  # workers still blocked on servers: do not wait for them
    sys.exit(status)


def finish(
    run: Run,
    summary: Summary,
    writer: RecordWriter,
    sessions: SessionPool,
    stopped_by: ExitStatus | None,
    quiet: bool,
    summary_path: str | None,
    display: Any,
) -> None:
    """Close outputs and sessions, then report: the summary on stderr and in --summary."""
    summary.duplicates = run.reader.duplicates
    if stopped_by in (ExitStatus.INTERRUPTED, ExitStatus.TERMINATED):
        summary.interrupted_by = "SIGINT" if stopped_by is ExitStatus.INTERRUPTED else "SIGTERM"
    try:
        writer.close()
    except BrokenPipeError:
        pass
    if run.abandoned == 0:
        sessions.close_all()
    status = exit_status(summary, stopped_by)
    if summary_path:
        write_summary_json(summary, summary_path, status)
    if not quiet:
        console = display.console if display is not None else None
        if console is None and sys.stderr.isatty():
            from rich.console import Console

            console = Console(stderr=True)
        print_summary(summary, sys.stderr, console)


def open_sources(urls: tuple[str, ...], inputs: tuple[str, ...], stack: ExitStack) -> list[Source]:
    """Open every input now, so that a missing file is a usage error before anything is fetched."""
    sources: list[Source] = []
    arguments: list[str] = []
    for url in urls:
        if url == "-":
            if arguments:
                sources.append(Source("arguments", arguments=tuple(arguments)))
                arguments = []
            sources.append(Source("<stdin>", stream=sys.stdin.buffer))
        else:
            arguments.append(url)
    if arguments:
        sources.append(Source("arguments", arguments=tuple(arguments)))
    for path in inputs:
        if path == "-":
            sources.append(Source("<stdin>", stream=sys.stdin.buffer))
            continue
        try:
            stream = stack.enter_context(open(path, "rb"))  # noqa: SIM115 - closed by the stack
        except OSError as exc:
            raise click.UsageError(f"cannot read input file {path!r}: {exc.strerror}") from None
        sources.append(Source(path, stream=stream))
    if not sources:
        if sys.stdin is None or sys.stdin.isatty():
            raise click.UsageError("no URL given: pass URLs, --input FILE, or pipe a list in")
        sources.append(Source("<stdin>", stream=sys.stdin.buffer))
    return sources


def open_failed(path: str | None) -> FailedLines | None:
    if path is None:
        return None
    try:
        return FailedLines(path)
    except OSError as exc:
        raise click.UsageError(f"cannot write --failed file {path!r}: {exc.strerror}") from None


@contextmanager
def _closing(thing: FailedLines | None) -> Iterator[FailedLines | None]:
    try:
        yield thing
    finally:
        if thing is not None:
            thing.close()


def make_display(show: bool) -> Any:
    """The Rich display on stderr, or None when progress is off (imports Rich only if needed)."""
    if not show:
        return None
    from fetcher.progress import RichProgress

    return RichProgress()


def make_writer(format_name: str, results: str | None, display: Any) -> RecordWriter:
    """Records go to --results, else stdout: through Rich on a terminal, plainly otherwise."""
    if results is not None:
        try:
            stream: TextIO = open(results, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            message = f"cannot write --results file {results!r}: {exc.strerror}"
            raise click.UsageError(message) from None
        return StreamWriter(stream, format_name, close_stream=True)
    stdout = sys.stdout
    if not stdout.isatty():
        stream = buffered_stdout()
        return StreamWriter(stream, format_name, close_stream=stream is not sys.stdout)
    if display is not None and same_terminal(stdout, sys.stderr):
        return ConsoleWriter(display.console, format_name)
    from rich.console import Console

    return ConsoleWriter(Console(file=stdout), format_name)


def buffered_stdout() -> TextIO:
    """Our own buffered UTF-8 stream on stdout's descriptor: records are flushed when the run
    is idle, not once each, even under PYTHONUNBUFFERED (which made that a syscall per record)."""
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):
        return sys.stdout  # not backed by a descriptor (a test runner's capture)
    sys.stdout.flush()
    return open(  # noqa: SIM115 - closed by the writer, which leaves the descriptor open
        descriptor, "w", encoding="utf-8", newline="", buffering=1 << 16, closefd=False
    )


def same_terminal(first: TextIO, second: TextIO) -> bool:
    try:
        return os.path.samestat(os.fstat(first.fileno()), os.fstat(second.fileno()))
    except (OSError, ValueError):
        return False


def silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so that the interpreter's last flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def configure_logging(verbose: int, quiet: bool) -> None:
    from fetcher.redact import RedactingFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if verbose >= 2:
        root.setLevel(logging.DEBUG)
    elif verbose == 1:
        root.setLevel(logging.WARNING)
        logging.getLogger("fetcher").setLevel(logging.INFO)
    else:
        root.setLevel(logging.ERROR if quiet else logging.WARNING)
