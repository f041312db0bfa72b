"""A Cookie header given (-H 'Cookie: …', a line's headers) on a redirect's hops: sent again on
every hop to the scheme, host and port of the URL it was given for, as -H Authorization is kept
on such hops and as curl -L and wget send it; never to another host, port or scheme. requests
drops Cookie on every hop and rebuilds it from the jar, so a login redirect to the same host
saved the login page as the file, recorded ok (s26 h4 1). With it go the cookies the chain's
answers set, over the given ones of the same name (a session rotated by the redirect: s26 r3 3);
none the jar held before the request."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.cookiejar import CookieJar

import pytest
from requests import PreparedRequest

from tests.conftest import invoke, run_process
from tests.servers import FaultServer, Route, counting_server, read_request, records, tls_server
from tests.tls_proxy_servers import Certificates, make_certificates

GIVEN = "session=s3cret"
FILE_HEADER = "# Netscape HTTP Cookie File\n"


def redirecting(moves: dict[str, str]) -> Callable[[str], Route]:
    """A route that answers 302 to moves[path] (a Set-Cookie srv=1 with it), else 200."""

    def route(path: str) -> Route:
        if path in moves:
            return 302, {"Location": moves[path], "Set-Cookie": "srv=1; Path=/"}, b"", 0.0
        return 200, {"Content-Type": "text/plain"}, b"the member-only report\n", 0.0

    return route


def cookies_seen(server) -> list[tuple[str, str | None]]:
    return [
        (path, h.get("Cookie")) for path, h in zip(server.paths, server.headers_seen, strict=True)
    ]


def test_a_given_cookie_goes_on_a_hop_to_the_same_host_and_port():
    with counting_server(redirecting({"/login-redirect": "/files/report.txt"})) as server:
        result = invoke(
            ["--format", "jsonl", "-H", f"Cookie: {GIVEN}", server.url("/login-redirect")]
        )
    [record] = records(result.stdout)
    assert record["ok"] is True and record["redirects"] == 1, record
    assert cookies_seen(server) == [
        ("/login-redirect", GIVEN),
        ("/files/report.txt", f"{GIVEN}; srv=1"),  # and what the redirect set
    ]


def test_a_line_s_own_cookie_header_goes_on_the_hop_too():
    with counting_server(redirecting({"/go": "/there"})) as server:
        line = json.dumps({"url": server.url("/go"), "headers": {"Cookie": GIVEN}})
        result = invoke(["--format", "jsonl", "-i", "-", "--input-format", "jsonl"], input=line)
    [record] = records(result.stdout)
    assert record["ok"] is True and record["redirects"] == 1, record
    assert cookies_seen(server) == [("/go", GIVEN), ("/there", f"{GIVEN}; srv=1")]


def test_no_cookie_the_jar_held_before_the_request_is_added_on_the_hop(tmp_path):
    """The first request sends the header as given, neither -b's, the -c file's nor an
    earlier URL's cookies added to it (usage.md): its hops to the same origin add only what
    the chain's answers set (srv=1, set again by /b: once)."""
    moves = redirecting({"/a": "/b", "/b": "/c"})

    def route(path: str) -> Route:
        if path == "/early":  # an earlier URL of the run, on the same worker (-j 1)
            return 200, {"Set-Cookie": "early=1; Path=/"}, b"", 0.0
        return moves(path)

    jar = tmp_path / "jar.txt"
    jar.write_text(FILE_HEADER + "127.0.0.1\tFALSE\t/\tFALSE\t0\tpre\t1\n")
    with counting_server(route) as server:
        args = ["-j", "1", "-b", "other=1", "-c", str(jar), "-H", f"Cookie: {GIVEN}"]
        result = invoke([*args, server.url("/early"), server.url("/a")])
    assert result.exit_code == 0, result.output
    assert cookies_seen(server)[1:] == [
        ("/a", GIVEN),
        ("/b", f"{GIVEN}; srv=1"),
        ("/c", f"{GIVEN}; srv=1"),
    ]


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_a_session_the_redirect_rotates_is_sent_as_the_server_set_it(processes):
    """-H 'Cookie: session=old; theme=dark'; the login answers a 302 to itself that sets
    session=new: the hop sends the new session, the received cookie winning for its name, and
    the given cookies it does not name."""

    def route(path: str) -> Route:
        if path == "/login":
            headers = {"Location": "/login?again", "Set-Cookie": "session=new; Path=/"}
            return 302, headers, b"", 0.0
        return 200, {"Content-Type": "text/plain"}, b"welcome\n", 0.0

    with counting_server(route) as server:
        args = ["-q", "-H", "Cookie: session=old; theme=dark", server.url("/login")]
        if processes:
            done = run_process(["--processes", "2", *args])
            assert done.returncode == 0, done.stderr
        else:
            result = invoke(args)
            assert result.exit_code == 0, result.output
    assert cookies_seen(server) == [
        ("/login", "session=old; theme=dark"),
        ("/login?again", "theme=dark; session=new"),
    ]


