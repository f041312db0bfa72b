"""How --state FILE is opened (s21 f2): a state that cannot be opened (a full disk) is never
called "not a fetcher state database"."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import clean_env, invoke
from tests.servers import counting_server

# -- a state that cannot be opened says why (finding A) -----------------------------------------

# A file-size limit smaller than the state: a full disk for SQLite, which cannot make its -shm
# and -wal (EFBIG: "disk I/O error"), without a file system of its own or root.
LIMITED = (
    "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
    "sys.argv[0] = 'fetcher'; runpy.run_module('fetcher', run_name='__main__')"
)


def run_limited(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", LIMITED, "-q", *args], stdin=subprocess.DEVNULL,
        capture_output=True, timeout=60, env=clean_env(), cwd=tmp_path, check=False,
    )  # fmt: skip


def test_a_state_on_a_full_disk_is_one_that_cannot_be_opened_not_one_that_is_not_a_state(
    tmp_path: Path,
) -> None:
    """A good state whose -wal and -shm could not be made was reported as "not a fetcher state
    database (disk I/O error)": a cron mail that invites deleting it, every failure and
    validator with it. It is a state that cannot be opened now, exit 2, and it keeps its rows."""
    state = tmp_path / "ex.db"
    with counting_server() as server:
        first = invoke(["-q", "--state", str(state), server.url("/status/404")])
        assert first.exit_code == 3, first.output
        assert state.stat().st_size > 4096
        result = run_limited(tmp_path, "--state", "ex.db", server.url("/a"))
        assert server.requests == 1  # the first run's only
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "cannot open --state file 'ex.db': disk I/O error" in stderr, stderr
    assert "not a fetcher state" not in stderr
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT count(*) FROM urls WHERE NOT ok").fetchone() == (1,)


def test_a_new_state_on_a_full_disk_cannot_be_opened(tmp_path: Path) -> None:
    with counting_server() as server:
        result = run_limited(tmp_path, "--state", "new.db", server.url("/a"))
        assert server.requests == 0
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "cannot open --state file 'new.db': " in stderr, stderr
    assert "not a fetcher state" not in stderr
