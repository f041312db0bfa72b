"""Hostile servers (SPEC §2.2, §2.4): every one ends with its error kind within its limit, and a
normal URL fetched in the same run is not disturbed (its record is ok, the run exits 1).

Each hostile server is a plain socket on 127.0.0.1 (``tests.servers.FaultServer``) that does one
thing forever, or until the test ends: pour out a body, redirect to itself, send one endless
header line or endless header lines, say nothing, read nothing. The gzip bomb is in
``tests/test_http.py::test_gzip_bomb_is_stopped_at_max_size_with_flat_memory``, not repeated here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import ROOT, clean_env, invoke, run_process
from tests.servers import CountingServer, FaultServer, counting_server, read_request

LIFETIME = 15.0  # no hostile server thread outlives a test by more than this
MIB = 1 << 20
HUGE_LINE = 10 * MIB

Behaviour = Callable[[socket.socket, threading.Event], None]


# -- hostile behaviours: each gets the connection and an event set when the test is over ---------


def pour(conn: socket.socket, data: bytes, stop: threading.Event, total: float = float("inf")):
    """Send data again and again until total bytes, the client hangs up, or the test ends."""
    conn.settimeout(LIFETIME)  # a client that stops reading cannot block the thread forever
    sent = 0
    while sent < total and not stop.is_set():
        conn.sendall(data)
        sent += len(data)


def endless_body(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
    pour(conn, bytes(64 * 1024), stop)  # no Content-Length: the body ends when the server says


def endless_chunked_body(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    pour(conn, b"10000\r\n" + bytes(0x10000) + b"\r\n", stop)


def redirect_to_itself(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    head = b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\nConnection: close\r\n"
    conn.sendall(head + b"\r\n")


def huge_header_line(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Huge: ")
    pour(conn, b"a" * MIB, stop, total=HUGE_LINE)
    conn.sendall(b"\r\nContent-Length: 0\r\n\r\n")


def huge_status_line(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 ")
    pour(conn, b"O" * MIB, stop, total=HUGE_LINE)
    conn.sendall(b"\r\nContent-Length: 0\r\n\r\n")


def endless_headers(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    pour(conn, b"X-Again: and again\r\n" * 1000, stop)


def never_answers(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    stop.wait(LIFETIME)


def never_reads(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(LIFETIME)  # the request stays unread in the kernel's buffer


def dripped_headers(conn: socket.socket, stop: threading.Event) -> None:
    """A slowloris answer: a header line every 0.1 s, for 3 s, then the end of the headers."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for _ in range(30):
        if stop.wait(0.1):
            return
        conn.sendall(b"X-Drip: 1\r\n")
    conn.sendall(b"Content-Length: 0\r\n\r\n")


@pytest.fixture
def hostile() -> Iterator[Callable[[Behaviour], FaultServer]]:
    """Start FaultServers with a behaviour; the behaviours end when the test does."""
    stop = threading.Event()
    servers: list[FaultServer] = []

    def start(behaviour: Behaviour) -> FaultServer:
        server = FaultServer(lambda conn: behaviour(conn, stop))
        servers.append(server.__enter__())
        return server

    try:
        yield start
    finally:
        stop.set()
        for server in servers:
            server.__exit__(None, None, None)


@pytest.fixture
def normal() -> Iterator[CountingServer]:
    with counting_server() as server:
        yield server


def by_url(output: str) -> dict[str, dict[str, Any]]:
    return {record["url"]: record for record in map(json.loads, output.splitlines())}


# -- each hostile server beside a normal URL -----------------------------------------------------


@dataclass(frozen=True)
class Case:
    behaviour: Behaviour
    args: tuple[str, ...]
    kind: str
    within: float  # seconds the hostile URL may take, by its record's elapsed
    at_least: float = 0.0


CASES = {
    "endless-body-max-size": Case(endless_body, ("--max-size", "1M"), "too_large", 1.5),
    "endless-chunked-body-max-size": Case(
        endless_chunked_body, ("--max-size", "1M"), "too_large", 1.5
    ),
    "endless-body-max-time": Case(endless_body, ("--max-time", "1"), "max_time", 2.0, 0.95),
    "redirect-loop": Case(redirect_to_itself, (), "too_many_redirects", 2.0),
    "10-MB-header-line": Case(huge_header_line, (), "protocol", 2.0),
    "10-MB-status-line": Case(huge_status_line, (), "protocol", 2.0),
    "endless-headers": Case(endless_headers, (), "protocol", 2.0),
    "never-answers": Case(never_answers, ("-t", "0.5"), "read_timeout", 1.5, 0.45),
    "never-reads": Case(never_reads, ("-t", "0.5"), "read_timeout", 1.5, 0.45),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_server_ends_with_its_kind_and_spares_a_normal_url(hostile, normal, case):
    bad, good = hostile(case.behaviour).url("/hostile"), normal.url("/normal")
    args = ["--format", "jsonl", "--retries", "0", *case.args, bad, good]
    started = time.monotonic()
    result = invoke(args)
    took = time.monotonic() - started
    records = by_url(result.stdout)
    assert result.exit_code == 1, result.output
    assert records[good]["ok"] is True, records[good]
    assert records[bad]["ok"] is False
    assert records[bad]["error"]["kind"] == case.kind, records[bad]
    # Within its limit by the record's own clock, which a loaded machine's scheduling of the
    # whole command does not lengthen; and the run was not held by a server that goes on until
    # LIFETIME (a thread still reading it, a close that waits for it).
    assert case.at_least <= records[bad]["elapsed"] < case.within, records[bad]
    assert took < LIFETIME * 2 / 3, f"the run took {took:.2f} s"


# -- memory stays flat under a 10 MB header line -------------------------------------------------

# The peak resident set of this process image: VmHWM, not ru_maxrss, which Linux carries over
# exec from the parent (a pytest worker that once held 200 MB would hand its children 200 MB).
PEAK_RSS = (
    "import sys\n"
    "from fetcher.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:], prog_name='fetcher')\n"
    "finally:\n"
    "    with open('/proc/self/status') as status:\n"
    "        peak = status.read().split('VmHWM:')[1].split()[0]\n"
    "    print(f'PEAK_KB={peak}', file=sys.stderr)\n"
)


def peak_kb(args: list[str]) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run fetcher in a child; return what it did and its peak resident set in KB."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=ROOT,
        check=False,
    )
    return done, int(done.stderr.split("PEAK_KB=")[1])


