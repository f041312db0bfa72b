"""The core never imports click or rich: proven in a fresh interpreter, as click's own test does."""

import json
import subprocess
import sys

from tests.conftest import ROOT

CORE = [
    "fetcher.atomic",
    "fetcher.bodies",
    "fetcher.collector",
    "fetcher.cookies",
    "fetcher.engine",
    "fetcher.errors",
    "fetcher.environment",
    "fetcher.events",
    "fetcher.input_formats",
    "fetcher.limits",
    "fetcher.parsing",
    "fetcher.paths",
    "fetcher.processes",
    "fetcher.redact",
    "fetcher.results",
    "fetcher.retry",
    "fetcher.session",
    "fetcher.settings",
    "fetcher.shards",
    "fetcher.signals",
    "fetcher.sources",
    "fetcher.status",
]
UI = ("click", "rich")


def loaded_after_import(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, cwd=ROOT, text=True
    ).stdout
    return set(json.loads(output))


def test_core_modules_import_neither_click_nor_rich():
    loaded = loaded_after_import(CORE)
    assert "fetcher.engine" in loaded
    assert not {name for name in loaded if name.split(".")[0] in UI}


def test_every_package_module_is_classified():
    """A new module must be listed as core here or be one of the UI modules."""
    ui_modules = {
        "fetcher.cli",
        "fetcher.options",
        "fetcher.progress",
        "fetcher.report",
        "fetcher.__main__",
    }
    found = {
        "fetcher." + path.stem
        for path in (ROOT / "fetcher").glob("*.py")
        if path.stem != "__init__"
    }
    assert found == set(CORE) | ui_modules


def test_report_imports_rich_only_for_terminals():
    loaded = loaded_after_import(["fetcher.report"])
    assert "rich" not in loaded
