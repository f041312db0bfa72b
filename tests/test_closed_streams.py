"""A process started with standard output or error closed (`2>&-`, `>&-`, as cron and daemons may
start it): Python then sets sys.stdout or sys.stderr to None, and the descriptor is free for the
next file the process opens. Each test runs the command through sh, which closes what it is told.

With stderr closed the run works, says nothing and exits with its honest status. With stdout
closed and the records meant for it, the run is refused before any request (exit 2); with
--results FILE it works.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import FETCHER, clean_env, invoke
from tests.servers import counting_server

NOISE = (b"Traceback", b"Error", b"Usage")


def closed_run(args: list[str], redirections: str) -> subprocess.CompletedProcess[bytes]:
    """Run fetcher with sh's redirections (`>&-`, `2>&-`) applied to it; what is not
    redirected is captured."""
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {redirections}', "sh", *FETCHER, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )


def urls_of(httpserver: HTTPServer, count: int, status: int = 200) -> list[str]:
    for index in range(count):
        httpserver.expect_request(f"/{index}").respond_with_data("x" * index, status=status)
    return [httpserver.url_for(f"/{index}") for index in range(count)]


# -- standard error closed ----------------------------------------------------------------------


@pytest.mark.parametrize("options", [[], ["--no-progress"], ["--progress"], ["-vv"], ["-q"]])
def test_with_stderr_closed_the_run_works_and_exits_0(httpserver, options):
    done = closed_run([*options, *urls_of(httpserver, 5)], "2>&-")
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 5
    assert not any(word in done.stdout for word in NOISE)


def test_with_stderr_closed_a_failure_still_exits_1(httpserver):
    missing = httpserver.url_for("/missing")
    httpserver.expect_request("/missing").respond_with_data("no", status=404)
    done = closed_run([*urls_of(httpserver, 2), missing], "2>&-")
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 3


def test_with_stderr_closed_a_usage_error_is_not_written_to_stdout():
    """Click, finding sys.stderr None, wrote its usage message to stdout, among the records."""
    done = closed_run(["--no-such-option"], "2>&-")
    assert done.returncode == 2
    assert done.stdout == b""


# -- standard output closed ---------------------------------------------------------------------


@pytest.mark.parametrize("options", [[], ["-q"], ["--format", "jsonl"]])
def test_with_stdout_closed_records_meant_for_it_are_refused_before_any_request(
    httpserver, options
):
    done = closed_run([*options, *urls_of(httpserver, 3)], ">&-")
    assert done.returncode == 2
    assert b"standard output is closed" in done.stderr
    assert b"--results FILE" in done.stderr
    assert b"Traceback" not in done.stderr
    assert httpserver.log == []


def test_with_stdout_closed_body_is_refused_even_with_results(httpserver, tmp_path):
    results = tmp_path / "records.txt"
    done = closed_run(["--body", "--results", str(results), *urls_of(httpserver, 2)], ">&-")
    assert done.returncode == 2
    assert b"standard output is closed" in done.stderr and b"--body" in done.stderr
    assert httpserver.log == []


@pytest.mark.parametrize("results", ["/dev/stdout", "same"], ids=["dev-stdout", "same-file"])
def test_body_with_results_naming_standard_output_is_refused(httpserver, tmp_path, results):
    """s31 r2 3: --results /dev/stdout was opened again by its name, with an offset of its
    own: the records were written over the start of the bodies in the file stdout went to,
    and the run exited 0."""
    out = tmp_path / "out.txt"
    named = str(out) if results == "same" else results
    with out.open("wb") as stdout:
        command = [*FETCHER, "--body", "--results", named, *urls_of(httpserver, 2)]
        done = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, env=clean_env(),
                              timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert b"is standard output, where --body writes the bodies" in done.stderr
    assert httpserver.log == [] and out.read_bytes() == b""


def test_body_with_results_naming_standard_output_on_a_pipe_takes_both(httpserver):
    """A pipe has no offset: bodies and records go through it in turn, as before (s31 r3 1: the
    refusal above refused a pipe, a terminal and /dev/null too)."""
    command = [*FETCHER, "--body", "--results", "/dev/stdout", "-j", "1", *urls_of(httpserver, 3)]
    done = subprocess.run(command, capture_output=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(b"200\t") == 3 and done.stdout.count(b"x") == 3, done.stdout


@pytest.mark.parametrize("redirections", [">&-", ">&- 2>&-"])
def test_with_stdout_closed_results_file_gets_the_records(httpserver, tmp_path, redirections):
    results = tmp_path / "records.jsonl"
    args = ["--format", "jsonl", "--results", str(results), *urls_of(httpserver, 4)]
    done = closed_run(args, redirections)
    assert done.returncode == 0, done.stderr
    assert len(results.read_text().splitlines()) == 4
    assert b"Traceback" not in done.stderr


# -- no file lands on a closed descriptor -------------------------------------------------------


def descriptor_target(pid: int, descriptor: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/{descriptor}")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize(("redirection", "descriptor"), [(">&-", 1), ("2>&-", 2)])
def test_the_results_file_does_not_take_a_closed_descriptor(
    httpserver, tmp_path, redirection, descriptor
):
    """Else whatever is written to descriptor 1 or 2 (a worker's inherited stdout, a stray
    print) would end up in the records file."""
    arrived, release = threading.Event(), threading.Event()

    def slow(request: Request) -> Response:
        arrived.set()
        release.wait(10)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    results = tmp_path / "records.txt"
    command = ["sh", "-c", f'exec "$@" {redirection}', "sh", *FETCHER,
               "--results", str(results), httpserver.url_for("/slow")]  # fmt: skip
    quiet = subprocess.DEVNULL
    with subprocess.Popen(
        command, stdin=quiet, stdout=quiet, stderr=quiet, env=clean_env()
    ) as process:
        try:
            assert arrived.wait(30)  # the results file was opened before the request
            target = descriptor_target(process.pid, descriptor)
        finally:
            release.set()
        process.wait(timeout=30)
    assert target == os.devnull
    assert process.returncode == 0
    assert len(results.read_text().splitlines()) == 1


# -- standard input closed ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [["-"], ["-i", "-"], []], ids=["dash", "input-dash", "none"])
def test_with_stdin_closed_a_list_read_from_it_is_a_usage_error(args):
    """`-` names standard input; closed (`<&-`), it cannot be read: a usage error, exit 2,
    rather than an AssertionError traceback. With nothing given, the usual "no URL given"."""
    done = closed_run(args, "<&-")
    assert done.returncode == 2, done.stderr
    assert b"Traceback" not in done.stderr
    expected = b"no URL given" if not args else b"standard input is closed"
    assert expected in done.stderr


# -- --help and --version on an output that cannot take them (s17 h3 minor notes) -------------


@pytest.mark.parametrize("option", ["--help", "--version"])
@pytest.mark.parametrize(
    ("redirections", "says"),
    [(">/dev/full", b"No space left on device"), (">&-", b"standard output is closed")],
)
def test_help_or_version_that_cannot_be_written_is_one_line_and_exit_1(option, redirections, says):
    done = closed_run([option], redirections)
    assert done.returncode == 1, done.stderr
    assert done.stderr == b"fetcher: cannot write " + option.encode() + b": " + says + b"\n"


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_help_or_version_to_a_reader_gone_exits_141_quietly(option):
    """As a run does when the reader of its records went away (SPEC 2.5)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [*FETCHER, option], stdin=subprocess.DEVNULL, stdout=write_end,
            stderr=subprocess.PIPE, env=clean_env(), timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == b""


