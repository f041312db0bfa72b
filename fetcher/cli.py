"""The ``fetcher`` command: options to Settings, open the input and outputs, run, report, exit.

This module, fetcher.options, fetcher.outputs and the display are the only ones that import
click or rich.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import logging
import sys
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import click

from fetcher import __version__
from fetcher.command import SectionedCommand, version_option
from fetcher.input.parsing import AUTO
from fetcher.logs import configure_logging
from fetcher.options import all_options, build_settings, help_sections
from fetcher.redact import redact_quoted_paths, redact_text
from fetcher.status import ExitStatus, exit_status

if TYPE_CHECKING:
    from fetcher.input.reader import InputReader
    from fetcher.output.collector import Collector
    from fetcher.output.display import Display
    from fetcher.output.failed import FailedLines
    from fetcher.outputs import Outputs
    from fetcher.results import Summary
    from fetcher.run.engine import Run
    from fetcher.settings import Settings
    from fetcher.streams import Streams

log = logging.getLogger("fetcher")

# What a run needs (requests, the cookie jar, Rich on a terminal) is imported by fetch() once the
# options are parsed: --version and --help pay only for click (tests/test_imports.py).

STOP_REASONS = {
    ExitStatus.SOME_FAILED: "an output that cannot be written",  # see stop_on_write_error
    ExitStatus.INTERRUPTED: "SIGINT",
    ExitStatus.TERMINATED: "SIGTERM",
    ExitStatus.HANGUP: "SIGHUP",
    ExitStatus.QUIT: "SIGQUIT",
    ExitStatus.BROKEN_PIPE: "a closed standard output",
}

EXAMPLES = """\b
Examples:
  fetcher https://example.org/ https://example.com/
  fetcher -i urls.txt -j 32 --format jsonl > records.jsonl
  grep -o 'https://[^ "]*' log | fetcher --format jsonl | jq -r 'select(.ok|not).url'
  fetcher -q -i urls.txt --failed retry.txt --summary summary.json || echo "exit $?"
  FETCHER_WORKERS=64 fetcher -i urls.txt --ordered
  fetcher -sS -i urls.txt -o mirror -R --results log.txt  # cron: quiet unless one failed

