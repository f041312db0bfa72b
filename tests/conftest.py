"""Fixtures: local servers and ways to run fetcher (in process with CliRunner, or as a process)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fetcher.cli import main
from tests.servers import CountingServer, counting_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with counting_server() as running:
        yield running


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without FETCHER_* or proxy variables that could change a test."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FETCHER_") and "proxy" not in key.lower()
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def invoke(args: list[str], input: str | bytes | None = None, **env: str) -> Result:
    """Run the command in process: fast, for everything but signals, terminals and real pipes."""
    runner = CliRunner()
    # CliRunner only sets the variables it is given: unset the caller's FETCHER_* and proxies.
    unset: dict[str, str | None] = {
        key: None for key in os.environ if key.startswith("FETCHER_") or "proxy" in key.lower()
    }
    unset.update(env)
    return runner.invoke(main, args, input=input, env=unset, catch_exceptions=False)


def run_process(
    args: list[str], input: bytes | None = None, timeout: float = 60, **kwargs: object
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m fetcher`` as a real process, with stdin closed unless input is given."""
    return subprocess.run(
        [sys.executable, "-m", "fetcher", *args],
        input=input if input is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=clean_env(),
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver on 127.0.0.1, so that 'localhost' can stand for another host."""
    return ("127.0.0.1", 0)
