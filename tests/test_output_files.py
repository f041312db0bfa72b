"""The run's own output files: --failed, --results, --summary and -c (§2.4, §2.5).

Each is checked before the first request; --failed is built beside its FILE and renamed over it
when the run ends; symlinks, modes and the umask follow one documented rule; a write that fails
mid-run ends the run cleanly. Real servers on 127.0.0.1, real processes where the exit status,
the umask, signals or /dev/full matter.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import FETCHER, FETCHER_NAMED_TEMPORARIES, clean_env, invoke, run_process
from tests.servers import (
    Route,
    counting_server,
    default_route,
    files_open_under,
    signal_twice,
    wait_for,
)

NOISE = ("Traceback", "Exception ignored", "Error in sys.excepthook")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".fetcher-"))


# -- 1. --failed is built beside FILE and replaces it when the run ends -------------------------


def flaky_route() -> Callable[[str], Route]:
    """``/flaky/N`` fails (503) the first time it is asked for and is ok afterwards;
    ``/gone/N`` is always 404; anything else is the default route."""
    seen: set[str] = set()
    lock = threading.Lock()

    def route(path: str) -> Route:
        if path.startswith("/flaky/"):
            with lock:
                first = path not in seen
                seen.add(path)
            return (503 if first else 200), {}, b"flaky", 0.0
        if path.startswith("/gone/"):
            return 404, {}, b"gone", 0.0
        return default_route(path)

    return route


def test_failed_retry_loop_reads_the_old_list_and_keeps_what_failed_again(tmp_path):
    retry = tmp_path / "retry.txt"
    with counting_server(flaky_route()) as server:
        ok = [server.url(f"/ok/{n}") for n in range(3)]
        flaky = [server.url(f"/flaky/{n}") for n in range(4)]
        gone = [server.url(f"/gone/{n}") for n in range(2)]
        # --retries 0: the flaky ones must fail in the first run, not be retried within it.
        first = invoke(["--retries", "0", "--failed", str(retry), *ok, *flaky, *gone])
        assert first.exit_code == 1
        assert sorted(retry.read_text().splitlines()) == sorted(flaky + gone)
        before = server.requests

        second = invoke(["--retries", "0", "-i", str(retry), "--failed", str(retry)])

        assert server.requests - before == len(flaky) + len(gone), "the retry fetched nothing"
        assert second.exit_code == 1
        assert sorted(retry.read_text().splitlines()) == sorted(gone)
        assert mode_of(retry) == 0o600
        assert leftovers(tmp_path) == []
        # Once more: only the lines that are still gone are fetched, and kept.
        third = invoke(["-i", str(retry), "--failed", str(retry)])
        assert third.exit_code == 3
        assert server.requests - before == len(flaky) + 2 * len(gone)
        assert sorted(retry.read_text().splitlines()) == sorted(gone)


def unnamed_files_open_under(pid: int, folder: Path) -> list[Path]:
    """The files with no name yet (O_TMPFILE) process pid is writing in folder."""
    return [fd for fd in files_open_under(pid, folder) if os.readlink(fd).endswith(" (deleted)")]


@pytest.mark.parametrize("command", [FETCHER, FETCHER_NAMED_TEMPORARIES], ids=["unnamed", "named"])
def test_failed_is_built_in_a_0600_temporary_even_under_umask_0(tmp_path, command):
    """Built with no name where the file system allows (no temporary to find, or to leave), else
    under a temporary name beside FILE: 0600 either way, FILE untouched till the end."""
    failed = tmp_path / "failed.txt"
    failed.write_bytes(b"old line\n")
    with counting_server() as server:
        urls = [server.url("/status/404"), server.url("/slow/30/hang")]
        with (tmp_path / "out").open("wb") as out:
            process = subprocess.Popen(
                [*command, "-j", "2", "--failed", str(failed), *urls],
                stdout=out, stderr=subprocess.DEVNULL, env=clean_env(), umask=0,
            )  # fmt: skip
        try:
            wait_for(lambda: server.requests >= 2, "both requests to reach the server")
            temporaries = [tmp_path / name for name in leftovers(tmp_path)]
            if command is FETCHER:
                assert temporaries == []
                temporaries = unnamed_files_open_under(process.pid, tmp_path)
            assert len(temporaries) == 1, temporaries
            assert stat.S_IMODE(temporaries[0].stat().st_mode) == 0o600  # /proc/PID/fd followed
            assert failed.read_bytes() == b"old line\n", "FILE changed before the run ended"
        finally:
            process.kill()
            process.wait(timeout=10)


def test_sigkill_mid_run_leaves_the_old_failed_file_whole(tmp_path):
    """...and nothing beside it: a named temporary was left by every killed run, for good
    (s19 t2 L4)."""
    failed = tmp_path / "failed.txt"
    old = b"http://old.test/1\nhttp://old.test/2 with\ttab\n"
    failed.write_bytes(old)
    os.chmod(failed, 0o600)
    with counting_server() as server:
        urls = [server.url(f"/status/404?{n}") for n in range(20)] + [server.url("/slow/30/x")]
        source = tmp_path / "in.txt"
        source.write_text("\n".join(urls) + "\n")
        process = subprocess.Popen(
            [*FETCHER, "-j", "4", "-i", str(source), "--failed", str(failed)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env(),
        )  # fmt: skip
        try:
            wait_for(lambda: server.requests >= len(urls), "every request to reach the server")
            process.kill()
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert failed.read_bytes() == old
    assert mode_of(failed) == 0o600
    assert leftovers(tmp_path) == []


def test_second_interrupt_still_commits_the_failed_file(tmp_path):
    failed = tmp_path / "failed.txt"
    failed.write_bytes(b"old\n")
    with counting_server() as server:
        bad, hanging = server.url("/status/404"), server.url("/slow/30/hang")
        with (tmp_path / "err").open("wb") as err:
            process = subprocess.Popen(
                [*FETCHER, "-j", "2", "--failed", str(failed), bad, hanging],
                stdout=subprocess.DEVNULL, stderr=err, env=clean_env(),
            )  # fmt: skip
        try:
            wait_for(lambda: server.requests >= 2, "both requests to reach the server")
            signal_twice(process, signal.SIGINT)
            assert process.wait(timeout=10) == 130
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert bad.encode() + b"\n" in failed.read_bytes().splitlines(keepends=True)
    assert b"old\n" not in failed.read_bytes()
    assert mode_of(failed) == 0o600
    assert leftovers(tmp_path) == []


# -- 2. symlinks and special files ---------------------------------------------------------------


def precious(tmp_path: Path) -> tuple[Path, Path]:
    """A file the link points at, which no option may change, and the link to it."""
    target = tmp_path / "elsewhere" / "precious.txt"
    target.parent.mkdir()
    target.write_bytes(b"precious\n")
    os.chmod(target, 0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    return target, link


@pytest.mark.parametrize(
    "option",
    ["--failed", "--summary", "--metrics", "-c"],
    ids=["failed", "summary", "metrics", "cookie-jar"],
)
def test_a_symlink_at_a_replaced_file_is_replaced_never_written_through(server, tmp_path, option):
    target, link = precious(tmp_path)
    if option == "-c":
        target.write_text("# Netscape HTTP Cookie File\n")
    before = target.read_bytes()
    result = invoke([option, str(link), server.url("/status/404")])
    assert result.exit_code == 3
    assert target.read_bytes() == before
    assert mode_of(target) == 0o644
    assert not link.is_symlink(), "the link should have been replaced by the new file"
    assert link.stat().st_size > 0
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("option", ["--failed", "--summary", "--metrics", "-c"])
@pytest.mark.parametrize("whose", ["another-process", "this-process-s-input"])
def test_a_symlink_to_a_descriptor_planted_at_a_replaced_file_is_replaced(
    server, tmp_path, option, whose
):
    """An attacker who can write beside --failed links it to /proc/PID/fd/N: the file another
    process holds open there (or, through /proc/self/fd/0, fetcher's own input list) was
    appended to, a URL's password with it. Through a link only this process's stdout and
    stderr are streams (the user's own redirection); anything else is replaced."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"# Netscape HTTP Cookie File\n")  # what -c reads first
    link = tmp_path / "out"
    url = server.url("/status/404").replace("://", "://bob:s3cret@")
    with victim.open("rb") as held, victim.open("ab") as appended:
        holder = subprocess.Popen(["sleep", "30"], stdout=appended)
        try:
            fd = f"/proc/{holder.pid}/fd/1" if whose == "another-process" else "/proc/self/fd/0"
            link.symlink_to(fd)
            command = [*FETCHER, option, str(link), url]
            done = subprocess.run(command, stdin=held, capture_output=True, env=clean_env(),
                                  timeout=60, check=False)  # fmt: skip
        finally:
            holder.kill()
            holder.wait()
    assert done.returncode == 3, done.stderr
    assert victim.read_bytes() == b"# Netscape HTTP Cookie File\n"
    assert not link.is_symlink() and link.stat().st_size > 0


def test_results_through_a_symlink_is_written_like_a_shell_redirection(server, tmp_path):
    target, link = precious(tmp_path)
    result = invoke(["--format", "jsonl", "--results", str(link), server.url("/a")])
    assert result.exit_code == 0
    assert link.is_symlink(), "--results must not replace the link"
    assert json.loads(target.read_text())["url"] == server.url("/a")
    assert mode_of(target) == 0o644  # truncated in place, its mode kept


def read_fifo_later(path: Path) -> Callable[[], bytes]:
    """Open a FIFO for reading now (without blocking) and return what reads all of it."""
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def read_all() -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(fd)
        return b"".join(chunks)

    return read_all


@pytest.mark.parametrize("option", ["--failed", "--summary", "--metrics", "--results"])
def test_a_fifo_is_written_to_not_replaced(server, tmp_path, option):
    fifo = tmp_path / "fifo"
    read_all = read_fifo_later(fifo)
    result = invoke([option, str(fifo), "--format", "jsonl", server.url("/status/404")])
    data = read_all()
    assert result.exit_code == 3
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    expected = {"--summary": b'"failed": 1', "--metrics": b'fetcher_urls_total{outcome="failed"} 1'}
    assert expected.get(option, server.url("/status/404").encode()) in data
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("option", ["--failed", "--summary", "--metrics"])
def test_a_fifo_nobody_reads_is_refused_not_waited_on(server, tmp_path, option):
    """A FIFO planted where a file written at the end goes hung the run without a limit, and
    a first Ctrl-C did not end it (s14 -o DIR attacker, 10): now it cannot be written, as any
    output that cannot be, and the run ends."""
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    done = run_process([option, str(fifo), server.url("/status/404")], timeout=30)
    assert done.returncode in (1, 2, 3), done.stderr
    assert b"no process reads" in done.stderr, done.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_dev_stdout_is_a_legitimate_target(server, tmp_path):
    result = run_process(
        ["--results", "/dev/stdout", "--failed", "/dev/stderr", "--summary", "/dev/stdout",
         "--format", "jsonl", "-q", server.url("/status/404")]
    )  # fmt: skip
    assert result.returncode == 3
    lines = result.stdout.decode().splitlines()
    assert json.loads(lines[0])["url"] == server.url("/status/404")
    assert json.loads("\n".join(lines[1:]))["failed"] == 1
    assert result.stderr.decode() == server.url("/status/404") + "\n"
    assert os.path.islink("/dev/stdout") or stat.S_ISCHR(os.stat("/dev/stdout").st_mode)


def test_a_file_behind_this_process_s_stdout_is_added_to_never_replaced(server, tmp_path):
    """`--summary /dev/stdout` with stdout on a file: the name goes through /proc (here links
    of the test's own, not /dev/stdout, which a failing run would replace for every process of
    the system). Renamed over, the links were replaced and nothing reached the files; written
    from its start, the summary would have overwritten the records."""
    out, to_stdout, to_stderr = tmp_path / "out.txt", tmp_path / "1", tmp_path / "2"
    to_stdout.symlink_to("/proc/self/fd/1")
    to_stderr.symlink_to("/proc/self/fd/2")
    url = server.url("/status/404")
    with open(out, "wb") as sink:
        done = subprocess.run(
            [*FETCHER, "--format", "jsonl", "-q", "--failed", str(to_stderr),
             "--summary", str(to_stdout), url],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.PIPE, env=clean_env(),
            timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert (os.readlink(to_stdout), os.readlink(to_stderr)) == (
        "/proc/self/fd/1",
        "/proc/self/fd/2",
    )
    record, *summary = out.read_text().splitlines()
    assert json.loads(record)["url"] == url  # the record, kept
    assert json.loads("\n".join(summary))["failed"] == 1  # the summary, added
    assert done.stderr.decode() == url + "\n"  # the --failed line


# -- 3. modes and the umask ------------------------------------------------------------------


def test_new_summary_and_results_honour_the_umask(server, tmp_path):
    summary, results = tmp_path / "summary.json", tmp_path / "records.txt"
    args = ["-q", "--summary", str(summary), "--results", str(results), server.url("/a")]
    result = run_process(args, umask=0o027)
    assert result.returncode == 0, result.stderr
    assert mode_of(summary) == 0o640
    assert mode_of(results) == 0o640


def test_replacing_a_file_keeps_its_mode(server, tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    os.chmod(summary, 0o600)
    result = run_process(["-q", "--summary", str(summary), server.url("/a")], umask=0o022)
    assert result.returncode == 0, result.stderr
    assert json.loads(summary.read_text())["ok"] == 1
    assert mode_of(summary) == 0o600


@pytest.mark.parametrize("option", ["--failed", "-c"])
def test_secret_bearing_files_are_0600_whatever_the_umask(server, tmp_path, option):
    path = tmp_path / "secret.txt"
    result = run_process([option, str(path), server.url("/status/404")], umask=0)
    assert result.returncode == 3, result.stderr
    assert mode_of(path) == 0o600


# -- 4. every output file is checked before the first request --------------------------------


OUTPUT_OPTIONS = ["--failed", "--results", "--summary", "--metrics", "-c", "--state"]


@pytest.mark.parametrize("option", OUTPUT_OPTIONS)
def test_output_in_a_missing_folder_is_a_usage_error_before_any_request(server, tmp_path, option):
    path = tmp_path / "missing" / "file.txt"
    result = invoke([option, str(path), server.url("/a")])
    assert result.exit_code == 2
    assert option in result.output
    assert "does not exist" in result.output
    assert server.requests == 0


@pytest.mark.parametrize("option", OUTPUT_OPTIONS)
def test_output_that_is_a_directory_is_a_usage_error_before_any_request(server, tmp_path, option):
    result = invoke([option, str(tmp_path), server.url("/a")])
    assert result.exit_code == 2
    assert "is a directory" in result.output
    assert server.requests == 0


@pytest.mark.parametrize("option", OUTPUT_OPTIONS)
def test_output_under_a_regular_file_is_a_usage_error(server, tmp_path, option):
    (tmp_path / "plain").write_text("x")
    result = invoke([option, str(tmp_path / "plain" / "file.txt"), server.url("/a")])
    assert result.exit_code == 2
    assert "not a folder" in result.output
    assert server.requests == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
@pytest.mark.parametrize("option", OUTPUT_OPTIONS)
def test_output_in_a_read_only_folder_is_a_usage_error(server, tmp_path, option):
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    result = invoke([option, str(folder / "file.txt"), server.url("/a")])
    assert result.exit_code == 2
    assert "cannot write in its folder" in result.output
    assert server.requests == 0


def test_usage_errors_leave_an_old_failed_file_alone(server, tmp_path):
    failed = tmp_path / "failed.txt"
    failed.write_bytes(b"keep me\n")
    result = invoke(["--failed", str(failed), "--summary", str(tmp_path / "no" / "s.json"), "x"])
    assert result.exit_code == 2
    assert failed.read_bytes() == b"keep me\n"
    assert leftovers(tmp_path) == []


# -- 5. a write that fails mid-run --------------------------------------------------------------


def run_into_dev_full(args: list[str], to_stdout: bool) -> subprocess.CompletedProcess[bytes]:
    with open("/dev/full", "wb") as full:
        return subprocess.run(
            [*FETCHER, *args], stdin=subprocess.DEVNULL,
            stdout=full if to_stdout else subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=clean_env(), timeout=120, check=False,
        )  # fmt: skip


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("count", [1, 400], ids=["fails-at-flush", "fails-mid-run"])
@pytest.mark.parametrize("where", ["stdout", "results"])
def test_records_that_cannot_be_written_end_the_run_cleanly(server, tmp_path, count, where):
    failed, summary = tmp_path / "failed.txt", tmp_path / "summary.json"
    urls = [server.url(f"/ok/{n}") for n in range(count)] + [server.url("/status/404")]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(urls) + "\n")
    args = ["--format", "jsonl", "-i", str(source), "--failed", str(failed)]
    args += ["--summary", str(summary)]
    if where == "results":
        args += ["--results", "/dev/full"]
    result = run_into_dev_full(args, to_stdout=where == "stdout")

    stderr = result.stderr.decode()
    for noise in NOISE:
        assert noise not in stderr, stderr
    name = "<stdout>" if where == "stdout" else "'/dev/full'"
    message = f"fetcher: cannot write records to {name}: No space left on device"
    assert stderr.count(message) == 1, stderr
    assert result.returncode == 1
    assert "fetcher: " in stderr and " ok, " in stderr, "no summary"
    assert json.loads(summary.read_text())["exit_status"] == 1
    # Not one record reached /dev/full: every line is in --failed, once, to be fetched again.
    assert sorted(failed.read_text().splitlines()) == sorted(urls)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_records_that_cannot_be_written_when_none_was_ok_still_exit_3(server, tmp_path):
    """docs/choices.md: a failed write makes 0 into 1; 3 stays 3. The write error was the
    run's stop reason, which overrode the counts."""
    summary = tmp_path / "summary.json"
    urls = [server.url(f"/status/404?{n}") for n in range(400)]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(urls) + "\n")
    args = ["--format", "jsonl", "--retries", "0", "-i", str(source), "--summary", str(summary)]
    result = run_into_dev_full(args, to_stdout=True)
    assert result.returncode == 3, result.stderr
    assert json.loads(summary.read_text())["exit_status"] == 3


# fetcher whose state cannot be written, as SQLite says of a disk that fails under it: every
# transaction with rows raises. Injected into fetcher's own State, as root ignores the modes
# that would make its file unwritable for real.
STATE_ON_A_DYING_DISK = (
    "import runpy, sqlite3\n"
    "from fetcher.state.writes import PendingWrites\n"
    "def write(connection, rows):\n"
    "    raise sqlite3.OperationalError('disk I/O error')\n"
    "PendingWrites._write = staticmethod(write)\n"
    "runpy.run_module('fetcher', run_name='__main__', alter_sys=True)\n"
)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_state_that_cannot_be_committed_at_the_end_is_one_line_not_a_traceback(server, tmp_path):
    """One dying disk (s25 h1 3): the records fail to write and the run stops, then the
    state's last commit (in its close, out of the exit stack) fails too; that raised two
    chained tracebacks after the summary, and exit 1 came from the uncaught exception. Now
    the state is closed before the status is decided: one line more, no traceback, exit 1."""
    failed, summary = tmp_path / "failed.txt", tmp_path / "summary.json"
    # The failures' rows stay when those of the records lost are dropped: the close commits.
    # An ok URL first, failures among the first in flight: the status is 1 if an ok result
    # is counted before the first flush fails, 3 if a 404 came first and the flush failed at
    # once (a loaded CI run, s33): either way the one the summary says, with no traceback.
    urls = [server.url(f"/ok/{n}") for n in range(50)]
    for n in range(20):
        urls.insert(2 * n + 1, server.url(f"/status/404?{n}"))
    (tmp_path / "in.txt").write_text("\n".join(urls) + "\n")
    with open("/dev/full", "wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-c", STATE_ON_A_DYING_DISK, "--format", "jsonl", "-i", "in.txt",
             "--state", "st.db", "--failed", str(failed), "--summary", str(summary)],
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, cwd=tmp_path,
            env=clean_env(), timeout=120, check=False,
        )  # fmt: skip
    stderr = done.stderr.decode()
    for noise in NOISE:
        assert noise not in stderr, stderr
    assert stderr.count("fetcher: cannot write state to 'st.db': SQLite: disk I/O error") == 1
    assert " ok, " in stderr, "no summary"
    assert done.returncode == json.loads(summary.read_text())["exit_status"] in (1, 3), stderr
    assert stderr.count("fetcher: cannot write records to <stdout>: No space left") == 1
    assert sorted(failed.read_text().splitlines()) == sorted(urls)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_signal_while_a_write_error_stops_the_run_is_the_status(server, tmp_path):
    """A SIGINT in the grace that a write error began: 130, as any first SIGINT (it was 1, and
    the signal was dropped)."""
    urls = [server.url("/slow/5/x")] + [server.url(f"/ok/{n}") for n in range(400)]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(urls) + "\n")
    errors = tmp_path / "stderr"
    with open("/dev/full", "wb") as full, errors.open("wb") as err:
        process = subprocess.Popen([*FETCHER, "-j", "4", "--format", "jsonl", "-i", str(source)],
                                   stdin=subprocess.DEVNULL, stdout=full, stderr=err,
                                   env=clean_env())  # fmt: skip
    with process:
        try:
            wait_for(lambda: b"cannot write records" in errors.read_bytes(), "the write error")
            process.send_signal(signal.SIGINT)
            # The status is the claim; 10 s ran out once at a load of 30 (session 23).
            assert process.wait(timeout=30) == 130, errors.read_text()
        finally:
            process.kill()
    assert "stopped by SIGINT" in errors.read_text()


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm")
def test_a_file_under_dev_shm_is_replaced_whole_not_appended_to(server):
    """/dev/shm is a folder of plain files: only names that stand for a stream (/dev/stdout,
    /dev/fd/N, /proc/PID/fd/N) are written in place. Appended to, a summary became two JSON
    documents, and a --failed retry list read itself back as it grew."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(dir="/dev/shm")
    try:
        summary, failed = Path(folder, "summary.json"), Path(folder, "failed.txt")
        summary.write_text('{"old": true}\n')
        failed.write_text("from the last run\n")
        url = server.url("/status/404")
        result = invoke(["-q", "--summary", str(summary), "--failed", str(failed), url])
        assert result.exit_code == 3
        assert json.loads(summary.read_text())["failed"] == 1
        assert failed.read_text() == url + "\n"
        assert stat.S_IMODE(failed.stat().st_mode) == 0o600
    finally:
        shutil.rmtree(folder)


def test_failed_lines_sent_to_this_process_s_stdout_on_a_file_are_not_overwritten(server, tmp_path):
    """`--failed /dev/stdout` with stdout on a file: --failed opened by its name had an offset
    of its own, and the records' writes, at stdout's offset, overwrote the failed lines written
    between them. They are written through stdout's own descriptor now, in turn with the
    records. (A link of the test's own to /proc/self/fd/1, as above.)"""
    out, to_stdout = tmp_path / "out.txt", tmp_path / "1"
    to_stdout.symlink_to("/proc/self/fd/1")
    urls = [server.url(f"/status/{404 if n % 2 else 200}?n={n}") for n in range(300)]
    with open(out, "wb") as sink:
        done = subprocess.run(
            [*FETCHER, "--format", "jsonl", "-q", "-j", "4", "--failed", str(to_stdout), *urls],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.PIPE, env=clean_env(),
            timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = out.read_text().splitlines()
    records = [json.loads(line)["url"] for line in lines if line.startswith("{")]
    failed = [line for line in lines if not line.startswith("{")]
    assert sorted(records) == sorted(urls)
    assert sorted(failed) == sorted(urls[1::2])


def test_signals_while_the_summary_is_printed_change_no_status_the_files_gave(tmp_path):
    """Once --summary and --metrics say how the run ended, a second signal while the summary
    is printed (stderr stuck: a full pipe nobody reads) exited 143 while both files said 0
    (s17 h4 6). The run is over: the process exits with the status its files give."""
    import fcntl

    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, 1031, 4096)  # F_SETPIPE_SZ: a small pipe, filled now
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    summary, metrics = tmp_path / "summary.json", tmp_path / "metrics.prom"
    with counting_server() as server:
        process = subprocess.Popen(
            [*FETCHER, "--summary", str(summary), "--metrics", str(metrics), server.url("/a")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=write_end,
            env=clean_env(),
        )  # fmt: skip
        os.close(write_end)
        try:
            wait_for(summary.exists, "--summary written", 20)
            signal_twice(process, signal.SIGTERM)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(read_end)
    said = json.loads(summary.read_text())["exit_status"]
    assert said == 0 and process.returncode == said, process.returncode
    assert "fetcher_exit_status 0" in metrics.read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a FIFO to another user needs root")
@pytest.mark.parametrize("option", ["--failed", "--summary", "--metrics", "--results"])
@pytest.mark.parametrize("folder", ["all-may-write", "theirs", "linked"])
def test_a_fifo_of_another_user_that_may_have_been_planted_is_refused(
    server, tmp_path, option, folder
):
    """Another user's FIFO planted in /tmp (or any folder all may write to) took --failed's
    lines, passwords included, for a reader of theirs; the kernel's protected_fifos, which
    stops a shell's `>` there, does not apply to an open without O_CREAT (s20 h2 2). So did
    one in a folder of theirs (`mkdir -p` finds it made), and one a link at --results led to
    (s20 r2 2)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777 if folder != "theirs" else 0o755)
    fifo = shared / "retry.txt"
    read_all = read_fifo_later(fifo)  # the other user's reader
    os.chown(fifo, 65534, 65534)
    if folder == "theirs":
        os.chown(shared, 65534, 65534)
    target = fifo
    if folder == "linked":
        if option != "--results":
            pytest.skip("a link at a file renamed into place is replaced, never written through")
        target = tmp_path / "results.jsonl"
        target.symlink_to(fifo)
    url = server.url("/status/404").replace("http://", "http://alice:HUNTER2@")
    result = invoke([option, str(target), "--format", "jsonl", url])
    stolen = read_all()
    assert result.exit_code == 2 and "another user" in result.stderr, result.stderr
    assert b"HUNTER2" not in stolen and b"404" not in stolen
    assert server.requests == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a FIFO to another user needs root")
def test_a_fifo_of_another_user_in_a_folder_of_one_s_own_is_written(server, tmp_path):
    """A FIFO nobody else could have put there (root's folder, or this user's, that only it may
    write to) is written as before, whoever owns it."""
    fifo = tmp_path / "fifo"
    read_all = read_fifo_later(fifo)
    os.chown(fifo, 65534, 65534)
    tmp_path.chmod(0o700)
    result = invoke(["--failed", str(fifo), server.url("/status/404")])
    assert result.exit_code == 3, result.stderr
    assert server.url("/status/404").encode() in read_all()


def test_an_unnamed_file_is_synced_before_it_is_named(tmp_path, monkeypatch):
    """--failed's file is named only once it is synced, just before its rename: named first, it
    waited on the disk (fsync) under its .fetcher-*.part name, where a SIGKILL left it for good
    (s23 h2 2)."""
    from fetcher.output import atomic

    seen: list[list[str]] = []
    real_fsync = os.fsync

    def looking_fsync(fd: int) -> None:
        seen.append(sorted(os.listdir(tmp_path)))
        real_fsync(fd)

    file = atomic.AtomicFile(str(tmp_path / "failed.txt"), 0o600, unnamed=True)
    if file.temporary is not None:
        file.abort()
        pytest.skip("the file system has no unnamed files")
    os.write(file.fd, b"line\n")
    monkeypatch.setattr(atomic.os, "fsync", looking_fsync)
    file.commit()
    assert seen == [[]]
    assert sorted(os.listdir(tmp_path)) == ["failed.txt"]
    assert (tmp_path / "failed.txt").read_bytes() == b"line\n"


@pytest.mark.parametrize("redirect", ["truncate", "append"])
def test_results_to_dev_stderr_on_a_file_keeps_records_summary_and_log(
    tmp_path: Path, redirect: str
) -> None:
    """s36 t7 3: --results /dev/stderr reopened the file behind it with O_TRUNC and an offset of
    its own: the summary, written through descriptor 2, overwrote the records, and a
    `2>>cron.log` lost its earlier lines. It writes through descriptor 2 itself now, as >&2."""
    log = tmp_path / "cron.log"
    log.write_text("an earlier line\n")
    with counting_server() as server:
        urls = [server.url(f"/{n}") for n in range(4)]
        with log.open("a" if redirect == "append" else "w") as stderr:
            done = subprocess.run(
                [*FETCHER, "--no-progress", "--format", "jsonl", "--results", "/dev/stderr",
                 *urls],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                env=clean_env(), timeout=60,
            )  # fmt: skip
    lines = log.read_text().splitlines()
    assert done.returncode == 0, lines
    assert (lines[0] == "an earlier line") is (redirect == "append"), lines
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert sorted(record["url"] for record in records) == sorted(urls), lines
    assert any(line.startswith("fetcher: 4 ok") for line in lines), lines
