"""A run whose threads or processes the system refuses (memory, a limit on tasks) ends at once
with a clear message and exit status 2, having read no line and left --failed as it was, and
leaves nothing of itself started or changed. Before, `-j 1024` under a memory limit printed a
traceback and hung for good, waiting on the workers it had started."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fetcher.input.reader import InputReader, Source
from fetcher.run.build import build_run
from fetcher.run.executor import RunStartError
from fetcher.settings import Settings
from tests.conftest import clean_env
from tests.test_sessions import MemoryObserver

# No thread can be made with a stack this large (pthread_create fails: "can't start new thread").
NO_STACK_FITS = 1 << 40


@pytest.fixture
def threads_refused():
    """Every thread made in this process meanwhile fails to start."""
    before = threading.stack_size(NO_STACK_FITS)
    try:
        yield
    finally:
        threading.stack_size(before)


def run_of(settings):
    observer = MemoryObserver()
    reader = InputReader([Source("arguments", arguments=("http://127.0.0.1:9/",))], "http", False)
    return build_run(settings, reader, observer), observer


def interpreter_cpus():
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def run_under_memory_limit(options: list[str]) -> subprocess.CompletedProcess[bytes]:
    """The command with options and one URL, limited to 1 GB of address space, which 1,024
    threads' stacks cannot fit in: some start, one is refused."""
    # The limit is set by the child itself (preexec_fn is unsafe in a threaded test process).
    code = (
        "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "sys.argv[0] = 'fetcher'; runpy.run_module('fetcher', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *options, "http://127.0.0.1:9/"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60, env=clean_env(), check=False,
    )  # fmt: skip


def test_a_thread_run_that_cannot_start_its_workers_says_so_and_restores_the_interpreter(
    threads_refused,
):
    interval, cpus = sys.getswitchinterval(), interpreter_cpus()
    earlier = set(threading.enumerate())
    run, observer = run_of(Settings(workers=3))
    with pytest.raises(RunStartError, match=r"cannot start worker thread 1 of 3 .*lower -j"):
        run.run()
    assert observer.results == []
    assert run.source.count == 0  # no line read
    assert (sys.getswitchinterval(), interpreter_cpus()) == (interval, cpus)
    assert set(threading.enumerate()) <= earlier


def test_a_process_run_that_cannot_start_a_worker_process_says_so(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    run, observer = run_of(Settings(workers=2, processes=2))
    with pytest.raises(RunStartError, match="cannot start worker process 1: "):
        run.run()
    assert observer.results == []


def test_the_command_under_a_memory_limit_exits_2_with_a_message_not_a_traceback(tmp_path):
    """The threads started end, and the --failed file from before is left as it was."""
    failed = Path(tmp_path, "failed.txt")
    failed.write_text("from the last run\n")
    done = run_under_memory_limit(["-j", "1024", "--failed", str(failed)])
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert stderr.startswith("Error: cannot start worker thread "), stderr  # no usage lines
    assert " of 1024 (can't start new thread): try a lower -j" in stderr
    assert "Traceback" not in stderr
    assert done.stdout == b""
    assert failed.read_text() == "from the last run\n"


def test_a_process_run_whose_worker_ends_before_it_starts_says_so(monkeypatch):
    """A worker process that never says its threads run (here: one that is not fetcher at
    all) refuses the run before a line is read, rather than taking URLs to lose."""
    monkeypatch.setattr(sys, "executable", "/bin/true")
    run, observer = run_of(Settings(workers=2, processes=2))
    with pytest.raises(RunStartError, match="worker process 1: it ended before it could start"):
        run.run()
    assert observer.results == []
    assert run.source.count == 0


@pytest.mark.parametrize(
    ("script", "said"),
    [("kill -SEGV $$", "it was killed by SIGSEGV before it could start"),
     ("exit 255", "it ended before it could start")],
    ids=["crashed", "exit-255"],
)  # fmt: skip
def test_a_worker_process_that_ends_as_it_starts_refuses_the_run_saying_how(
    monkeypatch, tmp_path, script, said
):
    """s36 r1 1: a worker that crashed, or the OOM killer killed, as it started was taken for
    one pkill's SIGTERM ended (a stop of this run to follow, s36 t2 1): the run went on with
    the rest without a word, or, every worker gone, ended as an outage (exit 3). With no stop
    after it, it refuses the run, as before, saying what ended it. r2 8: a status over 128
    that is no signal's (255) was called 'stopped by signal 127'."""
    worker = tmp_path / "worker"
    worker.write_text(f"#!/bin/sh\n{script}\n")
    worker.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(worker))
    run, observer = run_of(Settings(workers=2, processes=2))
    with pytest.raises(RunStartError, match=f"worker process 1: {said}"):
        run.run()
    assert observer.results == [] and run.source.count == 0


def test_the_command_with_processes_exits_2_when_a_worker_cannot_start_its_threads(tmp_path):
    """Each worker process of 512 threads is refused some of them under the limit: the run is
    refused as a whole, as without --processes. Before, the run went on and the URLs dealt
    to the refused worker ended as lost (exit status 3 here, --failed rewritten)."""
    failed = Path(tmp_path, "failed.txt")
    failed.write_text("from the last run\n")
    done = run_under_memory_limit(["--processes", "2", "-j", "1024", "--failed", str(failed)])
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert re.match(r"Error: worker process [12]: cannot start worker thread \d+ of 512 ", stderr)
    assert "Traceback" not in stderr
    assert done.stdout == b""
    assert failed.read_text() == "from the last run\n"


def test_a_worker_process_that_never_says_it_started_is_given_up_on(monkeypatch, tmp_path):
    """Alive but silent (here: a process that only sleeps), a worker must not hold the run
    before its first line for ever: after START_LIMIT it is stopped and the run refused."""
    from fetcher.run import worker_process

    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\nexec sleep 60\n")
    silent.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(silent))
    monkeypatch.setattr(worker_process, "START_LIMIT", 0.5)
    run, observer = run_of(Settings(workers=2, processes=2))
    began = time.monotonic()
    with pytest.raises(RunStartError, match=r"worker process 1: it did not start within 0.5 s"):
        run.run()
    assert time.monotonic() - began < 4  # the silent ones are stopped, not waited for
    assert observer.results == [] and run.source.count == 0


