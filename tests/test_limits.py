"""Politeness of §2.3, observed by the server: --per-host, --rate, --host-rate and the host pause
on Retry-After, with 127.0.0.1 and localhost as two hosts of one local server."""

import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import invoke
from tests.servers import max_in_any_second, records, serving


class Recording(ThreadingHTTPServer):
    """Records every request's arrival time and host, and requests in flight per host.
    ``/slow/S/...`` answers after S seconds; ``answers`` maps a path to a list of (status,
    headers) given in turn, the last one repeating; ``after`` maps a path to another whose
    response must have been sent before its own is, ``arrived`` to another that must have
    arrived before it is answered (an order set by events, not by sleeps)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.arrivals: list[tuple[float, str, str]] = []
        self.in_flight: dict[str, int] = defaultdict(int)
        self.max_in_flight: dict[str, int] = defaultdict(int)
        self.max_total = 0
        self.answers: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.sent: list[tuple[float, str, int]] = []  # when each response was sent, its status
        self.after: dict[str, str] = {}
        self.arrived: dict[str, str] = {}
        self.answered = threading.Condition(self.lock)  # notified as each response is sent

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server_address[1]}{path}"

    def times(self, host: str) -> list[float]:
        return [t for t, h, _ in self.arrivals if h == host]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recording

    def do_GET(self) -> None:  # noqa: N802
        server = self.server
        host = self.headers["Host"].rsplit(":", 1)[0]
        with server.lock:
            server.arrivals.append((time.monotonic(), host, self.path))
            server.answered.notify_all()  # for those waiting for an arrival (``arrived``)
            server.in_flight[host] += 1
            server.max_in_flight[host] = max(server.max_in_flight[host], server.in_flight[host])
            server.max_total = max(server.max_total, sum(server.in_flight.values()))
            answers = server.answers.get(self.path)
            status, headers = (
                answers.pop(0)
                if answers and len(answers) > 1
                else (answers[0] if answers else (200, {}))
            )
        try:
            parts = self.path.strip("/").split("/")
            if parts[0] == "slow":
                time.sleep(float(parts[1]))
            if other := server.arrived.get(self.path):
                with server.answered:
                    server.answered.wait_for(
                        lambda: any(path == other for _, _, path in server.arrivals), timeout=10
                    )
            if first := server.after.get(self.path):
                with server.answered:
                    server.answered.wait_for(
                        lambda: any(path == first for _, path, _ in server.sent), timeout=10
                    )
            body = b"ok"
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            with server.answered:
                server.sent.append((time.monotonic(), self.path, status))
                server.answered.notify_all()
        finally:
            with server.lock:
                server.in_flight[host] -= 1

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recording():
    yield from serve_recording()


def serve_recording():
    with serving(Recording()) as server:
        yield server


# -- --per-host -------------------------------------------------------------------------------


def test_per_host_limits_each_host_separately(recording):
    urls = [
        recording.url(f"/slow/0.15/{n}", host)
        for n in range(12)
        for host in ("127.0.0.1", "localhost")
    ]
    result = invoke(["--format", "jsonl", "-j", "8", "--per-host", "2", *urls])
    assert result.exit_code == 0, result.stderr
    assert len(records(result.stdout)) == 24
    assert recording.max_in_flight["127.0.0.1"] == 2  # never more, and reached under load
    assert recording.max_in_flight["localhost"] == 2
    assert recording.max_total >= 3  # the two hosts were fetched side by side


def test_without_per_host_one_host_gets_every_worker(recording):
    urls = [recording.url(f"/slow/0.15/{n}") for n in range(12)]
    invoke(["-j", "6", *urls])
    assert recording.max_in_flight["127.0.0.1"] >= 4


# -- --rate and --host-rate ---------------------------------------------------------------------


def test_rate_spaces_requests_evenly_without_a_burst(recording):
    urls = [recording.url(f"/r/{n}") for n in range(40)]
    result = invoke(["-j", "8", "--rate", "20", *urls])
    assert result.exit_code == 0
    times = sorted(recording.times("127.0.0.1"))
    assert len(times) == 40
    assert times[-1] - times[0] >= 1.8
    # Starts are spaced exactly (test_scheduler_spaces_starts_under_the_rate); on a loaded
    # machine a request can be held between its start and the wire and join the next second's
    # window, which no client can prevent: two such stragglers are tolerated here. What this
    # guards against puts far more in one second: no spacing (40), a burst of -j 8 at the start
    # then the rate (28), a rate's worth at each second's edge (up to 40).
    assert max_in_any_second(times) <= 22, times
    # No burst at the start: the first five arrivals span four spacings (0.2 s), less what
    # requests held on their way (new connections under load) take off, up to half: a burst
    # spans ~0.
    assert times[4] - times[0] >= 0.1, times


def test_rate_per_minute(recording):
    urls = [recording.url(f"/m/{n}") for n in range(3)]
    invoke(["-j", "3", "--rate", "120/m", *urls])
    times = sorted(recording.times("127.0.0.1"))
    assert times[-1] - times[0] >= 0.95  # 2 per second


def test_host_rate_applies_to_each_host(recording):
    urls = [
        recording.url(f"/h/{n}", host) for n in range(10) for host in ("127.0.0.1", "localhost")
    ]
    invoke(["-j", "8", "--host-rate", "10", *urls])
    for host in ("127.0.0.1", "localhost"):
        times = sorted(recording.times(host))
        assert len(times) == 10
        # Nine spacings (0.9 s), less what one request held on its way takes off (a new
        # connection, or a GIL turn of up to the run's 50 ms switch interval), as in the --rate
        # test; a burst spans ~0. (It asked for the full 0.9 s and failed once in 10 runs.)
        assert times[-1] - times[0] >= 0.8
        assert max_in_any_second(times) <= 11  # one straggler, as in the --rate test
    # The hosts were not spaced against each other: by the server's clock, the twenty span about
    # the nine spacings of one host (0.9 s), not the nineteen of one rate for both (1.9 s, less
    # what one request held on its way takes off). The command's own start and end, which a
    # loaded machine stretches, are not counted.
    arrivals = sorted(t for t, _, _ in recording.arrivals)
    assert arrivals[-1] - arrivals[0] < 1.7, arrivals


@pytest.mark.parametrize("value", ["0", "-1", "fast", "10/w", "/s"])
def test_bad_rate_is_a_usage_error(value):
    result = invoke(["--rate", value, "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "--rate" in result.stderr


# -- the shared host pause --------------------------------------------------------------------


def test_retry_after_pauses_the_host_for_every_worker_while_others_go_on(recording):
    recording.answers["/first"] = [(429, {"Retry-After": "1"}), (200, {})]
    a_urls = [recording.url("/first")] + [recording.url(f"/slow/0.05/a{n}") for n in range(8)]
    b_urls = [recording.url(f"/slow/0.1/b{n}", "localhost") for n in range(12)]
    urls = [a_urls[0]] + [u for pair in zip(a_urls[1:], b_urls, strict=False) for u in pair]
    urls += b_urls[len(a_urls) - 1 :]
    result = invoke(["--format", "jsonl", "-j", "4", "--backoff", "0.01", *urls])
    assert result.exit_code == 0, result.stderr
    by_url = {r["url"]: r for r in records(result.stdout)}
    assert by_url[a_urls[0]]["attempts"] == 2
    arrivals = sorted(recording.arrivals)
    # A request already leaving when the 429 arrived cannot be recalled: allow 50 ms for it.
    paused_at = next(t for t, path, status in recording.sent if status == 429) + 0.05
    to_a = [t for t, host, _ in arrivals if host == "127.0.0.1" and t > paused_at]
    to_b = [t for t, host, _ in arrivals if host == "localhost" and paused_at < t < paused_at + 0.9]
    assert min(to_a) >= paused_at + 0.9  # no worker sent anything to A during the pause
    assert len(to_b) >= 6  # while B was fetched by the workers A could not use


def test_host_pause_is_capped_by_max_retry_wait(recording):
    recording.answers["/long"] = [(503, {"Retry-After": "30"}), (200, {})]
    urls = [recording.url("/long"), *(recording.url(f"/slow/0.05/{n}") for n in range(6))]
    started = time.monotonic()
    result = invoke(["--format", "jsonl", "-j", "2", "--max-retry-wait", "0.5", *urls])
    assert time.monotonic() - started < 5
    assert all(r["ok"] for r in records(result.stdout))
    paused_at = next(t for t, path, status in recording.sent if status == 503) + 0.05
    later = [t for t, _, _ in recording.arrivals if t > paused_at]
    assert later and min(later) >= paused_at + 0.4  # paused for 0.5 s, not 30


# -- a host is host and port --------------------------------------------------------------------


@pytest.fixture
def second_recording():
    yield from serve_recording()  # another server, on another port: another host


def test_a_pause_on_one_port_does_not_hold_another_port_of_the_same_address(
    recording, second_recording
):
    """Issue 11: a 429 from 127.0.0.1:8002 paused 127.0.0.1:8001 too."""
    recording.answers["/first"] = [(429, {"Retry-After": "3"}), (200, {})]
    others = [second_recording.url(f"/slow/0.05/{n}") for n in range(6)]
    result = invoke(["--format", "jsonl", "-j", "2", "--ordered", recording.url("/first"), *others])
    assert result.exit_code == 0, result.stderr
    paused_at = next(t for t, path, status in recording.sent if status == 429)
    # Every request to the other port was answered long before the 3 s pause ended.
    assert len(second_recording.sent) == 6
    assert max(t for t, _, _ in second_recording.sent) < paused_at + 2


def test_per_host_counts_each_port_as_its_own_host(recording, second_recording):
    urls = [s.url(f"/slow/0.2/{n}") for n in range(4) for s in (recording, second_recording)]
    result = invoke(["--format", "jsonl", "-j", "4", "--per-host", "1", *urls])
    assert result.exit_code == 0, result.stderr
    # One at a time on each port, but both ports at once: the two runs overlap.
    assert recording.max_in_flight["127.0.0.1"] == 1
    assert second_recording.max_in_flight["127.0.0.1"] == 1

    def spans(server: Recording) -> list[tuple[float, float]]:
        ends = {path: t for t, path, _ in server.sent}
        return [(t, ends[path]) for t, _, path in server.arrivals]

    # Some request to one port was in flight while one to the other was: not one at a time.
    assert any(a < d and c < b for a, b in spans(recording) for c, d in spans(second_recording))


def test_summary_names_failing_hosts_with_their_port(recording, second_recording):
    for path in ("/bad", "/bad2"):
        recording.answers[path] = [(404, {})]
    second_recording.answers["/bad"] = [(404, {})]
    urls = [recording.url("/bad"), recording.url("/bad2"), second_recording.url("/bad")]
    result = invoke(urls)
    assert result.exit_code == 3
    first, second = (f"127.0.0.1:{s.server_address[1]}" for s in (recording, second_recording))
    assert f"{first} (2)" in result.stderr and f"{second} (1)" in result.stderr


def test_a_url_whose_max_time_runs_out_waiting_for_a_retry_keeps_its_last_outcome(recording):
    """Issue 11: such URLs ended as max_time after one request, their retry never sent."""
    recording.answers["/x"] = [(503, {"Retry-After": "2"}), (200, {})]
    recording.answers["/y"] = [(429, {"Retry-After": "8"}), (200, {})]
    # /y's 429 is sent just after /x's 503 (CI, session 21: after a fixed 0.3 s delay, under
    # load, it came after /x's retry was due, and the retry was sent).
    recording.after["/y"] = "/x"
    # And /x is answered only once /y has arrived (session 23: at a load of 30, /y's request
    # came after /x's retry was due).
    recording.arrived["/x"] = "/y"
    started = time.monotonic()
    result = invoke(
        ["--format", "jsonl", "-j", "2", "--max-time", "3", "--ordered",
         recording.url("/x"), recording.url("/y")]
    )  # fmt: skip
    took = time.monotonic() - started
    x, y = records(result.stdout)
    # /x's retry was due at 2 s, but the 429 paused the host for 8 s, past /x's deadline.
    assert [path for _, _, path in recording.arrivals].count("/x") == 1
    assert (x["status"], x["attempts"], x["error"]["kind"]) == (503, 1, "http")
    assert "retry given up: --max-time of 3 s reached" in x["error"]["message"]
    assert 2.9 <= x["elapsed"] < 5.0
    assert (y["status"], y["attempts"], y["error"]["kind"]) == (429, 1, "http")
    assert took < 6.0  # ended at its deadline, not when the 8 s pause did


def test_one_server_spelled_several_ways_is_one_host_for_per_host(recording):
    """127.0.0.1, 127.1, 2130706433 and 0x7f.1 are one address (the resolver reads them as
    inet_aton does): --per-host 1 let four requests in flight to the one server (s25 h2 3)."""
    hosts = ("127.0.0.1", "127.1", "2130706433", "0x7f.1")
    urls = [recording.url(f"/slow/0.1/{n}", host) for n in range(3) for host in hosts]
    result = invoke(["--format", "jsonl", "-j", "8", "--per-host", "1", *urls])
    assert result.exit_code == 0, result.stderr
    assert len(records(result.stdout)) == 12
    assert recording.max_total == 1
