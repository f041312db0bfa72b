"""Bounded growth (SPEC §2.2): cookies a server sets, the Cookie header sent back, the -c file
and the -d @FILE read at start.

A hostile server sets 95 new cookies of 1 KB on every answer. Without bounds, 100 URLs grow
each worker's jar to 9,500 cookies and the Cookie header to 9.5 MB; with them, the jar keeps at
most MAX_COOKIES_PER_DOMAIN cookies for the server, the header stays under
MAX_COOKIE_HEADER_BYTES, and the -c file written at the end holds no more.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.cookiejar import Cookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fetcher.http.cookies import (
    MAX_COOKIE_BYTES,
    MAX_COOKIE_HEADER_BYTES,
    MAX_COOKIES,
    MAX_COOKIES_PER_DOMAIN,
    BoundedCookieJar,
    load_jar,
)
from fetcher.http.fetch import Fetcher
from fetcher.http.session import SessionPool
from fetcher.http.task import Task
from fetcher.input.jobs import Job
from fetcher.options import MAX_DATA_FILE_BYTES
from fetcher.settings import Settings
from tests.conftest import invoke
from tests.servers import serving

NEW_PER_ANSWER = 95
VALUE = "v" * 1000


class CookieFlood(ThreadingHTTPServer):
    """Every answer sets NEW_PER_ANSWER new 1 KB cookies; keeps the Cookie header of each
    request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FloodHandler)
        self.lock = threading.Lock()
        self.answers = 0
        self.cookie_headers: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _FloodHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CookieFlood

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        with self.server.lock:
            self.server.cookie_headers.append(self.headers.get("Cookie", ""))
            first = self.server.answers * NEW_PER_ANSWER
            self.server.answers += 1
        redirect = self.path.startswith("/redirect")
        self.send_response(302 if redirect else 200)
        if redirect:
            self.send_header("Location", "/after-the-redirect")
        for number in range(first, first + NEW_PER_ANSWER):
            self.send_header("Set-Cookie", f"c{number}={VALUE}; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flood() -> Iterator[CookieFlood]:
    with serving(CookieFlood()) as server:
        yield server


# -- received cookies ----------------------------------------------------------------------------


def test_the_cookie_header_of_a_redirect_hop_is_bounded_too(flood):
    """requests copies the request's jar for each redirect hop, with RequestsCookieJar.copy: a
    plain jar, whose Cookie header knew no bound (the 95 KB the redirect had just set)."""
    result = invoke(["-q", "--retries", "0", flood.url("/redirect")])
    assert result.exit_code == 0, result.output
    first, hop = (len(header) for header in flood.cookie_headers)
    assert first == 0
    assert MAX_COOKIE_HEADER_BYTES - len(VALUE) - 10 <= hop <= MAX_COOKIE_HEADER_BYTES


@pytest.mark.parametrize("workers", ["1", "3"])
def test_cookie_flood_keeps_the_jar_and_the_cookie_header_bounded(flood, tmp_path, workers):
    jar_file = tmp_path / "jar.txt"
    urls = [flood.url(f"/{n}") for n in range(100)]
    result = invoke(["-q", "-j", workers, "-c", str(jar_file), *urls])
    assert result.exit_code == 0, result.output
    sizes = [len(header) for header in flood.cookie_headers]
    assert len(sizes) == 100
    assert max(sizes) <= MAX_COOKIE_HEADER_BYTES, max(sizes)
    assert max(sizes) >= MAX_COOKIE_HEADER_BYTES - len(VALUE) - 10  # the bound, not nothing
    saved = [line for line in jar_file.read_text().splitlines() if line and line[0] != "#"]
    assert len(saved) == MAX_COOKIES_PER_DOMAIN
    if workers == "1":  # one jar: the most recently set cookies are kept, the last answer's
        last = flood.answers * NEW_PER_ANSWER - 1
        assert any(line.split("\t")[5] == f"c{last}" for line in saved)


def test_each_worker_session_jar_stays_bounded(flood):
    settings = Settings(retries=0)
    pool = SessionPool(settings)
    fetcher = Fetcher(settings, pool)
    try:
        for number in range(10):
            url = flood.url(f"/{number}")
            job = Job(seq=number, url=url, target=url, line=None, raw=url.encode())
            assert fetcher.attempt(Task(job, "127.0.0.1")).result.ok  # retries=0: the whole fetch
    finally:
        pool.close_all()
    [session] = pool.sessions  # one thread: one session fetched all ten
    assert len(session.cookies) == MAX_COOKIES_PER_DOMAIN  # of the 950 it was sent
    assert max(map(len, flood.cookie_headers)) <= MAX_COOKIE_HEADER_BYTES


def cookie(name: str, domain: str = "a.test", value: str = "v") -> Cookie:
    return Cookie(
        0, name, value, None, False, domain, False, False, "/", True, False, None, True,
        None, None, {},
    )  # fmt: skip


def test_jar_evicts_the_least_recently_set_cookie_of_a_domain():
    jar = BoundedCookieJar()
    for number in range(MAX_COOKIES_PER_DOMAIN):
        jar.set_cookie(cookie(f"c{number}"))
    jar.set_cookie(cookie("c0", value="again"))  # set again: now the most recent
    jar.set_cookie(cookie("new"))
    names = {c.name for c in jar}
    assert len(names) == MAX_COOKIES_PER_DOMAIN
    assert "c0" in names and "new" in names and "c1" not in names


def test_jar_holds_at_most_max_cookies_over_all_domains():
    jar = BoundedCookieJar()
    for number in range(MAX_COOKIES + 200):
        jar.set_cookie(cookie("c", domain=f"d{number}.test"))
    assert len(jar) == MAX_COOKIES
    assert {c.domain for c in jar} == {f"d{n}.test" for n in range(200, MAX_COOKIES + 200)}


def test_jar_ignores_a_cookie_over_max_cookie_bytes_and_forgets_cleared_ones():
    jar = BoundedCookieJar()
    jar.set_cookie(cookie("big", value="x" * MAX_COOKIE_BYTES))
    assert len(jar) == 0
    for number in range(MAX_COOKIES_PER_DOMAIN):
        jar.set_cookie(cookie(f"c{number}"))
    jar.clear("a.test", "/", "c5")
    del jar["c6"]  # requests' way, through clear() too
    jar.set_cookie(cookie("x"))
    jar.set_cookie(cookie("y"))  # fills the two freed places: nothing evicted
    assert len(jar) == MAX_COOKIES_PER_DOMAIN
    assert "c0" in {c.name for c in jar}


# -- -c and -d @FILE read at start ---------------------------------------------------------------


@pytest.mark.parametrize("option", ["-c", "-d"])
def test_dev_zero_is_a_usage_error_not_a_memory_error(option):
    value = "/dev/zero" if option == "-c" else "@/dev/zero"
    result = invoke([option, value, "http://127.0.0.1:9/never-fetched"])
    assert result.exit_code == 2, result.output
    assert "larger than" in result.output and "MiB" in result.output


@pytest.mark.parametrize(("option", "limit"), [("-c", 16 << 20), ("-d", MAX_DATA_FILE_BYTES)])
def test_file_over_the_limit_is_a_usage_error(tmp_path, option, limit):
    big = tmp_path / "big"
    with big.open("wb") as file:
        file.truncate(limit + 1)  # sparse: no disk, and no memory in this process
    value = str(big) if option == "-c" else f"@{big}"
    result = invoke([option, value, "http://127.0.0.1:9/never-fetched"])
    assert result.exit_code == 2, result.output
    assert f"larger than {limit >> 20} MiB" in result.output


def test_cookie_file_of_many_lines_loads_whole_and_each_session_holds_it_bounded(tmp_path: Path):
    lines = [f"a.test\tFALSE\t/\tFALSE\t0\tc{n}\tv\n" for n in range(MAX_COOKIES_PER_DOMAIN + 10)]
    path = tmp_path / "jar.txt"
    path.write_text("# Netscape HTTP Cookie File\n" + "".join(lines))
    loaded = load_jar(str(path))
    assert len(loaded) == MAX_COOKIES_PER_DOMAIN + 10  # the user's own: all saved back
    pool = SessionPool(Settings(), loaded)
    try:
        names = [c.name for c in pool.get().cookies]
    finally:
        pool.close_all()
    assert len(names) == MAX_COOKIES_PER_DOMAIN
    assert f"c{MAX_COOKIES_PER_DOMAIN + 9}" in names and "c0" not in names  # the last lines win


def test_a_request_s_jar_holds_the_cookies_its_host_may_be_sent_not_the_whole_jar(tmp_path):
    """s32 t2 1: every request copied the whole session jar into its own, then walked it for
    the expired ones: with 3,000 cookies of other sites in a -c file, 50-100 ms of CPU a
    request, 10 requests a second. Only the domains the request's host may be sent are
    copied; the Cookie header is the same."""
    from fetcher.http.request import EffectiveRequest

    lines = [f".site{n}.example\tTRUE\t/\tFALSE\t0\tc\tv\n" for n in range(300)]
    lines += [
        "a.test\tFALSE\t/\tFALSE\t0\tmine\t1\n",
        ".a.test\tTRUE\t/\tFALSE\t0\twide\t2\n",
        "b.a.test\tFALSE\t/\tFALSE\t0\tdeeper\t3\n",
        "[::1]\tFALSE\t/\tFALSE\t0\tsix\t4\n",
    ]
    path = tmp_path / "jar.txt"
    path.write_text("# Netscape HTTP Cookie File\n" + "".join(lines))
    pool = SessionPool(Settings(), load_jar(str(path)))
    try:
        session = pool.get()
        prepared = session._prepare(EffectiveRequest("GET", "http://a.test:9/x"))
        six = session._prepare(EffectiveRequest("GET", "http://[0:0::1]:9/x"))
    finally:
        pool.close_all()
    assert sorted(cookie.name for cookie in prepared._cookies) == ["mine", "wide"]
    assert sorted(prepared.headers["Cookie"].split("; ")) == ["mine=1", "wide=2"]
    assert six.headers["Cookie"] == "six=4"


def test_a_redirect_hop_s_jar_holds_the_cookies_its_host_may_be_sent(tmp_path):
    """s32 r2 1: requests merged the whole session jar into every redirect hop's jar, 75 ms of
    CPU a hop with 3,000 cookies. A hop takes the session's cookies its host may be sent, as
    a first request does; the Cookie header it sends is the same."""
    from fetcher.http.environment import Environment
    from fetcher.http.request import EffectiveRequest
    from fetcher.http.session import make_session
    from tests.servers import counting_server

    def route(path):
        if path.startswith("/r"):
            return 302, {"Location": f"http://localhost:{port[0]}/x"}, b"", 0.0
        return 200, {}, b"ok", 0.0

    lines = [f".site{n}.example\tTRUE\t/\tFALSE\t0\tc\tv\n" for n in range(300)]
    lines += [
        "127.0.0.1\tFALSE\t/\tFALSE\t0\tfirst\t1\n",
        "localhost\tFALSE\t/\tFALSE\t0\thop\t2\n",
    ]
    path = tmp_path / "jar.txt"
    path.write_text("# Netscape HTTP Cookie File\n" + "".join(lines))
    port = [0]
    with counting_server(route) as server:
        port[0] = server.port
        session = make_session(Settings(), load_jar(str(path)), Environment())
        with session.fetch(EffectiveRequest("GET", server.url("/r")), timeout=(5, 5)) as response:
            hop = response.request
        session.close()
    assert [cookie.name for cookie in hop._cookies] == ["first", "hop"]
    assert server.headers_seen[-1].get("Cookie") == "hop=2", server.headers_seen


def test_a_jar_line_of_no_domain_is_sent_nowhere_as_curl_sends_it(tmp_path):
    """s32 r2 4: a -c line with an empty domain went to every host named with a trailing dot
    once the request's jar took only the domains its host may be sent (to every name before
    07f5c2e); curl sends it nowhere."""
    from fetcher.http.request import EffectiveRequest

    path = tmp_path / "jar.txt"
    path.write_text("# Netscape HTTP Cookie File\n\tTRUE\t/\tFALSE\t0\tempty\tv\n")
    pool = SessionPool(Settings(), load_jar(str(path)))
    try:
        session = pool.get()
        sent = [session._prepare(EffectiveRequest("GET", url)).headers.get("Cookie")
                for url in ("http://a.test./x", "http://a.test/x")]  # fmt: skip
    finally:
        pool.close_all()
    assert sent == [None, None]
