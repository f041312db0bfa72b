"""A URL fresh under --skip-fresh, under --processes with -o, is skipped by the worker process
that gives its file's names (Job.keep, fetcher.run.worker_main.kept_as_fresh): what becomes of
it when that worker dies or the run stops before the worker has reached it (s24 f10). One
process records such a URL skipped as soon as it reads its line; a worker's death or a stop
must not turn it into a failure, nor write one into --state.

Real servers on 127.0.0.1: one host, so every job goes to one worker (deal_key), whose single
thread (-j 2 over 2 processes) is held by slow URLs listed ahead of the fresh one; its window
(4 jobs) keeps the fresh one queued, its skip not yet decided, while the test kills or stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import FETCHER, clean_env, run_process
from tests.servers import (
    CountingServer,
    check_each_line_once,
    client_ports,
    counting_server,
    records,
    wait_for,
    worker_pids,
)

SLOW = 12  # slow URLs ahead of the fresh one: far more than the worker's window of 4


def fetch_once(server: CountingServer, tmp_path: Path, path: str) -> dict:
    """Run 1: path fetched into -o out, its row in --state; its record."""
    result = run_process(["-q", "--format", "jsonl", "-o", str(tmp_path / "out"),
                          "--state", str(tmp_path / "st.db"), server.url(path)])  # fmt: skip
    assert result.returncode == 0, result.stderr
    return records(result.stdout)[0]


def start_fresh_run(
    server: CountingServer, tmp_path: Path, lines: list[str]
) -> subprocess.Popen[bytes]:
    """Run 2: lines under --skip-fresh 1h --processes 2 -j 2, with -o, --state and --failed."""
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"{line}\n" for line in lines))
    return subprocess.Popen(
        [*FETCHER, "-j", "2", "--processes", "2", "--format", "jsonl", "-i", str(urls),
         "-o", str(tmp_path / "out"), "--state", str(tmp_path / "st.db"), "--skip-fresh", "1h",
         "--failed", str(tmp_path / "failed.txt")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
        start_new_session=True,
    )  # fmt: skip


def the_worker_holding(process: subprocess.Popen[bytes], server: CountingServer) -> int:
    """The worker process with a connection to server, once a slow request has arrived (with
    one thread, what it fetched before is saved by then)."""
    wait_for(lambda: any(path.startswith("/slow/") for path in server.paths),
             "the first slow request", 20)  # fmt: skip
    found = [pid for pid in worker_pids(process.pid) if client_ports(pid, server.port)]
    assert len(found) == 1, found  # one host: one worker holds all its jobs
    return found[0]


def finish(process: subprocess.Popen[bytes]) -> tuple[list[dict], bytes]:
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return records(stdout), stderr


def still_skipped(server: CountingServer, tmp_path: Path, path: str) -> dict:
    """Run 3, one process: the record of path, which a good row still skips."""
    result = run_process(["-q", "--format", "jsonl", "-o", str(tmp_path / "out"),
                          "--state", str(tmp_path / "st.db"), "--skip-fresh", "1h",
                          server.url(path)])  # fmt: skip
    assert result.returncode == 0, result.stderr
    return records(result.stdout)[0]


def slow_lines(server: CountingServer, start: int, count: int) -> list[str]:
    return [server.url(f"/slow/20/{n}") for n in range(start, start + count)]


def test_a_fresh_url_queued_in_a_worker_that_is_killed_keeps_its_skip(tmp_path):
    """r2 #3: the job went down with the worker as 'ended unexpectedly; whether it was
    requested is not known', to --failed, and its good row became ok=0."""
    with counting_server() as server:
        first = fetch_once(server, tmp_path, "/k/")
        lines = [*slow_lines(server, 0, SLOW), server.url("/k/"), *slow_lines(server, SLOW, 2)]
        process = start_fresh_run(server, tmp_path, lines)
        os.kill(the_worker_holding(process, server), signal.SIGKILL)
        got, stderr = finish(process)
        assert process.returncode == 1, stderr
        by_url = {record["url"]: record for record in got}
        fresh = by_url[server.url("/k/")]
        assert fresh["ok"] and fresh["skipped"], fresh
        assert (fresh["path"], fresh["sha256"]) == (first["path"], first["sha256"]), fresh
        assert server.paths.count("/k/") == 1  # never requested again
        failed = (tmp_path / "failed.txt").read_text().splitlines()
        assert check_each_line_once(lines, got, failed) == set()
        assert server.url("/k/") not in failed
        # Its row is still good: the next run skips it too.
        assert still_skipped(server, tmp_path, "/k/")["skipped"]


