"""Option values that cannot be used are usage errors before anything is fetched (§2.5): NaN,
infinities and absurd numbers of seconds or rates, an empty -o; -d @- reads the body from standard
input as curl does, unless the URLs come from there too. And a --max-time deadline centuries
away neither kills its timer thread nor stops the header phase from being bounded."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import trustme
import urllib3

from fetcher.http.deadline import Deadline, DeadlineHTTPPool, set_thread_deadline
from fetcher.input.parsing import parse_rate
from fetcher.options import MAX_DATA_FILE_BYTES
from tests.conftest import FETCHER, clean_env, invoke, run_process
from tests.servers import records

SECONDS_OPTIONS = ["--connect-timeout", "--timeout", "-m", "--max-time", "--backoff",
                   "--max-retry-wait"]  # fmt: skip


def assert_refused(result, option: str, server) -> None:
    """Exit 2, one "Error:" line naming option, and not one request sent."""
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and option in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert server.requests == 0


# -- 1. a deadline centuries away ---------------------------------------------------------------


def test_a_deadline_beyond_what_threading_can_wait_for_kills_no_timer(server, monkeypatch):
    failures: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    set_thread_deadline(Deadline.start(1e12))  # past threading.TIMEOUT_MAX (about 292 years)
    try:
        with DeadlineHTTPPool("127.0.0.1", server.port) as pool:
            # The server's 0.2 s pause lets the timer's thread reach its wait first.
            response = pool.request("GET", "/slow/0.2/x")
    finally:
        set_thread_deadline(None)
    assert response.status == 200 and response.data == b"/slow/0.2/x"
    timers = [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]
    for timer in timers:
        timer.join(5)
    assert not any(timer.is_alive() for timer in timers)
    assert [failure.exc_type for failure in failures] == []


def test_a_near_deadline_still_cuts_headers_that_never_come():
    """The clamp leaves the timer working: a server that never answers is cut at the deadline,
    long before the read timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    taker = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    taker.start()
    set_thread_deadline(Deadline.start(0.3))
    started = time.monotonic()
    try:
        with DeadlineHTTPPool("127.0.0.1", listener.getsockname()[1], timeout=30) as pool:
            with pytest.raises(urllib3.exceptions.ProtocolError):
                pool.request("GET", "/", retries=False)
    finally:
        set_thread_deadline(None)
        taker.join(5)
        for conn in accepted:
            conn.close()
        listener.close()
    assert time.monotonic() - started < 10


# -- 2. numbers of seconds, rates and durations --------------------------------------------------


@pytest.mark.parametrize("option", SECONDS_OPTIONS)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e300", "1e10", "-1"])
def test_a_number_of_seconds_that_cannot_be_waited_is_a_usage_error(server, option, value):
    assert_refused(invoke(["-q", option, value, server.url("/x")]), option, server)


@pytest.mark.parametrize("variable", ["FETCHER_MAX_TIME", "FETCHER_BACKOFF", "FETCHER_TIMEOUT"])
def test_nan_from_the_environment_is_a_usage_error(server, variable):
    option = "--" + variable.removeprefix("FETCHER_").lower().replace("_", "-")
    result = invoke(["-q", server.url("/x")], **{variable: "nan"})
    assert_refused(result, option, server)


def test_backoff_nan_is_refused_at_once_instead_of_waiting_forever(server):
    # Before: the first retry was due at NaN, never, and the run hung. Bounded by timeout.
    result = run_process(["-q", "--backoff", "nan", "--retries", "1", server.url("/status/503")],
                         timeout=30)  # fmt: skip
    assert result.returncode == 2 and b"--backoff" in result.stderr
    assert server.requests == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("--timeout", "1e9"), ("-m", "1e9"), ("--connect-timeout", "0.5"), ("--backoff", "0"),
     ("--max-retry-wait", "0"), ("--max-retry-wait", "1e9")],
)  # fmt: skip
def test_the_largest_and_smallest_numbers_of_seconds_still_work(server, option, value):
    result = invoke(["--format", "jsonl", option, value, server.url("/x")])
    assert result.exit_code == 0, result.output
    assert [record["status"] for record in records(result.stdout)] == [200]


