"""Fixtures: local servers and ways to run fetcher (in process with CliRunner, or as a process)."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer

from fetcher.cli import main
from tests.resources import Origin
from tests.servers import CountingServer, counting_server

ROOT = Path(__file__).resolve().parent.parent
# tests/long.txt: the test functions `make test-long` runs and `make test` leaves out (-m long).
LONG_TESTS = frozenset(
    line for line in (ROOT / "tests" / "long.txt").read_text().splitlines()
    if line and not line.startswith("#")
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the long tests (tests/long.txt): the default suite stays under five minutes on
    two cores, and CI runs both."""
    for item in items:
        if f"{item.nodeid.split('[')[0]}" in LONG_TESTS:
            item.add_marker(pytest.mark.long)


FETCHER = [sys.executable, "-m", "fetcher"]
# The same, writing bodies to named temporaries from the start, as on a file system without
# unnamed files (O_TMPFILE): for what someone with write access to DIR may do to such a name.
FETCHER_NAMED_TEMPORARIES = [
    sys.executable, "-c",
    "import runpy, fetcher.output.atomic as atomic; atomic.UNNAMED_FILES = False; "
    "runpy.run_module('fetcher', run_name='__main__', alter_sys=True)",
]  # fmt: skip


def changes_a_run(name: str) -> bool:
    """Whether a variable of the caller's environment could change a run: proxies, FETCHER_*
    settings, a .netrc named by NETRC, CA bundles (this machine sets REQUESTS_CA_BUNDLE), and
    PYTHONUNBUFFERED (set here too: fetcher then writes through streams of its own, and the
    suite tested that path alone; tests of it set it themselves)."""
    return (
        name.startswith("FETCHER_")
        or "proxy" in name.lower()
        or name in ("NETRC", "PYTHONUNBUFFERED")
        or name.endswith("CA_BUNDLE")
    )


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without the variables of changes_a_run; one that wants a proxy or a CA
    bundle sets it itself (monkeypatch, or the env of invoke and run_process)."""
    for name in list(os.environ):
        if changes_a_run(name):
            monkeypatch.delenv(name)


_SYSTEM_GETADDRINFO = socket.getaddrinfo


def _is_local(host: Any) -> bool:
    """Whether looking host up needs no name server: no host, localhost, an address literal in
    any form the system reads without one (127.1, 0x7f.1, ::1, with a zone)."""
    if host is None:
        return True
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
    if name.lower().rstrip(".") in ("localhost", ""):
        return True
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(name.partition("%")[0])
        return True
    with contextlib.suppress(OSError, ValueError):
        socket.inet_aton(name)
        return True
    return False


def _loopback_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    """socket.getaddrinfo for the tests run in this process: a name a test did not stub is
    never sent to a name server (a test of junk input, failing, once sent a spreadsheet's rows
    there: s32); it is not known, as the resolver of a machine with no network would say."""
    if not _is_local(host):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _SYSTEM_GETADDRINFO(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def no_name_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test in this process looks names up on this machine only (_loopback_getaddrinfo);
    a test's own resolver (tests.servers.HostsResolver) stands in front of it."""
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_getaddrinfo)


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with counting_server() as running:
        yield running


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a fetcher process, without the variables that could change a run."""
    env = {key: value for key, value in os.environ.items() if not changes_a_run(key)}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def invoke(args: list[str], input: str | bytes | None = None, **env: str) -> Result:
    """Run the command in process: fast, for everything but signals, terminals and real pipes."""
    runner = CliRunner()
    # CliRunner only sets the variables it is given: unset what could change a run (for a
    # module-scoped fixture, which runs before clean_environment).
    unset: dict[str, str | None] = {key: None for key in os.environ if changes_a_run(key)}
    unset.update(env)
    return runner.invoke(main, args, input=input, env=unset, catch_exceptions=False)


def run_process(
    args: list[str], input: bytes | None = None, timeout: float = 60, **kwargs: object
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m fetcher`` as a real process, with stdin closed unless input is given."""
    return subprocess.run(
        [*FETCHER, *args],
        input=input if input is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=clean_env(),
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def start_on_a_pipe(
    command: list[str], holds: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """command with its standard output on a real pipe (holding holds bytes, with F_SETPIPE_SZ,
    when given), stdin closed, stderr piped; and the pipe's read end, for the test to read or
    leave unread."""
    reader, writer = os.pipe()
    if holds is not None:
        fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, holds)
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=writer,
                                   stderr=subprocess.PIPE, env=clean_env())  # fmt: skip
    except BaseException:
        os.close(reader)
        raise
    finally:
        os.close(writer)
    return process, reader


def run_background(
    args: list[str], command: list[str] = FETCHER, **kwargs: Any
) -> subprocess.Popen[bytes]:
    """Start ``python -m fetcher`` (or command) in the project folder, stdin closed, stdout and
    stderr piped (stdout elsewhere if given: under --state, a record in a pipe no one reads
    is not reported, and its row waits)."""
    return subprocess.Popen(
        [*command, *args],
        stdin=subprocess.DEVNULL,
        stdout=kwargs.pop("stdout", subprocess.PIPE),
        stderr=subprocess.PIPE,
        env=clean_env(),
        cwd=ROOT,
        **kwargs,
    )


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver on 127.0.0.1, so that 'localhost' can stand for another host."""
    return ("127.0.0.1", 0)


@pytest.fixture
def origin(httpserver: HTTPServer) -> Origin:
    """The --state tests' origin (tests.resources): resources with validators, answering
    conditional and Range requests, on pytest-httpserver's server."""
    served = Origin()
    httpserver.expect_request("").respond_with_handler(served)
    return served
