"""The Click command class of ``fetcher``: --help lists the options under the spec's headings
(input, requests, concurrency, output, ...) with the examples last, and a curl option that means
something else here is a usage error saying what to use instead (fetcher.habits). --help and
--version fail as a run does when standard output cannot take them. No usage error shows a URL
password: the message of every one is masked here, where Click prints them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, TextIO

import click
from click.core import ParameterSource
from click.decorators import FC

from fetcher.habits import glued_to_equals, one_dash_word, option_words, refusal, times_given
from fetcher.redact import redact_quoted_paths, redact_text
from fetcher.status import ExitStatus
from fetcher.streams import Streams

# (heading, the names of its options' parameters), in the order --help shows them.
Sections = Sequence[tuple[str, Sequence[str]]]
OTHER = "Other options"  # what no section names: --version, --help
COLUMN_MAX = 30  # Click's own: a longer option is on a line of its own, its text below


class SectionedCommand(click.Command):
    """A click.Command whose --help has one section per heading of ``sections``; an option in
    none of them (--help, --version) goes under OTHER, last."""

    def __init__(self, *args: Any, sections: Sections = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sections = sections

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records: dict[str, tuple[str, str]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            # Arguments are in the usage line, as in Click's own help.
            if record is not None and param.name and not isinstance(param, click.Argument):
                records[param.name] = record
        # One column for every section's text, so the sections read as one table.
        width = min(max((len(name) for name, _ in records.values()), default=0), COLUMN_MAX)
        records = {key: (name.ljust(width), text) for key, (name, text) in records.items()}
        for heading, names in self.sections:
            rows = [records.pop(name) for name in names if name in records]
            if rows:
                with formatter.section(heading):
                    formatter.write_dl(rows, col_max=COLUMN_MAX)
        if records:
            with formatter.section(OTHER):
                formatter.write_dl(list(records.values()), col_max=COLUMN_MAX)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Click's, its usage errors masked (masked_errors): parsing and converting values."""
        with masked_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        """Click's, its usage errors masked (masked_errors): the checks made once the options
        are parsed (their combinations, the output files, the state, the input)."""
        with masked_errors():
            return super().invoke(ctx)

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        """Click's own -h/--help (so that a usage error still says "Try 'fetcher --help'"),
        written as --version is: see write_and_exit."""
        option = super().get_help_option(ctx)
        if option is not None:
            option.callback = show_help
        return option

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as Click does; a curl option that means something else here is a usage error
        whose message says what to use instead, not "No such option"."""
        check_habits(self.params, args, ctx)
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            message = refusal(exc.option_name)
            if message is None:
                raise
            raise Advice(message, ctx) from None


# -o given twice: curl pairs each -o with a URL, and a curl user's `-o a/ URL1 -o b/ URL2`
# put both bodies under b/ (s26 h1 4). Other options given twice keep the last, as in curl.
O_TWICE = (
    "-o given twice: one -o DIR takes every body here, each saved as DIR/<host>/<path> (curl "
    "pairs each -o with a URL); give one -o"
)


def check_habits(params: list[click.Parameter], args: list[str], ctx: click.Context) -> None:
    """Raise a usage error for another tool's habit among args, the command line, before Click
    reads it: a word with one dash (-json), a short option glued to '=' (-o=dl), -o twice."""
    options = {name for param in params for name in param.opts}
    valued = {
        name
        for param in params
        if isinstance(param, click.Option) and not (param.is_flag or param.count)
        for name in param.opts
    }
    before = args[: args.index("--") if "--" in args else len(args)]
    for argument in option_words(before, valued):  # not an option's value: -d -json sends it
        if argument[:1] == "-" and (message := one_dash_word(argument, options)):
            raise Advice(message, ctx)
        if (message := glued_to_equals(argument, valued)) is not None:
            raise click.UsageError(message, ctx)  # masked: -m=URL may hold a password
    if times_given(before, {"-o", "--output-dir"}, valued) > 1:
        raise Advice(O_TWICE, ctx)


class Advice(click.UsageError):
    """A usage error in fetcher's own words alone, quoting no value (fetcher.habits: an option
    name, or a curl option's fixed advice): shown as written, its URL forms as well
    (``-x http://USER:PASSWORD@HOST:PORT``), where masked_errors masks every other one."""


@contextlib.contextmanager
def masked_errors() -> Iterator[None]:
    """Mask the URL passwords in the message of a usage error (any click.ClickException) raised
    inside. An option may take a URL as its value (`-m URL` is wget's --mirror, `-j URL` curl's
    --junk-session-cookies, `--results $UNSET URL`), and the message quotes it: Click's own
    types (IntRange, Choice, Path), fetcher's, the output files' checks. Masking each of them
    where it quotes would miss the next one; every message passes here before Click prints it.
    A BadParameter's option names are added when it is printed: they hold no value."""
    try:
        yield
    except click.ClickException as exc:
        # Changed in place (Click types it Final): the same exception, its type, exit status
        # and context (the usage lines above it) kept.
        if not isinstance(exc, Advice):
            message = without_variable_value(exc)
            vars(exc)["message"] = redact_quoted_paths(redact_text(message, bare_words=True))
        vars(exc)["show"] = functools.partial(show_or_keep_quiet, exc.show)
        raise


def without_variable_value(exc: click.ClickException) -> str:
    """exc's message without the value of the variable its option was read from, which Click
    quotes (''s3cret' is not a valid integer'): FETCHER_HEAD='Authorization: Bearer ...', a
    variable meant to be FETCHER_HEADER, put the token on stderr (s29 t3 3). The message names
    the variable; its value is the user's to look at."""
    param, ctx = getattr(exc, "param", None), getattr(exc, "ctx", None)
    if param is None or ctx is None:
        return exc.message
    # A typed value is the user's, and asked first: the variable's may be refused as it is
    # read (in quotes), which replaced the typed value's message (s37 r3 6).
    if param.name and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
        return exc.message
    value = param.resolve_envvar_value(ctx)
    if not isinstance(value, str) or not value:
        return exc.message
    # The choices a Choice lists are the option's, never the value's, though it may hold one
    # (' jsonl': s37 t2 4); a number out of range is unquoted at the start of Click's message.
    choices = getattr(param.type, "choices", ()) if param is not None else ()
    message = _OUT_OF_RANGE.sub("'…'", exc.message)
    # Any quoted piece of it: stripped, one of a list ('tok,1'), one line (s29 r2 7), read as
    # Click writes it, repr()'s escapes and all ('a\\nb': s30 r1 1).
    return _QUOTED.sub(
        lambda m: "'…'" if (piece := _unquoted(m)) in value and piece not in choices else m[0],
        message,
    )


_OUT_OF_RANGE = re.compile(r"^\S+(?= is not in the range )")


_QUOTED = re.compile(r"""(['"])((?:\\.|(?!\1).)+)\1""", re.DOTALL)


def _unquoted(quoted: re.Match[str]) -> str:
    """The text a quoted piece of a message stands for: repr()'s reading of it, else as it is."""
    import ast  # a usage error's: not on every run's start

    try:
        text = ast.literal_eval(quoted[0])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return quoted[2]
    return text if isinstance(text, str) and text else quoted[2]


def show_or_keep_quiet(show: Callable[..., None], file: Any = None) -> None:
    """A usage error's show, for a stderr that cannot take it (full, its reader gone): nothing
    more is said, and Click's exit status (2) is the process's. The OSError went out of Click's
    main: exit 1, or 120 when the interpreter's last flush of stderr failed again (s24 r5 1)."""
    try:
        show(file)
    except OSError:
        with contextlib.suppress(OSError, ValueError):
            Streams.silence(sys.stderr)


def show_help(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        write_and_exit(ctx, "--help", ctx.get_help())


def version_option(version: str) -> Callable[[FC], FC]:
    """-V/--version: Click's own, but for an output that cannot take it (write_and_exit); -h
    and --help are SectionedCommand's."""

    def show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            write_and_exit(ctx, "--version", f"fetcher, version {version}")

    return click.option(
        "-V", "--version", is_flag=True, expose_value=False, is_eager=True,
        callback=show_version, help="Show the version and exit.",
    )  # fmt: skip


def write_and_exit(ctx: click.Context, option: str, text: str) -> NoReturn:
    """Write text (option's answer) to standard output and exit 0. An output that cannot take it
    is no success: a reader gone (`| head`) exits 141 quietly, as a run does; a closed or full
    standard output is one line on stderr and exit status 1, not a traceback nor a silent 0."""
    try:
        if sys.stdout is None:  # `>&-`: fetcher.__main__ leaves it None
            raise OSError(errno.EBADF, "standard output is closed")
        write_whole(sys.stdout, text + "\n")
    except OSError as exc:
        if sys.stdout is not None:  # what is left in its buffer would fail the last flush again
            Streams.silence(sys.stdout)
        if exc.errno == errno.EPIPE:
            ctx.exit(ExitStatus.BROKEN_PIPE)
        try:
            click.echo(f"fetcher: cannot write {option}: {exc.strerror or exc}", err=True)
        except OSError:
            pass  # stderr gone too: the exit status says it
        ctx.exit(ExitStatus.SOME_FAILED)
    ctx.exit()


def write_whole(stream: TextIO, text: str) -> None:
    """Write text to stream, and raise OSError unless every byte of it was written. Python's
    buffered stream drops the rest of a short write without a word (a file-size limit: the
    next write fails with EFBIG, SIGXFSZ being ignored): its descriptor is written directly,
    until all is written or a write fails. A stream without one (a test's) is written as is."""
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    rest = memoryview(text.encode(stream.encoding, stream.errors or "strict"))
    while rest:
        rest = rest[os.write(descriptor, rest) :]
