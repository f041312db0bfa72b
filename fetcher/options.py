"""The command's options, grouped as in --help, and their translation into Settings.

Every option has an environment variable FETCHER_<LONG NAME>, shown in --help. Values that need
parsing go through ``fetcher.input.parsing``, whose ValueError becomes a usage error (exit 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import stat
import sys
from collections.abc import Callable
from typing import Any

import click
from click.decorators import FC

from fetcher import settings as defaults
from fetcher.asking import password_from_terminal
from fetcher.given import (
    as_given,
    ignore_variables,
    say_not_followed,
    typed,
    variable_of,
    warn,
)
from fetcher.habits import OUTPUT_HABITS, REQUEST_HABITS, fold_habits
from fetcher.input.jobs import usable_proxy
from fetcher.input.parsing import (
    AUTO,
    MAX_PROCESSES,
    as_typed,
    check_cookie_header,
    combine_headers,
    parse_cookie,
    parse_duration,
    parse_header,
    parse_method,
    parse_metrics_label,
    parse_output_dir,
    parse_processes,
    parse_rate,
    parse_size,
    parse_user,
    parse_user_agent,
)
from fetcher.input.shards import Shard
from fetcher.output.records import FORMATS
from fetcher.redact import MASK, redact_url, visible
from fetcher.run.placement import allowed_cpus
from fetcher.settings import OkStatus, Settings
from fetcher.streams import read_whole
from fetcher.variables import VariableOption, command_variables, unknown_variables

ENV_PREFIX = "FETCHER_"

# The longest wait an option may ask for, about 31 years: far under what threading
# (TIMEOUT_MAX, about 292 years) and socket timeouts accept, which a longer one overflows.
MAX_SECONDS = 10**9


class Seconds(click.FloatRange):
    """A number of seconds, above 0 (or from 0) up to MAX_SECONDS. click's FloatRange alone lets
    NaN through, as no comparison with it is true: a NaN --backoff made a retry never due."""

    def __init__(self, allow_zero: bool) -> None:
        super().__init__(min=0, max=MAX_SECONDS, min_open=not allow_zero)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number", param, ctx)
        return seconds


POSITIVE_SECONDS = Seconds(allow_zero=False)
NON_NEGATIVE_SECONDS = Seconds(allow_zero=True)


def option(*decls: str, **attrs: Any) -> Callable[[FC], FC]:
    """click.option whose environment variable is FETCHER_<LONG OPTION NAME>, shown in --help.
    A repeatable option takes one value per line of its variable (see ``Parsed``)."""
    flag = next(d for d in decls if d.startswith("--"))  # "--name", or "--on/--off"
    long_name = flag.split("/")[0]
    attrs.setdefault("envvar", ENV_PREFIX + long_name[2:].replace("-", "_").upper())
    if attrs.get("multiple"):
        attrs.setdefault("type", Parsed("TEXT", str))
    if "/" in flag:
        attrs.setdefault("type", FlagPair(*flag.split("/")))
    if attrs.get("count"):
        attrs.setdefault("type", Count())
    return click.option(*decls, cls=VariableOption, show_envvar=True, **attrs)


class WordsFirst(click.ParamType):  # type: ignore[type-arg]
    """A mixin before a Click type: its variable's value may also be one of ``words``; any other
    value is the base type's, and one the base refuses is said to be ``expected``."""

    words: dict[str, Any]
    expected: str

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and (word := value.strip().lower()) in self.words:
            return self.words[word]
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"{value!r} is not {self.expected}", param, ctx)


class Count(WordsFirst, click.IntRange):
    """A count (-v, -vv), whose variable also takes a flag's words: FETCHER_VERBOSE=yes is -v,
    as usage.md promises of every flag's variable, and FETCHER_VERBOSE=2 is -vv."""

    words = {"true": 1, "yes": 1, "on": 1, "false": 0, "no": 0, "off": 0}
    expected = "a count (0, 1, 2...) or yes, no..."

    def __init__(self) -> None:
        super().__init__(min=0)


class FlagPair(WordsFirst, click.types.BoolParamType):
    """A --name/--no-name flag, whose variable also takes the words --help shows as its
    default (FETCHER_PIN=pin, FETCHER_PIN=no-pin) besides the booleans Click knows."""

    def __init__(self, on: str, off: str) -> None:
        self.words = {on.removeprefix("--"): True, off.removeprefix("--"): False}
        self.expected = f"{', '.join(self.words)}, or a boolean (1, 0, yes, no...)"