\b
Exit status: 0 all ok (or no URL), 1 some failed, 3 all failed, 2 usage error,
130 after SIGINT, 143 after SIGTERM, 129 after SIGHUP, 131 after SIGQUIT, 141 when the reader
of standard output went away.
"""

CONTEXT_SETTINGS = {"show_default": True, "help_option_names": ["-h", "--help"],
                    "max_content_width": 100}  # fmt: skip


@click.command(
    cls=SectionedCommand,
    sections=help_sections(),
    epilog=EXAMPLES,
    context_settings=CONTEXT_SETTINGS,
)
@click.argument("urls", nargs=-1, metavar="[URL]...")
@all_options
@version_option(__version__)
def main(urls: tuple[str, ...], **params: Any) -> None:
    """Fetch URLs concurrently and print one record per URL, then a summary of every error.

    URLs come from the arguments, from --input files and, when neither is given and standard
    input is not a terminal, from standard input. '-' means standard input.
    """
    automatic = params["processes"] == AUTO
    settings = build_settings(urls, params)  # -s is -q: the log levels come after it
    configure_logging(settings.log_levels)
    if automatic:
        log.info("--processes auto: %d", settings.processes)
    from fetcher.run.descriptors import raise_open_file_limit, too_few_descriptors  # requests

    short = raise_open_file_limit(settings)  # before the first file the run opens
    if (refusal := too_few_descriptors(settings)) is not None:
        raise Refused(refusal)
    if short is not None:
        log.warning(short)
    sys.exit(fetch(settings))


class Refused(click.ClickException):
    """The system refused a thread or a process the run needs: "Error: ..." and exit status 2,
    without the usage lines of a bad option above it."""

    exit_code = int(ExitStatus.USAGE)


def fetch(settings: Settings) -> int:
    """Open the state, the input and outputs, run, report; the exit status. What a run needs is
    imported here, so that --version and --help pay only for click."""
    from fetcher.options import with_password
    from fetcher.outputs import check_output_files, open_input, open_outputs, open_state
    from fetcher.run.build import build_run
    from fetcher.run.executor import RunStartError
    from fetcher.run.signals import hard_exit, on_hard_exit, stop_on_signals
    from fetcher.streams import Streams

    streams = Streams()
    check_output_files(settings, streams)
    settings = with_password(settings)
    with ExitStack() as stack:
        state = open_state(settings, stack)
        reader = open_input(settings, streams, stack, state)
        outputs = open_outputs(settings, streams, stack, state, reader)
        source = reader if outputs.lookup is None else outputs.lookup.reading_ahead(reader)
        run = build_run(settings, source, outputs.collector, bodies=outputs.bodies,
                        jar=outputs.jar, lookup=outputs.lookup,
                        transfers=outputs.display.transfers)  # fmt: skip
        outputs.collector.on_write_error = functools.partial(stop_on_write_error, run, outputs)
        at_hard_exit = SummaryAtHardExit(settings, outputs.summary, reader)
        on_hard_exit(at_hard_exit)
        with stop_on_signals(run.request_stop, run.hard_stop, lambda: run.hard.decided):
            outputs.begin()  # --results emptied only now: an early signal leaves it as it was
            with job_stops(outputs.display), outputs.display:
                try:
                    stopped_by = run.run()
                except RunStartError as exc:  # nothing read, nothing fetched
                    raise Refused(str(exc)) from None
                outputs.summary.finish()
                outputs.display.on_finish(outputs.summary, incomplete(run, outputs, stopped_by))
            status = report(settings, streams, reader, run, outputs, stopped_by, at_hard_exit)
            if stopped_by is not None:
                # Workers may be blocked on servers and the dispatcher on an open stdin pipe: a
                # normal interpreter exit would wait for the first and abort on the second.
                stack.close()
                hard_exit(status)
    return status


def incomplete(run: Run, outputs: Outputs, stopped_by: ExitStatus | None) -> bool:
    """Whether the run ends incomplete, for its last frame (no tick, no ETA): stopped, its
    input not read to the end, or the records' reader gone, also at the last flush, which is
    made here so that the frame knows it (report's close would find it only after the frame,
    s23 r4 5)."""
    if stopped_by is not None or run.books.input_error is not None:
        return True
    from fetcher.output.collector import flush_records

    flush_records(outputs.collector)
    return outputs.collector.reader_gone


def job_stops(display: Display) -> contextlib.AbstractContextManager[None]:
    """A live display is told of a Ctrl-Z (its relay is in place before it starts, so that no
    stop falls between); with none, a stop stays the system's alone, without a Python handler."""
    from fetcher.output.display import NullDisplay
    from fetcher.run.signals import stopping_together

    if isinstance(display, NullDisplay):
        return contextlib.nullcontext()
    return stopping_together(display, display.at_job_stop)


def report(
    settings: Settings,
    streams: Streams,
    reader: InputReader,
    run: Run,
    outputs: Outputs,
    stopped_by: ExitStatus | None,
    at_hard_exit: SummaryAtHardExit,
) -> int:
    """Close the outputs, then report: the summary on stderr and in --summary. Returns the
    exit status: a file that could not be written, or an input that could not be read to its
    end, makes it at least 1. Until --summary and --metrics are written, a hard exit writes
    them with the status it exits with (at_hard_exit); once that status is known, a signal
    exits with it."""
    summary = outputs.summary
    count_left_out(summary, reader)
    outputs.collector.close_writer(run.stopping.is_set)  # a stop cuts the wait for a reader
    problems = [] if outputs.collector.write_error is None else [outputs.collector.write_error]
    if run.books.input_error is not None:  # the rest of the input was never fetched
        problems.append(run.books.input_error)
    problems += commit_failed(outputs, streams, settings) + end_state(settings, streams, outputs)
    problems += save_cookie_jar(settings, streams, run, outputs)
    stopped_by = stopped_by or signalled_at_the_end(run)
    summary.interrupted_by = STOP_REASONS.get(stopped_by) if stopped_by else None
    # A reader gone at the last flush lost records as surely as one gone mid-run: 141 too.
    ended_by = stopped_by or (ExitStatus.BROKEN_PIPE if outputs.collector.reader_gone else None)
    status = final_status(summary, ended_by, bool(problems))

    def decide(status: int) -> None:  # what the files say: a signal from now on exits with it
        run.hard.decided = status

    status = write_summary_files(settings, streams, summary, ended_by, status, decide)
    at_hard_exit.written()
    if not settings.quiet or (settings.show_error and status != ExitStatus.OK):  # curl -sS
        say_unread(streams, outputs.collector)
        print_human_summary(streams, outputs)
    if outputs.collector.reader_gone:
        streams.silence(streams.stdout)
    return status


