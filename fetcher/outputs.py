"""Opening everything a run reads and writes, before the first request: the input sources, the
records' output, saved bodies, --failed, the cookie jar and the display. A problem with any of
them is a usage error now (exit 2), not a traceback once the work is done."""

from __future__ import annotations

import functools
import os
import stat
import threading
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from http.cookiejar import CookieJar
from itertools import chain, combinations, product
from typing import TYPE_CHECKING, BinaryIO, TextIO

import click

from fetcher.http.cookies import load_jar
from fetcher.input.reader import InputReader, Source
from fetcher.options import urls_from_stdin
from fetcher.output.atomic import (
    MAX_LINKS,
    TO_STDOUT,
    FileIdentity,
    abort_unfinished,
    empty_in_place,
    file_identity,
    is_own_stream,
    is_stream,
    note_files_at_start,
    open_in_place,
    opened_fifo_problem,
    output_problem,
    own_descriptor,
)
from fetcher.output.bodies import Bodies, remove_live_temporaries, spool_in_memory
from fetcher.output.collector import Collector
from fetcher.output.display import Display, NullDisplay
from fetcher.output.failed import FailedLines
from fetcher.output.input_changes import InputChanges, file_state
from fetcher.output.terminal import ConsoleWriter
from fetcher.output.writers import NullWriter, RecordWriter, StreamWriter
from fetcher.owners import changed_while_looked_at
from fetcher.results import Summary
from fetcher.run.signals import on_hard_exit, say_now
from fetcher.settings import Settings
from fetcher.streams import Streams

if TYPE_CHECKING:
    from rich.console import Console

    from fetcher.state.lookup import StateLookup
    from fetcher.state.store import State

# Every file a run writes, checked before the first request: (option, its Settings field,
# whether it is replaced by a rename, so that its folder must be writable). One line per file.
OUTPUT_FILES = (
    ("--failed", "failed", True),
    ("--results", "results", False),  # streamed while the run goes, like a shell's `>`
    ("--summary", "summary", True),
    ("--metrics", "metrics", True),
    ("-c", "cookie_jar", True),
    ("--state", "state", True),  # SQLite writes its -wal and -shm files beside it
)
# The files opened where fetcher.owners.resolve's walk leads (state.database.check_folders,
# http.cookies.jar_file), links followed before a '..' is taken: their folder is that one.
WALKED = frozenset({"-c", "--state"})
CLOSE_INPUT_WAIT = 0.2  # seconds an input that is no file is waited for at its close
# What '-' is told to name instead, where /dev/stdout is refused next: the state's is a link
# fetcher does not open, and a jar on a pipe is a FIFO, which cannot be read back and replaced.
DASH_ADVICE = {
    "-c": "the cookie jar cannot be standard output (curl's `-c -`): it is read at the start "
    "and replaced at the end; name a file",
    "--state": "name the state's database file (read and written all run long, never a stream)",
}


@dataclass
class Outputs:
    """What a run writes to, opened: records go through the collector."""

    summary: Summary
    display: Display
    console: Console | None  # the live display's, shared by records and the summary; or None
    writer: RecordWriter
    collector: Collector
    failed: FailedLines | None
    bodies: Bodies | None
    jar: CookieJar | None
    lookup: StateLookup | None  # what the dispatcher asks --state about each URL
    # Called once the run's signal handlers are in place: --results emptied (empty_results).
    begin: Callable[[], None] = lambda: None
    # The inputs --failed replaces, looked at again before its rename (s27 t2 2); or None.
    input_changes: InputChanges | None = None


def open_state(settings: Settings, stack: ExitStack) -> State | None:
    """Open, lock and migrate --state FILE now: another run holding it, or a file that is not
    a fetcher state, is a usage error before anything is fetched."""
    path = settings.state
    if path is None:
        return None
    import sqlite3  # only with --state: a run without one does not load SQLite

    from fetcher.state.database import StateError
    from fetcher.state.store import State, move_log_at_hard_exit

    existed = os.path.lexists(path)
    if settings.retry_failed and not existed:  # a typo would retry nothing, exit 0, for ever
        raise click.UsageError(
            f"no such --state file {path!r}: --retry-failed retries the failures a run with "
            "--state FILE recorded in it"
        )
    try:
        state = State(path)
    except StateError as exc:
        raise click.UsageError(f"--state file {path!r} {exc}") from None
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise click.UsageError(f"cannot open --state file {path!r}: {reason}") from None
    if not existed:  # pushed first, so it runs once the state is closed
        stack.push(functools.partial(_remove_if_refused, state.path, os.stat(state.path)))
    stack.callback(state.close)
    # First, before --failed's commit, which may wait: it never does (s23 r2 2).
    on_hard_exit(functools.partial(move_log_at_hard_exit, state), first=True)
    return state