class Parsed(click.ParamType):  # type: ignore[type-arg]
    """A parameter type from one of fetcher.input.parsing's functions.

    From an environment variable, a repeatable option takes one value per line, never split on
    spaces: ``FETCHER_HEADER=$'Authorization: Bearer x\nX-B: two'`` is two headers. Blank lines
    and CRLF line ends are accepted.
    """

    def split_envvar_value(self, rv: str) -> list[str]:
        return [line.rstrip("\r") for line in (rv or "").split("\n") if line.strip()]

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        which = self._which(param, ctx)
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(f"{which}{exc}", param, ctx)

    @staticmethod
    def _which(param: click.Parameter | None, ctx: click.Context | None) -> str:
        """'the 2nd -H: ' for a repeatable option, whose messages do not repeat the value.

        Click converts the values of a repeatable option one by one, in order, so counting the
        calls per option gives the position of the value being converted.
        """
        if param is None or ctx is None or not param.multiple:
            return ""
        key = f"fetcher.position.{param.name}"
        ctx.meta[key] = position = ctx.meta.get(key, 0) + 1
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(position % 10 if position % 100 // 10 != 1 else 0)
        return f"the {position}{suffix or 'th'} {param.opts[0]}: "


class ClientFile(click.Path):
    """--cert's or --key's FILE, which must exist. curl's is FILE[:PASSWORD] (its --cert
    client.pem:pw, in a variable too): Click's "File 'client.pem:pw' does not exist" printed the
    pass phrase (s28 t5 1). What follows the first ':' of a name that does not exist is never
    shown, as curl splits FILE:PASSWORD there; a URL taken for the value has its password
    masked as everywhere."""

    def __init__(self) -> None:
        super().__init__(exists=True, dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str) or ":" not in value or os.path.exists(value):
            return super().convert(value, param, ctx)
        named = _file_before_a_colon(value)
        if named is not None:
            self.fail(
                f"{named}:PASSWORD is curl's FILE:PASSWORD (the password is not shown): a pass "
                "phrase has no equal here, as an encrypted key cannot be read; decrypt the key "
                f"first (openssl pkey -in {named} -out PLAIN.pem), then give the certificate "
                "with --cert FILE and the key with --key PLAIN.pem",
                param,
                ctx,
            )
        self.fail(f"File {_shown(value)!r} does not exist (what follows ':' is not shown).",
                  param, ctx)  # fmt: skip


def _shown(value: str) -> str:
    """A --cert or --key name that is no file, as its error may show it: cut at its first ':'
    as curl reads FILE:PASSWORD; a URL (a URL argument taken for the value) past its scheme and
    its masked user info, so that its host is still shown (s28 r2 4: redact_url alone left a
    pass phrase after a URL's path or host unmasked)."""
    if not re.match(r"https?://", value, re.IGNORECASE):
        return f"{value.partition(':')[0]}:{MASK}"
    shown = redact_url(value)
    head, at, rest = shown.partition(f":{MASK}@")
    if not at:
        scheme, at, rest = shown.partition("://")
        head = scheme
    before, colon, _ = rest.partition(":")
    return f"{head}{at}{before}:{MASK}" if colon else shown


def _file_before_a_colon(value: str) -> str | None:
    """The file that value names before one of its ':' (the first such), as curl's
    FILE:PASSWORD; None when no part of it before a ':' is a file."""
    for at, char in enumerate(value):
        if char == ":" and os.path.isfile(value[:at]):
            return value[:at]
    return None


def parse_header_option(text: str) -> tuple[str, str | None]:
    """-H as fetcher.input.parsing.parse_header reads it. curl's -H @FILE (headers from FILE)
    gets a pointer to what does that here rather than "malformed header": no header name starts
    with '@'. The file's name is not shown either: the value may be a mistyped secret."""
    if text.startswith("@") and variable_of("headers") is not None:
        raise ValueError("a header name never starts with '@': write each header, one a line")
    if text.startswith("@"):
        raise ValueError(
            "curl's -H @FILE (headers from a file) is not read here: put them in FETCHER_HEADER, "
            'one a line (FETCHER_HEADER="$(cat FILE)" fetcher ...)'
        )
    return parse_header(text)


def _parse_statuses(text: str) -> frozenset[int]:
    statuses: set[int] = set()
    for first, last in OkStatus.parse(text).ranges:
        statuses.update(range(first, last + 1))
    return frozenset(statuses)


INPUT_OPTIONS = [
    option("-i", "--input", "inputs", multiple=True, metavar="FILE",
           help="Read URLs from FILE, one per line ('-' for standard input). Repeatable."),
    option("--default-scheme", type=click.Choice(["https", "http"], case_sensitive=False),
           default="https",
           help="Scheme for lines that have no '://'."),
    option("--unique", is_flag=True, help="Skip URLs already seen in this run (exact match)."),
    option("--input-format", type=click.Choice(defaults.INPUT_FORMATS), default="lines",
           help="Format of --input files and stdin: a URL a line, or per-URL fields (url, "
                "method, headers, data, output; other keys come back as 'meta') as JSON Lines "
                "or as CSV with a header row."),
    option("--shard", type=Parsed("K/N", Shard.parse), metavar="K/N",
           help="Fetch only the URLs whose host falls in shard K of N (0 <= K < N)."),
]  # fmt: skip

REQUEST_OPTIONS = [
    option("-X", "--method", metavar="METHOD", type=Parsed("METHOD", parse_method),
           help="HTTP method.  [default: GET, POST with -d]"),
    option("-d", "--data", multiple=True, metavar="TEXT|@FILE",
           help="Send TEXT, or FILE's bytes (at most 100 MiB; @- reads standard input), as the "
                "body. Repeated, the pieces are joined with '&', as curl joins them."),
    option("-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'",
           type=Parsed("HEADER", parse_header_option),
           help="Add a header; 'NAME:' removes one, 'NAME;' sends it empty. Repeatable: a list "
                "field (Accept, Cache-Control, X-Forwarded-For...) given twice sends both values "
                "joined with ', ' ('; ' for Cookie); any other field given twice is refused."),
    option("-A", "--user-agent", default=defaults.DEFAULT_USER_AGENT,
           type=Parsed("TEXT", parse_user_agent), help="User-Agent header."),
    option("-u", "--user", type=Parsed("USER[:PASSWORD]", parse_user), metavar="USER[:PASSWORD]",
           help="Basic authentication; asks for the password on a terminal if it is missing."),
    option("-b", "--cookie", "cookies", multiple=True, metavar="NAME=VALUE",
           type=Parsed("COOKIE", parse_cookie), help="Send a cookie to each URL's host."),
    option("-c", "--cookie-jar", metavar="FILE",
           help="Load cookies from FILE (Netscape format, at most 16 MiB) and save all received "
                "ones there."),
    option("-x", "--proxy", metavar="URL", type=Parsed("URL", usable_proxy),
           help="Proxy for every request (overrides *_PROXY; NO_PROXY still applies)."),
    option("-k", "--insecure", is_flag=True, help="Do not verify TLS certificates."),
    option("--cacert", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
           help="Trust the CA certificates in FILE (PEM)."),
    option("--cert", metavar="FILE", type=ClientFile(),
           help="Client TLS certificate (PEM; may include the key)."),
    option("--key", metavar="FILE", type=ClientFile(),
           help="Private key for --cert (PEM)."),
]  # fmt: skip

TIMING_OPTIONS = [
    option("--connect-timeout", type=POSITIVE_SECONDS, default=defaults.DEFAULT_CONNECT_TIMEOUT,
           metavar="S", help="Seconds to wait for a connection."),
    option("-t", "--timeout", "read_timeout", type=POSITIVE_SECONDS,
           default=defaults.DEFAULT_READ_TIMEOUT, metavar="S",
           help="Seconds to wait for each read from the server (wget's -t N, tries, is "
                "--retries here)."),
    option("-m", "--max-time", type=POSITIVE_SECONDS, metavar="S",
           help="Seconds one URL may take in all, redirects and retries included."),
    option("--retries", "--retry", type=click.IntRange(0, 100), default=defaults.DEFAULT_RETRIES,
           help="Retries after connection errors, timeouts and --retry-on statuses."),
    option("--retry-on", type=Parsed("STATUSES", _parse_statuses), metavar="STATUSES",
           default=",".join(map(str, sorted(defaults.DEFAULT_RETRY_ON))),
           help="Statuses that are retried."),
    option("--backoff", type=NON_NEGATIVE_SECONDS, default=defaults.DEFAULT_BACKOFF, metavar="S",
           help="First wait before a retry, doubled each time, with jitter."),
    option("--max-retry-wait", type=NON_NEGATIVE_SECONDS, metavar="S",
           default=defaults.DEFAULT_MAX_RETRY_WAIT,
           help="Longest wait before a retry: a longer Retry-After or backoff is cut to it."),
    option(
        "--retry-all-methods",
        is_flag=True,
        help="Retry POST, PATCH and any other method RFC 9110 does not call idempotent, too.",
    ),
    option("--max-redirects", type=click.IntRange(0, 1000),
           default=defaults.DEFAULT_MAX_REDIRECTS, help="Redirects followed at most."),
    option("--no-follow", is_flag=True, help="Do not follow redirects: report the 3xx itself."),
    option("--max-size", type=Parsed("BYTES", parse_size), metavar="BYTES",
           help="Abandon bodies larger than this after decoding (suffixes K, M, G)."),
]  # fmt: skip

LIMIT_OPTIONS = [
    option("-j", "--workers", type=click.IntRange(1, 1024), default=defaults.DEFAULT_WORKERS,
           help="Worker threads, each with its own keep-alive session."),
    option("--processes", type=Parsed("P|auto", parse_processes), default=1, metavar="P|auto",
           help="Spread the -j workers over P processes (1-64): more CPU for fast servers. "
                "auto: one per CPU this process may use, at most -j."),
    option("--pin/--no-pin", default=True,
           help="Keep each process's threads on one CPU while no body of 1 MB or more is "
                "being read, its workers scheduled as batch threads: Python's lock changes "
                "hands faster there."),
    option("--per-host", type=click.IntRange(1, 1024), metavar="N",
           help="At most N requests in flight to one host."),
    option("--rate", type=Parsed("R[/s|/m|/h|/d]", parse_rate), metavar="R[/s|/m|/h|/d]",
           help="At most R requests started per second (or minute, hour, day) in the whole "
                "run."),
    option("--host-rate", type=Parsed("R[/s|/m|/h|/d]", parse_rate), metavar="R[/s|/m|/h|/d]",
           help="At most R requests started per second (or minute, hour, day) to each host."),
]  # fmt: skip

OUTPUT_OPTIONS = [
    option("-o", "--output-dir", metavar="DIR", type=Parsed("DIR", parse_output_dir),
           help="Save each ok body to DIR/<host>[_<port>]/<path>, atomically."),
    option("--body", is_flag=True,
           help="Write each body to stdout, whole; records then go only to --results."),
    option("--include-body", is_flag=True,
           help="Add the body to each jsonl record ('body', or 'body_base64' if not UTF-8)."),
    option("--format", type=click.Choice(FORMATS),
           default="text", help="Record format."),
    option("--results", metavar="FILE", help="Write the records to FILE instead of stdout."),
    option("--failed", metavar="FILE",
           help="Write the input lines of URLs that did not end ok to FILE (mode 0600)."),
    option("--ordered", is_flag=True,
           help="Write records in input order instead of as they complete. At most 4 per "
                "worker (-j; 8 under --processes) are held back: behind one slow URL every "
                "worker waits until it ends, so give a -m."),
    option("--ok-status", type=Parsed("STATUSES", OkStatus.parse), default=None,
           help="Statuses that count as ok, e.g. '200-299,304'.  [default: below 400]"),
    option("--summary", metavar="FILE",
           help="Also write the summary to FILE as one JSON object (even with -q)."),
    option("--metrics", metavar="FILE",
           help="Also write the summary to FILE in the Prometheus text format (even with -q)."),
    option("--metrics-label", "metrics_labels", multiple=True, metavar="NAME=VALUE",
           type=Parsed("LABEL", parse_metrics_label),
           help="Put the label NAME=VALUE on every --metrics sample, so that the files of two "
                "jobs on one machine can be told apart. Repeatable."),
    option("--progress/--no-progress", default=None,
           help="Show the live progress display.  [default: when stderr is a terminal]"),
    option("-q", "--quiet", is_flag=True,
           help="Print no summary or progress: stderr only says what stops the run, loses "
                "output or is set wrong (docs/usage.md lists each)."),
    option("-v", "--verbose", count=True, help="Log to stderr; -vv adds urllib3's connection log."),
]  # fmt: skip


STATE_OPTIONS = [
    option("--state", metavar="FILE",
           help="Remember every URL's outcome in FILE (SQLite): later runs send conditional "
                "requests and records say what changed."),
    option("--skip-fresh", type=Parsed("DURATION", parse_duration), metavar="DURATION",
           help="With --state: skip URLs fetched ok within DURATION (e.g. 90s, 30m, 6h, 2d); "
                "they still get a record."),
    option("--retry-failed", is_flag=True,
           help="With --state: fetch only the URLs whose last result there failed."),
    option("--continue", "resume", is_flag=True,
           help="With --state and -o: keep the partial file of a download cut short and "
                "resume it next time with a Range request."),
]  # fmt: skip


# --help's sections, in order: a heading and its options. A new group is one line here.
HELP_SECTIONS: list[tuple[str, list[Callable[[FC], FC]]]] = [
    ("Input", INPUT_OPTIONS),
    ("Requests", REQUEST_OPTIONS + REQUEST_HABITS),
    ("Timeouts, retries and redirects", TIMING_OPTIONS),
    ("Concurrency", LIMIT_OPTIONS),
    ("Output", OUTPUT_OPTIONS + OUTPUT_HABITS),
    ("Incremental runs", STATE_OPTIONS),
]


def all_options(command: FC) -> FC:
    """Apply every option, in the order --help shows them."""
    for _, group in reversed(HELP_SECTIONS):
        for decorator in reversed(group):
            command = decorator(command)
    return command


def help_sections() -> list[tuple[str, list[str]]]:
    """HELP_SECTIONS as (heading, parameter names), for fetcher.command.SectionedCommand: each
    section's options applied to a throw-away command, whose parameters then have their names."""
    sections = []
    for heading, group in HELP_SECTIONS:
        probe = click.Command(None)
        for decorator in group:
            decorator(probe)
        sections.append((heading, [param.name for param in probe.params if param.name]))
    return sections


# -d @FILE is held in memory and sent to every URL: /dev/zero or a disk image must not fill it.
MAX_DATA_FILE_BYTES = 100 * 1024 * 1024


def read_data(
    values: tuple[str, ...], urls_on_stdin: bool = False, inputs: tuple[str, ...] = ()
) -> bytes | None:
    """The body of every -d, joined with '&' as curl joins them; None without -d. Raises
    click.UsageError for what cannot be read, for @- twice (standard input is read once), and
    for a pipe that an -i of inputs reads the URLs from (``read_by_an_input``)."""
    if not values:
        return None
    if values.count("@-") > 1:
        raise click.UsageError("-d @- twice: standard input can be read only once")
    for value in values:
        if value.startswith("@") and (other := read_by_an_input(value[1:], inputs)) is not None:
            raise click.UsageError(
                f"-d {value} reads the body from the FIFO or socket that -i {other} reads the "
                "URLs from: what one of them takes, the other never sees; give one a file"
            )
    # Each piece is read up to the room the ones before left: read whole, then joined, 8 of
    # a 60 MiB file held 1 GB before the total was refused (s32 t3 1).
    pieces, size = [], -1  # size: the body so far, with the '&' before each piece but the first
    for value in values:
        piece = read_data_piece(value, urls_on_stdin, inputs, MAX_DATA_FILE_BYTES - size - 1)
        pieces.append(piece)
        size += 1 + len(piece)
        if size > MAX_DATA_FILE_BYTES:
            limit = MAX_DATA_FILE_BYTES // 2**20
            raise click.UsageError(f"-d: the body is larger than {limit} MiB")
    return b"&".join(pieces)


def read_data_piece(
    value: str,
    urls_on_stdin: bool = False,
    inputs: tuple[str, ...] = (),
    room: int = MAX_DATA_FILE_BYTES,
) -> bytes:
    """-d TEXT, -d @FILE or -d @- (standard input, as in curl; refused when urls_on_stdin, the
    -i of inputs that reads them named): at most room + 1 bytes of a file. Raises
    click.UsageError for what cannot be read, or is larger than MAX_DATA_FILE_BYTES."""
    if not value.startswith("@"):
        return os.fsencode(value)  # the bytes given: Click decodes them with surrogateescape
    path = value[1:]
    if path == "-" or names_stdin_pipe(path):
        given = as_given("data", f"-d {value}")  # FETCHER_DATA=@- is named (s26 h1 6)
        data = read_stdin_data(urls_on_stdin, given, inputs, room)
        what = f"{given} (standard input)"
    else:
        try:
            with open(path, "rb") as file:
                data = file.read(room + 1)
        except OSError as exc:
            raise click.UsageError(f"cannot read -d file {path!r}: {exc.strerror}") from None
        what = f"-d file {path!r}"
    if len(data) > MAX_DATA_FILE_BYTES:
        limit = MAX_DATA_FILE_BYTES // (1024 * 1024)
        raise click.UsageError(f"{what} is larger than {limit} MiB")
    return data


def read_by_an_input(path: str, inputs: tuple[str, ...]) -> str | None:
    """The -i of inputs that names the FIFO or socket path names, if any: read once, by one of
    them (`-d @ff -i ff` read the list as the body, then waited on the FIFO for ever, s23 h3
    8). A regular file has a position for each opening, and both read it whole."""
    try:
        named = os.stat(path)  # a FIFO is not opened: no wait for a writer
    except OSError:
        return None
    if not (stat.S_ISFIFO(named.st_mode) or stat.S_ISSOCK(named.st_mode)):
        return None
    for given in inputs:
        with contextlib.suppress(OSError):
            if given != "-" and os.path.samestat(os.stat(given), named):
                return given
    return None


def read_stdin_data(
    urls_on_stdin: bool,
    given: str = "-d @-",
    inputs: tuple[str, ...] = (),
    room: int = MAX_DATA_FILE_BYTES,
) -> bytes:
    """-d @- (given: as the user gave it): standard input, up to one byte past room. Refused
    when the URLs come from there too: the body would swallow the list. An -i of inputs that
    reads them there is named, from FETCHER_INPUT too: the user who gave the URLs as arguments
    was told to give them as arguments (s26 h1 6)."""
    reader = next((path for path in inputs if path == "-" or names_stdin_pipe(path)), None)
    if urls_on_stdin and reader is not None:
        raise click.UsageError(
            f"{given} reads the body from standard input, and {as_given('inputs', f'-i {reader}')} "
            "the URLs: what one of them takes, the other never sees; give the body as -d @FILE, "
            "or the URLs with -i FILE"
        )
    if urls_on_stdin:
        raise click.UsageError(
            f"{given} reads the body from standard input, where the URLs come from too: "
            "give the URLs as arguments or with -i FILE"
        )
    if sys.stdin is None:
        raise click.UsageError(f"cannot read {given}: standard input is closed")
    try:
        return read_whole(sys.stdin.buffer, room + 1)  # whole: s29 t5 2
    except OSError as exc:
        raise click.UsageError(f"cannot read {given} from standard input: {exc.strerror}") from None


def urls_from_stdin(urls: tuple[str, ...], inputs: tuple[str, ...], retry_failed: bool) -> bool:
    """Whether the run reads its URL list from standard input: '-' is a URL or an -i, or there
    is no URL, -i or --retry-failed at all (the list is then piped in; a terminal is refused).
    The one place that decides it: -d @- and the output checks ask here."""
    if "-" in urls or "-" in inputs or any(map(names_stdin_pipe, inputs)):
        return True
    return not (urls or inputs or retry_failed)


def names_stdin_pipe(path: str) -> bool:
    """Whether path (/dev/stdin, /dev/fd/0) opens standard input's own pipe, socket or
    terminal: what is read there is taken from standard input. A regular file opened again by
    name has a position of its own (`< list.txt -d @/dev/stdin` takes nothing away), and
    /dev/null gives nothing to take (nor the /dev/null put on a closed standard input)."""
    if sys.stdin is None:
        return False
    try:
        named, stdin = os.stat(path), os.fstat(0)
    except OSError:
        return False
    shared = stat.S_ISFIFO(stdin.st_mode) or stat.S_ISSOCK(stdin.st_mode) or os.isatty(0)
    return shared and os.path.samestat(named, stdin)


def build_settings(urls: tuple[str, ...], params: dict[str, Any]) -> Settings:
    """Settings from the parsed options. Raises click.UsageError for inconsistent ones."""
    warn_of_unknown_variables()
    drop_idle_variables(params, urls)
    fold_habits(params, urls)
    fold_records_options(params)
    check_retry_on(params)  # before check_combinations: it may drop a variable's statuses
    say_unretried_method(params)
    headers = given_headers(params)
    resolve_processes(params)
    params["urls"] = urls  # for check_combinations; the same in Settings
    check_combinations(params)
    fields = {name: value for name, value in params.items() if name not in DERIVED}
    cert, key = params["cert"], params["key"]
    verify = resolve_verify(params)
    check_trust(verify, params["quiet"])
    fields.update(
        urls=urls,
        auth=params["user"] if params["user"] and params["user"][1] is not None else None,
        password_for=params["user"][0] if params["user"] and params["user"][1] is None else None,
        client_cert=(cert, key) if key else cert,
        verify=verify,
        follow_redirects=not params["no_follow"],
        data=read_data(
            params["data"],
            urls_from_stdin(urls, params["inputs"], params["retry_failed"]),
            params["inputs"],
        ),
        ok_status=params["ok_status"] or OkStatus(),
        # As typed, on the wire: Settings holds what http.client is handed (as_typed).
        headers=headers,
        cookies=tuple((name, as_typed(value)) for name, value in params["cookies"]),
        user_agent=params["user_agent"] and as_typed(params["user_agent"]),
        metrics_labels=tuple(params["metrics_labels"]),
    )
    return Settings(**fields)


# The options that do nothing without another: (name, whether that other is missing, what the
# line that drops a variable of it says). Looked at before anything reads them.
_IDLE_ALONE: tuple[tuple[str, Callable[[dict[str, Any]], bool], str], ...] = (
    ("remote_header_name", lambda p: p["output_dir"] is None, "without -o DIR: no file is saved"),
    ("metrics_labels", lambda p: not p["metrics"], "without --metrics FILE"),
    ("include_body", lambda p: p["format"] != "jsonl", "beside a --format other than jsonl"),
    ("key", lambda p: not p["cert"], "without --cert"),
    ("skip_fresh", lambda p: not p["state"], "without --state FILE"),
    ("retry_failed", lambda p: not p["state"], "without --state FILE"),
    ("resume", lambda p: not (p["state"] and p["output_dir"]), "without --state FILE and -o DIR"),
)


def _processes_typed(params: dict[str, Any]) -> bool:
    return typed("processes") and params["processes"] != AUTO and params["processes"] > 1


def _range_typed(params: dict[str, Any]) -> bool:
    return typed("headers") and any(name.lower() == "range" for name, _ in params["headers"])


# The options that a typed one makes do nothing (s37 r3 5): as _IDLE_ALONE, the other typed.
_IDLE_BESIDE: tuple[tuple[str, Callable[[dict[str, Any]], bool], str], ...] = (
    ("resume", lambda p: typed("body") and p["body"] or typed("include_body") and p["include_body"],
     "beside --body or --include-body typed on the command line"),
    ("resume", _range_typed, "beside -H 'Range: ...' typed on the command line"),
    # Not FETCHER_RATE (a limit the servers are owed) nor FETCHER_BODY (what the run writes):
    # beside --processes typed, those still refuse the run.
    ("include_body", _processes_typed, "beside --processes typed on the command line"),
    ("retry_failed", lambda p: bool(p["urls"] or typed("inputs") and p["inputs"]),
     "beside URLs or -i given on the command line"),
)  # fmt: skip


def drop_idle_variables(params: dict[str, Any], urls: tuple[str, ...] = ()) -> None:
    """A FETCHER_ variable whose option does nothing without another that is not given, or
    beside one typed (_IDLE_BESIDE), is not followed, said once (not under -q), before any
    check or setting reads it: a profile's default never refuses a run (s37 t2 3, r3 5).
    Dropped from a copy of the options, it still took effect (s37 r2 2: FETCHER_KEY made every
    https URL fail, FETCHER_RETRY_FAILED turned off the checks of a cron line's empty
    variable). The option typed is refused by the checks."""
    for name, idle, why in (*_IDLE_ALONE, *_IDLE_BESIDE):
        given = params[name] not in (None, False, ())
        if given and variable_of(name) and idle({**params, "urls": urls}):
            ignore_variables(params, [name], why)


def given_headers(params: dict[str, Any]) -> tuple[tuple[str, str | None], ...]:
    """The -H headers as Settings holds them: each name once (combine_headers), as typed, on
    the wire (as_typed). Raises click.UsageError for a one-value field or a cookie given twice."""
    try:
        combined = combine_headers(params["headers"], variable_of("headers"))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return tuple((name, value and as_typed(value)) for name, value in combined)


def warn_of_unknown_variables() -> None:
    """Say on stderr, even under -q, each FETCHER_ variable that is no option's: the user
    believes it applied (an ignored FETCHER_OUTPUT loses every body). None outside a command."""
    context = click.get_current_context(silent=True)
    if context is not None:
        for line in unknown_variables(command_variables(context.command)):
            warn(line)


def resolve_verify(params: dict[str, Any]) -> bool | str:
    """Settings.verify: False with -k, else --cacert's file, else True (the default bundle).
    A --cacert or --cert typed on the command line beats FETCHER_INSECURE, as a typed -s beats
    FETCHER_PROGRESS: it asks for a verified server, and a profile's variable must not turn
    verification off behind it. Said once on stderr (not under -q): the variable is not
    followed. -k typed, or both in variables, still win, as curl's -k beside --cacert."""
    beaten = [f"--{name}" for name in ("cacert", "cert") if params[name] and typed(name)]
    variable = variable_of("insecure")
    if params["insecure"] and variable is not None and beaten:
        if not params["quiet"]:
            warn(
                f"fetcher: {variable} is not followed beside {' and '.join(beaten)} typed "
                "on the command line: certificates are verified (type -k to turn it off)"
            )
        return params["cacert"] or True
    return False if params["insecure"] else params["cacert"] or True


def check_trust(verify: bool | str, quiet: bool = False) -> None:
    """Check at start the CA bundle the run would verify with: --cacert's file, refused when
    OpenSSL cannot use it (typed for this run); else REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
    (nothing with -k), said once on stderr, not under -q, when it is missing or holds no PEM
    certificate (s24 h1 5: every https URL then failed 'other', the variable never named),
    and the run goes on: curl fetches http URLs whatever CURL_CA_BUNDLE says (s24 r7 3: an
    image that exports another distribution's path stopped every http-only run). Only
    --cacert's is loaded; certifi's default bundle is not looked at."""
    if isinstance(verify, str):
        check_ca_file(as_given("cacert", f"--cacert {verify}"), verify)
        return
    if verify is False:
        return
    from fetcher.http.environment import ca_bundle_variable

    if (found := ca_bundle_variable()) is None:
        return
    name, path = found
    try:
        check_bundle_variable(name, path)
    except click.UsageError as exc:
        if not quiet:
            warn(f"fetcher: {exc.message}; https URLs (and any through an https proxy) will fail")


def check_bundle_variable(name: str, path: str) -> None:
    """Raise UsageError saying what is wrong with the bundle the variable name gives (path,
    shown with its control characters escaped: s24 r7 8)."""
    given = f"{name} ({visible(path)})"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise click.UsageError(f"{given} does not exist: no CA to verify with") from None
    except OSError as exc:  # a folder on the way the user cannot search (s24 r7 6)
        raise click.UsageError(f"cannot read {given}: {exc.strerror}") from None
    if not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):  # never opened (s25 r3 8)
        raise click.UsageError(f"{given} is not a regular file, nor a folder: not read")
    if not stat.S_ISDIR(mode):  # OpenSSL's folder of hashed certificates is read as requests
        check_ca_file(given, path, load=False)