def test_help_cut_by_a_file_size_limit_is_not_exit_0(tmp_path):
    """Python ignores SIGXFSZ: past `ulimit -f`, a write fails with EFBIG, and its buffered
    stream dropped the rest of a short write without a word (help.txt cut, exit 0)."""
    saved = tmp_path / "help.txt"
    done = subprocess.run(
        ["sh", "-c", 'ulimit -f 4 && exec "$@" > "$0"', str(saved), *FETCHER, "--help"],
        stdin=subprocess.DEVNULL, capture_output=True, env=clean_env(), timeout=60, check=False,
    )  # fmt: skip
    whole = invoke(["--help"]).stdout.encode()
    assert 0 < saved.stat().st_size < len(whole)  # the limit (blocks of 512 or 1024): cut
    assert done.returncode == 1, done.stderr
    assert done.stderr == b"fetcher: cannot write --help: File too large\n"


@pytest.mark.parametrize("unbuffered", ["", "1"])
@pytest.mark.parametrize("args", [["--bogus"], ["-H", "bad"], ["-j", "0", "http://x"]])
def test_a_usage_error_that_stderr_cannot_take_still_exits_2(args, unbuffered):
    """A usage error's message to a full stderr raised out of Click's main: exit 1 with a
    traceback that could not be shown, or 120 from the interpreter's last flush (s24 r5 1).
    The status says it: 2, as SPEC 2.5 gives a usage error."""
    env = clean_env()
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [*FETCHER, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=full,
            env=env, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["-q"], {}),  # a run without a warning: the baseline
        ([], {"REQUESTS_CA_BUNDLE": "/nonexistent/ca.pem"}),
        (["-u", "bob"], {}),
    ],
    ids=["none", "ca-variable", "no-password"],
)
def test_a_warning_before_the_run_that_stderr_cannot_take_stops_nothing(args, extra):
    """A warning said at start (a CA bundle variable that cannot be used, -u without a password
    and no terminal) to a full stderr raised out of the option checks: nothing fetched, exit
    120 (s24 r9 2). It is dropped; the run goes on: its record, its exit status."""
    with counting_server() as server, open("/dev/full", "wb") as full:
        done = subprocess.run(
            [*FETCHER, "--format", "jsonl", *args, server.url("/w")], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=full, env=clean_env(**extra), timeout=60, check=False,
        )  # fmt: skip
        assert server.paths == ["/w"]
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 1, done.stdout


