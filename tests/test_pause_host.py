"""The host a Retry-After pauses (SPEC §2.3): the one that answered with it. After a redirect to
another host, that is the redirect's target, not the host of the URL given.

Two servers on two ports (two hosts); every request's arrival is timed at the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_process
from tests.servers import Route, counting_server

RETRY_AFTER = 2  # seconds; the test's windows are drawn from it
SLACK = 0.2  # a request already leaving (or, with --processes, a relay on its way) when told
# URLs given for each host, and how long each takes: unpaused, the answering host's take more
# than SLACK to fetch; all of them, paused, leave the run's window (-j 4: 16) room for the rest.
DIRECT, DIRECT_TAKES = 6, 0.3
OTHER, OTHER_TAKES = 8, 0.05


class Arrivals:
    """When each request reached each server, by (server name, path)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[float, str, str]] = []

    def route(self, name: str, answer: Callable[[str, int], Route]) -> Callable[[str], Route]:
        """A server route that records each arrival, then answers with answer(path, how many
        times this path arrived so far)."""

        def recorded(path: str) -> Route:
            with self.lock:
                self.seen.append((time.monotonic(), name, path))
                count = sum(1 for _, n, p in self.seen if (n, p) == (name, path))
            return answer(path, count)

        return recorded

    def times(self, name: str, prefix: str) -> list[float]:
        return sorted(t for t, n, p in self.seen if n == name and p.startswith(prefix))


@pytest.mark.parametrize("processes", [[], ["--processes", "2"]], ids=["threads", "processes"])
def test_a_retry_after_after_a_redirect_pauses_the_host_that_answered(tmp_path, processes):
    arrivals = Arrivals()

    def answering(path: str, count: int) -> Route:
        if path == "/busy" and count == 1:
            return 503, {"Retry-After": str(RETRY_AFTER)}, b"busy", 0.0
        return 200, {}, b"ok", DIRECT_TAKES

    with (
        counting_server(arrivals.route("answering", answering)) as answering_server,
        counting_server(
            arrivals.route(
                "redirecting",
                lambda path, count: (
                    (302, {"Location": answering_server.url("/busy")}, b"", 0.0)
                    if path == "/redirect"
                    else (200, {}, b"ok", OTHER_TAKES)
                ),
            )
        ) as redirecting_server,
    ):
        lines = [redirecting_server.url("/redirect")]
        for n in range(OTHER):
            lines += [answering_server.url(f"/direct/{n}")] if n < DIRECT else []
            lines += [redirecting_server.url(f"/other/{n}")]
        urls = tmp_path / "urls.txt"
        urls.write_text("".join(f"{line}\n" for line in lines))
        started = time.monotonic()
        result = run_process(["-q", "-j", "4", *processes, "-i", str(urls)], timeout=30)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20

    told = arrivals.times("answering", "/busy")[0]  # the 503 went out at once
    paused_until = told + RETRY_AFTER
    # The answering host got nothing from any worker while its pause lasted...
    direct = arrivals.times("answering", "/direct/")
    during = [t - told for t in direct if told + SLACK < t < paused_until - SLACK]
    assert during == [], f"{len(during)} requests to the paused host, at {during} s"
    assert len(direct) == DIRECT and direct[-1] >= paused_until - SLACK  # some were held back
    # ...and the retry of the redirected URL reached it once the pause was over.
    busy = arrivals.times("answering", "/busy")
    assert len(busy) == 2 and busy[1] >= paused_until - SLACK
    # The host that only redirected was not paused: its other URLs went on at once.
    other = arrivals.times("redirecting", "/other/")
    assert len(other) == OTHER and other[-1] < told + RETRY_AFTER / 2, [t - told for t in other]


@pytest.mark.parametrize("processes", [[], ["--processes", "2"]], ids=["threads", "processes"])
def test_a_redirect_to_a_paused_host_waits_for_the_pause(tmp_path, processes):
    """A redirect's hop reached a host that had asked every client to wait: 96 requests in 1.5
    s of a 30 s Retry-After, when the same URLs given directly waited (s21 h3 1). The pause is
    the host's, whatever led there: a hop to it waits it out, as its own URLs do."""
    arrivals = Arrivals()

    def answering(path: str, count: int) -> Route:
        if path == "/busy":
            return 429, {"Retry-After": str(RETRY_AFTER)}, b"busy", 0.0
        return 200, {}, b"ok", 0.0

    def redirecting(path: str, count: int) -> Route:
        if path == "/first":
            return 302, {"Location": answering_server.url("/busy")}, b"", 0.0
        return 302, {"Location": answering_server.url(f"/target{path}")}, b"", 0.3

    with (
        counting_server(arrivals.route("answering", answering)) as answering_server,
        counting_server(arrivals.route("redirecting", redirecting)) as redirecting_server,
    ):
        # the first URL's hop meets the 429; the others' hops come 0.3 s later, in its pause
        lines = [redirecting_server.url("/first")]
        lines += [redirecting_server.url(f"/via/{n}") for n in range(6)]
        urls = tmp_path / "urls.txt"
        urls.write_text("".join(f"{line}\n" for line in lines))
        result = run_process(["-q", "-j", "4", "--retries", "0", "--format", "jsonl", *processes,
                              "-i", str(urls)], timeout=30)  # fmt: skip
    assert result.returncode == 1, result.stderr  # the 429 itself is not retried
    told = arrivals.times("answering", "/busy")[0]
    hops = arrivals.times("answering", "/target/")
    assert len(hops) == 6
    during = [round(t - told, 3) for t in hops if told + SLACK < t < told + RETRY_AFTER - SLACK]
    assert during == [], f"{len(during)} hops to the paused host, at {during} s"