def test_never_to_another_port_or_host_spelling_and_again_on_the_way_back():
    """A -> another port -> another host name -> A: only A's hops get it. The other
    servers get what the jar has for them: srv=1, 127.0.0.1's, on any of its ports."""
    with counting_server() as other:
        with counting_server() as first:
            back = first.url("/home")
            other.route = redirecting({"/b": f"http://localhost:{first.port}/c"})
            first.route = redirecting({"/a": other.url("/b"), "/c": back})
            result = invoke(["--format", "jsonl", "-H", f"Cookie: {GIVEN}", first.url("/a")])
    [record] = records(result.stdout)
    assert record["ok"] is True and record["redirects"] == 3, record
    assert cookies_seen(other) == [("/b", "srv=1")]  # the jar's: host-only, any port
    # /home: and srv=1, which other's answer (127.0.0.1, host-only: any port) set in the chain
    assert cookies_seen(first) == [("/a", GIVEN), ("/c", None), ("/home", f"{GIVEN}; srv=1")]


def test_under_processes_too():
    with counting_server(redirecting({"/go": "/there"})) as server:
        done = run_process(["--processes", "2", "-q", "-H", f"Cookie: {GIVEN}", server.url("/go")])
    assert done.returncode == 0, done.stderr
    assert cookies_seen(server) == [("/go", GIVEN), ("/there", f"{GIVEN}; srv=1")]


def test_not_over_http_once_the_chain_was_on_https():
    """Given for http://A, a chain http://A -> https://… -> http://A sends it no more: no Cookie
    goes over http after https (SPEC 2.2), whoever gave it."""
    from fetcher.http.redirects import GivenCookie
    from fetcher.http.session import hop_credentials

    first = PreparedRequest()
    first.prepare(method="GET", url="http://127.0.0.1:8000/a", headers={"Cookie": GIVEN})
    given = GivenCookie.of(first, CookieJar())
    assert given is not None
    for on_tls, sent in ((False, GIVEN), (True, None)):
        hop = PreparedRequest()
        hop.prepare(method="GET", url="http://127.0.0.1:8000/b", cookies={})
        hop_credentials(hop, None, frozenset(), on_tls, given)
        assert hop.headers.get("Cookie") == sent


def test_not_to_the_same_host_and_port_under_another_scheme():
    from fetcher.http.redirects import GivenCookie

    first = PreparedRequest()
    first.prepare(method="GET", url="https://127.0.0.1:8000/a", headers={"Cookie": GIVEN})
    given = GivenCookie.of(first, CookieJar())
    assert given is not None
    hop = PreparedRequest()
    hop.prepare(method="GET", url="http://127.0.0.1:8000/b", cookies={})
    given.place(hop)
    assert "Cookie" not in hop.headers
    hop.prepare_url("https://127.0.0.1:8000/c", None)
    given.place(hop)
    assert hop.headers["Cookie"] == GIVEN