def test_a_fresh_url_whose_file_was_replaced_before_its_worker_died_is_lost_as_a_fetch(tmp_path):
    """/k/index.html, new, fetched first by the same worker, is saved as /k/'s file: /k/ was to
    be fetched again, so it fails with the rest, but not as a skip it never made."""
    with counting_server() as server:
        first = fetch_once(server, tmp_path, "/k/")
        index = server.url("/k/index.html")
        lines = [index, *slow_lines(server, 0, SLOW), server.url("/k/")]
        process = start_fresh_run(server, tmp_path, lines)
        os.kill(the_worker_holding(process, server), signal.SIGKILL)
        got, stderr = finish(process)
        assert process.returncode in (1, 3), stderr  # 3: /k/index.html's record died with it
        assert Path(first["path"]).read_text() == "body of /k/index.html\n"
        by_url = {record["url"]: record for record in got}
        lost = by_url[server.url("/k/")]
        assert not lost["ok"] and lost["error"]["kind"] == "other", lost
        message = lost["error"]["message"]
        assert "ended unexpectedly" in message and "replaced" in message, message
        assert "whether it was requested is not known" not in message, message
        failed = (tmp_path / "failed.txt").read_text().splitlines()
        assert check_each_line_once(lines, got, failed) == set()


def test_a_stop_gives_a_fresh_url_queued_in_a_worker_its_skip_not_a_failed_line(tmp_path):
    """r2 #5: a stop handed the queued job back as not attempted: in --failed, done again by
    the next run, where one process records it skipped as it reads it."""
    with counting_server() as server:
        first = fetch_once(server, tmp_path, "/k/")
        lines = [*slow_lines(server, 0, SLOW), server.url("/k/"), *slow_lines(server, SLOW, 2)]
        process = start_fresh_run(server, tmp_path, lines)
        the_worker_holding(process, server)
        process.send_signal(signal.SIGINT)
        got, stderr = finish(process)
        assert process.returncode == 130, stderr
        by_url = {record["url"]: record for record in got}
        fresh = by_url.get(server.url("/k/"))
        assert fresh is not None and fresh["ok"] and fresh["skipped"], got
        assert fresh["path"] == first["path"], fresh
        failed = (tmp_path / "failed.txt").read_text().splitlines()
        check_each_line_once(lines, got, failed)
        assert server.url("/k/") not in failed


def test_a_fresh_url_read_after_every_worker_died_keeps_its_skip(tmp_path):
    """s24 r6 3: with no live worker left, a fresh job not yet sent was lost 'before it was
    sent', to --failed, and its good row became ok=0; its file is still its row's (no worker is
    left to replace it): it keeps its skip, as one process records it."""
    with counting_server() as server:
        first = fetch_once(server, tmp_path, "/k/")
        # Far more slow lines than the workers' windows hold: /k/ is read after both died.
        lines = [*slow_lines(server, 0, 10 * SLOW), server.url("/k/")]
        process = start_fresh_run(server, tmp_path, lines)
        the_worker_holding(process, server)  # both workers are up and one is busy
        for pid in worker_pids(process.pid):
            os.kill(pid, signal.SIGKILL)
        got, stderr = finish(process)
        by_url = {record["url"]: record for record in got}
        fresh = by_url[server.url("/k/")]
        assert fresh["ok"] and fresh["skipped"], fresh
        assert (fresh["path"], fresh["sha256"]) == (first["path"], first["sha256"]), fresh
        failed = (tmp_path / "failed.txt").read_text().splitlines()
        assert check_each_line_once(lines, got, failed) == set()
        assert still_skipped(server, tmp_path, "/k/")["skipped"]