def signalled_at_the_end(run: Run) -> ExitStatus | None:
    """The signal that stopped a run after its last record, while the records were flushed and
    their pipe's reader waited for, or the outputs closed: the stop cut that wait, and the rows
    of the records not read were dropped, so the run was interrupted, 130 or 143 as anywhere
    else (s24 r8 3: it exited 0). A write error there stops nothing: its own message says it."""
    from fetcher.run.signals import STATUS_BY_SIGNAL

    first = run.hard.first
    return first if first in STATUS_BY_SIGNAL.values() else None


def save_cookie_jar(settings: Settings, streams: Streams, run: Run, outputs: Outputs) -> list[str]:
    """-c FILE: the cookies of every session saved; the problem said, if it cannot be."""
    if not settings.cookie_jar:
        return []
    from fetcher.http.cookies import save_jar

    # The file as it is now (another run may have saved it), with this run's changes only.
    loaded, changes = outputs.jar or (), run.executor.cookie_changes()
    path = settings.cookie_jar
    return write_or_say(streams, "-c", path, lambda: save_jar(path, loaded, changes))


# An end-of-run file: its option, its path and what writes it (summary, path, exit status).
SummaryFile = tuple[str, str, Callable[["Summary", str, int], None]]


def write_summary_files(
    settings: Settings,
    streams: Streams,
    summary: Summary,
    stopped_by: ExitStatus | None,
    status: int,
    decide: Callable[[int], None],
) -> int:
    """Write --summary and --metrics, each with the exit status, and return it. One that cannot
    be written makes the status at least 1: a file written already with the status before is
    then written again, so that every file says the status the process exits with (a second
    failure changes the status no more). A stream (/dev/stdout) cannot be written again: it is
    written once, after the files, with the status they leave. decide is told each status
    before a file says it."""
    from fetcher.output.atomic import written_in_place

    files = summary_files(settings)
    regular = [file for file in files if not written_in_place(file[1])]
    decide(status)
    written = write_each(streams, summary, regular, status)
    failed = len(written) < len(regular)
    final = final_status(summary, stopped_by, True) if failed else status
    decide(final)
    streamed = [file for file in files if written_in_place(file[1])]
    if len(write_each(streams, summary, streamed, final)) < len(streamed):
        final = final_status(summary, stopped_by, True)
        decide(final)
    if final != status:
        write_each(streams, summary, written, final)
    return final


def summary_files(settings: Settings, sync: bool = True) -> list[SummaryFile]:
    """--summary and --metrics, those given, each with what writes it (sync: as
    write_atomically's)."""
    from fetcher.output.metrics import write_metrics
    from fetcher.output.summary import write_summary_json

    metrics = functools.partial(write_metrics, labels=settings.metrics_labels, sync=sync)
    named: list[tuple[str, str | None, Callable[[Summary, str, int], None]]] = [
        ("--summary", settings.summary, functools.partial(write_summary_json, sync=sync)),
        ("--metrics", settings.metrics, metrics),
    ]
    return [(option, path, write) for option, path, write in named if path]


