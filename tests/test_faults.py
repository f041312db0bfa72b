"""Every error kind that can happen on loopback, made by a real server and read from the records.

Each fault is a real socket doing the wrong thing (refusing, never accepting, never answering,
resetting, truncating, talking garbage); the records are the JSON Lines the command prints.
"""

import contextlib
import json
import socket
import ssl
import subprocess
import sys

import pytest
import trustme

from fetcher.http.fetch import Fetcher
from fetcher.http.session import SessionPool
from fetcher.http.task import Task
from fetcher.input.jobs import Job
from fetcher.settings import MAX_LINE_BYTES, Settings
from tests.conftest import clean_env, invoke
from tests.servers import (
    FaultServer,
    closed_port,
    full_backlog,
    respond,
    silent,
    tls_server,
)

HEAD_100K = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
HEAD_100 = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
FAKE_HOST = "no-such-host.test"


@pytest.fixture(autouse=True)
def loopback_only_resolver(monkeypatch):
    """Resolve 127.0.0.1 only; any other name (FAKE_HOST) fails in the patched resolver, so no
    test can send a DNS query."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host != "127.0.0.1":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def run(*args, input=None, **env):
    """Run the command in process with JSON Lines records; return (result, records by url).

    Without retries: these tests are about the kind of one failure (retries have their own)."""
    result = invoke(["--format", "jsonl", "-q", "--retries", "0", *args], input=input, **env)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    by_url = {record["url"]: record for record in records}
    assert len(by_url) == len(records), "one record per URL"
    return result, by_url


def brief(record):
    """The record for an assertion message, with a long URL cut short."""
    return {key: value[:100] if isinstance(value, str) else value for key, value in record.items()}


def assert_failed(record, kind, status=None, attempts=None):
    """A failed record; by default a line the reader refused was never attempted (0), any
    other URL was attempted once (these runs have no retries)."""
    assert record["ok"] is False, brief(record)
    assert record["error"] is not None, brief(record)
    assert record["error"]["kind"] == kind, brief(record)
    assert record["error"]["message"].strip(), brief(record)
    assert record["status"] == status, brief(record)
    if attempts is None:
        attempts = 0 if kind == "invalid_url" else 1
    assert record["attempts"] == attempts, brief(record)


def assert_ok(record):
    assert record["ok"] is True, brief(record)
    assert record["error"] is None, brief(record)
    assert record["status"] == 200, brief(record)


# -- invalid_url -------------------------------------------------------------------------------


def test_invalid_lines_become_records_with_their_line_numbers(server):
    good = server.url("/good")
    lines = [
        b"\xef\xbb\xbfftp://127.0.0.1/file",  # 1: unsupported scheme, after a BOM
        b"# a comment",  # 2: skipped
        b"",  # 3: skipped
        b"http://",  # 4: no host
        b"http://\xff\xfe/latin-1",  # 5: not UTF-8
        good.encode(),  # 6
        b"http://127.0.0.1/" + b"a" * 9000,  # 7: longer than 8 KiB
        b"http://127.0.0.1:notaport/",  # 8: malformed port
    ]
    result, records = run("-", input=b"\r\n".join(lines) + b"\r\n")

    assert result.exit_code == 1, result.output
    by_line = {record["line"]: record for record in records.values()}
    assert sorted(by_line) == [1, 4, 5, 6, 7, 8]
    for number in (1, 4, 5, 7, 8):
        assert_failed(by_line[number], "invalid_url")
    assert "ftp" in by_line[1]["error"]["message"]
    assert by_line[1]["url"] == "ftp://127.0.0.1/file"  # the BOM is not part of the URL
    assert "host" in by_line[4]["error"]["message"]
    assert "UTF-8" in by_line[5]["error"]["message"]
    assert str(MAX_LINE_BYTES) in by_line[7]["error"]["message"]
    assert "port" in by_line[8]["error"]["message"].lower()
    assert_ok(by_line[6])
    assert by_line[6]["url"] == good
    assert server.paths == ["/good"]  # nothing invalid reached the network


def test_invalid_argument_has_no_line_number(server):
    result, records = run("ftp://127.0.0.1/x", server.url("/fine"))
    assert result.exit_code == 1
    assert_failed(records["ftp://127.0.0.1/x"], "invalid_url")
    assert records["ftp://127.0.0.1/x"]["line"] is None
    assert_ok(records[server.url("/fine")])


def test_only_invalid_lines_exit_3(server):
    result, records = run("-", input=b"gopher://127.0.0.1/\nhttp://\n")
    assert result.exit_code == 3
    assert [r["error"]["kind"] for r in records.values()] == ["invalid_url", "invalid_url"]
    assert server.requests == 0


def test_url_whose_host_has_a_label_past_63_characters_is_invalid_url(server):
    # Refused with the reader's checks (urllib3 refused it, as the request was being sent).
    url = "http://" + "a" * 64 + ".test/"
    result, records = run(url, server.url("/fine"))
    assert result.exit_code == 1
    assert_failed(records[url], "invalid_url", attempts=0)
    assert records[url]["line"] is None
    assert_ok(records[server.url("/fine")])


def url_line(base, length):
    """A URL on base padded with path characters to exactly length bytes."""
    line = (base + "a" * (length - len(base))).encode()
    assert len(line) == length
    return line


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b""])
def test_line_of_exactly_8_kib_is_fetched_whole(server, end):
    line = url_line(server.url("/"), MAX_LINE_BYTES)
    result, records = run("-", input=line + end)
    assert result.exit_code == 0
    assert_ok(records[line.decode()])
    assert len(server.paths[0]) == MAX_LINE_BYTES - len(server.url(""))


@pytest.mark.parametrize(
    "length,end",
    [
        pytest.param(MAX_LINE_BYTES + 1, b"\n", id="8193-lf"),
        pytest.param(MAX_LINE_BYTES + 1, b"", id="8193-eof"),
        pytest.param(MAX_LINE_BYTES + 1, b"\r\n", id="8193-crlf"),
        pytest.param(MAX_LINE_BYTES + 2, b"\n", id="8194-lf"),
        pytest.param(100_000, b"\n", id="100k-lf"),
        pytest.param(100_000, b"", id="100k-eof"),
    ],
)
def test_line_longer_than_8_kib_is_invalid_and_not_fetched(server, length, end):
    line = url_line(server.url("/"), length)
    good = server.url("/other").encode()
    # At EOF the long line comes last; otherwise a good line follows it.
    listing = good + b"\n" + line if end == b"" else line + end + good + b"\n"
    long_number, good_number = (2, 1) if end == b"" else (1, 2)
    result, records = run("-", input=listing)
    assert result.exit_code == 1
    by_line = {record["line"]: record for record in records.values()}
    assert sorted(by_line) == [1, 2]  # the rest of the long line was skipped, not a new line
    assert_failed(by_line[long_number], "invalid_url")
    assert_ok(by_line[good_number])
    assert server.paths == ["/other"]  # the long line, cut short, was never fetched


def test_byte_order_mark_does_not_count_towards_the_line_length(server):
    line = url_line(server.url("/"), MAX_LINE_BYTES)
    result, records = run("-", input=b"\xef\xbb\xbf" + line + b"\r\n")
    assert result.exit_code == 0
    assert_ok(records[line.decode()])


# -- dns, connect, connect_timeout, tls, proxy ----------------------------------------------------


def test_dns_failure(server):
    bad = f"http://{FAKE_HOST}/"
    result, records = run(bad, server.url("/fine"))
    assert result.exit_code == 1
    assert_failed(records[bad], "dns")
    assert "Name or service not known" in records[bad]["error"]["message"]
    assert_ok(records[server.url("/fine")])


# A name the system's resolver fails for real without sending a packet: each label has the
# most DNS allows (63 bytes) but the name is longer than its 255 in all, so the C library
# refuses it before it builds a query (strace shows glibc open no inet socket for it, where
# it sends "x.invalid" to the nameserver of resolv.conf). And fetcher runs in a network
# namespace of its own, whose only interface is a loopback that is down, so even a resolver
# that did try could send nothing off this machine.
UNRESOLVABLE = ".".join(["a" * 63] * 4) + ".invalid"


def test_dns_failure_from_the_real_resolver():
    isolated = ["unshare", "--net", "--"]
    if subprocess.run([*isolated, "true"], capture_output=True, check=False).returncode != 0:
        pytest.fail("needs 'unshare --net' (root) to resolve with no way off the machine")
    url = f"http://{UNRESOLVABLE}/"
    args = [sys.executable, "-m", "fetcher", "--format", "jsonl", "-q", "--retries", "0", url]
    done = subprocess.run(
        [*isolated, *args], capture_output=True, timeout=60, env=clean_env(), check=False
    )
    assert done.returncode == 3, done.stderr  # all failed
    [record] = [json.loads(line) for line in done.stdout.splitlines()]
    assert_failed(record, "dns")
    assert "Name or service not known" in record["error"]["message"]  # the resolver's own word


def test_connection_refused(server):
    refused = f"http://127.0.0.1:{closed_port()}/"
    result, records = run(refused, server.url("/fine"))
    assert result.exit_code == 1, result.output
    assert_failed(records[refused], "connect")
    assert "refused" in records[refused]["error"]["message"].lower()
    assert_ok(records[server.url("/fine")])


def test_connect_timeout_on_a_full_backlog(server):
    with full_backlog() as url:
        result, records = run("--connect-timeout", "0.5", "-t", "5", url, server.url("/fine"))
    assert result.exit_code == 1, result.output
    assert_failed(records[url], "connect_timeout")
    # The connect timeout, not the read timeout, is what ended it.
    assert 0.4 <= records[url]["elapsed"] < 4
    assert_ok(records[server.url("/fine")])


def test_https_to_a_plain_http_server_is_tls(server):
    url = f"https://127.0.0.1:{server.port}/"
    result, records = run(url, server.url("/fine"))
    assert result.exit_code == 1
    assert_failed(records[url], "tls")
    assert_ok(records[server.url("/fine")])


@pytest.fixture(scope="module")
def untrusted_tls():
    """An HTTPS server whose certificate, for 127.0.0.1, is signed by a CA nobody trusts."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with tls_server(context.wrap_socket) as server:
        yield server


