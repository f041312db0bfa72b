"""A SIGTERM that reaches the worker processes as well as fetcher (`pkill fetcher`,
`systemctl stop`, a container's stop), a moment apart: one stop of the run, not a refused
start nor failed URLs (s36 t2 1, 2)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FETCHER, clean_env
from tests.servers import CountingServer, check_each_line_once, slow_urls, wait_for


def workers_of(pid: int) -> list[int]:
    """The worker processes of fetcher's process pid (Linux: its children)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def run_signalled(
    server: CountingServer, tmp_path: Path, ready: str
) -> tuple[int, list[str], list[dict[str, Any]], list[str]]:
    """fetcher --processes 2 on slow URLs, its workers sent SIGTERM once ready holds (the
    workers are there, or the first requests were made), then fetcher itself a moment later,
    as pkill's loop does. Returns its status, the lines, the records and --failed's lines."""
    lines = slow_urls(server, 60, 0.5)
    (tmp_path / "urls").write_text("\n".join(lines) + "\n")
    failed, summary = tmp_path / "failed", tmp_path / "summary.json"
    args = ["-i", str(tmp_path / "urls"), "-j", "2", "--processes", "2", "-q", "--format",
            "jsonl", "--failed", str(failed), "--summary", str(summary)]  # fmt: skip
    with (tmp_path / "stdout").open("wb") as out, (tmp_path / "stderr").open("wb") as err:
        process = subprocess.Popen([*FETCHER, *args], stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err, env=clean_env())  # fmt: skip
    with process:
        try:
            if ready == "workers":
                wait_for(lambda: len(workers_of(process.pid)) == 2, "the worker processes")
            else:
                wait_for(lambda: server.requests >= 2, "the first requests", timeout=30)
            for worker in workers_of(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker, signal.SIGTERM)
            time.sleep(0.1)  # the parent's turn in pkill's loop comes a moment later
            process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    stderr = (tmp_path / "stderr").read_text()
    assert summary.exists() and failed.exists(), stderr
    records = [json.loads(line) for line in (tmp_path / "stdout").read_text().splitlines()]
    return status, lines, records, failed.read_text().splitlines()


@pytest.mark.parametrize("ready", ["workers", "requests"])
def test_a_sigterm_to_the_workers_and_then_fetcher_is_one_stop(
    server: CountingServer, tmp_path: Path, ready: str
) -> None:
    """t2 1: workers signalled as they started made the run exit 2 ("it ended before it could
    start"), a usage error, with no --failed, --summary nor --metrics. t2 2: mid-run, the
    jobs they had not started were failures ("the worker process for it was stopped first")
    rather than not attempted, the whole run being stopped by the same SIGTERM."""
    status, lines, records, failed = run_signalled(server, tmp_path, ready)
    assert status == 143, (tmp_path / "stderr").read_text()
    check_each_line_once(lines, records, failed)
    stopped_first = [r for r in records if "stopped first" in json.dumps(r)]
    assert stopped_first == []


def test_a_run_nobody_stops_ends_without_waiting_for_a_stop(
    server: CountingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s36 r1 5: each worker's pipe ending at a run's end asked whether the run was stopping,
    and waited SIGNAL_SIBLINGS for a stop that never came: every --processes run ended up to
    half a second late. A worker with no job out is asked nothing."""
    from fetcher.input.reader import InputReader, Source
    from fetcher.run import processes
    from fetcher.run.build import build_run
    from fetcher.settings import Settings
    from tests.test_sessions import MemoryObserver

    asked: list[bool] = []
    seen = processes.RunStop.seen

    def counted(self: processes.RunStop) -> bool:
        asked.append(True)
        return seen(self)

    monkeypatch.setattr(processes.RunStop, "seen", counted)
    observer = MemoryObserver()
    urls = (server.url("/a"), server.url("/b"))
    reader = InputReader([Source("arguments", arguments=urls)], "http", False)
    build_run(Settings(workers=2, processes=2), reader, observer).run()
    assert sorted(result.ok for result in observer.results) == [True, True]
    assert asked == []
