"""What a FETCHER_ variable's value may hold, and which FETCHER_ names are fetcher's: an env file
read by docker --env-file or systemd keeps quotes and blanks that a shell would have taken off,
and a misspelt name is silently no option at all (s26 h1 1, 3, 7).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from typing import Any

import click

from fetcher.redact import visible

ENV_PREFIX = "FETCHER_"

# FETCHER_ names read by the test suite and the benchmarks' experiments, never by fetcher: a
# `make soak` or a bench run sets them for the fetcher processes it starts, which must not warn.
INTERNAL = frozenset({
    "FETCHER_SOAK_URLS", "FETCHER_STORM_RUNS", "FETCHER_HARD_STOP_PLANS", "FETCHER_SCALE",
    "FETCHER_GC_EXPERIMENT", "FETCHER_GC_EXPERIMENT_REPORT", "FETCHER_TRANSPORT_EXPERIMENT",
})  # fmt: skip

# The names people guess, which difflib would not find or would find wrong: an alias's own
# name (--retry), the plural of a repeatable option, curl's --output.
GUESSED = {
    "FETCHER_RETRY": "FETCHER_RETRIES",
    "FETCHER_HEADERS": "FETCHER_HEADER",
    "FETCHER_COOKIES": "FETCHER_COOKIE",
    "FETCHER_OUTPUT": "FETCHER_OUTPUT_DIR",
}

# A JSON string is a legitimate body: its quotes are the body's.
QUOTES_ALLOWED = frozenset({"FETCHER_DATA"})
# Options that name a file or a folder: a blank around one is a hand-edited env file's, never a
# name meant (a trailing one made a new --state, and the next run an empty one).
PATH_OPTIONS = frozenset({
    "inputs", "output_dir", "state", "results", "failed", "summary", "metrics", "cookie_jar",
    "cacert", "cert", "key",
})  # fmt: skip


class VariableOption(click.Option):
    """A click.Option whose variable's value is checked before it is used (check_value)."""

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        value = super().resolve_envvar_value(ctx)
        if value is not None and isinstance(self.envvar, str):
            lines = self.type.split_envvar_value(value) if self.multiple else [value]
            for number, line in enumerate(lines, 1):
                check_value(self.envvar, self.name or "", line, number if len(lines) > 1 else 0)
        return value


def check_value(variable: str, name: str, value: str, line: int = 0) -> None:
    """Raise click.UsageError for a value (the line-th of a repeatable option's variable, or
    its whole value for 0) wrapped in one pair of quotes, or, for a path option, with blanks
    around it. The value is never quoted: it may be a token, a password or a proxy's."""
    which = f"{variable}'s value" if line == 0 else f"line {line} of {variable}"
    quote = value[:1]
    if variable not in QUOTES_ALLOWED and _in_one_pair_of_quotes(value):
        raise click.UsageError(
            f"{which} is in quotes ({quote}…{quote}): an env file that keeps quotes (docker "
            "--env-file) passes them on; remove them"
        )
    if name in PATH_OPTIONS and value != value.strip():
        raise click.UsageError(
            f"{which} has blanks at its start or end, which would be part of the path: remove them"
        )


def _in_one_pair_of_quotes(value: str) -> bool:
    """Whether value is wrapped whole in one pair of matching quotes, none between them:
    "'a' and 'b'" is two quoted words, which a value may well hold."""
    quote = value[:1]
    return len(value) >= 2 and quote in "'\"" and value[-1] == quote and quote not in value[1:-1]


def unknown_variables(known: Iterable[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """One warning line for each FETCHER_ variable of environ that is no option's (known) nor
    the suite's own, with the closest known name: what the user set believing it applied. The
    name shown as it shows: a control character in it drove the terminal, a line break forged
    a line of stderr (s31 t4 2)."""
    names = set(known)
    lines = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in names or variable in INTERNAL:
            continue
        guess = GUESSED.get(variable) or closest(variable, names)
        hint = "" if guess is None else f" (did you mean {guess}?)"
        lines.append(f"fetcher: {visible(variable)} is not a fetcher variable and is ignored{hint}")
    return lines


def closest(variable: str, names: Iterable[str]) -> str | None:
    """The name of names closest to variable by difflib, FETCHER_ left out of both: the prefix
    they share would make any short name "close" to another."""
    by_rest = {name.removeprefix(ENV_PREFIX): name for name in names}
    # In capitals: FETCHER_quiet is FETCHER_QUIET's (s37 t2 7); an env file's slips are often
    # of case.
    found = difflib.get_close_matches(variable.removeprefix(ENV_PREFIX).upper(), by_rest, 1)
    return by_rest[found[0]] if found else None


def command_variables(command: Any) -> list[str]:
    """The variables of the options of command (a click.Command)."""
    return [param.envvar for param in command.params if isinstance(param.envvar, str)]