def test_untrusted_certificate_is_tls(untrusted_tls, server):
    url = f"https://127.0.0.1:{untrusted_tls.port}/secret"
    result, records = run(url, server.url("/fine"))
    assert result.exit_code == 1
    assert_failed(records[url], "tls")
    assert "certificate verify failed" in records[url]["error"]["message"]
    assert "/secret" not in untrusted_tls.paths  # no request went over the untrusted channel
    assert_ok(records[server.url("/fine")])


def test_stalled_tls_handshake_is_a_connect_timeout():
    with FaultServer(silent) as fault:
        url = f"https://127.0.0.1:{fault.port}/"
        result, records = run("--connect-timeout", "0.3", "-t", "5", url)
    assert result.exit_code == 3
    assert records[url]["elapsed"] < 4  # the connect timeout, not -t, ended it
    assert_failed(records[url], "connect_timeout")


def test_unreachable_proxy_is_proxy(server):
    proxy = f"http://127.0.0.1:{closed_port()}"
    url = server.url("/through-proxy")
    result, records = run(url, HTTP_PROXY=proxy)
    assert result.exit_code == 3
    assert_failed(records[url], "proxy")
    assert server.requests == 0


# -- read_timeout, protocol ------------------------------------------------------------------


def test_read_timeout_when_the_server_never_answers(server):
    with FaultServer(silent) as fault:
        result, records = run("-t", "0.5", fault.url("/silent"), server.url("/fine"))
    assert result.exit_code == 1
    record = records[fault.url("/silent")]
    assert_failed(record, "read_timeout")
    assert 0.4 <= record["elapsed"] < 4
    assert_ok(records[server.url("/fine")])