class SummaryAtHardExit:
    """The exit hook that writes --summary and --metrics when a second signal (or SIGQUIT)
    ends the run at once, with the status it exits with: the last run's files stayed, saying
    0, and a cron job's alert on them said nothing. Files only: a stream may wait on a reader
    that is gone. Once report() has written them, it does nothing (``done``).

    What writes them is imported as it is made, not at the exit: the hook may run in the
    signal handler, in the main thread, which the signal may have caught in the middle of
    importing the very same modules (report writes them too) or the codec current_umask opens
    /proc with: seen half done, the import failed, and there was no file and, but once, no word
    (s31 t2 1: "unknown encoding: ascii")."""

    def __init__(
        self, settings: Settings, summary: Summary, reader: InputReader | None = None
    ) -> None:
        self.settings, self.summary, self.done = settings, summary, False
        self.reader = reader  # the lines --unique and --shard left out, counted as it exits
        # Unsynced: the exit's hooks have a second or so in all (s31 t2 1).
        self.files = (summary_files(settings, sync=False)
                      if settings.summary or settings.metrics else [])  # fmt: skip
        if self.files:
            from fetcher.output.atomic import written_in_place

            self.in_place = written_in_place
            codecs.lookup("ascii")

    def written(self) -> None:
        """report() wrote the files: the hook writes none, nor does an exit cut short say them
        missing."""
        from fetcher.run.signals import files_written

        self.done = True
        files_written()

    def __call__(self) -> None:
        from fetcher.run.signals import exiting_status, say_now  # imported at the start

        status = exiting_status()
        if self.done or status is None or not self.files:
            return
        self.summary.interrupted_by = STOP_REASONS.get(ExitStatus(status))
        if self.reader is not None:  # said 0 of each (s34 t2 1)
            count_left_out(self.summary, self.reader)
        for option, path, write in self.files:
            if not self.in_place(path):
                try:
                    write(self.summary, path, status)
                except Exception as exc:  # noqa: BLE001 - exiting all the same: said, not raised
                    # a cron monitor lost its file with no word (t4 4b)
                    say_now(f"fetcher: {cannot_write(option, path, exc)}\n")


def count_left_out(summary: Summary, reader: InputReader) -> None:
    """The summary's count of the lines read that --unique and --shard left out, which only
    the reader knows: at the end, and at a hard exit."""
    summary.duplicates = reader.duplicates
    summary.other_shards = reader.other_shards


def write_each(
    streams: Streams, summary: Summary, files: list[SummaryFile], status: int
) -> list[SummaryFile]:
    """Write each of files with status; return the ones written."""
    return [
        (option, path, write)
        for option, path, write in files
        if not write_or_say(streams, option, path, functools.partial(write, summary, path, status))
    ]


def say_unread(streams: Streams, collector: Collector) -> None:
    """Under --state, the results the state did not take because the records' pipe reader
    did not read their records (it went, or was not reading when the run ended): the
    summary's "changed" counts what was fetched, not what the state keeps, and the next run
    reports those changes again (s24 r8 4: nothing said so). Said with the summary, which it
    qualifies: not under -q."""
    count = collector.unread
    if not count:
        return
    where = collector.records_to
    where = "standard output" if where == "<stdout>" else f"--results {where}"
    streams.say(
        f"fetcher: {count} record{'s were' if count != 1 else ' was'} not read by the reader "
        f"of {where}: the state did not take {'their results' if count != 1 else 'its result'}"
        ", and the next run reports the changes again"
    )


def print_human_summary(streams: Streams, outputs: Outputs) -> None:
    from fetcher.output.terminal import print_summary

    # Plain lines when stderr is not a terminal, even under a forced --progress (SPEC 2.4).
    console = outputs.console if streams.stderr_is_terminal else None
    if console is None and streams.stderr_is_terminal:
        from fetcher.output.terminal import make_console

        console = make_console(stderr=True)
    try:
        print_summary(outputs.summary, streams.stderr, console)
    except OSError:  # `2>&1 | head`, a closed terminal, a full disk: what was for stderr is lost
        streams.silence(streams.stderr)  # and that alone: the exit status stays as it is


def final_status(summary: Any, stopped_by: ExitStatus | None, lost_output: bool) -> int:
    """exit_status, except that an output that could not be written turns 0 into 1: the run
    did not do all it was asked (there is no exit status of its own for that in §2.5)."""
    status = exit_status(summary, stopped_by)
    if lost_output and status is ExitStatus.OK:
        return ExitStatus.SOME_FAILED
    return status


def failed_moved_to(failed: FailedLines) -> str | None:
    """fetcher.output.failed.moved_to, imported where a run needs it, as the run's modules
    are: --version and --help pay only for click."""
    from fetcher.output.failed import moved_to

    return moved_to(failed)


