"""The documentation says what the command does: every option, error kind and exit status is
documented, docs/options.md is what ``fetcher --help`` prints, links resolve, and every test
named as a proof in docs/guarantees.md exists."""

import ast
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import click
import pytest

from fetcher.cli import main
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
USAGE = (ROOT / "docs" / "usage.md").read_text()
OPTIONS_PAGE = ROOT / "docs" / "options.md"
GUARANTEES = (ROOT / "docs" / "guarantees.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]

# The user's entry point stays short: the reference lives in docs/.
README_MAX_BYTES = 15 * 1024


def section(text: str, heading: str) -> str:
    """The body under ``heading`` (a whole line), up to the next heading of its level or above."""
    level = len(heading.split(" ", 1)[0])
    body = text.split(f"\n{heading}\n", 1)[1]
    return re.split(rf"\n#{{1,{level}}} ", body, maxsplit=1)[0]


def options_table() -> str:
    return section(OPTIONS_PAGE.read_text(), "## Options")


def test_every_option_is_in_the_options_table():
    table = options_table()
    for param in main.params:
        if not isinstance(param, click.Option) or param.name in {"help", "version"}:
            continue
        longest = max(param.opts, key=len).split("/")[0]
        assert f"`{longest}" in table or f", {longest}" in table, longest
        assert param.envvar and f"`{param.envvar}`" in table, param.envvar


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_options", ROOT / "docs" / "generate_options.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_options_page_is_what_help_prints():
    generator = load_generator()
    assert OPTIONS_PAGE.read_text() == generator.render(), (
        "docs/options.md differs from `fetcher --help`: regenerate it with `make docs` "
        "(or `python docs/generate_options.py`) and commit the result"
    )


def test_options_page_holds_help_verbatim():
    """The generator's own check: the page's fenced block is what --help prints, byte for byte."""
    generator = load_generator()
    from click.testing import CliRunner

    printed = CliRunner().invoke(
        main, ["--help"], prog_name="fetcher", terminal_width=generator.WIDTH
    )
    assert printed.exit_code == 0
    assert f"```text\n{printed.output.rstrip()}\n```" in OPTIONS_PAGE.read_text()


def test_every_error_kind_is_documented():
    from fetcher.errors import ErrorKind

    documented = set(re.findall(r"^\| `(\w+)` \|", USAGE, flags=re.MULTILINE))
    assert {kind.value for kind in ErrorKind} <= documented


@pytest.mark.parametrize(
    ("page", "heading"),
    [(README, "## Exit status"), (USAGE, "## Exit status and signals")],
    ids=["README.md", "docs/usage.md"],
)
def test_every_exit_status_is_documented(page: str, heading: str):
    from fetcher.status import ExitStatus

    table = section(page, heading)
    for status in ExitStatus:
        assert f"| {status.value} |" in table, status


def test_the_readme_stays_an_entry_point():
    size = len(README.encode())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes: move reference to docs/"


def test_progress_refresh_rate_is_the_one_the_display_uses():
    from fetcher.output.progress import REFRESH_PER_SECOND

    assert f"redrawn {REFRESH_PER_SECOND} times a second" in section(USAGE, "### Progress")


def without_code(markdown: str) -> str:
    """Markdown with fenced blocks and inline code removed: links and headings in code are text."""
    markdown = re.sub(r"^```.*?^```[^\n]*$", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", markdown)


def anchors(page: Path) -> set[str]:
    """GitHub's ids for the headings of a page: lower case, punctuation dropped, spaces to -."""
    seen: dict[str, int] = {}
    found = set()
    text = re.sub(r"^```.*?^```[^\n]*$", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    targets = re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", without_code(page.read_text()))
    return [t for t in targets if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    links = relative_links(page)
    for link in links:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.is_relative_to(ROOT), f"{link} leaves the repository"
        assert target.exists(), f"{link}: no such file"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{link}: no heading with that id"


def test_link_checker_sees_links_and_anchors():
    """The link test would catch a broken link: it finds them, and knows the headings' ids."""
    assert "docs/usage.md#exit-status-and-signals" in relative_links(ROOT / "README.md")
    assert "per-url-fields---input-format-jsonl-and-csv" in anchors(ROOT / "docs" / "usage.md")
    assert "exit-status" in anchors(ROOT / "README.md")


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_test_named_in_the_guarantees_exists():
    """A promise's proof names tests as ``file.py::name``, ``::name`` or ``name`` (same file)."""
    table = GUARANTEES.split("| promise | proved by |", 1)[1].split("\n\n", 1)[0]
    rows = table.strip().splitlines()[1:]
    assert len(rows) > 20
    for row in rows:
        proof = row.rstrip(" |").rsplit(" | ", 1)[1]
        current: Path | None = None
        named = 0
        for ref in re.findall(r"`([^`]+)`", proof):
            match = re.fullmatch(r"(test_\w+\.py)?(?:::)?(test_\w+)?", ref)
            if match is None or not any(match.groups()):
                continue  # an option or a value, not a test
            file, name = match.groups()
            if file:
                current = ROOT / "tests" / file
                assert current.exists(), f"{ref}: no such test file"
            assert current is not None, f"{ref}: a test name before any file"
            if name:
                assert name in functions_in(current), f"{ref}: not in {current.name}"
            named += 1
        assert named, f"a promise with no test: {row[:80]}"