def test_read_timeout_in_the_middle_of_the_body():
    with FaultServer(respond(HEAD_100K + b"x" * 1000, end="stall")) as fault:
        result, records = run("-t", "0.5", fault.url())
    assert result.exit_code == 3
    assert_failed(records[fault.url()], "read_timeout", status=200)


def test_reset_in_the_middle_of_the_body_is_protocol(server):
    with FaultServer(respond(HEAD_100K + b"x" * 5000, end="reset")) as fault:
        result, records = run(fault.url("/reset"), server.url("/fine"))
    assert result.exit_code == 1
    record = records[fault.url("/reset")]
    assert_failed(record, "protocol", status=200)
    assert "reset" in record["error"]["message"].lower()
    assert record["sha256"] is None  # no digest of a body that never arrived whole
    assert_ok(records[server.url("/fine")])


def test_body_shorter_than_its_content_length_is_protocol(server):
    with FaultServer(respond(HEAD_100 + b"only ten b", end="close")) as fault:
        result, records = run(fault.url("/short"), server.url("/fine"))
    assert result.exit_code == 1
    assert_failed(records[fault.url("/short")], "protocol", status=200)
    assert_ok(records[server.url("/fine")])


@pytest.mark.parametrize(
    "answer",
    [b"GARBAGE\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n", b"\x16\x03\x01\x00\x00"],
    ids=["garbage", "status-not-a-number", "tls-record"],
)
def test_garbage_status_line_is_protocol(answer):
    with FaultServer(respond(answer, end="close")) as fault:
        result, records = run(fault.url())
    assert result.exit_code == 3
    assert_failed(records[fault.url()], "protocol")


