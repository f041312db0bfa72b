"""The ``fetcher`` command: parse options, build Settings, pick display and writer, run, exit.

This module and the display modules are the only ones that import click or rich.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack
from http.cookiejar import CookieJar
from typing import Any, BinaryIO, TextIO

import click

from fetcher import __version__
from fetcher.http.cookies import load_jar, save_jar
from fetcher.http.fetch import Fetcher
from fetcher.http.session import SessionPool
from fetcher.input.reader import InputReader, Source
from fetcher.options import all_options, build_settings
from fetcher.output.atomic import output_problem
from fetcher.output.bodies import Bodies, remove_live_temporaries
from fetcher.output.collector import Collector, FailedLines, RecordWriter
from fetcher.output.display import NullEvents
from fetcher.output.records import (
    ConsoleWriter,
    NullWriter,
    StreamWriter,
    print_summary,
    write_summary_json,
)
from fetcher.results import Summary
from fetcher.run.engine import Run
from fetcher.run.signals import hard_exit, on_hard_exit, stop_on_signals
from fetcher.status import ExitStatus, exit_status

STOP_REASONS = {
    ExitStatus.SOME_FAILED: "an output that cannot be written",  # see stop_on_write_error
    ExitStatus.INTERRUPTED: "SIGINT",
    ExitStatus.TERMINATED: "SIGTERM",
    ExitStatus.BROKEN_PIPE: "a closed standard output",
}

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


@click.command(
    epilog=EXAMPLES,
    context_settings={
        "show_default": True,
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
    },
)
@click.argument("urls", nargs=-1, metavar="[URL]...")
@all_options
@click.version_option(__version__, "-V", "--version", prog_name="fetcher")
def main(urls: tuple[str, ...], **params: Any) -> None:
    """Fetch URLs concurrently and print one record per URL, then a summary of every error.

    URLs come from the arguments, from --input files and, when neither is given and standard
    input is not a terminal, from standard input. '-' means standard input.
    """
    quiet = params["quiet"]
    configure_logging(params["verbose"], quiet)
    settings = build_settings(params)
    check_output_files(params)
    with ExitStack() as stack:
        sources = open_sources(urls, params["inputs"], stack)
        reader = InputReader(
            sources, settings.default_scheme, settings.unique, settings.input_format, settings.shard
        )
        jar = open_cookie_jar(settings.cookie_jar)
        failed_lines = open_failed(params["failed"])
        if failed_lines is not None:
            stack.callback(failed_lines.abort)  # a run that ends in an error keeps the old FILE
        progress = params["progress"]
        show_progress = (not quiet and sys.stderr.isatty()) if progress is None else progress
        display = make_display(show_progress)
        if display is not None:
            display.take_over_logging()
        writer = make_writer(params, display)
        bodies = make_bodies(params)
        if bodies is not None:
            stack.callback(bodies.close)  # DIR's descriptor: no descriptor outlives main()
        summary = Summary()
        body_stream = stdout_binary() if params["body"] else None
        records_to = "<stdout>" if params["results"] is None else repr(params["results"])
        collector = Collector(
            summary, writer, display or NullEvents(), failed_lines, body_stream, records_to
        )
        # A second signal exits at once, but what is already buffered still reaches its file.
        on_hard_exit(writer.flush)
        if failed_lines is not None:
            on_hard_exit(functools.partial(failed_lines.commit, sync=False))
        sessions = SessionPool(settings, jar)
        stopping = threading.Event()
        run: Run
        if settings.processes > 1:
            from fetcher.run.processes import ProcessRun

            levels = (logging.getLogger().level, logging.getLogger("fetcher").getEffectiveLevel())
            output_dir = params["output_dir"]
            run = ProcessRun(settings, reader, collector, output_dir, levels, stopping, jar)
            on_hard_exit(run.stop_workers_now)
        else:
            run = Run(settings, reader, Fetcher(settings, sessions, stopping, bodies), collector,
                      stopping)  # fmt: skip
        collector.on_write_error = functools.partial(stop_on_write_error, run, display)
        with stop_on_signals(run.request_stop, run.hard_stop):
            with display or ExitStack():
                stopped_by = run.run()
                summary.finish()
                if display is not None:
                    display.on_finish(summary)
            collector.close_writer()
            problems = [] if collector.write_error is None else [collector.write_error]
            problems += commit_failed(failed_lines)
            if settings.cookie_jar:
                # No session at all (every line invalid, or an early stop): keep what was loaded.
                jars = run.jars() or [jar or CookieJar()]
                path = settings.cookie_jar
                problems += write_or_say("-c", path, lambda: save_jar(path, jars))
            status = finish(run, reader, summary, sessions, stopped_by, quiet,
                            params["summary_path"], display, problems)  # fmt: skip
            if collector.output_broken:
                silence(sys.stdout)
            if stopped_by is not None:
                # Workers may be blocked on servers and the dispatcher on an open stdin pipe: a
                # normal interpreter exit would wait for the first and abort on the second.
                stack.close()
                hard_exit(status)
    sys.exit(status)


def open_cookie_jar(path: str | None) -> CookieJar | None:
    if path is None:
        return None
    try:
        return load_jar(path)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def finish(
    run: Run,
    reader: InputReader,
    summary: Summary,
    sessions: SessionPool,
    stopped_by: ExitStatus | None,
    quiet: bool,
    summary_path: str | None,
    display: Any,
    problems: list[str],
) -> int:
    """Close sessions, then report: the summary on stderr and in --summary. Returns the exit
    status: a file that could not be written (problems) makes it at least 1."""
    summary.duplicates = reader.duplicates
    summary.other_shards = reader.other_shards
    summary.interrupted_by = STOP_REASONS.get(stopped_by) if stopped_by else None
    if run.abandoned == 0:
        sessions.close_all()
    status = final_status(summary, stopped_by, bool(problems))
    if summary_path:
        path = summary_path
        if write_or_say("--summary", path, lambda: write_summary_json(summary, path, status)):
            status = final_status(summary, stopped_by, True)
    if not quiet:
        console = display.console if display is not None else None
        if console is None and sys.stderr.isatty():
            from rich.console import Console

            console = Console(stderr=True)
        try:
            print_summary(summary, sys.stderr, console)
        except BrokenPipeError:  # `fetcher ... 2>&1 | head`: nobody reads stderr either
            silence(sys.stderr)
    return status


def final_status(summary: Summary, stopped_by: ExitStatus | None, lost_output: bool) -> int:
    """exit_status, except that an output that could not be written turns 0 into 1: the run
    did not do all it was asked (there is no exit status of its own for that in §2.5)."""
    status = exit_status(summary, stopped_by)
    if lost_output and status is ExitStatus.OK:
        return ExitStatus.SOME_FAILED
    return status


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


# Every file a run writes, checked before the first request: (option, its params key, whether
# it is replaced by a rename, so that its folder must be writable). One line per file.
OUTPUT_FILES = (
    ("--failed", "failed", True),
    ("--results", "results", False),  # streamed while the run goes, like a shell's `>`
    ("--summary", "summary_path", True),
    ("-c", "cookie_jar", True),
)


def check_output_files(params: dict[str, Any]) -> None:
    """A missing or unwritable folder, or a directory, is a usage error now, not a traceback
    once the work is done."""
    for option, key, replaced in OUTPUT_FILES:
        path = params.get(key)
        if path is None:
            continue
        problem = output_problem(path, replaced)
        if problem is not None:
            raise click.UsageError(f"cannot write {option} file {path!r}: {problem}")


def open_failed(path: str | None) -> FailedLines | None:
    if path is None:
        return None
    try:
        return FailedLines(path)
    except OSError as exc:
        raise click.UsageError(f"cannot write --failed file {path!r}: {exc.strerror}") from None


def commit_failed(failed: FailedLines | None) -> list[str]:
    """Rename --failed into place; the problem, if any, as a message (the old FILE is kept)."""
    if failed is None:
        return []
    failed.commit()
    if failed.error is None:
        return []
    message = f"cannot write --failed file {failed.path!r}: {failed.error.strerror or failed.error}"
    say(message, None)
    return [message]


def write_or_say(option: str, path: str, write: Callable[[], object]) -> list[str]:
    """Write a file at the end of the run; a failure (a full disk: the folder was checked
    before the run) is one line on stderr and a message in the returned list, not a traceback."""
    try:
        write()
    except OSError as exc:
        message = f"cannot write {option} file {path!r}: {exc.strerror or exc}"
        say(message, None)
        return [message]
    return []


def stop_on_write_error(run: Run, display: Any, message: str) -> None:
    """Records cannot be written (a full disk): say so once and stop the run as an interrupt
    would, so that what was not fetched goes to --failed instead of being fetched for nothing."""
    say(message, display)
    run.request_stop(ExitStatus.SOME_FAILED)


def say(message: str, display: Any) -> None:
    """One line on stderr, above the live display when there is one."""
    line = f"fetcher: {message}"
    try:
        if display is not None:
            display.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
    except OSError:
        pass


def make_display(show: bool) -> Any:
    """The Rich display on stderr, or None when progress is off (imports Rich only if needed)."""
    if not show:
        return None
    from fetcher.output.progress import RichProgress

    return RichProgress()


def make_writer(params: dict[str, Any], display: Any) -> RecordWriter:
    """Records go to --results, else stdout (nowhere with --body): through Rich on a terminal,
    plainly otherwise."""
    format_name, results, include_body = (
        params["format_name"], params["results"], params["include_body"]
    )  # fmt: skip
    if include_body and format_name != "jsonl":
        raise click.UsageError("--include-body needs --format jsonl")
    meta = params["input_format"] != "lines"  # a csv meta column: only inputs with meta have one
    if results is not None:
        try:
            # backslashreplace: whatever text a format lets through, a record is always written.
            stream: TextIO = open(  # noqa: SIM115 - closed by the writer
                results, "w", encoding="utf-8", errors="backslashreplace", newline=""
            )
        except OSError as exc:
            message = f"cannot write --results file {results!r}: {exc.strerror}"
            raise click.UsageError(message) from None
        return StreamWriter(
            stream, format_name, close_stream=True, include_body=include_body, meta_column=meta
        )
    if params["body"]:
        return NullWriter()
    stdout = sys.stdout
    if not stdout.isatty():
        stream = buffered_stdout()
        close = stream is not sys.stdout
        return StreamWriter(
            stream, format_name, close_stream=close, include_body=include_body, meta_column=meta
        )
    if display is not None and same_terminal(stdout, sys.stderr):
        return ConsoleWriter(display.console, format_name, include_body, meta)
    from rich.console import Console

    return ConsoleWriter(Console(file=stdout), format_name, include_body, meta)


def make_bodies(params: dict[str, Any]) -> Bodies | None:
    """Where bodies go: -o DIR (created now: a folder that cannot be is a usage error) and/or a
    spool for --body and --include-body; None when only their hashes are kept."""
    folder = params["output_dir"]
    spool = params["body"] or params["include_body"]
    if folder is None and not spool:
        return None
    if folder is not None:
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise click.UsageError(f"--output-dir {folder!r} is a file, not a folder")
        try:
            bodies = Bodies(folder, spool)  # creates DIR and opens it, once for the run
        except OSError as exc:
            raise click.UsageError(f"cannot create --output-dir {folder!r}: {exc}") from None
        on_hard_exit(remove_live_temporaries)
        return bodies
    return Bodies(folder, spool)


def stdout_binary() -> BinaryIO:
    """A buffered binary stream on stdout for --body (our own, like buffered_stdout)."""
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):
        return sys.stdout.buffer  # a test runner's capture
    sys.stdout.flush()
    return open(descriptor, "wb", buffering=1 << 16, closefd=False)  # noqa: SIM115


def buffered_stdout() -> TextIO:
    """Our own buffered UTF-8 stream on stdout's descriptor: records are flushed when the run
    is idle, not once each, even under PYTHONUNBUFFERED (which made that a syscall per record)."""
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):
        return sys.stdout  # not backed by a descriptor (a test runner's capture)
    sys.stdout.flush()
    return open(  # noqa: SIM115 - closed by the writer, which leaves the descriptor open
        descriptor, "w", encoding="utf-8", errors="backslashreplace", newline="",
        buffering=1 << 16, closefd=False,
    )  # fmt: skip


def same_terminal(first: TextIO, second: TextIO) -> bool:
    try:
        return os.path.samestat(os.fstat(first.fileno()), os.fstat(second.fileno()))
    except (OSError, ValueError):
        return False


def silence(stream: TextIO) -> None:
    """After EPIPE, point stream at /dev/null so that the interpreter's last flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def configure_logging(verbose: int, quiet: bool) -> None:
    from fetcher.redact import LOG_FORMAT, RedactingFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if verbose >= 2:
        root.setLevel(logging.DEBUG)
    elif verbose == 1:
        root.setLevel(logging.WARNING)
        logging.getLogger("fetcher").setLevel(logging.INFO)
    else:
        root.setLevel(logging.ERROR if quiet else logging.WARNING)
