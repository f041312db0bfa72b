"""The open-file limit (RLIMIT_NOFILE) against what -j and the connection pools need (s25 h1 2).

Each worker keeps a connection to each of its last 16 hosts, so a run over many hosts holds
up to 16 x -j sockets. A soft limit below that is raised at start, up to the hard limit; when
even the hard limit is short, stderr says so once, and a connection that finds no descriptor
left is this machine's failure (kind ``io``, not retried, no host blamed), not the server's.
Each run is a child that sets its own limit, as ``ulimit -n`` would, before fetcher starts.
"""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import clean_env
from tests.servers import CountingServer, counting_server, records

HOSTS = 16  # servers on as many ports: as many hosts, a pool for each in every worker
WORKERS = 4
LOW = 40  # descriptors: fewer than 4 workers x 16 hosts keep open, besides the interpreter's


@contextlib.contextmanager
def many_hosts() -> Iterator[list[CountingServer]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(counting_server()) for _ in range(HOSTS)]


def run_limited(soft: int, hard: int, servers: list[CountingServer], folder: Path,
                *args: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """fetcher over 10 URLs of each server, host after host, in a child whose RLIMIT_NOFILE is
    (soft, hard)."""
    urls = [server.url(f"/u{i}") for i in range(10) for server in servers]
    (folder / "urls").write_text("\n".join(urls) + "\n")
    code = (
        "import resource, runpy, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard})); "
        "sys.argv[0] = 'fetcher'; runpy.run_module('fetcher', run_name='__main__')"
    )
    command = [sys.executable, "-c", code, "-i", "urls", "-j", str(WORKERS), "--format",
               "jsonl", "--retries", "2", "--backoff", "0.01", "--summary", "summary.json",
               *args]  # fmt: skip
    return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, env=clean_env(), cwd=folder, check=False)  # fmt: skip


def hard_limit_allows(count: int) -> bool:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return hard == resource.RLIM_INFINITY or hard >= count


@pytest.mark.skipif(not hard_limit_allows(4096), reason="needs a hard limit of 4,096 files")
def test_a_low_soft_limit_is_raised_to_the_hard_one(tmp_path):
    """ulimit -Sn 40 with a hard limit of 4,096: every URL ok, nothing said."""
    with many_hosts() as servers:
        result = run_limited(LOW, 4096, servers, tmp_path)
    found = records(result.stdout)
    assert len(found) == 10 * HOSTS, result.stderr
    assert [record for record in found if not record["ok"]] == [], result.stderr
    assert result.returncode == 0, result.stderr
    assert "open files" not in result.stderr


def test_a_short_hard_limit_is_said_and_its_failures_are_this_machines(tmp_path):
    """ulimit -n 40 (soft and hard): one line on stderr says the limit is short; a connection
    that found no descriptor is kind io, tried once, and no host is named as failing."""
    with many_hosts() as servers:
        result = run_limited(LOW, LOW, servers, tmp_path)
    assert result.stderr.count("open files") >= 1, result.stderr
    warning = [line for line in result.stderr.splitlines() if "ulimit -n" in line]
    assert len(warning) == 1, result.stderr
    assert f"-j {WORKERS}" in warning[0] and str(LOW) in warning[0], warning
    found = records(result.stdout)
    assert len(found) == 10 * HOSTS, result.stderr
    failed = [record for record in found if not record["ok"]]
    assert failed, "the run never met its limit: the test needs more hosts"
    kinds = {record["error"]["kind"] for record in failed}
    assert kinds == {"io"}, [record["error"] for record in failed][:5]
    assert all("Too many open files" in record["error"]["message"] for record in failed)
    assert {record["attempts"] for record in failed} == {1}, failed[:3]
    summary: dict[str, Any] = json.loads((tmp_path / "summary.json").read_text())
    assert summary["by_host"] == {}, summary
    assert "most failures" not in result.stderr, result.stderr