def test_a_cookie_the_jar_refused_on_the_way_joins_no_given_header(tmp_path):
    """-j 1: the https login sets a Secure sid; the next URL, given a Cookie header, goes to
    http, whose answer sets sid=EVIL (which the jar refuses: an http answer may not overwrite
    a Secure cookie) and redirects back to https. The https hop gets the given header alone:
    a received cookie joins it only as the jar took it, or the http answer would fix the
    https session (and the login's sid was the jar's before this request)."""
    certs: Certificates = make_certificates(tmp_path)

    def plain_answer(conn) -> None:
        read_request(conn)
        lines = f"Set-Cookie: sid=EVIL; Path=/\r\nLocation: {secure}/account\r\n"
        conn.sendall(f"HTTP/1.1 302 Found\r\n{lines}Content-Length: 0\r\n\r\n".encode())

    def route(path: str) -> Route:
        if path == "/login":
            return 200, {"Set-Cookie": "sid=GOOD; Secure; Path=/"}, b"", 0.0
        if path == "/start":
            return 302, {"Location": plain.url("/redir")}, b"", 0.0
        return 200, {}, b"", 0.0

    with FaultServer(plain_answer) as plain:
        with tls_server(certs.server_context().wrap_socket, route) as tls:
            secure = f"https://127.0.0.1:{tls.port}"
            args = ["-q", "-j", "1", "--cacert", str(certs.ca_pem), "-H", f"Cookie: {GIVEN}"]
            result = invoke([*args, f"{secure}/login", f"{secure}/start"])
    assert result.exit_code == 0, result.output
    assert cookies_seen(tls) == [("/login", GIVEN), ("/start", GIVEN), ("/account", GIVEN)]


DELETIONS = {
    "rotated-then-max-age-0": ["s=new; Path=/", "s=; Max-Age=0; Path=/"],
    "max-age-0": ["s=; Max-Age=0; Path=/"],
    "expires-1970": ["s=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/"],
    "rotated-then-max-age-plus-0": ["s=new; Path=/", "s=; Max-Age=+0; Path=/"],  # s26 r7 2
    # s27 r1 3: the jar takes the first Expires (a later one is ignored), so s=new is deleted
    "rotated-then-expires-past-then-future": [
        "s=new; Path=/",
        "s=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Expires=Fri, 01 Jan 2038 00:00:00 GMT",
    ],
    "max-age-0-over-expires": ["s=; Max-Age=0; Expires=x; Expires=Fri, 01 Jan 2038 00:00:00 GMT"],
}


@pytest.mark.parametrize("set_cookies", DELETIONS.values(), ids=DELETIONS.keys())
def test_a_name_the_chain_deleted_leaves_the_given_pair_out(set_cookies):
    """s26 r5 2: -H 'Cookie: s=old; a=1' and a chain whose answers delete s (Max-Age=0, a past
    Expires), after rotating it or not: the later hops sent s=old again, the stale session
    the server had replaced, or ended, brought back. A deletion is a received Set-Cookie for
    that name, and received cookies win by name: the given pair is left out."""
    hops = [f"/del{number}" for number in range(1, len(set_cookies) + 1)]
    moves = dict(zip(hops, [*hops[1:], "/here"], strict=True))

    def route(path: str) -> Route:
        if path in moves:
            headers = {"Location": moves[path], "Set-Cookie": set_cookies[hops.index(path)]}
            return 302, headers, b"", 0.0
        return 200, {"Content-Type": "text/plain"}, b"welcome\n", 0.0

    with counting_server(route) as server:
        result = invoke(["-q", "-H", "Cookie: s=old; a=1", server.url("/del1")])
        assert result.exit_code == 0, result.output
    seen = cookies_seen(server)
    assert seen[0] == ("/del1", "s=old; a=1")
    assert seen[-1] == ("/here", "a=1"), seen
    if len(hops) == 2:
        assert seen[1] == ("/del2", "a=1; s=new"), seen