@pytest.mark.parametrize(
    "answer",
    [b"GARBAGE\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n"],
    ids=["garbage", "status-not-a-number"],
)
def test_garbage_status_line_message_says_what_was_wrong(answer):
    with FaultServer(respond(answer, end="close")) as fault:
        _, records = run(fault.url())
    message = records[fault.url()]["error"]["message"].lower()
    assert "status line" in message or "badstatusline" in message


@pytest.mark.parametrize("end", ["close", "reset"])
def test_connection_ended_before_any_response_is_protocol(end):
    with FaultServer(respond(b"", end=end)) as fault:
        result, records = run(fault.url())
    assert result.exit_code == 3
    assert_failed(records[fault.url()], "protocol")


# -- http, too_many_redirects --------------------------------------------------------------------


def test_error_status_is_http(server):
    result, records = run(server.url("/status/404"), server.url("/fine"))
    assert result.exit_code == 1
    record = records[server.url("/status/404")]
    assert_failed(record, "http", status=404)
    assert record["error"]["message"] == "404 Not Found"
    assert record["bytes"] == len(b"status 404")  # the body of an error page is still read
    assert_ok(records[server.url("/fine")])


def test_ok_status_can_widen(server):
    result, records = run("--ok-status", "200-299,404", server.url("/status/404"))
    assert result.exit_code == 0
    record = records[server.url("/status/404")]
    assert record["ok"] is True and record["error"] is None and record["status"] == 404


def test_ok_status_can_narrow(server):
    result, records = run("--ok-status", "200", server.url("/status/201"), server.url("/fine"))
    assert result.exit_code == 1
    assert_failed(records[server.url("/status/201")], "http", status=201)
    assert_ok(records[server.url("/fine")])


def test_only_http_errors_exit_3(server):
    result, records = run(server.url("/status/500"), server.url("/status/404"))
    assert result.exit_code == 3
    assert {r["error"]["kind"] for r in records.values()} == {"http"}


def test_redirect_loop_is_too_many_redirects(server):
    url = server.url("/redirect-loop")
    result, records = run(url, server.url("/fine"))
    assert result.exit_code == 1
    assert_failed(records[url], "too_many_redirects", status=302)
    assert "10" in records[url]["error"]["message"]
    assert server.paths.count("/redirect-loop") == 11  # the first request and 10 redirects
    assert_ok(records[server.url("/fine")])


def test_redirect_loop_record_counts_the_redirects_followed(server):
    _, records = run(server.url("/redirect-loop"))
    followed = server.paths.count("/redirect-loop") - 1
    assert records[server.url("/redirect-loop")]["redirects"] == followed == 10


# -- many faults in one run ----------------------------------------------------------------