def check_ca_file(given: str, path: str, load: bool = True) -> None:
    """Refuse a CA bundle file OpenSSL finds no certificate in, or cannot read; given names it
    as the user gave it. Only a regular file, never opened otherwise: urllib3 reads it again
    for every connection, which a pipe cannot give twice (and a FIFO's open waits for ever).
    Without load, only looked for a PEM certificate's first line: a variable's bundle is the
    system's (a Debian image sets both variables), whose loading took 23 ms of every run."""
    import ssl  # only when a bundle is given: loading OpenSSL is a start-up cost

    from fetcher.http.environment import pem_certificate_in

    no_pem = click.UsageError(
        f"{given} holds no PEM certificate: give the CA's certificate in PEM "
        "(openssl x509 -inform DER -in FILE -out FILE.pem converts a DER one)"
    )
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise click.UsageError(f"{given} is not a regular file: read for every connection")
        if not load and not pem_certificate_in(path):
            raise no_pem
        if load:
            ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        if exc.reason == "NO_CERTIFICATE_OR_CRL_FOUND":
            raise no_pem from None
        reason = exc.reason or "a PEM block it cannot read"
        raise click.UsageError(f"{given} cannot be used (OpenSSL: {reason})") from None
    except OSError as exc:
        raise click.UsageError(f"cannot read {given}: {exc.strerror}") from None