@pytest.mark.parametrize("option", ["--rate", "--host-rate"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "-inf", "inf/m", "1e-300", "1e-6"])
def test_a_rate_that_cannot_be_kept_is_a_usage_error(server, option, value):
    assert_refused(invoke(["-q", option, value, server.url("/x")]), option, server)


@pytest.mark.parametrize("value", ["1/m", "0.5", "1e6", "0.000012"])  # 0.000012/s: about 1 a day
def test_usual_and_extreme_rates_still_work(server, value):
    result = invoke(["-q", "--rate", value, server.url("/x")])
    assert result.exit_code == 0, result.output
    assert server.requests == 1


@pytest.mark.parametrize(
    ("value", "per_second"),
    [("100/h", 100 / 3600), ("1/d", 1 / 86400), ("2 / H", 2 / 3600), ("24/D", 24 / 86400)],
)
def test_curl_s_rates_per_hour_and_per_day_are_accepted(value, per_second):
    """curl's --rate takes /s, /m, /h and /d; its slowest, 1/d, is fetcher's floor."""
    assert parse_rate(value) == pytest.approx(per_second)


@pytest.mark.parametrize("value", ["0.5/d", "1/w", "1/hour"])
def test_a_rate_under_one_a_day_or_in_another_unit_is_refused(value):
    with pytest.raises(ValueError, match=r"/s, /m, /h or /d|one request a day"):
        parse_rate(value)


@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "9" * 400, "-1", "1M"])
def test_a_skip_fresh_that_is_no_duration_is_a_usage_error(server, tmp_path, value):
    result = invoke(["-q", "--state", str(tmp_path / "s.db"), "--skip-fresh", value,
                     server.url("/x")])  # fmt: skip
    assert_refused(result, "--skip-fresh", server)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "9" * 5000])
def test_a_max_size_that_is_no_size_is_a_usage_error(server, value):
    result = invoke(["-q", "--max-size", value, server.url("/x")])
    assert_refused(result, "--max-size", server)
    assert "sys.set_int_max_str_digits" not in result.stderr  # Python's words, not ours


@pytest.mark.parametrize(
    ("option", "value"),
    [("--metrics-label", "foo\n=bar"), ("-X", "GET\n")],
)
def test_a_name_ending_in_a_line_feed_is_a_usage_error(server, tmp_path, option, value):
    """Python's `$` matches before a last line feed: `foo\n` passed as a label name and broke
    the .prom file; `-X $'GET\n'` made every URL fail as `other` (s15 h3 1)."""
    extra = ["--metrics", str(tmp_path / "m.prom")] if option == "--metrics-label" else []
    assert_refused(invoke(["-q", *extra, option, value, server.url("/x")]), option, server)


