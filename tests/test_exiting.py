"""fetcher.exiting: a fetcher process leaves the objects it made to the end of the process, so
the cycles among them are never collected. That is safe only if no cycle holds something whose
finalizer would still write: an open writable file, a database in a transaction, a suspended
generator (whose ``finally`` might close or rename one).

Each test runs the real command with a ``sitecustomize`` that, in every process (the command
and its worker processes), replaces ``gc.freeze`` by a probe. The probe asks more than that:
that nothing at all, held by a cycle or not, is left writing at that moment. (It cannot
collect the cycles to look: the collector runs their finalizers as it finds them.)
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import FETCHER, ROOT, clean_env
from tests.servers import closed_port, counting_server

PROBE = """
import gc, io, json, os, sqlite3, sys, types

_freeze = gc.freeze


def _standard(stream):
    buffer = getattr(stream, "buffer", None)
    return [stream, buffer, getattr(buffer, "raw", None)]


def _still_writing(thing):
    if isinstance(thing, (io.BytesIO, io.StringIO)):
        return False  # memory only
    if isinstance(thing, io.IOBase):
        return not thing.closed and thing.writable()
    if isinstance(thing, sqlite3.Connection):
        try:
            return thing.in_transaction
        except sqlite3.ProgrammingError:  # closed
            return False
    if isinstance(thing, types.GeneratorType):  # fetcher's own, suspended: its finally is to come
        return thing.gi_frame is not None and "/fetcher/" in thing.gi_code.co_filename
    return False


def _probe():
    # As they are now: under PYTHONUNBUFFERED, fetcher.__main__ made stdout and stderr its own
    # (the interpreter flushes them at exit all the same); the ones they replaced stay in __std*__.
    streams = (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__)
    standard = {id(part) for stream in streams for part in _standard(stream)}
    left = [repr(thing) for thing in gc.get_objects()
            if id(thing) not in standard and _still_writing(thing)]
    path = os.path.join(os.environ["EXIT_PROBE_DIR"], f"{os.getpid()}.json")
    with open(path, "w") as report:
        json.dump(left, report)
    _freeze()


gc.freeze = _probe
"""


def run_probed(tmp_path: Path, args: list[str]) -> tuple[subprocess.CompletedProcess[bytes], list]:
    """Run the command with the probe; its result and one report per process that exited
    through fetcher.exiting."""
    probe_dir = tmp_path / "probe"
    reports = tmp_path / "reports"
    probe_dir.mkdir()
    reports.mkdir()
    (probe_dir / "sitecustomize.py").write_text(PROBE)
    env = clean_env(EXIT_PROBE_DIR=str(reports))
    env["PYTHONPATH"] = f"{probe_dir}{os.pathsep}{ROOT}"
    done = subprocess.run(
        [*FETCHER, *args], stdin=subprocess.DEVNULL, capture_output=True, env=env,
        cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    found = [json.loads(path.read_text()) for path in sorted(reports.iterdir())]
    return done, found


def test_a_run_with_every_output_leaves_nothing_writing_to_the_cycles(tmp_path: Path) -> None:
    with counting_server() as server:
        urls = [server.url("/a"), server.url("/status/404"), f"http://127.0.0.1:{closed_port()}/"]
        done, reports = run_probed(tmp_path, [
            *urls, "--format", "jsonl", "-o", "bodies", "--state", "state.db",
            "--failed", "failed.txt", "--summary", "summary.json", "--metrics", "metrics.prom",
            "-c", "jar.txt", "--retry", "0",
        ])  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert len(done.stdout.splitlines()) == 3  # every record reached standard output
    assert reports == [[]], "the command exits through fetcher.exiting with nothing left writing"
    assert (tmp_path / "failed.txt").read_text().count("\n") == 2
    assert json.loads((tmp_path / "summary.json").read_text())


def test_worker_processes_exit_the_same_way(tmp_path: Path) -> None:
    with counting_server() as server:
        urls = [server.url(f"/p/{index}") for index in range(20)]
        done, reports = run_probed(
            tmp_path, [*urls, "--processes", "2", "-j", "4", "-o", "bodies", "--format", "jsonl"]
        )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 20
    assert len([path for path in (tmp_path / "bodies").rglob("*") if path.is_file()]) == 20
    assert reports == [[], [], []], "the command and both workers, with nothing left writing"


def test_version_exits_the_same_way(tmp_path: Path) -> None:
    done, reports = run_probed(tmp_path, ["--version"])
    assert done.returncode == 0
    assert reports == [[]]