def run_with_descriptors(
    limit: int, args: list[str], cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    """The command with args under ``ulimit -n`` limit, set by the child itself."""
    code = (
        "import resource, runpy, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit})); "
        "sys.argv[0] = 'fetcher'; runpy.run_module('fetcher', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], stdin=subprocess.DEVNULL, capture_output=True,
        timeout=60, env=clean_env(), cwd=cwd, check=False,
    )  # fmt: skip


FULL_RUN = ["-i", "urls", "-j", "256", "-o", "D", "--state", "s.db", "--failed", "f",
            "--results", "r", "--summary", "s.json", "-c", "jar"]  # fmt: skip


@pytest.mark.parametrize(
    ("limit", "args"),
    [(11, ["--state", "s.db"]), (11, ["--processes", "2"]), (16, FULL_RUN)],
    ids=["state", "processes", "every-file"],
)
def test_too_few_descriptors_to_start_is_a_usage_error_that_touches_nothing(
    server, tmp_path, limit, args
):
    """At a tiny ``ulimit -n`` the start raised a traceback from wherever a descriptor was
    refused first (the signals' socket pair, a worker's pipe, a late import), exit 1, and
    --results was truncated already (s25 h1 4). Now: exit 2, one clear message, nothing
    opened, sent or changed."""
    (tmp_path / "urls").write_text(server.url("/a") + "\n")
    for name in ("r", "f"):
        (tmp_path / name).write_text("old\n")
    done = run_with_descriptors(limit, [*args, server.url("/b")], tmp_path)
    stderr = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in stderr, stderr
    assert f"Error: too few file descriptors: ulimit -n is {limit}," in stderr
    assert "may need up to" not in stderr  # the open-file warning of a run not refused (r6 3)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["f", "r", "urls"]
    assert (tmp_path / "r").read_text() == (tmp_path / "f").read_text() == "old\n"
    assert server.requests == 0


def test_a_run_with_descriptors_enough_to_start_is_not_refused(server, tmp_path):
    done = run_with_descriptors(48, ["--state", "s.db", "--processes", "2", server.url("/a")],
                                tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