# -- 3. -o '' ------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["-c", "--results", "--failed", "--summary", "--state", "-o"])
def test_an_output_file_named_like_an_option_is_a_usage_error(
    server, tmp_path, monkeypatch, option
):
    """wget's `-c -i list.txt` (resume a list) made a cookie jar named '-i' and fetched
    https://list.txt; a file of such a name is still written as ./-i."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.txt").write_text(server.url("/x") + "\n")
    result = invoke(["-q", option, "-i", "list.txt"])
    assert_refused(result, option, server)
    assert "looks like an option" in result.stderr and "./-i" in result.stderr
    if option == "-c":  # what wget's -c is here (s35 t6 2: the message did not say)
        assert "--continue" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt"]
    result = invoke(["-q", option, "./-i", server.url("/x")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "-i").exists()


@pytest.mark.parametrize(
    "option", ["--results", "--failed", "--summary", "--metrics", "-c", "--state"]
)
@pytest.mark.parametrize("where", ["out/records", "out/127.0.0.1_1/records", "./out/../out/r"])
def test_an_output_file_inside_the_output_dir_is_a_usage_error(
    server, tmp_path, monkeypatch, option, where
):
    """A saved body could replace it: a URL's path, a -J name or a line's output naming it
    (--results: every record lost, exit 0; --state: its history), or, renamed at the end, it
    could replace a body the records say is there (s14 state tester 6, -o DIR attacker 7)."""
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", "-o", "out", option, where, server.url("/x")])
    assert_refused(result, option, server)
    assert "inside -o DIR" in result.stderr


@pytest.mark.parametrize("option", ["--results", "--failed", "--summary", "--metrics"])
@pytest.mark.parametrize(("output_dir", "where"), [("retry", "retry"), ("out/sub", "out")])
def test_an_output_file_that_is_the_output_dir_or_above_it_is_a_usage_error(
    server, tmp_path, monkeypatch, option, output_dir, where
):
    """`-o retry --failed retry`: every request made, then "cannot write --failed file
    'retry': Is a directory", the failure list lost; --results refused only after DIR was made
    (s20 h2 4). Refused before anything is made."""
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", "-o", output_dir, option, where, server.url("/x")])
    assert_refused(result, option, server)
    assert list(tmp_path.iterdir()) == []


def test_an_output_file_inside_the_output_dir_through_a_link_is_refused_too(
    server, tmp_path, monkeypatch
):
    """``-o link/../D --results link/../D/host/x``: DIR is where the system finds it, beside
    the link's target; the file's folder was normalised as text, and slipped by (r2, 8)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to("elsewhere/sub")
    result = invoke(["-q", "-o", "link/../D", "--results", "link/../D/127.0.0.1_1/x",
                     server.url("/x")])  # fmt: skip
    assert_refused(result, "--results", server)