@pytest.mark.parametrize("status", [302, 300])
def test_a_hop_that_would_wait_past_max_time_ends_at_max_time(tmp_path, status):
    """A hop held by a pause longer than the URL's --max-time ends when the time is up, kind
    max_time, without reaching the paused host; a 300's hop as any redirect's (s26 h4 4)."""
    arrivals = Arrivals()

    def answering(path: str, count: int) -> Route:
        if path == "/busy":
            return 503, {"Retry-After": "30"}, b"busy", 0.0
        return 200, {}, b"ok", 0.0

    def redirecting(path: str, count: int) -> Route:
        return status, {"Location": answering_server.url(f"/target{path}")}, b"", 0.0

    with (
        counting_server(arrivals.route("answering", answering)) as answering_server,
        counting_server(arrivals.route("redirecting", redirecting)) as redirecting_server,
    ):
        lines = [answering_server.url("/busy"), redirecting_server.url("/via/1")]
        started = time.monotonic()
        result = run_process(["-q", "-j", "1", "--retries", "0", "-m", "1", "--format", "jsonl",
                              *lines], timeout=30)  # fmt: skip
        took = time.monotonic() - started
    import json

    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["error"]["kind"] for r in records] == ["http", "max_time"], records
    assert "while" in records[1]["error"]["message"]  # says what it waited for
    # The 302 came and was followed, as for a hop cut while connecting: its record said
    # redirects 0, final_url null, "no answer" (s25 h2 6).
    assert records[1]["redirects"] == 1, records[1]
    assert records[1]["final_url"] == answering_server.url("/target/via/1")
    assert arrivals.times("answering", "/target/") == []
    assert took < 10


@pytest.mark.parametrize("processes", [[], ["--processes", "2"]], ids=["threads", "processes"])
def test_a_hop_waiting_for_a_paused_host_at_a_stop_is_not_finished_not_failed(tmp_path, processes):
    """A stop ended a hop's wait for a paused host with kind other, counted a failure, though
    nothing was sent to it (s21 r1 5): it is cut as any request in flight, not finished."""
    import json
    import signal
    import subprocess

    from tests.conftest import FETCHER, clean_env
    from tests.servers import wait_for

    arrivals = Arrivals()

    def answering(path: str, count: int) -> Route:
        return 503, {"Retry-After": "30"}, b"busy", 0.0

    def redirecting(path: str, count: int) -> Route:  # late: the pause is relayed by then
        return 302, {"Location": answering_server.url(f"/target{path}")}, b"", 0.3

    with (
        counting_server(arrivals.route("answering", answering)) as answering_server,
        counting_server(arrivals.route("redirecting", redirecting)) as redirecting_server,
    ):
        summary = tmp_path / "summary.json"
        lines = [answering_server.url("/busy"), redirecting_server.url("/via/1")]
        process = subprocess.Popen(
            [*FETCHER, "-q", "-j", "1", "--retries", "0", "--format", "jsonl", "--summary",
             str(summary), *processes, *lines],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
        )  # fmt: skip
        try:
            wait_for(lambda: len(arrivals.times("redirecting", "/via/")) == 1, "the redirect")
            time.sleep(0.6)  # the hop is waiting (nothing to poll for: it sends nothing)
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130, stderr
    [hop] = [json.loads(line) for line in stdout.splitlines() if b"/via/" in line]
    assert hop["ok"] is False and "interrupted before it finished" in hop["error"]["message"]
    counts = json.loads(summary.read_text())
    assert counts["not_finished"] == 1 and counts["failed"] == 1, counts  # the 503 failed
    assert arrivals.times("answering", "/target/") == []