def test_every_fault_in_one_run_gets_its_own_record(server):
    with contextlib.ExitStack() as stack:
        backlog = stack.enter_context(full_backlog())
        silent_server = stack.enter_context(FaultServer(silent))
        resetting = stack.enter_context(FaultServer(respond(HEAD_100K + b"x", end="reset")))
        short = stack.enter_context(FaultServer(respond(HEAD_100 + b"x", end="close")))
        garbage = stack.enter_context(FaultServer(respond(b"GARBAGE\r\n\r\n")))
        expected = {
            server.url("/one"): None,
            "ftp://127.0.0.1/": "invalid_url",
            f"http://{FAKE_HOST}/": "dns",
            f"http://127.0.0.1:{closed_port()}/": "connect",
            backlog: "connect_timeout",
            f"https://127.0.0.1:{server.port}/": "tls",
            silent_server.url(): "read_timeout",
            resetting.url(): "protocol",
            short.url(): "protocol",
            garbage.url(): "protocol",
            server.url("/status/404"): "http",
            server.url("/redirect-loop"): "too_many_redirects",
            server.url("/two"): None,
        }
        listing = "".join(f"{url}\n" for url in expected).encode()
        args = ("-j", "8", "--connect-timeout", "0.5", "-t", "0.5", "-")
        result, records = run(*args, input=listing)

    assert result.exit_code == 1, result.output
    assert set(records) == set(expected)
    for number, (url, kind) in enumerate(expected.items(), start=1):
        assert records[url]["line"] == number
        if kind is None:
            assert_ok(records[url])
        else:
            assert records[url]["ok"] is False
            assert records[url]["error"]["kind"] == kind, brief(records[url])
            assert records[url]["error"]["message"].strip()


# -- one attempt through Fetcher: a failure does not spoil the worker's session ---------------


def make_task(url):
    return Task(Job(seq=0, url=url, target=url, line=None, raw=url.encode()), "127.0.0.1")


def test_an_attempt_returns_failures_and_the_session_stays_usable(server):
    settings = Settings(connect_timeout=0.5, read_timeout=0.5, retries=0)
    pool = SessionPool(settings)  # this thread's session serves every attempt below
    fetcher = Fetcher(settings, pool)

    def fetch(url):
        outcome = fetcher.attempt(make_task(url))
        assert outcome.retry_in is None  # retries=0: one attempt is the whole fetch
        return outcome.result

    faults = [
        (respond(HEAD_100K + b"x" * 100, end="reset"), "protocol", 200),
        (respond(HEAD_100 + b"x", end="close"), "protocol", 200),
        (respond(b"GARBAGE\r\n\r\n"), "protocol", None),
        (silent, "read_timeout", None),
    ]
    try:
        for behaviour, kind, status in faults:
            with FaultServer(behaviour) as fault:
                failed = fetch(fault.url())
            assert failed.ok is False
            assert failed.error_kind == kind
            assert failed.status == status
            assert failed.error_message
            after = fetch(server.url("/after"))
            assert after.ok is True, after
            assert after.bytes == len(b"body of /after\n")
        refused = fetch(f"http://127.0.0.1:{closed_port()}/")
        assert refused.error_kind == "connect"
        assert refused.status is None
    finally:
        pool.close_all()
    assert len(pool.sessions) == 1
    assert server.connections == 1  # the good host's kept-alive connection survived every fault


def test_a_bug_reading_an_error_page_is_not_taken_for_a_cut_body(httpserver, monkeypatch):
    """t4 4c: any exception reading a non-ok answer's body made it "sha256 None, the record
    stays the 404": a bug in the read (a TypeError) was hidden as if the page had been cut.
    Only the failures a read can meet (FetchError, requests' and urllib3's, OSError) are."""
    from fetcher.http import fetch

    httpserver.expect_request("/missing").respond_with_data("not here", status=404)

    def broken_copy(*args: object) -> int:
        raise TypeError("a bug in the read")

    monkeypatch.setattr(fetch, "_copy", broken_copy)
    settings = Settings(retries=0)
    pool = SessionPool(settings)
    try:
        url = httpserver.url_for("/missing")
        job = Job(seq=0, url=url, target=url, line=None, raw=url.encode())
        result = Fetcher(settings, pool).attempt(Task(job, "127.0.0.1")).result
    finally:
        pool.close_all()
    assert result.error_kind is not None and result.error_kind.value == "other", result
    assert "a bug in the read" in (result.error_message or "")