@pytest.mark.parametrize("args", [["-o", ""], ["--output-dir="], ["-J", "-o", ""]])
def test_an_empty_output_dir_is_a_usage_error(server, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", *args, "--results", "records.txt", server.url("/x")])
    assert_refused(result, "-o", server)
    assert "no folder name given" in result.stderr
    assert list(tmp_path.iterdir()) == []  # --results was not even created


# -- 4. -d @- -----------------------------------------------------------------------------------


def test_data_from_standard_input_is_sent_as_the_body(httpserver):
    body = b'{"x": 1}\n\x00\xff binary'
    httpserver.expect_request("/p", method="POST", data=body).respond_with_data("ok")
    result = invoke(["--format", "jsonl", "-d", "@-", httpserver.url_for("/p")], input=body)
    assert result.exit_code == 0, result.output
    assert [record["status"] for record in records(result.stdout)] == [200]
    httpserver.check_assertions()


def test_data_from_standard_input_goes_to_every_url_of_an_input_file(httpserver, tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{httpserver.url_for('/a')}\n{httpserver.url_for('/b')}\n")
    for path in ("/a", "/b"):
        httpserver.expect_request(path, method="POST", data=b"same").respond_with_data("ok")
    result = invoke(["-q", "-d", "@-", "-i", str(urls)], input=b"same")
    assert result.exit_code == 0, result.output
    assert len(httpserver.log) == 2
    httpserver.check_assertions()


@pytest.mark.parametrize("where", [[], ["-"], ["-i", "-"], ["URL", "-"]])
def test_data_from_standard_input_where_the_urls_come_from_is_a_usage_error(server, where):
    args = [server.url("/x") if arg == "URL" else arg for arg in where]
    result = invoke(["-q", "-d", "@-", *args], input=server.url("/y") + "\n")
    assert result.exit_code == 2, result.output
    assert "-d @-" in result.stderr and "standard input" in result.stderr
    assert "No such file" not in result.stderr
    assert server.requests == 0


@pytest.mark.parametrize(
    "args",
    [["-d", "@/dev/stdin"], ["-d", "@/dev/fd/0"], ["-d", "@-", "-i", "/dev/stdin"],
     ["-d", "@/dev/stdin", "-i", "-"]],
    ids=["dev-stdin", "dev-fd-0", "i-dev-stdin", "both-named"],
)  # fmt: skip
def test_data_from_the_pipe_the_urls_come_from_by_another_name_is_a_usage_error(server, args):
    """-d @/dev/stdin read the piped list as the body: nothing fetched, exit 0 (s19 t1 D6).
    A name for standard input's pipe is standard input."""
    result = subprocess.run(
        [*FETCHER, "-q", *args], input=f"{server.url('/y')}\n".encode(), capture_output=True,
        env=clean_env(), timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result
    assert b"standard input" in result.stderr and server.requests == 0


def test_data_from_the_fifo_the_urls_come_from_is_a_usage_error(server, tmp_path):
    """`-d @ff -i ff` on one FIFO: -d read the URL list as the body, then -i waited for ever
    on a FIFO no one would write again; no record, no message (s23 h3 8). What one of them
    reads the other loses, as with standard input: refused at once."""
    fifo = tmp_path / "ff"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(server.url("/y") + "\n"))
    writer.start()  # blocks until a reader opens it: the old code's -d
    try:
        result = subprocess.run(
            [*FETCHER, "-q", "-d", f"@{fifo}", "-i", str(fifo)], stdin=subprocess.DEVNULL,
            capture_output=True, env=clean_env(), timeout=30,
        )  # fmt: skip
    finally:
        if writer.is_alive():  # the new code opened no end: let the writer go
            with open(fifo, "rb") as reader:
                reader.read()
        writer.join(5)
    assert result.returncode == 2, result
    assert b"-i" in result.stderr and b"FIFO" in result.stderr, result.stderr
    assert server.requests == 0


def test_data_from_dev_null_with_standard_input_closed_is_an_empty_body(httpserver):
    """`-d @/dev/null <&-`: the /dev/null put on the closed standard input was taken for
    standard input itself, and the run refused (s19 r5 6)."""
    httpserver.expect_request("/p", method="POST", data=b"").respond_with_data("ok")
    result = subprocess.run(
        ["sh", "-c", 'exec "$@" <&-', "sh", *FETCHER, "-q", "-d", "@/dev/null",
         httpserver.url_for("/p")], capture_output=True, env=clean_env(), timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    httpserver.check_assertions()


def test_data_from_a_closed_standard_input_is_a_usage_error(server):
    result = subprocess.run(
        ["sh", "-c", 'exec "$@" <&-', "sh", *FETCHER, "-q", "-d", "@-", server.url("/x")],
        capture_output=True, env=clean_env(), timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert b"-d @-" in result.stderr and b"standard input is closed" in result.stderr
    assert server.requests == 0


def test_data_given_twice_is_joined_with_an_ampersand_as_curl_joins_it(httpserver, tmp_path):
    """curl -d a=1 -d b=2 sends a=1&b=2; the second -d replaced the first, without a word."""
    piece = tmp_path / "piece"
    piece.write_bytes(b"c=3")
    httpserver.expect_request("/p", method="POST", data=b"a=1&b=2&c=3").respond_with_data("ok")
    result = invoke(["-q", "-d", "a=1", "-d", "b=2", "-d", f"@{piece}", httpserver.url_for("/p")])
    assert result.exit_code == 0, result.output
    httpserver.check_assertions()


def test_data_from_the_environment_is_a_piece_a_line(httpserver):
    """FETCHER_DATA, as every repeatable option's variable (SPEC 2): a value per line, never
    split on blanks; the pieces joined as repeated -d are."""
    body = "a=1 b&c=2"
    httpserver.expect_request("/p", method="POST", data=body.encode()).respond_with_data("ok")
    result = invoke(["-q", httpserver.url_for("/p")], FETCHER_DATA="a=1 b\r\nc=2\n")
    assert result.exit_code == 0, result.output
    httpserver.check_assertions()


def test_data_from_standard_input_twice_is_a_usage_error(server):
    result = invoke(["-q", "-d", "@-", "-d", "@-", server.url("/x")], input=b"x")
    assert result.exit_code == 2 and "-d @- twice" in result.stderr, result.output
    assert server.requests == 0


def test_data_that_is_not_utf8_is_sent_as_the_bytes_given(httpserver):
    """curl -d "name=$(printf 'J\\xfcrgen')" sends those bytes; fetcher died with a traceback,
    from the argument and from FETCHER_DATA alike."""
    httpserver.expect_request("/p", method="POST", data=b"name=J\xfcrgen").respond_with_data("ok")
    argument = os.fsdecode(b"name=J\xfcrgen")  # as the command line gives it to Python
    result = run_process(["-q", "-d", argument, httpserver.url_for("/p")])
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr
    env = clean_env(FETCHER_DATA=argument)
    result = subprocess.run([*FETCHER, "-q", httpserver.url_for("/p")], capture_output=True,
                            env=env, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr
    assert len(httpserver.log) == 2
    httpserver.check_assertions()


def test_data_from_an_empty_standard_input_is_an_empty_body(httpserver):
    httpserver.expect_request("/p", method="POST", data=b"").respond_with_data("ok")
    result = run_process(["-q", "-d", "@-", httpserver.url_for("/p")], input=b"")
    assert result.returncode == 0, result.stderr
    assert len(httpserver.log) == 1
    httpserver.check_assertions()


def test_data_from_standard_input_over_the_limit_is_a_usage_error(server):
    result = run_process(["-q", "-d", "@-", server.url("/x")],
                         input=b"x" * (MAX_DATA_FILE_BYTES + 1))  # fmt: skip
    assert result.returncode == 2
    assert b"-d @-" in result.stderr and b"larger than 100 MiB" in result.stderr
    assert server.requests == 0


def test_data_pieces_over_the_limit_are_refused_before_they_are_all_read(server, tmp_path):
    """s32 t3 1: each -d @FILE was read whole (up to 100 MiB) before the total was weighed and
    the pieces joined: 8 of a 60 MiB file held 1 GB, and under a memory limit the join ended
    in a MemoryError traceback. Each piece is read up to the room the ones before it left:
    what the process read (its rchar, /proc/self/io), not its RSS, which a loaded CI run saw
    vary threefold."""
    piece, read = tmp_path / "piece", tmp_path / "read"
    with piece.open("wb") as file:
        file.truncate(40 * 2**20)  # sparse: 40 MiB of zeros that take no disk
    code = (
        "import atexit, runpy\n"
        "def read():\n"
        "    with open('/proc/self/io') as io, open(" + repr(str(read)) + ", 'w') as file:\n"
        "        file.write(next(line for line in io if line.startswith('rchar:')).split()[1])\n"
        "atexit.register(read)\n"
        "runpy.run_module('fetcher', run_name='__main__', alter_sys=True)\n"
    )
    pieces = [argument for _ in range(6) for argument in ("-d", f"@{piece}")]
    result = subprocess.run([sys.executable, "-c", code, "-q", *pieces, server.url("/x")],
                            capture_output=True, env=clean_env(), timeout=60)  # fmt: skip
    assert result.returncode == 2 and b"larger than 100 MiB" in result.stderr, result.stderr
    # Read whole: 6 x 40 MiB. Now 40 + 40 + 20 MiB, and the interpreter's own modules.
    assert int(read.read_text()) < 130 * 2**20, read.read_text()
    assert server.requests == 0


def test_an_input_file_inside_the_output_dir_is_a_usage_error(server, tmp_path, monkeypatch):
    """A saved body replaced the URL list (a URL's path, a -J name or a line's output naming
    it): the user's list gone, exit 0 (s17 h3 7). Refused as the run's own files are."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "127.0.0.1_1").mkdir(parents=True)
    listing = tmp_path / "out" / "127.0.0.1_1" / "urls.txt"
    listing.write_text(server.url("/x") + "\n")
    result = invoke(["-q", "-o", "out", "-i", "out/127.0.0.1_1/urls.txt"])
    assert_refused(result, "-i", server)
    assert "inside -o DIR" in result.stderr
    assert listing.read_text() == server.url("/x") + "\n"


@pytest.mark.parametrize(
    ("option", "where"),
    [("--cacert", "out/127.0.0.1_1/ca.pem"), ("--cacert", "out/ca/ca.pem"),
     ("REQUESTS_CA_BUNDLE", "out"), ("--cert", "out/127.0.0.1_1/me.pem"), ("--key", "out/k/me.key"),
     ("REQUESTS_CA_BUNDLE", "out/ca/ca.pem"), ("CURL_CA_BUNDLE", "out/127.0.0.1_1/ca.pem")],
)  # fmt: skip
def test_a_tls_file_inside_the_output_dir_is_a_usage_error(
    server, tmp_path, monkeypatch, option, where
):
    """s38 t1 1: a body saved as --cacert's file (a line's output, a -J name, a URL's path)
    replaced the user's CA during the run, and every later connection trusted the server's CA:
    the bundle is read for each new connection. Refused before any request, as a run file
    inside DIR is; a CA bundle variable's too. --cert and --key are read so as well."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "127.0.0.1_1").mkdir(parents=True)
    authority = trustme.CA()
    leaf = authority.issue_cert("client.example")
    pem = {"--cert": leaf.private_key_and_cert_chain_pem.bytes(),
           "--key": leaf.private_key_pem.bytes()}.get(option,
                                                      authority.cert_pem.bytes())  # fmt: skip
    written = tmp_path / ("out/0a1b2c3d.0" if where == "out" else where)
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_bytes(pem)
    variable = {option: str(tmp_path / where)} if option.isupper() else {}
    flags = [] if variable else [option, where]
    if option == "--key":
        leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "me.pem"))
        flags = ["--cert", str(tmp_path / "me.pem"), *flags]
    result = invoke(["-q", "-o", "out", *flags, server.url("/x")], **variable)
    assert_refused(result, option, server)
    assert "-o DIR" in result.stderr and where in result.stderr, result.stderr


@pytest.mark.parametrize("option", ["--cacert", "REQUESTS_CA_BUNDLE"])
def test_a_ca_file_at_the_top_of_the_output_dir_is_fine_unless_lines_name_files(
    server, tmp_path, monkeypatch, option
):
    """s38 r1 1: `-o . --cacert ca.pem` was refused by the check for TLS files inside DIR,
    where a plain list's bodies go into a host's folder only, as for `-o . -i urls.txt`. A
    jsonl line's output may name any file in DIR: beside such a list it is still refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ca.pem").write_bytes(trustme.CA().cert_pem.bytes())
    variable = {option: str(tmp_path / "ca.pem")} if option.isupper() else {}
    flags = [] if variable else [option, "ca.pem"]
    result = invoke(["-q", "-o", ".", *flags, server.url("/x")], **variable)
    assert result.exit_code == 0, result.output
    (tmp_path / "in.jsonl").write_text(json.dumps({"url": server.url("/x")}) + "\n")
    result = invoke(["-q", "-o", ".", *flags, "--input-format", "jsonl", "-i", "in.jsonl"],
                    **variable)  # fmt: skip
    assert result.exit_code == 2 and "inside -o DIR" in result.stderr, result.output


def test_a_ca_file_at_the_top_of_the_output_dir_is_refused_for_retry_failed(
    server, tmp_path, monkeypatch
):
    """s38 r2 1: --retry-failed's jobs come from the state, a jsonl line's output with them,
    while --input-format stays lines: a CA at DIR's top passed a365448's check, and a retried
    line whose output named it replaced the CA with its body."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    pem = trustme.CA().cert_pem.bytes()
    (tmp_path / "out" / "ca.pem").write_bytes(pem)
    line = json.dumps({"url": server.url("/status/404"), "output": "ca.pem"})
    (tmp_path / "in.jsonl").write_text(line + "\n")
    first = invoke(["-q", "-o", "out", "--state", "st.db", "--input-format", "jsonl", "-i",
                    "in.jsonl"])  # fmt: skip
    assert first.exit_code == 3, first.output
    result = invoke(["-q", "-o", "out", "--state", "st.db", "--retry-failed", "--cacert",
                     "out/ca.pem"])  # fmt: skip
    assert result.exit_code == 2 and "inside -o DIR" in result.stderr, result.output
    assert "beside lines that may name any file in it" in result.stderr  # why, at the top
    assert (tmp_path / "out" / "ca.pem").read_bytes() == pem


def test_a_url_list_at_the_top_of_the_output_dir_is_fine_unless_its_lines_name_files(
    server, tmp_path, monkeypatch
):
    """'-o . -i urls.txt' was refused by the check for lists inside DIR (s17 r1 4): from a list
    of URLs a body goes into a host's folder only. A jsonl line's output may name any file in
    DIR: such a list is refused there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "urls.txt").write_text(server.url("/x") + "\n")
    result = invoke(["-q", "-o", ".", "-i", "urls.txt"])
    assert result.exit_code == 0, result.output
    line = json.dumps({"url": server.url("/x"), "output": "in.jsonl"})
    (tmp_path / "in.jsonl").write_text(line + "\n")
    result = invoke(["-q", "-o", ".", "--input-format", "jsonl", "-i", "in.jsonl"])
    assert result.exit_code == 2 and "inside -o DIR" in result.stderr, result.output


# A list read through standard input (`< out/list.csv`), through a link outside DIR to a file
# inside it, or as /dev/stdin, is the same list as `-i out/list.csv`: a line's output naming
# it replaced it with a body, exit 0 (s25 h5 2). Refused as -i is.


def run_with_stdin(tmp_path, args: list[str], stdin_from) -> subprocess.CompletedProcess[str]:
    with open(stdin_from, "rb") as stdin:
        return subprocess.run([*FETCHER, *args], stdin=stdin, capture_output=True, text=True,
                              timeout=60, env=clean_env(), cwd=tmp_path, check=False)  # fmt: skip


def a_list_inside(tmp_path, server) -> str:
    """out/list.csv, whose first line's output names the list itself."""
    (tmp_path / "out").mkdir()
    text = f"url,output\n{server.url('/x')},list.csv\n{server.url('/y')},z\n"
    (tmp_path / "out" / "list.csv").write_text(text)
    return text


@pytest.mark.parametrize("dash_i", [[], ["-i", "-"], ["-i", "/dev/stdin"]])
def test_a_list_read_from_standard_input_inside_the_output_dir_is_refused(server, tmp_path, dash_i):
    text = a_list_inside(tmp_path, server)
    args = ["-q", "-o", "out", "--input-format", "csv", *dash_i]
    result = run_with_stdin(tmp_path, args, tmp_path / "out" / "list.csv")
    assert result.returncode == 2, result.stderr
    assert "inside -o DIR" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "out" / "list.csv").read_text() == text
    assert server.requests == 0


def test_a_list_through_a_link_outside_the_output_dir_to_a_file_inside_is_refused(
    server, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    text = a_list_inside(tmp_path, server)
    (tmp_path / "lnk.csv").symlink_to(tmp_path / "out" / "list.csv")
    result = invoke(["-q", "-o", "out", "--input-format", "csv", "-i", "lnk.csv"])
    assert_refused(result, "-i", server)
    assert "inside -o DIR" in result.stderr
    assert (tmp_path / "out" / "list.csv").read_text() == text


def test_a_list_of_urls_from_standard_input_may_be_at_the_output_dir_s_top(server, tmp_path):
    (tmp_path / "urls.txt").write_text(server.url("/x") + "\n")
    result = run_with_stdin(tmp_path, ["-q", "-o", "."], tmp_path / "urls.txt")
    assert result.returncode == 0, result.stderr
    assert server.requests == 1
