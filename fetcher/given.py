"""Where an option's value came from: typed on the command line, or its FETCHER_ variable. A
message about options that cannot go together names each as the user gave it, so that one set
in the environment is not looked for on the command line: "-I (from FETCHER_HEAD)". Where a
typed option makes a variable's do nothing, the typed one stands and stderr says so (typed_wins).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from typing import Any

import click
from click.core import ParameterSource

from fetcher.streams import Streams


def _source(name: str) -> ParameterSource | None:
    """The source of the parameter called name in the command being run; None outside one (a
    unit test calling fold_habits with a dict): neither typed nor from a variable then."""
    context = click.get_current_context(silent=True)
    return None if context is None else context.get_parameter_source(name)


def variable_of(name: str) -> str | None:
    """The environment variable the parameter called name took its value from, or None when it
    was typed, left to its default, or no command is running."""
    context = click.get_current_context(silent=True)
    if context is None or _source(name) is not ParameterSource.ENVIRONMENT:
        return None
    for param in context.command.params:
        if param.name == name and isinstance(param.envvar, str):
            return param.envvar
    return None


def as_given(name: str, shown: str) -> str:
    """shown (how a message names the option whose parameter is called name: '-I', '-X POST'),
    with '(from FETCHER_...)' after it when its value came from that variable."""
    variable = variable_of(name)
    return shown if variable is None else f"{shown} (from {variable})"


def typed(name: str) -> bool:
    """Whether the parameter called name was given on the command line."""
    return _source(name) is ParameterSource.COMMANDLINE


def typed_wins(params: dict[str, Any], first: tuple[str, str], second: tuple[str, str]) -> bool:
    """For two options given together where one makes the other do nothing, each a (parameter
    name, as shown) pair: when one was typed and the other came from its variable, the
    variable's value is ignored (ignore_variables) and True returned; False when both were
    typed or both came from variables, which the caller refuses. A profile's FETCHER_FORMAT
    must not refuse every --body run (s26 r3 2); two typed, the user meant both."""
    for kept, dropped in ((first, second), (second, first)):
        if typed(kept[0]) and variable_of(dropped[0]) is not None:
            ignore_variables(params, [dropped[0]], f"beside {kept[1]} typed on the command line")
            return True
    return False


def ignore_variables(params: dict[str, Any], names: Iterable[str], why: str) -> None:
    """Set each parameter of names, whose value came from its variable, back to its default,
    and say so once on stderr, why following; see say_not_followed."""
    context = click.get_current_context()
    variables = []
    for param in context.command.params:
        if param.name in names:
            params[param.name] = _default_of(param, context)
            variables.append(str(param.envvar))
    verb = "is" if len(variables) == 1 else "are"
    say_not_followed(params, f"{' and '.join(variables)} {verb}", why)


def _default_of(param: click.Parameter, context: click.Context) -> Any:
    """param's default as the command gets it when the option is not given: Click 8.2 and
    later answer get_default with a sentinel (UNSET) for one with none, which the command
    receives as None, or () for a repeatable option."""
    value = param.get_default(context)
    if type(value).__name__ == "Sentinel":
        return () if param.multiple else None
    return value


def say_not_followed(params: dict[str, Any], what: str, why: str) -> None:
    """One stderr line: what ("FETCHER_X is", or part of its value) not followed, and why. Not
    under -q or -s, as for FETCHER_INSECURE beside a typed --cacert: it neither stops the run
    nor loses output."""
    if not (params.get("quiet") or params.get("silent")):
        warn(f"fetcher: {what} not followed {why}")


def warn(text: str) -> None:
    """Say text on stderr before the run starts; a stderr that cannot take it (full, its reader
    gone) drops it, as Streams.say does, and the run goes on: raised out of the option checks,
    it fetched nothing and exited 120 (s24 r9 2). One full for a moment (a non-blocking pipe:
    EAGAIN) keeps it buffered: silenced, the run's summary was lost too (s25 r1 5)."""
    try:
        click.echo(text, err=True)
    except BlockingIOError:  # full for a moment: the rest waits in the buffer (s25 r1 5)
        pass
    except OSError:
        with contextlib.suppress(OSError, ValueError):
            Streams.silence(sys.stderr)  # what is left in its buffer would fail again at exit
