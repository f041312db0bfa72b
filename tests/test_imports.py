"""The core never imports click or rich: proven in a fresh interpreter, as click's own test does."""

import ast
import json
import subprocess
import sys

from tests.conftest import ROOT

CORE = [
    "fetcher.owners",
    "fetcher.output.atomic",
    "fetcher.output.bodies",
    "fetcher.output.collector",
    "fetcher.output.failed",
    "fetcher.output.input_changes",
    "fetcher.output.records",
    "fetcher.output.summary",
    "fetcher.output.metrics",
    "fetcher.output.writers",
    "fetcher.output.pipes",
    "fetcher.http.cookies",
    "fetcher.run.engine",
    "fetcher.errors",
    "fetcher.observer",
    "fetcher.logs",
    "fetcher.exiting",
    "fetcher.streams",
    "fetcher.run.books",
    "fetcher.run.mailbox",
    "fetcher.input.jobs",
    "fetcher.run.build",
    "fetcher.run.dispatcher",
    "fetcher.run.shared_input",
    "fetcher.run.executor",
    "fetcher.run.hard_stop",
    "fetcher.run.messages",
    "fetcher.run.threads",
    "fetcher.run.descriptors",
    "fetcher.run.placement",
    "fetcher.run.wire",
    "fetcher.run.worker_main",
    "fetcher.run.worker_logs",
    "fetcher.run.worker_process",
    "fetcher.http.classify",
    "fetcher.http.deadline",
    "fetcher.http.fetch",
    "fetcher.http.headers",
    "fetcher.http.transfers",
    "fetcher.http.environment",
    "fetcher.output.display",
    "fetcher.input.encodings",
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
    "fetcher.http.sockets",
    "fetcher.http.reuse",
    "fetcher.http.uploads",
    "fetcher.http.response_headers",
    "fetcher.http.codings",
    "fetcher.http.rebind",
    "fetcher.http.proxy_auth",
    "fetcher.http.redirects",
    "fetcher.http.task",
    "fetcher.http.tunnel",
    "fetcher.http.addresses",
    "fetcher.http.resolve",
    "fetcher.settings",
    "fetcher.input.shards",
    "fetcher.input.hosts",
    "fetcher.run.signals",
    "fetcher.input.reader",
    "fetcher.input.pipes",
    "fetcher.status",
    "fetcher.state.database",
    "fetcher.state.lookup",
    "fetcher.state.prior",
    "fetcher.state.store",
    "fetcher.state.writes",
    "fetcher.http.resume",
    "fetcher.run.window",
]
UI = ("click", "rich")
UI_MODULES = {
    "fetcher.asking",
    "fetcher.cli",
    "fetcher.command",
    "fetcher.given",
    "fetcher.habits",
    "fetcher.options",
    "fetcher.outputs",
    "fetcher.output.progress",
    "fetcher.output.terminal",
    "fetcher.variables",
    "fetcher.__main__",
}


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


def test_core_modules_import_neither_click_nor_rich_even_inside_a_function():
    """t4 8: the fresh interpreter above sees only what importing a module imports; an
    `import rich` inside a core function (or of a UI module, which imports click) passed it.
    Every import statement of every core module, wherever it stands, is read here."""
    found = []
    for name in CORE:
        path = ROOT.joinpath(*name.split(".")).with_suffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for module in imported:
                if module.split(".")[0] in UI or module in UI_MODULES:
                    found.append(f"{name}:{node.lineno} imports {module}")
    assert not found


def test_every_package_module_is_classified():
    """A new module must be listed as core here or be one of the UI modules, once."""
    found = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "fetcher").rglob("*.py")
        if path.stem != "__init__"
    }
    assert len(CORE) == len(set(CORE)), "a module listed twice"
    assert found == set(CORE) | UI_MODULES


def test_report_imports_rich_only_for_terminals():
    loaded = loaded_after_import(["fetcher.output.records", "fetcher.output.terminal"])
    assert "rich" not in loaded


def loaded_by_command(args: list[str]) -> tuple[str, set[str]]:
    """What `fetcher ARGS` prints, and every module loaded when it exits, in a fresh interpreter."""
    code = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.stderr.write(json.dumps(sorted(sys.modules))))\n"
        f"sys.argv = ['fetcher', *{args!r}]\n"
        "from fetcher.__main__ import run\n"
        "run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, cwd=ROOT, text=True
    )
    return done.stdout, set(json.loads(done.stderr))


def test_version_and_help_import_neither_requests_nor_rich():
    """--version and --help are answered by click alone: start-up pays for nothing else."""
    heavy = {"requests", "urllib3", "rich", "http.cookiejar", "hashlib", "multiprocessing"}
    for args, says in ((["--version"], "fetcher, version"), (["--help"], "--processes")):
        output, loaded = loaded_by_command(args)
        assert says in output
        assert "fetcher.cli" in loaded
        assert not {name for name in loaded if name.split(".")[0] in heavy or name in heavy}


def test_a_run_of_threads_does_not_import_multiprocessing(httpserver):
    httpserver.expect_request("/one").respond_with_data("x")
    output, loaded = loaded_by_command(["-q", "--format", "jsonl", httpserver.url_for("/one")])
    assert '"ok": true' in output
    assert "requests" in loaded
    assert "multiprocessing.connection" not in loaded


def test_a_run_without_a_state_does_not_load_sqlite():
    """--state's modules, and SQLite with them, are imported only when --state is given."""
    loaded = loaded_after_import(["fetcher.cli", "fetcher.outputs", "fetcher.run.build"])
    assert "sqlite3" not in loaded and "fetcher.state.store" not in loaded


def test_the_command_imports_nothing_of_its_own_before_its_signal_handlers():
    """s31 t4 3: `fetcher` imported fetcher.exiting and fetcher.streams as it loaded, before
    run() installed the handlers that make an early Ctrl-C exit 130: a Ctrl-C in the first
    fifth of a second on a loaded machine printed a KeyboardInterrupt traceback."""
    loaded = loaded_after_import(["fetcher.__main__"])
    assert {name for name in loaded if name.split(".")[0] == "fetcher"} == {
        "fetcher",
        "fetcher.__main__",
    }