def _remove_if_refused(
    path: str, made: os.stat_result, kind: type[BaseException] | None, *_: object
) -> None:
    """An exit callback: the run was refused (a usage error after the state was opened, or a
    worker that could not start) before it read a line, so the state it made holds nothing.
    Only that very file goes: the name may have been taken since by another."""
    if kind is None or not issubclass(kind, click.ClickException):
        return
    try:
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino):
            os.unlink(path)
    except OSError:
        pass  # not ours to report: the refusal is what the user sees


def open_input(
    settings: Settings, streams: Streams, stack: ExitStack, state: State | None = None
) -> InputReader:
    if settings.retry_failed and state is not None:
        sources = [Source("--retry-failed", stored=state.failed_lines())]
    else:
        sources = open_sources(settings, streams, stack)
    return InputReader(sources, settings.default_scheme, settings.unique,
                       settings.input_format, settings.shard)  # fmt: skip


def open_sources(settings: Settings, streams: Streams, stack: ExitStack) -> list[Source]:
    """Open every input now, so that a missing file is a usage error before anything is
    fetched. URL arguments keep their place around '-' (standard input)."""
    sources: list[Source] = []
    arguments: list[str] = []
    for url in settings.urls:
        if url == "-":
            if arguments:
                sources.append(Source("arguments", arguments=tuple(arguments)))
                arguments = []
            sources.append(stdin_source(streams))
        else:
            arguments.append(url)
    if arguments:
        sources.append(Source("arguments", arguments=tuple(arguments)))
    for path in settings.inputs:
        if path == "-":
            sources.append(stdin_source(streams))
            continue
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed by the stack
        except OSError as exc:
            raise click.UsageError(f"cannot read input file {path!r}: {exc.strerror}") from None
        stack.callback(close_input, stream)
        sources.append(Source(path, stream=stream))
    if not sources:
        if streams.stdin_is_terminal:
            raise click.UsageError("no URL given: pass URLs, --input FILE, or pipe a list in")
        sources.append(stdin_source(streams))
    return sources


def close_input(stream: BinaryIO) -> None:
    """Close an -i FILE. One that is no regular file (a FIFO, <(cmd), /dev/fd/N) is closed on a
    thread of its own, waited for a moment: after a stop, the reader blocked in it holds its
    buffer's lock until the writer writes, and the close waited for that, the run not ending
    until a second signal (s29 t3 2); the process exits at once after it. Read to its end
    (the run's end), it closes at once."""
    try:
        regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        regular = True
    if regular:
        stream.close()
        return
    closing = threading.Thread(target=stream.close, name="fetcher-close-input", daemon=True)
    closing.start()
    closing.join(CLOSE_INPUT_WAIT)


def stdin_source(streams: Streams) -> Source:
    """Standard input as a source of URLs; a usage error when it was closed at start (`<&-`)."""
    if streams.stdin is None:
        raise click.UsageError("cannot read URLs from standard input: standard input is closed")
    return Source("<stdin>", stream=streams.stdin_binary())


def check_output_files(settings: Settings, streams: Streams | None = None) -> None:
    """A file inside -o DIR, a missing or unwritable folder, a directory, no name, or two
    options naming one file where one would destroy the other's data: a usage error now; a
    path whose links changed while they were looked at too (changed_while_looked_at)."""
    try:
        _check_output_files(settings, streams)
    except OSError as error:
        raise click.UsageError(changed_while_looked_at(error)) from None


