"""The bench's synthetic --state (bench/state_files.py, scenario F) is a state a run takes as it
would its own: it once called fetcher's schema code with an old signature and could not be made
at all, which nothing but a bench run (on demand, rarely) would have shown."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from pytest_httpserver import HTTPServer

from tests.conftest import ROOT, invoke

ROWS = 40


def state_files() -> ModuleType:
    spec = importlib.util.spec_from_file_location("state_files", ROOT / "bench" / "state_files.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_s_synthetic_state_is_one_a_run_skips_from(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    module = state_files()
    state, listing = tmp_path / "s.db", tmp_path / "urls.txt"
    prefix = httpserver.url_for("/f/")
    pairs = ((f"{prefix}{n}", f"out/f/{n}") for n in range(ROWS))
    assert module.synthetic_state(state, listing, pairs) == ROWS
    assert module.state_size(state)[1] == ROWS
    args = ["--format", "jsonl", "-q", "--state", str(state), "--skip-fresh", "1h"]
    result = invoke([*args, "-i", str(listing)])
    records = [json.loads(line) for line in result.output.splitlines()]
    assert len(records) == ROWS, result.output[-500:]
    assert all(record["skipped"] for record in records), records[0]
    assert httpserver.log == [], "a fresh row of the synthetic state was fetched"