@pytest.mark.parametrize("behaviour", [huge_header_line, huge_status_line])
def test_10_mb_header_line_is_refused_with_flat_memory(hostile, normal, behaviour):
    good = normal.url("/normal")
    base = ["--format", "jsonl", "--retries", "0"]
    _, baseline = peak_kb([*base, good])
    bad = hostile(behaviour).url("/hostile")
    done, peak = peak_kb([*base, bad, good])
    records = by_url(done.stdout)
    assert done.returncode == 1, done.stderr
    assert records[bad]["error"]["kind"] == "protocol"
    assert records[good]["ok"] is True
    # http.client reads a header line of at most 64 KiB; 10 MB read whole would show here.
    assert peak - baseline < 5 * 1024, f"peak RSS {peak} KB against {baseline} KB without it"


# -- bugs found here -----------------------------------------------------------------------------


def test_max_time_bounds_dripped_headers(hostile, normal):
    bad, good = hostile(dripped_headers).url("/hostile"), normal.url("/normal")
    started = time.monotonic()
    result = invoke(["--format", "jsonl", "--retries", "0", "--max-time", "1", bad, good])
    took = time.monotonic() - started
    assert by_url(result.stdout)[bad]["error"]["kind"] == "max_time"
    assert took < 2.0, f"--max-time 1 took {took:.2f} s"


def take_upload(conn: socket.socket, stop: threading.Event) -> None:
    """A normal server for a POST: read the body in chunks, keep nothing, answer 200."""
    head = read_request(conn)
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    left = length - len(head.split(b"\r\n\r\n", 1)[1])
    while left > 0 and (chunk := conn.recv(min(left, MIB))):
        left -= len(chunk)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\ntaken")


def stalled_upload(hostile, tmp_path, *args: str) -> dict[str, Any]:
    """POST 32 MiB (more than the kernel's buffers on both sides take) to a server that never
    reads it, and to a normal one; return the stalled URL's record.

    Nothing here holds the 32 MiB in the test's process: its peak RSS would stay, and Linux
    hands it on to every child started later (ru_maxrss survives exec).
    """
    upload = tmp_path / "upload.bin"
    with upload.open("wb") as file:
        file.truncate(32 * MIB)  # zeros, without a 32 MiB bytes object
    bad, good = hostile(never_reads).url("/hostile"), hostile(take_upload).url("/normal")
    args = ("--format", "jsonl", "--retries", "0", *args, "-d", f"@{upload}")
    done = run_process([*args, bad, good])
    records = by_url(done.stdout.decode())
    assert records[good]["ok"] is True, records[good]
    assert done.returncode == 1, done.stderr
    return records[bad]


def test_upload_the_server_never_reads_is_a_read_timeout(hostile, tmp_path):
    record = stalled_upload(hostile, tmp_path, "--connect-timeout", "1")
    assert record["error"]["kind"] == "read_timeout", record


def test_upload_the_server_never_reads_is_cut_at_max_time(hostile, tmp_path):
    """--max-time bounds the whole URL (SPEC 2.2): a stalled upload took about three times it,
    each blocking step of the send waiting up to the time left when it began."""
    record = stalled_upload(hostile, tmp_path, "-m", "1")
    assert record["error"]["kind"] == "max_time", record
    assert record["elapsed"] < 1.5, f"-m 1 took {record['elapsed']:.2f} s"


@pytest.mark.xfail(
    reason="KNOWN LIMITATION: a request body is sent under the connect timeout, not the "
    "read timeout, so a stalled upload is cut after --connect-timeout "
    "(documented in docs/guarantees.md)",
    strict=True,
)
def test_upload_the_server_never_reads_is_cut_after_t(hostile, tmp_path):
    record = stalled_upload(hostile, tmp_path, "--connect-timeout", "1.2", "-t", "0.5")
    assert record["ok"] is False
    assert record["elapsed"] < 1.0, f"-t 0.5 took {record['elapsed']:.2f} s"