def _check_output_files(settings: Settings, streams: Streams | None) -> None:
    check_outside_output_dir(settings, streams)
    paths = []
    for option, field_name, replaced in OUTPUT_FILES:
        path = getattr(settings, field_name)
        if path is None:
            continue
        walked = option in WALKED  # opened where the owners walk leads
        problem = output_problem(path, replaced, DASH_ADVICE.get(option, TO_STDOUT), walked)
        if problem is not None:
            raise click.UsageError(f"cannot write {option} file {path!r}: {problem}")
        paths.append(path)
    check_same_files(settings, streams)
    note_files_at_start(paths)


def check_outside_output_dir(settings: Settings, streams: Streams | None = None) -> None:
    """Refuse a run file inside -o DIR: a saved body could replace it (a URL's path, a -J name,
    a line's output naming it: --results would lose every record, --state its history), and
    one renamed into place at the end could replace a body the records say is there. DIR as
    the system finds it, links and all; a file read or written through links (a URL list,
    standard input's file, --results) where the links lead, too."""
    if not settings.output_dir:
        return
    folder = os.path.realpath(settings.output_dir)
    # (option, path, read through links, only read): a file only read may be at DIR's top.
    files = [(option, getattr(settings, name), not replaced, False)
             for option, name, replaced in OUTPUT_FILES]  # fmt: skip
    files += [("-i", path, True, True) for path in settings.inputs]
    files += [("standard input", path, True, True) for path in stdin_file(settings, streams)]
    files += [(option, path, True, True) for option, path in tls_files(settings)]
    # --retry-failed's lines come from the state, a jsonl line's output with them, whatever
    # --input-format says (s38 r2 1: a retried line replaced a CA at DIR's top).
    lines = settings.input_format == "lines" and not settings.retry_failed
    for option, path, through_links, read_only in files:
        if path is None or path == "-":
            continue
        places = [] if is_stream(path) else [os.path.dirname(path) or os.curdir]
        if through_links:  # /dev/stdin too: it leads to the file standard input is
            places.append(os.path.dirname(os.path.realpath(path)))
        for place in places:
            check_not_inside(option, path, place, folder, lines, read_only)


def tls_files(settings: Settings) -> list[tuple[str, str]]:
    """The files the run trusts or proves itself with, by option (or variable): each is read
    again for every new connection, so a body saved over one (a line's output, a -J name)
    chose whom the rest of the run trusted (s38 t1 1)."""
    files = [("--cacert", settings.verify)] if isinstance(settings.verify, str) else []
    if settings.verify is True:
        from fetcher.http.environment import ca_bundle_variable

        files += [found] if (found := ca_bundle_variable()) is not None else []
    cert = settings.client_cert
    pair = (cert, None) if isinstance(cert, str) else cert or (None, None)
    options = ("--cert", "--key")
    files += [(option, path) for option, path in zip(options, pair, strict=True) if path]
    return files


def check_not_inside(
    option: str, path: str, place: str, folder: str, lines: bool, read_only: bool = False
) -> None:
    """Refuse path (given as option) if it is DIR (folder, resolved) or above it, or if place,
    its folder, is inside DIR. A file the run only reads (read_only: a list, a CA) may be at
    DIR's top beside a list of plain URLs (lines): from it a body goes into a host's folder only
    (-o . -i urls.txt, -o . --cacert ca.pem: s38 r1 1), unlike a jsonl or csv line's output."""
    itself = os.path.realpath(path)
    if itself == folder or folder.startswith(itself + os.sep):
        raise click.UsageError(
            f"{option} {path!r} is -o DIR or a folder above it, which the bodies are saved "
            "under: give it a file of its own, outside DIR"
        )
    where = os.path.realpath(place)  # link/.. as the system finds it
    top_is_safe = lines and read_only
    if (where == folder and not top_is_safe) or where.startswith(folder + os.sep):
        # At the top, where it passes beside plain URLs: say what its neighbours may name.
        beside = " (beside lines that may name any file in it)" if read_only else ""
        raise click.UsageError(
            f"{option} {path!r} is inside -o DIR{beside if where == folder else ''}, where a "
            "saved body could replace it (or it a body): give it a place outside DIR"
        )