def test_a_warning_that_meets_a_stderr_full_for_a_moment_leaves_the_summary_its_place():
    """A start-up warning to a non-blocking stderr pipe that was full for a moment (EAGAIN)
    pointed descriptor 2 at /dev/null for the whole run: the summary and every later line were
    lost once the reader caught up (s25 r1 5). Only a stderr gone for good (EPIPE) or full for
    good (ENOSPC) is silenced; the warning waits in the buffer and comes with the next line."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 4096)
    taken: list[bytes] = []

    def drain(path: str):  # the request comes after the start-up warning
        with contextlib.suppress(BlockingIOError):
            while piece := os.read(read_end, 1 << 16):
                taken.append(piece)
        return 200, {}, b"ok", 0.0

    with counting_server(drain) as server:
        done = subprocess.run(
            [*FETCHER, "--no-progress", server.url("/w")], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=write_end, timeout=60, check=False,
            env=clean_env(REQUESTS_CA_BUNDLE="/nonexistent/ca.pem"),
        )  # fmt: skip
    os.close(write_end)
    os.set_blocking(read_end, True)
    with os.fdopen(read_end, "rb") as rest:
        after = rest.read()
    assert done.returncode == 0 and server.paths == ["/w"]
    assert b"fetcher: 1 ok, 0 failed" in after, after[-300:]


# -- standard error's reader gone, under --progress (s29 t5 1) ----------------------------------


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_progress_to_a_stderr_whose_reader_is_gone_keeps_the_records_and_failed(tmp_path, verbose):
    """Rich's own answer to a broken pipe pointed standard output (fd 1), whichever stream
    broke, at /dev/null and raised SystemExit(1): the records of a healthy stdout were lost,
    --failed and --summary never written, exit 120. A broken stderr now stops only what is
    shown there."""
    failed, summary, out = tmp_path / "failed.txt", tmp_path / "s.json", tmp_path / "out"
    read, write = os.pipe()
    os.close(read)  # stderr's reader is gone before the first frame
    with counting_server() as server, out.open("wb") as stdout:
        urls = [server.url(f"/status/404?n={n}") for n in range(200)]
        run = subprocess.run(
            [*FETCHER, "--progress", *verbose, "--failed", str(failed), "--summary",
             str(summary), "-i", "-"],
            input="\n".join(urls).encode(), stdout=stdout, stderr=write, env=clean_env(),
            timeout=60, check=False,
        )  # fmt: skip
    os.close(write)
    assert run.returncode == 3, run.returncode
    assert len(out.read_text().splitlines()) == 200
    assert sorted(failed.read_text().splitlines()) == sorted(urls)
    assert summary.exists()
