"""The Click command class of ``fetcher``: --help lists the options under the spec's headings
(input, requests, concurrency, output, ...) with the examples last, and a curl option that means
something else here is a usage error saying what to use instead (fetcher.habits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from fetcher.habits import refusal

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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as Click does; a curl option that means something else here is a usage error
        whose message says what to use instead, not "No such option"."""
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            message = refusal(exc.option_name)
            if message is None:
                raise
            raise click.UsageError(message, ctx) from None