def stdin_file(settings: Settings, streams: Streams | None) -> list[str]:
    """The path of the regular file standard input is redirected from (`< list.txt`), when the
    run reads its URLs there: the name /proc/self/fd gives it, if that name still leads to that
    very file (a file renamed or removed since is no name a body could be saved to)."""
    reads = urls_from_stdin(settings.urls, settings.inputs, settings.retry_failed)
    if not reads or streams is None or streams.stdin is None:
        return []
    try:
        number = streams.stdin.fileno()
        found = os.fstat(number)
        path = os.readlink(f"/proc/self/fd/{number}")
        named = os.stat(path)
    except (OSError, ValueError):  # no descriptor (a test runner's input), no /proc
        return []
    same = (found.st_dev, found.st_ino) == (named.st_dev, named.st_ino)
    return [path] if same and stat.S_ISREG(found.st_mode) else []


# Why two options may not name one file, by the second of them (any other: two outputs).
SAME_FILE = {
    "--state": "the state database would be lost",
    "--input": "the input would be lost",
    "standard input": "the input would be lost",
}

NO_LIST = ("--results", "--summary", "--metrics")  # outputs that may never replace an input
Named = tuple[str, str, FileIdentity | None]  # an option, its path, what file that is


def check_same_files(settings: Settings, streams: Streams | None = None) -> None:
    """Refuse one file named by two outputs (the last one written would replace the other), by
    an output and --state, or by an input and --results (emptied as the run starts), --summary
    or --metrics (no list of URLs: after an interrupt, the unread rest of the list was lost).
    --failed and -c may name an input: they are written at the end, --failed with the unread
    rest (`-i retry.txt --failed retry.txt` is the documented retry loop)."""
    outputs: list[Named] = [
        (option, path, file_identity(path, replaced))
        for option, field_name, replaced in OUTPUT_FILES
        if option != "--state" and (path := getattr(settings, field_name)) is not None
    ]
    outputs += records_file(settings, streams)
    state = state_files(settings.state)
    inputs = input_files(settings, streams)
    check_read_twice(settings, inputs)
    check_read_back(settings, streams)
    check_records_apart_from_bodies(settings, streams)
    results = [named for named in outputs if named[0] in NO_LIST]
    pairs = chain(combinations(outputs, 2), product(outputs, state), product(results, inputs),
                  product(inputs, state[:1]))  # fmt: skip
    for (first, path, identity), (second, _, other) in pairs:
        if identity is not None and identity == other:
            why = SAME_FILE.get(second, "one would replace the other")
            if second.startswith("--state's "):
                why = COMPANION
            if second == "--state" and first in ("--input", "standard input"):
                why = "the state database would be read as a list of URLs"
            raise click.UsageError(f"{first} and {second} name the same file {path!r}: {why}")


# Why an output may not be the state's -wal, -shm or -journal (state.database.COMPANIONS).
COMPANION = (
    "SQLite removes that file as the state is closed, or reads it into the state as the next run "
    "opens it: what the run wrote there would be lost"
)


def state_files(path: str | None) -> list[Named]:
    """--state's file (opened through links), then its companions, by the names SQLite gives
    them: an output named as one was removed by SQLite at the close (a -wal, a -shm) or as the
    next run opened the state (a -journal), without a word (s27 t7 5). Missing, a companion is
    known by its path, as a missing output is (file_identity)."""
    if path is None:
        return []
    from fetcher.state.database import COMPANIONS  # only with --state: no SQLite otherwise

    named: list[Named] = [("--state", path, file_identity(path, False))]
    for suffix in COMPANIONS:
        companion = path + suffix
        named.append((f"--state's {suffix} file", companion, file_identity(companion, True)))
    return named


def check_read_twice(settings: Settings, inputs: list[Named]) -> None:
    """Refuse a file read twice as an input (by its identity: another spelling, a hard link,
    standard input redirected from it) that --failed replaces, unless --unique: each failed line
    went to --failed once per reading, so `-i F -i F --failed F` doubled F every round (s25 h3
    5). Read twice without --failed replacing it, a URL listed twice is fetched twice, as ever."""
    if settings.failed is None or settings.unique:
        return
    read = [path for _, path, identity in inputs if replaces_input(settings.failed, path, identity)]
    if len(read) > 1:
        raise click.UsageError(
            f"--input {read[0]!r} is read twice and --failed replaces it: each of its lines that "
            "failed would be written twice, and the list double every run; name it once, or "
            "add --unique"
        )


