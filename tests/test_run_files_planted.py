"""The run's own files (--failed, --summary, --metrics, -c) against someone who can write in
their folder while the run goes (s15 h1 13): a FIFO planted at the path, with a reader of
theirs, must not receive the file (the cookie jar's secrets, --failed's lines). Whether a path
is a stream written in place (/dev/stdout, a FIFO the user named) is decided when the run
starts; a file that was not one then is replaced by a rename at the end, whatever is there.

And a second signal while one of them is being written leaves no temporary behind."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import FETCHER, clean_env, invoke
from tests.servers import wait_for

JAR_HEADER = "# Netscape HTTP Cookie File\n"


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("-c", "sid\tSECRET"),
        ("--summary", '"ok": 1'),
        ("--metrics", "fetcher_urls"),
        ("--failed", ""),
    ],
)
def test_a_fifo_planted_during_the_run_is_replaced_never_written_into(
    httpserver: HTTPServer, tmp_path: Path, option: str, expected: str
) -> None:
    target = tmp_path / "run-file"
    target.write_text(JAR_HEADER if option == "-c" else "old\n")
    readers: list[int] = []

    def plant(request: Request) -> Response:
        target.unlink()
        os.mkfifo(target)
        readers.append(os.open(target, os.O_RDONLY | os.O_NONBLOCK))
        return Response("ok", headers={"Set-Cookie": "sid=SECRET"})

    httpserver.expect_request("/").respond_with_handler(plant)
    try:
        result = invoke(["-q", option, str(target), httpserver.url_for("/")])
        assert result.exit_code == 0, result.output
        assert len(readers) == 1
        try:
            leaked = os.read(readers[0], 1 << 16)
        except BlockingIOError:
            leaked = b""
    finally:
        for reader in readers:
            os.close(reader)
    assert leaked == b"", f"{option} was written into the planted FIFO"
    assert stat.S_ISREG(os.lstat(target).st_mode)
    assert expected in target.read_text()


def test_a_fifo_named_at_the_start_is_still_written_in_place(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """What the user named as a stream stays one: `--summary fifo` with a reader."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    httpserver.expect_request("/").respond_with_data("ok")
    try:
        result = invoke(["-q", "--summary", str(fifo), httpserver.url_for("/")])
        assert result.exit_code == 0, result.output
        assert b'"ok": 1' in os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def saving_in(pid: int, folder: Path) -> bool:
    """Whether process pid has a file open in folder that has no name yet (O_TMPFILE, shown as
    folder/#inode), or a .fetcher-*.part where the file system has no such files."""
    if any(folder.glob(".fetcher-*")):
        return True
    with suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"{folder}/#"):
                    return True
    return False


