"""A record that cannot be built within the memory there is (s25 h1 1): the URL's failure, not
the run's end.

fetcher runs as a real process whose address space the child limits itself (RLIMIT_AS:
preexec_fn is unsafe in a threaded test process), against a real local server whose one large
binary body is some 64 MB: fetched and spooled in pieces, it fits; its --include-body record
(base64, then JSON, then the line) needs several times that, which the limit refuses.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import clean_env
from tests.servers import CountingServer, Route, counting_server, default_route, records

BIG = 64 << 20  # the body: 64 MiB of 0xff, not UTF-8, so its record holds it as base64
LIMIT = 320 << 20  # fetcher and its threads need some 150 MB; the big record some 400 MB more
BIG_BODY = b"\xff" * BIG


def route(path: str) -> Route:
    if path == "/big":
        return 200, {"Content-Type": "application/octet-stream"}, BIG_BODY, 0.0
    return default_route(path)


@pytest.fixture(scope="module")
def big_server() -> Iterator[CountingServer]:
    with counting_server(route) as server:
        yield server


def run_limited(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """fetcher with args, its address space limited to LIMIT by the child itself; at most two
    malloc arenas, so that the limit does not depend on how many threads happen to allocate."""
    code = (
        f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, ({LIMIT}, {LIMIT}));"
        " sys.argv[0] = 'fetcher'; runpy.run_module('fetcher', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], stdin=subprocess.DEVNULL, capture_output=True,
        timeout=120, env=clean_env(MALLOC_ARENA_MAX="2"), cwd=cwd, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("ordered", [False, True])
def test_a_record_too_large_for_memory_is_its_urls_failure_and_the_run_goes_on(
    big_server, tmp_path, ordered
):
    urls = [big_server.url("/small1"), big_server.url("/big"), big_server.url("/small2")]
    (tmp_path / "list").write_text("".join(f"{url}\n" for url in urls))
    (tmp_path / "failed.txt").write_text("old\n")
    done = run_limited(
        ["-i", "list", "-j", "2", "--format", "jsonl", "--include-body", "--state", "st.db",
         "--failed", "failed.txt", "--summary", "sum.json", *(["--ordered"] if ordered else [])],
        tmp_path,
    )  # fmt: skip
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr and done.returncode == 1, stderr
    by_url = {record["url"]: record for record in records(done.stdout)}
    assert sorted(by_url) == sorted(urls)
    big = by_url[urls[1]]
    assert big["ok"] is False and big["status"] == 200 and big["bytes"] == BIG
    assert big["error"]["kind"] == "other" and "memory" in big["error"]["message"]
    assert big["body"] is None and "body_base64" not in big
    assert [by_url[url]["body"] for url in (urls[0], urls[2])] == [
        "body of /small1\n", "body of /small2\n"
    ]  # fmt: skip
    assert (tmp_path / "failed.txt").read_text() == f"{urls[1]}\n"
    summary = json.loads((tmp_path / "sum.json").read_text())
    assert (summary["ok"], summary["failed"]) == (2, 1)
    with sqlite3.connect(tmp_path / "st.db") as state:
        rows = dict(state.execute("SELECT url, ok FROM urls").fetchall())
    assert rows == {urls[0]: 1, urls[1]: 0, urls[2]: 1}