def check_read_back(settings: Settings, streams: Streams | None) -> None:
    """Refuse a --failed that is a FIFO the run reads URLs from (by a name, a link, or as
    standard input): --failed goes into a FIFO in place, during the run, so each failed URL
    came back as input and was fetched again, and the run, a writer of its own input, never
    saw its end (s27 r6: 769 requests in 19 s until `timeout`)."""
    if settings.failed is None or (fifo := fifo_identity(settings.failed)) is None:
        return
    read = [path for path in settings.inputs if path != "-" and fifo_identity(path) == fifo]
    reads_stdin = urls_from_stdin(settings.urls, settings.inputs, settings.retry_failed)
    if reads_stdin and streams is not None and streams.stdin is not None:
        with suppress(OSError, ValueError):
            found = os.fstat(streams.stdin.fileno())
            read += ["standard input"] if (found.st_dev, found.st_ino) == fifo else []
    if read:
        raise click.UsageError(
            f"--failed {settings.failed!r} is a FIFO the run reads URLs from ({read[0]}): each "
            "failed URL would be read back and fetched again, and the run would never end; "
            "write --failed to a file"
        )


def fifo_identity(path: str) -> FileIdentity | None:
    """The device and inode of the FIFO path leads to, None for anything else."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISFIFO(found.st_mode) else None


def check_records_apart_from_bodies(settings: Settings, streams: Streams | None) -> None:
    """--body writes the bodies to standard output: a --results that names it too (/dev/stdout,
    or the file stdout goes to) had the records written over the bodies' start, through an
    offset of its own, and exited 0 (s31 r2 3). Refused, as a usage error, when stdout is a
    regular file: a pipe, a terminal or /dev/null has no offset, and takes both in turn."""
    if not settings.body or settings.results is None or streams is None or streams.stdout_closed:
        return
    try:
        stdout = os.fstat(streams.stdout.fileno())
        same = stat.S_ISREG(stdout.st_mode) and os.path.samestat(os.stat(settings.results), stdout)
    except (OSError, ValueError):  # not there yet, or no descriptor (a test runner's output)
        return
    if same:
        raise click.UsageError(
            f"--results {settings.results!r} is standard output, where --body writes the "
            "bodies: give --results a file of its own"
        )


def records_file(settings: Settings, streams: Streams | None) -> list[Named]:
    """The regular file the records stream into through standard output (`> out.txt`, or
    `--results /dev/stdout`): a --failed or --summary replacing that file at the end would take
    the records with it."""
    try:
        if settings.results is not None:
            if not is_stream(settings.results):
                return []  # a file of its own: file_identity has it
            found, name = os.stat(settings.results), "--results"
        elif streams is not None and not streams.stdout_closed:
            found, name = os.fstat(streams.stdout.fileno()), "standard output"
        else:
            return []
    except (OSError, ValueError):  # not backed by a descriptor (a test runner's output)
        return []
    return regular_file(name, found)


def regular_file(name: str, found: os.stat_result) -> list[Named]:
    """name as a Named file when what it stands for is a regular file; else nothing."""
    return [(name, "-", (found.st_dev, found.st_ino))] if stat.S_ISREG(found.st_mode) else []


def input_identity(path: str) -> FileIdentity | None:
    """The file an --input path is read from: a name for one of this process's descriptors
    (/dev/stdin, /dev/fd/3) is that descriptor's file (s25 r6 2: it had none, and `-i F -i
    /dev/stdin --failed F < F` doubled F); any other, as file_identity finds it."""
    number = own_descriptor(os.path.abspath(path))
    if number is None:
        return file_identity(path, False)
    try:
        found = os.fstat(number)
    except OSError:
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISREG(found.st_mode) else None


def replaces_input(failed: str, path: str, identity: FileIdentity | None) -> bool:
    """Whether --failed FILE, renamed over its name at the end, replaces what the input path
    was read from (identity): that file, or any link path was read through, which --failed
    replaces itself (s25 r6 1: `-i sl --failed sl` with sl a link matched neither; s25 r7 3:
    `-i l2 --failed l1`, l2 -> l1 -> list, the link in between was not looked at)."""
    replaced = file_identity(failed, True)
    if identity is not None and identity == replaced:
        return True
    return replaced in links_through(path)


def links_through(path: str) -> list[FileIdentity]:
    """Each link met on the way from path's last name to what it leads to, in order: a link's
    target taken from the folder it is in (as the kernel does: no normalising, so a '..' after
    a link to a folder goes where the kernel goes). At most MAX_LINKS, the kernel's own bound:
    a loop ends there, and its open fails anyway."""
    found: list[FileIdentity] = []
    for _ in range(MAX_LINKS):
        try:
            link = os.lstat(path)
            if not stat.S_ISLNK(link.st_mode):
                break
            found.append((link.st_dev, link.st_ino))
            path = os.path.join(os.path.dirname(path), os.readlink(path))
        except OSError:
            break
    return found


def input_files(settings: Settings, streams: Streams | None) -> list[Named]:
    """The files the run reads URLs from: each --input FILE, and standard input when it is
    read and redirected from a file (`fetcher --results urls.txt < urls.txt`)."""
    inputs: list[Named] = [("--input", path, input_identity(path))
                           for path in settings.inputs if path != "-"]  # fmt: skip
    reads_stdin = urls_from_stdin(settings.urls, settings.inputs, settings.retry_failed)
    if reads_stdin and streams is not None and streams.stdin is not None:
        try:
            found = os.fstat(streams.stdin.fileno())
        except (OSError, ValueError):  # not backed by a descriptor (a test runner's input)
            return inputs
        inputs += regular_file("standard input", found)
    return inputs


def open_outputs(
    settings: Settings,
    streams: Streams,
    stack: ExitStack,
    state: State | None = None,
    reader: InputReader | None = None,
) -> Outputs:
    """Open every output; the display, if shown, counts reader's URLs ahead of the run."""
    # Whatever may still refuse the run comes before --results is opened, which empties it.
    jar = open_cookie_jar(settings.cookie_jar)
    bodies = make_bodies(settings)
    if bodies is not None:
        stack.callback(bodies.close)  # DIR's descriptor: no descriptor outlives main()
    failed = open_failed(settings.failed, settings.input_format == "lines", streams)
    changes = None
    if failed is not None:
        stack.callback(failed.abort)  # a run that ends in an error keeps the old FILE
        changes = watch_replaced(settings, reader, failed)
    summary = Summary()
    display, console = make_display(settings, streams, summary, reader)
    display.take_over_logging()
    show_failed_above(failed, streams, console)
    writer = make_writer(settings, streams, console)
    summary.start()  # the run's clock: the set-up above (Rich's import) is not the run
    body_stream = streams.binary_stdout() if settings.body else None
    records_to = "<stdout>" if settings.results is None else repr(settings.results)
    collector = Collector(summary, writer, display, failed, body_stream, records_to, state=state)
    # A second signal exits at once, but --failed is renamed into place first (with the lines
    # of records buffered, which the exit may cut off), and what is buffered reaches its file
    # last: a flush may wait for a reader that never reads (the collector skips it then).
    on_hard_exit(collector.commit_failed_now, first=True)  # the watchdog waits for it
    on_hard_exit(display.at_hard_exit)
    on_hard_exit(abort_unfinished)  # the jar, --summary, --metrics: their old files stay
    on_hard_exit(collector.flush_at_exit, last=True)
    lookup = None if state is None else _state_lookup(state, settings, bodies)
    begin = functools.partial(empty_results, settings.results, writer)
    return Outputs(summary, display, console, writer, collector, failed, bodies, jar, lookup, begin,
                   changes)  # fmt: skip


def watch_replaced(
    settings: Settings, reader: InputReader | None, failed: FailedLines
) -> InputChanges:
    """The inputs --failed replaces, found now: they get other shards' lines (--shard), and
    are looked at again before the rename (InputChanges), also by a hard exit's hooks: one
    first, before --failed's commit (registered before it: first hooks run in order), which
    sends it beside a file changed since it was read (s27 r6 1); one after, which says so."""
    replaced = [] if reader is None else replaced_sources(failed.path, reader.sources)
    keep_other_shards(settings, replaced, failed)
    at_start = None if replaced else file_state(failed.path)
    changes = InputChanges(failed, replaced, settings.input_format, at_start)
    on_hard_exit(changes.before_hard_commit, first=True)
    on_hard_exit(functools.partial(say_at_hard_exit, changes))
    return changes


def say_at_hard_exit(changes: InputChanges) -> None:
    """A hard exit's hook, after --failed's commit: where it went if the end's look had it
    beside the input it replaces (a second signal during the look: s27 r3 4)."""
    if (message := changes.at_hard_exit()) is not None:
        say_now(message + "\n")


def empty_results(path: str | None, writer: RecordWriter) -> None:
    """--results FILE emptied, as `>` empties it at its open, but only now that the run's signal
    handlers are in place: before them, a signal exits at once (__main__), and an emptied FILE
    then went with no summary, no --failed and no word (s25 h3 4). The records' first bytes (a
    csv header) are still in the writer's buffer: nothing was written to the file yet."""
    if path is None or not isinstance(writer, StreamWriter) or is_own_stream(path):
        return
    try:
        empty_in_place(writer.stream.fileno())
    except OSError as exc:
        raise click.UsageError(f"cannot write --results file {path!r}: {exc.strerror}") from None


def _state_lookup(state: State, settings: Settings, bodies: Bodies | None) -> StateLookup:
    """What the dispatcher asks the state of each job: its row by its request (state_key), and
    whether it may be skipped as fresh (not a part the user's Range asks for: asks_a_part; under
    --processes with -o, as its worker process finds: StateLookup._kept)."""
    from fetcher.http.request import asks_a_part, state_key
    from fetcher.state.lookup import StateLookup

    return StateLookup(
        state,
        lambda job: state_key(job, settings),
        settings.skip_fresh,
        bodies,
        lambda job: asks_a_part(job, settings),
        in_workers=settings.processes > 1,  # as build_run decides
    )


def keep_other_shards(settings: Settings, replaced: list[Source], failed: FailedLines) -> None:
    """Under --shard, a --failed that replaces an input (`-i list --failed list`, the retry loop
    run by each shard) gets that input's lines of the other shards too, as they are read: they
    were not this run's to judge. Without them, each shard's run cut the list to its own
    failures, and the next shard's found nothing left and exited 0 (s25 h3 2). Only the file
    replaced: another input's lines of other shards are still in that input."""
    if settings.shard is None:
        return
    for source in replaced:
        source.other_shards_to = failed.add


def replaced_sources(failed: str, sources: list[Source]) -> list[Source]:
    """The sources read from a regular file that --failed FILE replaces at the end: found as
    the run starts, before another program can move a file to FILE's name."""
    found = []
    for source in sources:
        if source.stream is None:
            continue
        try:
            stats = os.fstat(source.stream.fileno())
        except (OSError, ValueError, AttributeError):  # not backed by a descriptor
            continue
        identity = (stats.st_dev, stats.st_ino) if stat.S_ISREG(stats.st_mode) else None
        if replaces_input(failed, source.name, identity):
            found.append(source)
    return found


def open_cookie_jar(path: str | None) -> CookieJar | None:
    if path is None:
        return None
    try:
        return load_jar(path)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def open_failed(path: str | None, plain_lines: bool, streams: Streams) -> FailedLines | None:
    if path is None:
        return None
    try:
        return FailedLines(path, plain_lines, streams.terminal_encoding())
    except OSError as exc:
        raise click.UsageError(f"cannot write --failed file {path!r}: {exc.strerror}") from None


def show_failed_above(
    failed: FailedLines | None, streams: Streams, console: Console | None
) -> None:
    """--failed naming the live display's terminal: its lines are printed through the display's
    console, above it; written beside it, they were glued into a frame, or erased (s26 h5 1)."""
    if failed is None or console is None or failed.shown_as is None:
        return
    if streams.same_terminal(failed.file.fd):
        from fetcher.output.terminal import print_lines

        failed.show = functools.partial(print_lines, console)


def make_display(
    settings: Settings, streams: Streams, summary: Summary, reader: InputReader | None = None
) -> tuple[Display, Console | None]:
    """The Rich display on stderr and its console, or a NullDisplay and no console when progress
    is off (imports Rich only if needed). The display counts reader's URLs in the background."""
    show = settings.progress
    if show is None:
        # Bodies written to the display's own terminal would be drawn over: as curl shows no
        # progress meter when its output is the terminal, none is shown then.
        bodies_there = settings.body and streams.stdout_is_terminal
        show = not settings.quiet and streams.stderr_is_terminal and not bodies_there
    if not show:
        return NullDisplay(streams.stderr), None
    from fetcher.output.progress import RichProgress

    display = RichProgress(summary, count_total=None if reader is None else reader.count_ahead)
    return display, display.console


def make_writer(settings: Settings, streams: Streams, console: Console | None) -> RecordWriter:
    """Records go to --results, else stdout (nowhere with --body): through Rich on a terminal,
    plainly otherwise."""
    kind, include_body = settings.format, settings.include_body
    shape = {
        "include_body": include_body,
        # A csv meta column: only inputs with meta have one (--retry-failed's may).
        "meta_column": settings.input_format != "lines" or settings.retry_failed,
        "state": settings.state is not None,
    }
    if streams.stdout_closed and (settings.body or settings.results is None):  # `>&-`
        needs = "--body writes: use -o DIR" if settings.body else "records go: use --results FILE"
        raise click.UsageError(f"standard output is closed, where {needs}")
    if settings.results is not None:
        stream = open_results(settings.results, streams)
        if stream.isatty():  # /dev/stderr, /dev/tty...: for eyes, as a terminal stdout is
            return terminal_writer(stream, streams, console, kind, shape)
        return StreamWriter(stream, kind, close_stream=True, **shape)
    if settings.body:
        return NullWriter()
    if not streams.stdout_is_terminal:
        stream = streams.buffered_stdout()
        return StreamWriter(stream, kind, close_stream=stream is not streams.stdout, **shape)
    return terminal_writer(None, streams, console, kind, shape)


def terminal_writer(
    opened: TextIO | None,
    streams: Streams,
    console: Console | None,
    kind: str,
    shape: dict[str, bool],
) -> ConsoleWriter:
    """Records for a terminal: opened (a --results naming one), or standard output (None).
    On the live display's terminal, through its console, above it: written beside it, they
    were glued into a frame and erased by the next redraw (s26 h5 1)."""
    descriptor = None if opened is None else opened.fileno()
    if console is not None and streams.same_terminal(descriptor):
        if opened is not None:
            opened.close()  # the display's console writes to that terminal already
        return ConsoleWriter(console, kind, **shape)
    from fetcher.output.terminal import make_console

    file = streams.terminal_stdout() if opened is None else opened
    return ConsoleWriter(make_console(file=file), kind, close_file=opened is not None, **shape)


def open_results(path: str, streams: Streams) -> TextIO:
    """--results FILE opened as the shell's `>` would (open_in_place: not a link or a file of
    another user's planted where they could), as a text stream, not emptied yet (empty_results
    does it, once the run's signal handlers are in place). Problems are usage errors. UTF-8,
    but for a terminal, written in its own encoding, as a terminal stdout is."""
    try:
        fd = open_in_place(path, empty=False)
    except OSError as exc:
        raise click.UsageError(f"cannot write --results file {path!r}: {exc.strerror}") from None
    encoding = streams.terminal_encoding() if os.isatty(fd) else "utf-8"
    # backslashreplace: whatever text a format lets through, a record is always written.
    stream = open(fd, "w", encoding=encoding, errors="backslashreplace", newline="")  # noqa: SIM115
    if (foreign := opened_fifo_problem(stream.fileno(), path, follow=True)) is not None:
        stream.close()
        raise click.UsageError(f"cannot write --results file {path!r}: {foreign}")
    return stream


def make_bodies(settings: Settings) -> Bodies | None:
    """Where bodies go: -o DIR (created now: a folder that cannot be is a usage error) and/or a
    spool for --body and --include-body; None when only their hashes are kept."""
    folder = settings.output_dir
    spool = settings.body or settings.include_body
    if folder is None and not spool:
        return None
    in_memory = spool_in_memory(settings.window)
    if folder is None:
        return Bodies(folder, spool, in_memory)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise click.UsageError(f"--output-dir {folder!r} is a file, not a folder")
    try:
        bodies = Bodies(folder, spool, in_memory)  # creates DIR and opens it, once for the run
    except OSError as exc:
        raise click.UsageError(f"cannot create --output-dir {folder!r}: {exc}") from None
    on_hard_exit(remove_live_temporaries, first=True)  # before --failed's commit: it never waits
    return bodies