def test_a_second_signal_while_the_jar_is_saved_leaves_no_temporary(tmp_path: Path) -> None:
    """A jar of a few MiB takes a while to save; a second signal (or a SIGQUIT) in that time
    left an 8.6 MB `.fetcher-*.part` copy of the cookies beside it (s15 h1 8). The jar itself is
    kept whole."""
    lines = [f"127.0.0.1\tFALSE\t/p{n}\tFALSE\t0\tc{n}\t{'v' * 200}\n" for n in range(40_000)]
    jar = tmp_path / "jar"
    jar.write_text(JAR_HEADER + "".join(lines))
    before = jar.read_bytes()
    # No URL at all: the run ends at once and goes straight to saving the jar.
    process = subprocess.Popen(
        [*FETCHER, "-q", "-c", str(jar), "-i", "/dev/null"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env(), cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for(lambda: saving_in(process.pid, tmp_path), "the jar's temporary", timeout=30)
        process.send_signal(signal.SIGQUIT)  # a hard stop at once, as a second SIGTERM
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fetcher-")] == []
    after = jar.read_bytes()
    assert after == before or after.count(b"\n") >= before.count(b"\n") - 1


def test_a_second_signal_before_the_summary_is_written_still_writes_it_with_the_exit_status(
    tmp_path: Path,
) -> None:
    """Between the end of the run and --summary, the jar is saved (a while, for a big one). A
    SIGQUIT then exited 131 and left the last run's --summary in place, saying 0: the hook that
    writes it at a hard exit stood down as soon as the report began (the suite, session 23). The
    files now say the status the process exits with, whenever the signal comes, and what the
    reader skipped (--unique's duplicates, s23 r1 8)."""
    lines = [f"127.0.0.1\tFALSE\t/p{n}\tFALSE\t0\tc{n}\t{'v' * 200}\n" for n in range(40_000)]
    jar, summary = tmp_path / "jar", tmp_path / "summary.json"
    jar.write_text(JAR_HEADER + "".join(lines))
    summary.write_text('{"exit_status": 0}')  # the last run's
    (tmp_path / "urls").write_text("mailto:a@b\n" * 3)  # one invalid line and two duplicates
    process = subprocess.Popen(
        [*FETCHER, "-q", "-c", str(jar), "--summary", str(summary), "--unique",
         "-i", str(tmp_path / "urls")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env(), cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for(lambda: saving_in(process.pid, tmp_path), "the jar's temporary", timeout=30)
        process.send_signal(signal.SIGQUIT)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    said = json.loads(summary.read_text())
    assert said["exit_status"] == process.returncode != 0
    assert said["duplicates"] == 2


def test_a_hard_exit_the_moment_the_temporary_is_created_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hard exit's clean-up ran between bytecodes: a signal just after the temporary's
    os.open returned, before the file was noted, left it behind (CI, session 21: the test above
    failed under load). The name is noted before the file is created, so every moment is
    covered; this test runs the clean-up at exactly that moment: the first os.open to return
    with a temporary noted (a file system with no unnamed files, where it has a name)."""
    from fetcher.output import atomic
    from fetcher.output.atomic import abort_unfinished, write_atomically

    monkeypatch.setattr(atomic, "UNNAMED_FILES", False)
    left: list[list[str]] = []

    def at_return(frame: object, event: str, arg: object) -> None:
        if event == "c_return" and arg is os.open and atomic._unfinished and not left:
            abort_unfinished()  # what a second signal's hard exit does
            left.append([p.name for p in tmp_path.iterdir()])

    sys.setprofile(at_return)
    try:
        with suppress(OSError):  # Swapped: the temporary is gone when the rename comes
            write_atomically(str(tmp_path / "jar"), b"cookies", mode=0o600)
    finally:
        sys.setprofile(None)
    assert left == [[]]


def test_a_hard_exit_the_moment_a_file_with_no_name_is_named_removes_it(tmp_path: Path) -> None:
    """s36 r1 6: --summary, --metrics and -c are written with no name, named at the commit and
    renamed: the name was not noted, and a hard exit between the two left the .part for good."""
    from fetcher.output import atomic

    if not atomic.UNNAMED_FILES:
        pytest.skip("no files with no name here")
    left: list[list[str]] = []

    def at_return(frame: object, event: str, arg: object) -> None:
        if event == "c_return" and arg is os.link and not left:
            atomic.abort_unfinished()  # what a second signal's hard exit does
            left.append([p.name for p in tmp_path.iterdir()])

    sys.setprofile(at_return)
    try:
        with suppress(OSError):  # Swapped: the temporary is gone when the rename comes
            atomic.write_atomically(str(tmp_path / "summary.json"), b"{}\n")
    finally:
        sys.setprofile(None)
    assert left == [[]]


def test_a_run_file_waiting_on_the_disk_has_no_name_beside_it(tmp_path, monkeypatch):
    """--summary, --metrics and -c were written under a .fetcher-….part name and synced under
    it: a SIGKILL while the disk was slow left that file there for good, the jar's cookies in
    it (s26 h3 2). As --failed and bodies are, they are written with no name till the rename."""
    from fetcher.output import atomic

    seen: list[list[str]] = []
    real_fsync = os.fsync

    def fsync_looking(fd: int) -> None:
        seen.append(sorted(os.listdir(tmp_path)))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync_looking)
    atomic.write_atomically(str(tmp_path / "summary.json"), b"{}\n")
    assert seen == [[]], seen
    assert sorted(os.listdir(tmp_path)) == ["summary.json"]
