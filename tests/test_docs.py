"""The README documents every option, with the environment variable that sets it."""

import re

import click

from fetcher.cli import main
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def options_table() -> str:
    return README.split("## Options", 1)[1].split("\n## ", 1)[0]


def test_every_option_is_in_the_readme_table():
    table = options_table()
    for param in main.params:
        if not isinstance(param, click.Option) or param.name in {"help", "version"}:
            continue
        longest = max(param.opts, key=len).split("/")[0]
        assert f"`{longest}" in table or f", {longest}" in table, longest
        assert param.envvar and f"`{param.envvar}`" in table, param.envvar


def test_every_error_kind_is_documented():
    from fetcher.errors import ErrorKind

    documented = set(re.findall(r"^\| `(\w+)` \|", README, flags=re.MULTILINE))
    assert {kind.value for kind in ErrorKind} <= documented


def test_every_exit_status_is_documented():
    from fetcher.status import ExitStatus

    section = README.split("## Exit status", 1)[1].split("\n## ", 1)[0]
    for status in ExitStatus:
        assert f"| {status.value} |" in section, status
