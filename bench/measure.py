"""Running one client under measurement: wall time, CPU, peak RSS, and RSS over time.

The child is reaped with ``os.wait4`` in a thread of its own, the moment it exits: that gives the
wall time without polling granularity (scenario B's runs last 0.4 s, so 50 ms of polling would
be 12% of error) and the child's own ``rusage``. On Linux that rusage also covers the
descendants the child waited for, so ``xargs``'s curl processes are in xargs's CPU, and its
``ru_maxrss`` is the largest RSS of any one of them.

Every child runs in a new session and process group, under a time limit: when it is exceeded,
or the bench is interrupted, the whole group is killed, so no client outlives the bench.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import resource
import signal
import struct
import subprocess
import tempfile
import termios
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

STDERR_TAIL = 2000  # characters of a child's stderr kept for the report when it fails


@dataclass
class Run:
    """One child's measurements."""

    wall: float  # seconds from just before fork to the moment it was reaped
    cpu: float  # user + system seconds, the child and the descendants it waited for
    max_rss: int  # bytes, the largest of the child and any waited-for descendant
    status: int  # exit code, or minus the signal that ended it
    timed_out: bool
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds in, bytes)
    stderr: str = ""
    pty_bytes: int = 0  # what the child wrote to its terminal stderr
    # With sample_every: the largest VmHWM sampled, the program's own peak since its exec.
    # max_rss, from wait4, is at least the bench's own RSS when it forked the child (Linux
    # keeps the larger of the old and the new image's peaks across exec): for a client smaller
    # than the bench, max_rss is the bench's, and only hwm is the client's.
    hwm: int = 0
    # With track: (seconds in, bytes the child had read of that file), sampled with the RSS.
    positions: list[tuple[float, int]] = field(default_factory=list)


def vm_sizes(pid: int) -> tuple[int | None, int | None]:
    """VmRSS and VmHWM (the peak resident set of the program since its exec) in bytes, from
    /proc; None once it is gone or a zombie."""
    found: dict[bytes, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as file:
            for line in file:
                if line.startswith((b"VmRSS:", b"VmHWM:")):
                    found[line[:5]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return found.get(b"VmRSS"), found.get(b"VmHWM")


def read_position(pid: int, path: Path, fd: list[int]) -> int | None:
    """How far the process has read the file at path: its descriptor's offset, from
    /proc/PID/fdinfo (fd caches the descriptor's number once found); None when not open."""
    try:
        if not fd:
            for name in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{name}") == os.path.realpath(path):
                        fd.append(int(name))
                        break
        if fd:
            with open(f"/proc/{pid}/fdinfo/{fd[0]}", "rb") as file:
                for line in file:
                    if line.startswith(b"pos:"):
                        return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def feed(pipe: IO[bytes], lines: Iterable[bytes]) -> None:
    """Writes generated input to the child's stdin; stops quietly if the child stops reading."""
    try:
        for chunk in lines:
            pipe.write(chunk)
    except (BrokenPipeError, ValueError, OSError):
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def drain(fd: int, counter: list[int]) -> None:
    """Reads the terminal's other end so that a child writing to it never blocks."""
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except OSError:  # EIO: every copy of the terminal's child side is closed
            break
        if not data:
            break
        counter[0] += len(data)


def run(
    argv: list[str],
    *,
    env: Mapping[str, str],
    limit: float,
    stdin: Path | Iterable[bytes] | None = None,
    stdout: Path | None = None,
    sample_every: float | None = None,
    stderr_on_pty: bool = False,
    cwd: Path | None = None,
    track: Path | None = None,
) -> Run:
    """Runs argv to its end (or its time limit) and measures it.

    stdin is a file, generated chunks (written by a thread, so the input need never exist
    whole), or nothing; stdout is a file or /dev/null. With stderr_on_pty the child's stderr is
    a pseudo-terminal of 120 x 40, as a person's would be. With track (and sample_every), how
    far the child has read that file is sampled with its RSS (Run.positions).
    """
    stdin_file: IO[bytes] | None = None
    master = slave = -1
    stderr_file = tempfile.TemporaryFile()
    stdout_file = open(stdout, "wb") if stdout is not None else None
    try:
        if isinstance(stdin, Path):
            stdin_file = open(stdin, "rb")
            stdin_arg: int | IO[bytes] = stdin_file
        else:
            stdin_arg = subprocess.DEVNULL if stdin is None else subprocess.PIPE
        if stderr_on_pty:
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        started = time.perf_counter()
        child = subprocess.Popen(
            argv,
            stdin=stdin_arg,
            stdout=stdout_file if stdout_file is not None else subprocess.DEVNULL,
            stderr=slave if stderr_on_pty else stderr_file,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        if stderr_on_pty:
            os.close(slave)
            slave = -1
        reaped: list[tuple[float, int, resource.struct_rusage]] = []

        def wait() -> None:
            _, status, usage = os.wait4(child.pid, 0)
            reaped.append((time.perf_counter(), status, usage))

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        helpers: list[threading.Thread] = []
        if child.stdin is not None and stdin is not None and not isinstance(stdin, Path):
            helpers.append(threading.Thread(target=feed, args=(child.stdin, stdin), daemon=True))
        pty_bytes = [0]
        if stderr_on_pty:
            helpers.append(threading.Thread(target=drain, args=(master, pty_bytes), daemon=True))
        for helper in helpers:
            helper.start()
        samples: list[tuple[float, int]] = []
        positions: list[tuple[float, int]] = []
        hwm = 0
        tracked_fd: list[int] = []
        timed_out = False
        deadline = started + limit
        try:
            while waiter.is_alive():
                now = time.perf_counter()
                if now >= deadline:
                    timed_out = True
                    kill_group(child.pid)
                    waiter.join()
                    break
                waiter.join(min(sample_every or 0.5, deadline - now))
                # Sampled from the first interval on: at 0 s the child is still exec'ing.
                if sample_every is not None and (sizes := vm_sizes(child.pid))[0] is not None:
                    rss, high = sizes
                    samples.append((time.perf_counter() - started, rss or 0))
                    hwm = max(hwm, high or 0)
                    if track is not None and (at := read_position(child.pid, track, tracked_fd)):
                        positions.append((samples[-1][0], at))
        finally:
            # Interrupted: leave nothing running. Asked of reaped, not of waiter.is_alive(): a
            # KeyboardInterrupt inside waiter.join() leaves the thread marked stopped while it
            # still waits (CPython 3.11, bpo-45274's handling), and the client ran on.
            if not reaped:
                kill_group(child.pid)
                waiter.join(10)
        if timed_out:
            kill_group(child.pid)  # descendants that outlived the leader
        for helper in helpers:
            helper.join(10)
        ended, status, usage = reaped[0]
        child.returncode = os.waitstatus_to_exitcode(status)
        stderr_file.seek(0)
        stderr_text = stderr_file.read().decode(errors="replace")[-STDERR_TAIL:]
        return Run(
            wall=ended - started,
            cpu=usage.ru_utime + usage.ru_stime,
            max_rss=usage.ru_maxrss * 1024,
            status=child.returncode,
            timed_out=timed_out,
            rss=samples,
            stderr=stderr_text,
            pty_bytes=pty_bytes[0],
            positions=positions,
            hwm=hwm,
        )
    finally:
        stderr_file.close()
        for file in (stdin_file, stdout_file):
            if file is not None:
                file.close()
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)