def test_a_retry_due_after_a_backoff_waits_for_a_pause_that_came_first(tmp_path):
    """A 500's retry, due while both --per-host places were busy, went out the moment a
    sibling's 503 asked the host to wait, in its place (s25 h2 2): only a retry that waited
    the host's own Retry-After may go inside a pause, and this one waited a backoff."""
    arrivals = Arrivals()
    told_after = 1.5  # the 503 comes this long after its request: the 500's retry is due by then

    def answer(path: str, count: int) -> Route:
        if path == "/error" and count == 1:
            return 500, {}, b"oops", 0.0
        if path == "/busy" and count == 1:
            return 503, {"Retry-After": str(RETRY_AFTER)}, b"busy", told_after
        if path == "/long":  # holds the other place past the pause's end
            return 200, {}, b"ok", told_after + RETRY_AFTER + 0.5
        return 200, {}, b"ok", 0.0

    with counting_server(arrivals.route("host", answer)) as server:
        urls = tmp_path / "urls.txt"
        urls.write_text("".join(f"{server.url(p)}\n" for p in ["/error", "/busy", "/long"]))
        result = run_process(["-q", "-j", "3", "--per-host", "2", "--retries", "1",
                              "--backoff", "0.5", "-i", str(urls)], timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr
    told = arrivals.times("host", "/busy")[0] + told_after  # no sooner than that
    errors = arrivals.times("host", "/error")
    assert len(errors) == 2 and errors[1] < told + RETRY_AFTER + 2  # it was retried
    after = [round(t - told, 3) for t in arrivals.times("host", "/") if t > told]
    during = [t for t in after if t < RETRY_AFTER - SLACK]
    assert during == [], f"{len(during)} requests to the paused host, at {during} s"


def others_while_dripping(
    tmp_path: Path, status: str, wait: float, drip: float, others: int, extra: list[str]
) -> list[float]:
    """Run fetcher -j 2 over /drip, whose answer (status, "Retry-After: wait") sends half its
    page with its headers and the rest drip seconds later, then others URLs of the same host,
    each 0.1 s long (the other worker would send one every 0.1 s while nothing holds it back).
    Return when each of those reached the server, in seconds after /drip's headers went."""
    from tests.servers import FaultServer, read_request

    lock = threading.Lock()
    seen: list[tuple[float, str]] = []
    told: list[float] = []

    def behaviour(conn) -> None:
        path = read_request(conn).split(b" ")[1].decode()
        with lock:
            seen.append((time.monotonic(), path))
        if path != "/drip":
            time.sleep(0.1)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            return
        head = f"HTTP/1.1 {status}\r\nRetry-After: {wait}\r\nContent-Length: 4\r\n"
        conn.sendall(f"{head}Connection: close\r\n\r\nbu".encode())
        told.append(time.monotonic())
        time.sleep(drip)  # the server's behaviour under test, not a synchronisation
        conn.sendall(b"sy")

    with FaultServer(behaviour) as server:
        urls = tmp_path / "urls.txt"
        lines = [server.url("/drip"), *(server.url(f"/other/{n}") for n in range(others))]
        urls.write_text("".join(f"{line}\n" for line in lines))
        result = run_process(["-q", "-j", "2", "--retries", "0", *extra, "-i", str(urls)],
                             timeout=30)  # fmt: skip
    assert result.returncode == 1, result.stderr  # the 503 or 429
    arrived = sorted(t - told[0] for t, path in seen if path.startswith("/other/"))
    assert len(arrived) == others
    return arrived


@pytest.mark.parametrize("processes", [[], ["--processes", "2"]], ids=["threads", "processes"])
def test_a_retry_after_pauses_its_host_when_its_headers_come_not_when_its_body_ends(
    tmp_path, processes
):
    """A 503's error page dripped for seconds after its "Retry-After"; the host was paused only
    once the page had been read, and other workers kept sending to it meanwhile (s25 h2 5)."""
    drip = 1.5  # how long the error page takes after its headers: half the pause
    others = others_while_dripping(tmp_path, "503 Busy", RETRY_AFTER + 1, drip, 20, processes)
    during = [round(t, 3) for t in others if SLACK < t < RETRY_AFTER + 1 - SLACK]
    assert during == [], f"{len(during)} requests to the paused host, at {during} s"


def test_a_retry_after_holds_its_host_while_its_error_page_is_read_past_the_wait(tmp_path):
    """s33 t5 1: a 429/503 whose page took longer to read than its Retry-After left the host
    free between the pause heard with its headers and the pause from the page's end: with
    "Retry-After: 1" and a page dripped over 2.5 s, the host's other URLs went at 1.0 s. The
    host is now held while the page is read, then paused again from its end. (Threads: a
    sibling process is told the pause alone, not the hold: docs/usage.md.)"""
    drip, wait = 2.5, 1  # the page takes longer than the wait the server asked for
    others = others_while_dripping(tmp_path, "429 Busy", wait, drip, 8, [])
    during = [round(t, 3) for t in others if SLACK < t < drip + wait - SLACK]
    assert during == [], f"{len(during)} requests to the held host, at {during} s"


def test_a_retry_after_of_0_holds_nothing_while_its_page_is_read(tmp_path):
    """s34 r2 1: a 429 saying "Retry-After: 0" (or a wait --max-retry-wait cuts to 0) held
    its host for the whole of its slow page: runs took 3 to 6 times as long. A wait of 0
    asks for nothing, and holds nothing."""
    others = others_while_dripping(tmp_path, "429 Busy", 0, 1.5, 8, [])
    during = [t for t in others if SLACK < t < 1.5 - SLACK]
    assert during, f"no request to the host while the page dripped: {others}"
