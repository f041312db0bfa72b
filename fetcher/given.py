"""Where an option's value came from: typed on the command line, or its FETCHER_ variable. A
message about options that cannot go together names each as the user gave it, so that one set
in the environment is not looked for on the command line: "-I (from FETCHER_HEAD)".
"""

from __future__ import annotations

import click
from click.core import ParameterSource


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