def commit_failed(outputs: Outputs, streams: Streams, settings: Settings) -> list[str]:
    """Rename --failed into place; the problem, if any, as a message (the old FILE is kept).
    A path is quoted as given, its URL passwords masked (`--failed $UNSET URL`), as a usage
    error's. An input it replaces is looked at first: another program may have changed it
    (outputs.input_changes); what that finds is said, under -q too where lines are elsewhere."""
    failed, changes = outputs.failed, outputs.input_changes
    if failed is None:
        return []
    said = [] if changes is None else changes.before_commit()
    moved = failed_moved_to(failed)
    failed.commit()
    said += [] if changes is None else changes.after_commit()
    for line, always in said:
        if always or not settings.quiet:
            streams.say(line)
    if failed.unwritable:
        streams.say(
            f"fetcher: --failed: {failed.unwritable} command-line argument"
            f"{'s' if failed.unwritable > 1 else ''} not written: blank, a comment, with a "
            "line break, or beside --input-format jsonl or csv, they would not read back as "
            "themselves (see their records)"
        )
    if retry := outputs.collector.retry.as_url:
        streams.say(
            f"fetcher: --failed: {retry} line{'s' if retry > 1 else ''} of another input format "
            f"than its first written as {'their' if retry > 1 else 'its'} URL alone (options "
            f"and meta not kept): read it back with --input-format {outputs.collector.retry.form}"
        )
    if failed.error is None and moved is not None:  # kept, not where it was asked (t6 5)
        streams.say(redact_quoted_paths(redact_text(
            f"fetcher: --failed: {failed.file.folder_path!r} was moved during the run: its "
            f"list is at {moved!r}")))  # fmt: skip
    if failed.error is None:
        return []
    error = failed.error.strerror or failed.error
    # The name tried: beside FILE when FILE was left to the program that changed it.
    text = f"cannot write --failed file {failed.file.path!r}: {error}"
    message = redact_quoted_paths(redact_text(text))
    streams.say(f"fetcher: {message}")
    return [message]


def write_or_say(
    streams: Streams, option: str, path: str, write: Callable[[], object]
) -> list[str]:
    """Write a file at the end of the run; a failure (a full disk: the folder was checked
    before the run) is one line on stderr and a message in the returned list, not a traceback."""
    try:
        write()
    except OSError as exc:
        message = cannot_write(option, path, exc)
        streams.say(f"fetcher: {message}")
        return [message]
    return []


def cannot_write(option: str, path: str, exc: Exception) -> str:
    """The message for a file of option's not written, at the run's end or at a hard exit."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return redact_quoted_paths(redact_text(f"cannot write {option} file {path!r}: {reason}"))


def end_state(settings: Settings, streams: Streams, outputs: Outputs) -> list[str]:
    """--state at the run's end: whether its file was moved away (``state_moved``), then its
    close, before the status is decided (``close_state``); the problems, as messages."""
    return state_moved(settings, streams, outputs) + close_state(streams, outputs)


def close_state(streams: Streams, outputs: Outputs) -> list[str]:
    """Close --state, its last rows committed. One dying disk fails the records' write and
    then this commit: it raised out of the exit stack after the summary, two chained
    tracebacks, and the uncaught exception made the status (s25 h1 3). Now the problem is one
    line on stderr (not said again when the run's write error said it already) and the status
    at least 1. The exit stack's close after this does nothing (State.close is idempotent)."""
    state = outputs.collector.state
    if state is None:
        return []
    import sqlite3  # loaded already: the state is open

    try:
        state.close()
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        text = f"cannot write state to {state.given!r}: {reason}"
        message = redact_quoted_paths(redact_text(text))
        if message != outputs.collector.write_error:
            streams.say(f"fetcher: {message}")
        return [message]
    return []


def state_moved(settings: Settings, streams: Streams, outputs: Outputs) -> list[str]:
    """--state FILE removed or replaced during the run: the run's results are in no file
    anyone can open. Said on stderr, and in the returned list (the status at least 1)."""
    state = outputs.collector.state
    if state is None:
        return []
    from fetcher.state.store import unlinked  # with --state only: it imports SQLite

    if not unlinked(state):
        return []
    message = redact_quoted_paths(
        redact_text(
            f"--state file {settings.state!r} was removed or replaced during the run: "
            "its results are lost"
        )
    )
    streams.say(f"fetcher: {message}")
    return [message]


def stop_on_write_error(run: Run, outputs: Outputs, message: str) -> None:
    """Records cannot be written (a full disk): say so once, above the display if there is
    one, and stop the run as an interrupt would, so that what was not fetched goes to --failed
    instead of being fetched for nothing."""
    outputs.display.say(f"fetcher: {message}")
    run.request_stop(ExitStatus.SOME_FAILED)