IGNORED = {
    # the jar reads the first Domain, another site's: not this host's deletion to make
    "another-domain-first": "s=; Max-Age=0; Domain=other.test; Domain=127.0.0.1",
    "version-not-a-number": "s=; Max-Age=0; Version=x",  # the jar ignores the whole cookie
}


@pytest.mark.parametrize("set_cookie", IGNORED.values(), ids=IGNORED.keys())
def test_a_deletion_the_jar_ignores_keeps_the_given_pair(set_cookie):
    """s27 r1 3: a Set-Cookie is read for its deletion exactly as the jar reads it, so that
    the two never disagree: one the jar ignores (another site's Domain, read first-wins as the
    jar reads it; a Version it cannot read) deletes nothing, and the given pair
    stays, as it does when nothing was received."""

    def route(path: str) -> Route:
        if path == "/del1":
            return 302, {"Location": "/here", "Set-Cookie": set_cookie}, b"", 0.0
        return 200, {"Content-Type": "text/plain"}, b"welcome\n", 0.0

    with counting_server(route) as server:
        result = invoke(["-q", "-H", "Cookie: s=old; a=1", server.url("/del1")])
        assert result.exit_code == 0, result.output
    assert cookies_seen(server) == [("/del1", "s=old; a=1"), ("/here", "s=old; a=1")]


def deleting_route(set_cookie: str) -> Callable[[str], Route]:
    """/del1 answers 302 to /here with set_cookie (a deletion of s), /login sets a Secure s;
    anything else 200."""

    def route(path: str) -> Route:
        if path == "/del1":
            return 302, {"Location": "/here", "Set-Cookie": set_cookie}, b"", 0.0
        if path == "/login":
            return 200, {"Set-Cookie": "s=secret; Secure; Path=/"}, b"", 0.0
        return 200, {"Content-Type": "text/plain"}, b"welcome\n", 0.0

    return route


SECURE_S_LINE = "127.0.0.1\tFALSE\t/\tTRUE\t0\ts\tsecret"  # a Secure s, curl's session cookie


def test_an_http_deletion_the_jar_refuses_for_a_secure_cookie_keeps_the_given_pair(tmp_path):
    """s27 r2 5: the -c file holds a Secure s, so the hop's jar refuses the http answer's
    deletion of s (RFC 6265bis: an http answer may not touch a Secure cookie). The probe that
    reads the deletions for the given header was an empty jar that knew no Secure cookie, and
    dropped the given s=old all the same: the two disagreed. It asks the hop's jar now."""
    jar = tmp_path / "jar.txt"
    jar.write_text(FILE_HEADER + SECURE_S_LINE + "\n")
    with counting_server(deleting_route("s=; Max-Age=0; Path=/")) as server:
        args = ["-q", "-c", str(jar), "-H", "Cookie: s=old; a=1"]
        result = invoke([*args, server.url("/del1")])
    assert result.exit_code == 0, result.output
    assert cookies_seen(server) == [("/del1", "s=old; a=1"), ("/here", "s=old; a=1")]
    assert SECURE_S_LINE in jar.read_text().splitlines()  # the jar's refusal, as before


def test_an_http_deletion_of_a_secure_cookie_an_https_answer_set_keeps_the_given_pair(tmp_path):
    """The same without -c (no run's changes to ask): the Secure s an earlier https answer
    set is in the session's jar, so in the hop's, which refuses the http answer's deletion;
    the given s=old stays as well."""
    certs: Certificates = make_certificates(tmp_path)
    route = deleting_route("s=; Max-Age=0; Path=/")
    context = certs.server_context()
    with counting_server(route) as plain, tls_server(context.wrap_socket, route) as tls:
        args = ["-q", "-j", "1", "--ordered", "--cacert", str(certs.ca_pem)]
        login = f"https://127.0.0.1:{tls.port}/login"
        result = invoke([*args, "-H", "Cookie: s=old; a=1", login, plain.url("/del1")])
    assert result.exit_code == 0, result.output
    assert cookies_seen(plain) == [("/del1", "s=old; a=1"), ("/here", "s=old; a=1")]


