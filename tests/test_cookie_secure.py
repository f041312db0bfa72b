"""An http answer may neither overwrite nor delete a Secure cookie (SPEC §2.2, RFC 6265bis §5.6
steps 19-20), for the run's jar as a whole and for the -c file (s25 h4 1): not only a cookie
its own session holds, but one another worker (thread or process) got over https, and one of
the file that a flood pushed out of the session's bounded jar.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.cookiejar import Cookie
from pathlib import Path

import pytest

from fetcher.http.cookies import MAX_COOKIES_PER_DOMAIN, CookieChanges
from tests.conftest import invoke, run_process
from tests.servers import FaultServer, Route, read_request, tls_server
from tests.tls_proxy_servers import Certificates, make_certificates

HEADER = "# Netscape HTTP Cookie File\n"
EVIL = {"overwrite": "sid=EVIL; Path=/", "delete": "sid=; Max-Age=0; Path=/"}
WAIT = 10.0  # seconds at most an http answer waits for the https login to be over


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


class PlainServer(FaultServer):
    """http on 127.0.0.1 (the https server's host: cookies know no port). ``/flood`` sets more
    cookies than a domain may hold; ``/overwrite`` and ``/delete`` answer with EVIL's, once
    ``ready`` is set (the https login's cookie noted)."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.ready = threading.Event()
        self.redirect_to = ""  # where ``/redir`` sends its 302, setting EVIL's sid on the way

    def _answer(self, conn: socket.socket) -> None:
        target = read_request(conn).decode("latin-1").split(" ", 2)[1].strip("/")
        if target == "flood":
            count = MAX_COOKIES_PER_DOMAIN + 10
            lines = "".join(f"Set-Cookie: m{n}=v{n}; Path=/\r\n" for n in range(count))
        elif target == "redir":
            self.ready.wait(WAIT)
            lines = f"Set-Cookie: {EVIL['overwrite']}\r\nLocation: {self.redirect_to}\r\n"
            conn.sendall(f"HTTP/1.1 302 Found\r\n{lines}".encode())
            conn.sendall(b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return
        else:
            self.ready.wait(WAIT)
            lines = f"Set-Cookie: {EVIL[target]}\r\n"
        end = "Content-Length: 0\r\nConnection: close\r\n\r\n"
        conn.sendall(f"HTTP/1.1 200 OK\r\n{lines}{end}".encode())


@pytest.fixture
def plain() -> Iterator[PlainServer]:
    with PlainServer() as server:
        yield server


def sid_lines(jar: Path) -> list[list[str]]:
    """The saved jar's lines for sid, split in fields."""
    lines = [line.split("\t") for line in jar.read_text().splitlines()]
    return [fields for fields in lines if len(fields) == 7 and fields[5] == "sid"]


def fetch(args: list[str], processes: bool) -> None:
    if processes:
        process = run_process(["-q", "--retries", "0", *args])
        assert process.returncode == 0, process.stderr
    else:
        result = invoke(["-q", "--retries", "0", *args])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
@pytest.mark.parametrize("evil", sorted(EVIL))
def test_an_http_answer_leaves_a_secure_cookie_another_worker_got(
    certs, plain, tmp_path, evil, processes
):
    """The https login (its redirect to /done says its cookie was taken) and the http answer
    go to two workers; the http one answers after the login."""

    def route(path: str) -> Route:
        if path == "/login":
            headers = {"Location": "/done", "Set-Cookie": "sid=GOOD; Secure; Path=/"}
            return 302, headers, b"", 0.0
        plain.ready.set()
        return 200, {}, b"", 0.0

    jar = tmp_path / "jar.txt"
    with tls_server(certs.server_context().wrap_socket, route) as tls:
        login = f"https://127.0.0.1:{tls.port}/login"
        workers = ["-j", "2", "--processes", "2"] if processes else ["-j", "2"]
        fetch([*workers, "--cacert", str(certs.ca_pem), "-c", str(jar), login,
               plain.url(f"/{evil}")], processes)  # fmt: skip
    assert sid_lines(jar) == [["127.0.0.1", "FALSE", "/", "TRUE", "0", "sid", "GOOD"]]


@pytest.mark.parametrize("evil", sorted(EVIL))
def test_an_http_answer_leaves_a_file_s_secure_cookie_a_flood_evicted(plain, tmp_path, evil):
    """One worker: the flood pushes the file's Secure sid out of its session's bounded jar,
    which then no longer knows of it."""
    jar = tmp_path / "jar.txt"
    line = "127.0.0.1\tFALSE\t/\tTRUE\t0\tsid\tGOOD\n"
    jar.write_text(HEADER + line)
    plain.ready.set()
    fetch(["-j", "1", "-c", str(jar), plain.url("/flood"), plain.url(f"/{evil}")], False)
    assert sid_lines(jar) == [line.rstrip("\n").split("\t")]


def test_a_flood_of_plain_cookies_evicts_them_before_a_secure_one(certs, plain):
    """Without -c, one worker: the https login's Secure sid outlives the http flood (RFC
    6265bis §5.7 evicts cookies not Secure first), so the http answer after it cannot set its
    own sid, and the next https request sends the login's."""

    def route(path: str) -> Route:
        if path == "/login":
            return 200, {"Set-Cookie": "sid=GOOD; Secure; Path=/"}, b"", 0.0
        return 200, {}, b"", 0.0

    plain.ready.set()
    with tls_server(certs.server_context().wrap_socket, route) as tls:
        secure = f"https://127.0.0.1:{tls.port}"
        fetch(["-j", "1", "--cacert", str(certs.ca_pem), f"{secure}/login", plain.url("/flood"),
               plain.url("/overwrite"), f"{secure}/account"], False)  # fmt: skip
        sent = tls.headers_seen[-1].get("Cookie", "")
    assert "sid=GOOD" in sent.split("; ") and "sid=EVIL" not in sent, sent


def test_a_refused_http_cookie_reaches_no_redirect_hop(certs, plain, tmp_path):
    """s25 r8 1: the http answer whose sid the run refuses (another worker holds a Secure one)
    redirects to https. requests reads that answer's Set-Cookie into the hop's own jar, a copy
    of the request's: it must refuse it as the session's jar does, or the https server gets
    Cookie: sid=EVIL though neither the session nor the file took it."""

    def route(path: str) -> Route:
        if path == "/login":
            headers = {"Location": "/done", "Set-Cookie": "sid=GOOD; Secure; Path=/"}
            return 302, headers, b"", 0.0
        if path == "/done":
            plain.ready.set()
        return 200, {}, b"", 0.0

    jar = tmp_path / "jar.txt"
    with tls_server(certs.server_context().wrap_socket, route) as tls:
        plain.redirect_to = f"https://127.0.0.1:{tls.port}/account"
        fetch(["-j", "2", "--cacert", str(certs.ca_pem), "-c", str(jar),
               f"https://127.0.0.1:{tls.port}/login", plain.url("/redir")], False)  # fmt: skip
        sent = [headers.get("Cookie") for headers in tls.headers_seen]
    assert len(sent) == 3 and not any("EVIL" in (cookie or "") for cookie in sent), sent
    assert sid_lines(jar) == [["127.0.0.1", "FALSE", "/", "TRUE", "0", "sid", "GOOD"]]


def secure_sid(domain: str) -> Cookie:
    return Cookie(
        version=0, name="sid", value="GOOD", port=None, port_specified=False, domain=domain,
        domain_specified=domain.startswith("."), domain_initial_dot=domain.startswith("."),
        path="/", path_specified=True, secure=True, expires=None, discard=True, comment=None,
        comment_url=None, rest={},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("held", "changed"),
    [
        ("example.test", ".example.test"),  # a host-only cookie, and Domain= its host
        (".example.test", "example.test"),
        ("example.test", "www.example.test"),  # its subdomain's host-only cookie
        ("example.test", ".www.example.test"),
    ],
)
def test_the_run_s_changes_know_a_secure_cookie_of_the_same_host_domain_or_not(held, changed):
    """s25 r8 2, for what no session jar holds (another worker's, the file's at the merge):
    CookieChanges compares domains as RFC 6265bis §5.6 does, without the leading dot."""
    changes = CookieChanges([secure_sid(held)])
    assert changes.holds_secure(changed, "/", "sid")
    assert not changes.note((changed, "/", "sid"), None, over_http=True)
    assert not changes.holds_secure("other.test", "/", "sid")
    assert not changes.holds_secure("xample.test", "/", "sid")  # a suffix, not a subdomain


class _CountedIndex(dict):
    """A jar's index that counts the walks over its domains."""

    walks = 0

    def items(self):
        type(self).walks += 1
        return super().items()


def test_a_jar_walks_its_domains_for_a_secure_cookie_only_of_a_name_it_held_secure():
    """s34 t4 1: each cookie of an http answer walked every domain of the worker's jar for a
    Secure cookie of its name: 3.3 ms a cookie with 3,000 domains held, under the GIL. The walk
    is made only for a name some Secure cookie held here has had, and still finds it."""
    from fetcher.http.cookies import BoundedCookieJar

    jar = BoundedCookieJar()
    for n in range(300):
        plain = secure_sid(f"h{n}.test")
        plain.secure = False
        jar.set_cookie(plain)
    jar._cookies = _CountedIndex(jar._cookies)
    assert not jar._known_secure("h1.test", "/", "sid")
    assert _CountedIndex.walks == 0
    jar.set_cookie(secure_sid("s.test"))
    assert jar._known_secure("www.s.test", "/", "sid")
    assert not jar._known_secure("h1.test", "/", "sid")
    assert _CountedIndex.walks == 2


def test_the_names_a_jar_keeps_for_its_walk_stay_bounded_by_what_it_holds():
    """s34 r3 2: every fresh Secure cookie name stayed in the set that spares the walk, past
    its cookie's eviction: 240 KB an answer of 60 long names, the session's memory growing
    without end. The set is made again of the names held as it outgrows twice as many."""
    from fetcher.http.cookies import BoundedCookieJar

    room = 64  # NAMES_ROOM, written out: imported, the test failed on its parent for that alone

    jar = BoundedCookieJar()
    for n in range(2000):
        cookie = secure_sid("s.test")
        cookie.name = f"c{n}"
        jar.set_cookie(cookie)
    held = sum(len(names) for paths in jar._cookies.values() for names in paths.values())
    assert held == MAX_COOKIES_PER_DOMAIN
    assert len(jar._secure_names) <= 2 * held + room + 1, len(jar._secure_names)
    assert jar._known_secure("www.s.test", "/", "c1999")  # held: still found
