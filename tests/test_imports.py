"""The core never imports click or rich: proven in a fresh interpreter, as click's own test does."""

import json
import subprocess
import sys

from tests.conftest import ROOT

CORE = [
    "fetcher.output.atomic",
    "fetcher.output.bodies",
    "fetcher.output.collector",
    "fetcher.output.failed",
    "fetcher.output.records",
    "fetcher.output.summary",
    "fetcher.output.metrics",
    "fetcher.output.writers",
    "fetcher.http.cookies",
    "fetcher.run.engine",
    "fetcher.errors",
    "fetcher.observer",
    "fetcher.logs",
    "fetcher.streams",
    "fetcher.run.books",
    "fetcher.run.mailbox",
    "fetcher.input.jobs",
    "fetcher.run.build",
    "fetcher.run.dispatcher",
    "fetcher.run.executor",
    "fetcher.run.hard_stop",
    "fetcher.run.messages",
    "fetcher.run.threads",
    "fetcher.run.wire",
    "fetcher.run.worker_main",
    "fetcher.run.worker_process",
    "fetcher.http.classify",
    "fetcher.http.deadline",
    "fetcher.http.fetch",
    "fetcher.http.headers",
    "fetcher.http.transfers",
    "fetcher.http.environment",
    "fetcher.output.display",
    "fetcher.input.formats",
    "fetcher.run.scheduler",
    "fetcher.input.parsing",
    "fetcher.output.paths",
    "fetcher.run.processes",
    "fetcher.redact",
    "fetcher.results",
    "fetcher.http.request",
    "fetcher.http.retry",
    "fetcher.http.session",
    "fetcher.http.task",
    "fetcher.settings",
    "fetcher.input.shards",
    "fetcher.run.signals",
    "fetcher.input.reader",
    "fetcher.status",
    "fetcher.state.database",
    "fetcher.state.lookup",
    "fetcher.state.prior",
    "fetcher.state.store",
    "fetcher.state.writes",
    "fetcher.http.resume",
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
    assert "fetcher.run.engine" in loaded
    assert not {name for name in loaded if name.split(".")[0] in UI}


def test_every_package_module_is_classified():
    """A new module must be listed as core here or be one of the UI modules."""
    ui_modules = {
        "fetcher.cli",
        "fetcher.command",
        "fetcher.habits",
        "fetcher.options",
        "fetcher.outputs",
        "fetcher.output.progress",
        "fetcher.output.terminal",
        "fetcher.__main__",
    }
    found = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "fetcher").rglob("*.py")
        if path.stem != "__init__"
    }
    assert found == set(CORE) | ui_modules


def test_report_imports_rich_only_for_terminals():
    loaded = loaded_after_import(["fetcher.output.records", "fetcher.output.terminal"])
    assert "rich" not in loaded