SECURE_OVER_HTTP = {
    "secure": "s=; Max-Age=0; Secure; Path=/",
    "secure-with-a-value": "s=; Max-Age=0; Path=/; Secure=",
    "secure-prefix": "__Secure-s=; Max-Age=0; Path=/",
}


@pytest.mark.parametrize("set_cookie", SECURE_OVER_HTTP.values(), ids=SECURE_OVER_HTTP.keys())
def test_an_http_answer_s_secure_deletion_is_ignored_and_keeps_the_given_pair(set_cookie):
    """s27 r2 6: RFC 6265bis §5.7 ignores a Secure cookie from http entirely, a deletion too
    (curl and browsers do): the jar carried it out before any check, and the given pair of
    its name was left out of the later hops."""
    name = set_cookie.partition("=")[0]
    with counting_server(deleting_route(set_cookie)) as server:
        result = invoke(["-q", "-H", f"Cookie: {name}=old; a=1", server.url("/del1")])
    assert result.exit_code == 0, result.output
    given = f"{name}=old; a=1"
    assert cookies_seen(server) == [("/del1", given), ("/here", given)]


def test_a_given_host_s_cookies_do_not_follow_a_redirect_to_another_host(tmp_path):
    """s32 r3 1: with -H 'Host: a.test', a redirect to another host was sent a.test's -b and
    -c cookies: the hop's cookies were chosen by the Host header it still carried, which
    rebuild_auth dropped only after. It is dropped first."""
    jar = tmp_path / "jar.txt"
    jar.write_text(FILE_HEADER + "a.test\tFALSE\t/\tFALSE\t2000000000\tlogin\tSECRET_A\n")
    with counting_server() as other, counting_server() as first:
        first.route = redirecting({"/r": f"http://localhost:{other.port}/x"})
        result = invoke(["--format", "jsonl", "-H", "Host: a.test", "-b", GIVEN, "-c", str(jar),
                         first.url("/r")])  # fmt: skip
    [record] = records(result.stdout)
    assert record["ok"] is True and record["redirects"] == 1, record
    assert cookies_seen(first) == [("/r", f"login=SECRET_A; {GIVEN}")]
    assert cookies_seen(other) == [("/x", None)]


def test_a_hop_sends_its_cookies_in_the_order_a_first_request_sends_them(tmp_path):
    """s32 r3 2: two cookies of one name, one host-only and one of its domain, of equal paths:
    sent directly in the jar's order (RFC 6265 5.4: the earlier first), but on a redirect hop
    the domain new to the hop's jar came last, and a server that keeps the first value of a
    name saw the stale one."""
    from fetcher.http.cookies import first_hop_jar, load_jar, merge_hop_cookies

    jar = tmp_path / "jar.txt"
    jar.write_text(FILE_HEADER + "a.x.test\tFALSE\t/\tFALSE\t0\tsid\tLOGIN\n"
                   ".x.test\tTRUE\t/\tFALSE\t0\tsid\tOLD\n")  # fmt: skip
    from requests.cookies import get_cookie_header

    from fetcher.http.cookies import BoundedCookieJar

    session = BoundedCookieJar()
    session.update(load_jar(str(jar)))

    def prepared(url: str) -> PreparedRequest:
        request = PreparedRequest()
        request.prepare(method="GET", url=url)
        return request

    direct = get_cookie_header(first_hop_jar(session, prepared("http://a.x.test/")),
                               prepared("http://a.x.test/"))  # fmt: skip
    first = first_hop_jar(session, prepared("http://c.x.test/"))  # .x.test's only
    hop = prepared("http://a.x.test/")
    session.hop = hop
    merged = merge_hop_cookies(first.copy(), session)
    assert direct == "sid=LOGIN; sid=OLD"
    assert get_cookie_header(merged, hop) == direct