# Options that Settings holds in the form the code uses (see build_settings).
DERIVED = frozenset({"user", "cert", "key", "cacert", "insecure", "no_follow"})


def one_process_options(params: dict[str, Any]) -> list[str]:
    """The options given that need one place to see every request or every body, each named
    as given (fetcher.given)."""
    alone = {"rate": "--rate", "body": "--body", "include_body": "--include-body"}
    return [as_given(name, shown) for name, shown in alone.items() if params[name]]


def resolve_processes(params: dict[str, Any], cpus: int | None = None) -> None:
    """--processes auto to a count: one worker process per CPU this process may run on (cpus,
    else usable_cpus()), at most -j and MAX_PROCESSES; 1 (threads in this process) when an
    option needs one process, which it would otherwise refuse."""
    if params["processes"] != AUTO:
        return
    if one_process_options(params):
        params["processes"] = 1
        return
    available = cpus if cpus is not None else usable_cpus()
    params["processes"] = max(1, min(available, params["workers"], MAX_PROCESSES))


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (which taskset and cpusets narrow),
    else the machine's count. A container's CPU quota (docker --cpus) is not seen."""
    return len(allowed_cpus()) or os.cpu_count() or 1


def check_combinations(params: dict[str, Any]) -> None:
    if params["key"] and not params["cert"]:
        raise click.UsageError(f"{as_given('key', '--key')} needs --cert")
    check_client_key(params)
    if params["processes"] > 1 and (given := one_process_options(params)):
        processes = as_given("processes", f"--processes {params['processes']}")
        raise click.UsageError(f"{', '.join(given)} works only with --processes 1, not {processes}")
    if params["include_body"] and params["format"] != "jsonl":
        raise click.UsageError(
            f"{as_given('include_body', '--include-body')} needs --format jsonl, not "
            f"{as_given('format', '--format ' + params['format'])}"
        )
    check_metrics_labels(params)
    try:
        check_cookie_header(params["cookies"], variable_of("cookies"))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    check_state_options(params)
    if params["proxy"] is None:
        check_environment_proxies()


# What says how the records are written: nothing, with --body and no --results.
RECORDS_OPTIONS = ("include_body", "format")


def fold_records_options(params: dict[str, Any]) -> None:
    """--include-body or --format beside --body without --results: the records go nowhere, and
    they would change nothing (s26 h1 5). A usage error that names the real conflict,
    --include-body's first (its "needs --format jsonl" sent the user round: s26 r3 6), unless
    --body was typed and they came from variables, or the other way round: the typed stands,
    the variables are ignored, said on stderr (s26 r3 2). --ordered still orders the bodies."""
    given = [
        name for name in RECORDS_OPTIONS if params[name] and (typed(name) or variable_of(name))
    ]
    if not (given and params["body"]) or params["results"]:
        return
    shown = {"include_body": "--include-body", "format": "--format"}
    if typed("body") and all(variable_of(name) for name in given):
        why = "beside --body typed on the command line: the records go only to --results FILE"
        ignore_variables(params, given, why)
    elif variable_of("body") and (typing := [shown[name] for name in given if typed(name)]):
        ignore_variables(
            params, ["body"], f"beside {' and '.join(typing)} typed on the command line"
        )
    elif params["include_body"]:
        raise click.UsageError(
            f"{as_given('include_body', '--include-body')} puts each body in its record, and "
            f"with {as_given('body', '--body')} the records go only to --results FILE: give "
            "--results FILE, or one of the two"
        )
    else:
        raise click.UsageError(
            f"{as_given('format', '--format ' + params['format'])} is the records' format, "
            f"and with {as_given('body', '--body')} they go only to --results FILE: give "
            "--results FILE, or no --format"
        )


def say_unretried_method(params: dict[str, Any]) -> None:
    """A typed --retry beside a method it does not retry (-d's POST, -X PATCH) without
    --retry-all-methods: curl's --retry retries any, fetcher's only those that may be sent
    twice (SPEC 2.2), and `--retry 3 -d x=1` made one request, nothing said why (s32 t5 2).
    Said once, with the option that does; not under -q, unless with -S: `curl -sS --retry 3
    -d ...` is the cron line it is for (s38 t4 3)."""
    if not typed("retries") or not params["retries"] or params["retry_all_methods"]:
        return
    method = params["method"] or ("POST" if params["data"] else "GET")
    said = not params["quiet"] or params["show_error"]
    if method.upper() not in defaults.IDEMPOTENT_METHODS and said:
        warn(f"fetcher: --retry does not retry a {method.upper()}, which may not be sent twice: "
             "--retry-all-methods does, as curl's --retry")  # fmt: skip


def check_retry_on(params: dict[str, Any]) -> None:
    """Refuse a --retry-on status that is followed without --no-follow (redirects.
    FOLLOWED_STATI, not 304 or 399, never followed: s26 r3 8), a redirect followed being no
    answer: those of FETCHER_RETRY_ON are left out, said on stderr (s26 r3 2), before the next
    check, which refused them as ok (s29 t3 5). Then one that counts as ok (below 400, or
    --ok-status): an ok answer is never retried, so the option would do nothing. Only a list
    the user gave: the default one beside --ok-status 200-599 is no one's mistake."""
    if not (typed("retry_on") or variable_of("retry_on")):
        return
    from fetcher.http.redirects import FOLLOWED_STATI  # requests': not for --help

    followed = sorted(status for status in params["retry_on"] if status in FOLLOWED_STATI)
    if followed and not params["no_follow"]:
        why = "a redirect that is followed is never the answer, so never retried"
        if typed("retry_on"):
            listed = f"--retry-on {', '.join(map(str, followed))}"
            raise click.UsageError(
                f"{listed}: {why}; give --no-follow, and an --ok-status without it, to have it "
                "retried"
            )
        params["retry_on"] = frozenset(params["retry_on"]) - FOLLOWED_STATI
        listed = f"{', '.join(map(str, followed))} of {variable_of('retry_on')} is"
        say_not_followed(params, listed, f"without --no-follow: {why}")
    ok_status = params["ok_status"] or OkStatus()
    ok = sorted(status for status in params["retry_on"] if status in ok_status)
    if ok:
        listed = as_given("retry_on", f"--retry-on {', '.join(map(str, ok))}")
        raise click.UsageError(
            f"{listed}: an ok answer is never retried, and these count as ok (below "
            "400, or --ok-status); give --ok-status without them to have them retried"
        )


def check_environment_proxies() -> None:
    """Refuse a proxy variable that no request could use (a SOCKS URL, a port past 65535, a
    password that cannot be sent), as -x is refused: read per URL, it made every record of the
    run invalid_url or other, as if the input were bad. The proxies as urllib reads them (what
    requests uses: a lower-case name wins, even empty; HTTP_PROXY not under CGI); none when
    NO_PROXY is '*', which no request passes. The URLs are not known yet: one for https only
    is refused in a run of http URLs too. The error never quotes the value, as -x's does not:
    a password holding '/', '?' or '#' ends the authority early, and no masking finds it.
    ALL_PROXY beside both HTTP_PROXY and HTTPS_PROXY is never read (requests' select_proxy
    takes the scheme's own first), so not checked: desktops export all_proxy=socks://... so."""
    from urllib.request import getproxies_environment

    proxies = getproxies_environment()  # only the non-empty ones
    if proxies.get("no", "").strip() == "*":
        return
    for scheme in ("http", "https", "all"):
        if not (value := proxies.get(scheme)):
            continue
        if scheme == "all" and "http" in proxies and "https" in proxies:
            continue
        try:
            usable_proxy(value)
        except ValueError as exc:
            raise click.UsageError(f"{proxy_variable(scheme)} cannot be used: {exc}") from None


def proxy_variable(scheme: str) -> str:
    """The name of the variable whose value getproxies_environment read for scheme (as 'http',
    'https', 'all'), by its own two passes: a name whose '_proxy' is in lower case wins over
    HTTP_PROXY and the like (the last one in os.environ of each kind, as its loops leave it);
    under CGI (REQUEST_METHOD set) 'http' only from those. Naming the first spelling found
    named HTTP_PROXY when http_proxy's value was the one read, and the user edited the wrong
    one."""
    wanted = f"{scheme}_proxy"
    named = [name for name, value in os.environ.items() if value and name.lower() == wanted]
    lower = [name for name in named if name.endswith("_proxy")]
    return (lower or named or [wanted])[-1]


# The most of a --cert or --key file read for its check: a client's certificate chain and key
# are a few KiB, and a larger file is refused rather than checked in part.
MAX_PEM_FILE_BYTES = 1024 * 1024
# How OpenSSL marks an encrypted key: PKCS#8, or the traditional form's header.
_ENCRYPTED_KEY = re.compile(
    rb"^-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type:[ \t]*4,[ \t]*ENCRYPTED", re.MULTILINE
)


def check_client_key(params: dict[str, Any]) -> None:
    """Refuse an encrypted private key in --cert or --key. OpenSSL would ask for its pass phrase
    on the terminal, from every worker and for every connection, past -m; without a terminal
    every URL would fail with a misleading EINVAL. urllib3 checks only a --key file."""
    for option in ("cert", "key"):
        path = params[option]
        if not path:
            continue
        data = read_pem_file(f"--{option}", path)
        if b"-----BEGIN " not in data:  # PKCS#12, DER: OpenSSL here reads PEM only
            raise click.UsageError(
                f"--{option} {path} is not PEM: convert it (openssl pkcs12 -in FILE -nodes, "
                f"or openssl pkey -inform DER -in FILE)"
            )
        if _ENCRYPTED_KEY.search(data):
            raise click.UsageError(
                f"the private key in {path} is encrypted: fetcher cannot ask for its pass "
                f"phrase; decrypt it (openssl pkey -in {path} -out KEY)"
            )
    if params["cert"]:
        check_key_pair(params["cert"], params["key"])


def check_key_pair(cert: str, key: str | None) -> None:
    """Refuse a --cert whose private key is missing (no --key, none in the file) or another
    certificate's: every https URL failed at run time with OpenSSL's words, even to servers
    that ask for no certificate (curl stops at once: 58)."""
    import ssl  # only with --cert: loading OpenSSL is a start-up cost

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise click.UsageError(
                f"the private key in {key or cert} is not the certificate's in --cert {cert}"
            ) from None
        if key is None and exc.reason is None:  # OpenSSL's "PEM lib": no key found there
            raise click.UsageError(
                f"--cert {cert} holds no private key (or not one OpenSSL can read): give it "
                "with --key FILE"
            ) from None
        given = f"--cert {cert}" + ("" if key is None else f" with --key {key}")
        raise click.UsageError(f"{given} cannot be used (OpenSSL: {exc.reason or exc})") from None


def read_pem_file(option: str, path: str) -> bytes:
    """The bytes of a --cert or --key file, read once. Only a regular file: requests reads it
    again for every connection, which a pipe could not give twice."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise click.UsageError(
                f"{option} {path} is not a regular file: it is read for every connection"
            )
        with open(path, "rb") as file:
            data = file.read(MAX_PEM_FILE_BYTES + 1)
    except OSError as exc:
        raise click.UsageError(f"cannot read {option} {path}: {exc.strerror}") from None
    if len(data) > MAX_PEM_FILE_BYTES:
        raise click.UsageError(
            f"{option} {path} is larger than 1 MiB: not a PEM certificate or key"
        )
    return data


def check_metrics_labels(params: dict[str, Any]) -> None:
    labels: tuple[tuple[str, str], ...] = params["metrics_labels"]
    if labels and not params["metrics"]:
        raise click.UsageError(
            f"{as_given('metrics_labels', '--metrics-label')} needs --metrics FILE"
        )
    if not labels:
        return
    from fetcher.output.metrics import OWN_LABELS

    seen: set[str] = set()
    for name, _ in labels:
        if name in OWN_LABELS:
            raise click.UsageError(
                f"--metrics-label {name!r} is one of fetcher's own labels ({', '.join(OWN_LABELS)})"
            )
        if name in seen:
            raise click.UsageError(f"--metrics-label {name!r} given twice")
        seen.add(name)


def check_state_options(params: dict[str, Any]) -> None:
    needs_state = {
        as_given("skip_fresh", "--skip-fresh"): params["skip_fresh"] is not None,
        as_given("retry_failed", "--retry-failed"): params["retry_failed"],
        as_given("resume", "--continue"): params["resume"],
    }
    if not params["state"] and (given := [name for name, value in needs_state.items() if value]):
        raise click.UsageError(f"{', '.join(given)} needs --state FILE")
    resume = as_given("resume", "--continue")
    if params["resume"] and not params["output_dir"]:
        raise click.UsageError(f"{resume} needs -o DIR: it resumes saved files")
    if params["resume"] and (params["body"] or params["include_body"]):
        raise click.UsageError(f"{resume} resumes files under -o, not --body or --include-body")
    if params["resume"] and any(name.lower() == "range" for name, _ in params["headers"]):
        raise click.UsageError(  # a part of the user's: its offset is not the saved file's size
            f"{resume} asks for the rest of a file from its size: it cannot go with "
            f"{as_given('headers', '-H')} 'Range: ...'"
        )
    if params["retry_failed"] and (params["urls"] or params["inputs"]):
        raise click.UsageError(
            f"{as_given('retry_failed', '--retry-failed')} takes its URLs from --state: give "
            f"no URL or {as_given('inputs', '-i')}"
        )


def with_password(settings: Settings) -> Settings:
    """settings with -u USER's password, asked for once the output files were found usable (a
    password typed for a run then refused is typed in vain), but before the --state lock is
    taken (a prompt left open would hold it), on the controlling terminal (/dev/tty: standard
    input may be the URL list itself), as curl asks; Ctrl-D is an empty password. With no
    terminal at all (cron), an empty password, said on stderr without the name: a user name
    alone may be the credential (a token, sent as Basic ``TOKEN:``), which records mask, and a
    cron job's log kept it (s31 r1 5). The prompt, on the terminal, names it, as curl's does."""
    name = settings.password_for
    if name is None:
        return settings
    password = password_from_terminal(f"password for {visible(name)}: ")
    if password is None:
        password = ""
        warn(
            "fetcher: -u USER without a password (the name not shown: it may be a token), and "
            "no terminal to ask for one on: an empty password is sent"
        )
    return dataclasses.replace(settings, auth=(name, password), password_for=None)
