"""Where cookies go (SPEC §2.2, RFC 6265 §5.3): a -b cookie only to the host and port of the URL it
was given for (and only over https if that URL was https), however the redirects go; a cookie a
server set without a Domain attribute only to that host (any port), one with Domain=parent also
to the parent's subdomains; the -c file's host-only and domain lines keep their meaning.

Other host names reach a local server through a proxy: the ProxyHost below is the proxy and the
origin of every host at once (a request through a proxy carries the whole URL, so it answers
for whichever host the URL names and records what was sent there).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from fetcher.http.cookies import (
    MAX_COOKIE_BYTES,
    MAX_COOKIE_HEADER_BYTES,
    BoundedCookieJar,
    host_cookies,
)
from tests.conftest import invoke
from tests.servers import CountingServer, Route, counting_server, serving, tls_server
from tests.tls_proxy_servers import Certificates, make_certificates

SECRET = "SECRET-b-cookie"


def route(url: str) -> Route:
    """``/go?to=URL[&set=SET-COOKIE]`` answers 302 to URL, setting the cookie if given; anything
    else 200. ``url`` is the whole URL through a proxy, the path otherwise."""
    parts = urlsplit(url)
    if parts.path == "/go":
        query = parse_qs(parts.query)
        headers = {"Location": query["to"][0]}
        if "set" in query:
            headers["Set-Cookie"] = query["set"][0]
        return 302, headers, b"", 0.0
    return 200, {}, b"ok\n", 0.0


def go(origin: str, to: str, set_cookie: str | None = None) -> str:
    """The URL at origin that redirects to to (setting set_cookie on the way)."""
    query = f"to={quote(to, safe='')}"
    if set_cookie is not None:
        query += f"&set={quote(set_cookie, safe='')}"
    return f"{origin}/go?{query}"


class ProxyHost(CountingServer):
    """A proxy that is also every host it is asked for: ``sent(url)`` is the Cookie header of
    each request for url (None where there was none), in order."""

    def sent(self, url: str) -> list[str | None]:
        with self.lock:
            seen = list(zip(self.paths, self.headers_seen, strict=True))
        assert any(path == url for path, _ in seen), (url, [path for path, _ in seen])
        return [headers.get("Cookie") for path, headers in seen if path == url]


@pytest.fixture
def hosts() -> Iterator[ProxyHost]:
    with serving(ProxyHost(route)) as server:
        yield server


def fetch(*args: str) -> list[dict[str, object]]:
    """Run fetcher on the arguments (one worker, no retries); its records, all ok."""
    result = invoke(["--format", "jsonl", "--retries", "0", "-j", "1", *args])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records and all(r["ok"] for r in records), (result.exit_code, result.stdout)
    return records


def through(hosts: ProxyHost, *args: str) -> list[dict[str, object]]:
    return fetch("-x", f"http://127.0.0.1:{hosts.port}", *args)


# -- -b: the host and port of the URL given, nothing else ------------------------------------------


@pytest.mark.parametrize(
    "elsewhere",
    [
        "http://attacker.example.test/landing",  # a subdomain
        "http://sub.example.test/landing",
        "http://example.test:8080/landing",  # another port of the same host
        "http://other.test/landing",  # another host
    ],
)
def test_b_cookie_is_not_sent_to_a_subdomain_or_another_port_after_a_redirect(hosts, elsewhere):
    start = go("http://example.test", elsewhere)
    [record] = through(hosts, "-b", f"session={SECRET}", start)
    assert record["final_url"] == elsewhere
    assert hosts.sent(start) == [f"session={SECRET}"]  # given where it belongs
    assert hosts.sent(elsewhere) == [None]


@pytest.mark.parametrize(
    ("same", "requested"),
    [
        ("/landing", "http://example.test/landing"),
        ("http://example.test/landing", "http://example.test/landing"),
        ("http://EXAMPLE.test:80/landing", "http://example.test:80/landing"),
    ],
)
def test_b_cookie_is_sent_to_the_same_host_and_port_after_a_redirect(hosts, same, requested):
    through(hosts, "-b", f"session={SECRET}", go("http://example.test", same))
    assert hosts.sent(requested) == [f"session={SECRET}"]


def test_b_cookie_is_sent_to_an_ipv6_literal_host(hosts):
    url = "http://[::1]:8080/literal"
    through(hosts, "-b", f"session={SECRET}", url)
    assert hosts.sent(url) == [f"session={SECRET}"]


def test_b_cookie_is_not_sent_to_another_port_of_the_same_address():
    with counting_server() as other, counting_server(route) as first:
        landing = other.url("/landing")
        [record] = fetch("-b", f"session={SECRET}", go(f"http://127.0.0.1:{first.port}", landing))
        assert record["final_url"] == landing
        assert first.headers_seen[0].get("Cookie") == f"session={SECRET}"
        assert other.paths == ["/landing"] and "Cookie" not in other.headers_seen[0]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def test_b_cookie_of_an_https_url_is_not_sent_to_http(certs):
    """Another port too here; test_http.py has the same host and port with only the scheme
    changed."""
    context = certs.server_context()
    with counting_server() as plain, tls_server(context.wrap_socket, route) as secure:
        landing = plain.url("/landing")
        start = go(f"https://127.0.0.1:{secure.port}", landing)
        [record] = fetch("--cacert", str(certs.ca_pem), "-b", f"session={SECRET}", start)
        assert record["final_url"] == landing
        assert secure.headers_seen[0].get("Cookie") == f"session={SECRET}"
        assert plain.paths == ["/landing"] and "Cookie" not in plain.headers_seen[0]


def sent_to(given: str, request: str) -> bool:
    """Whether a -b cookie given for the URL given goes with a request for the URL request,
    by the jar every fetcher request uses (http.cookiejar's own request type: no server can
    listen on 80 and 443 here)."""
    jar = BoundedCookieJar()
    jar.update(host_cookies((("session", SECRET),), urlsplit(given)))
    asked = urllib.request.Request(request)
    jar.add_cookie_header(asked)
    return asked.get_header("Cookie") == f"session={SECRET}"


@pytest.mark.parametrize(
    ("given", "request_url", "sent"),
    [
        ("https://h.test/", "https://h.test:443/x", True),  # the default port, named or not
        ("https://h.test:443/", "https://h.test/x", True),
        ("https://h.test/", "https://h.test:80/x", False),  # not http.cookiejar's port "80"
        ("https://h.test/", "http://h.test/x", False),
        ("http://h.test/", "http://h.test:80/x", True),
        ("http://h.test/", "https://h.test/x", True),  # the upgrade requests keeps -u for
        ("http://h.test/", "https://h.test:80/x", True),  # the same port, under TLS
        ("http://h.test/", "http://h.test:8080/x", False),
        ("http://h.test:8080/", "https://h.test/x", False),
        ("http://h.test:8080/", "http://h.test:8080/x", True),
        ("http://localhost:8080/", "http://localhost:8080/x", True),
        ("http://localhost:8080/", "http://sub.localhost:8080/x", False),
    ],
)
def test_b_cookie_goes_to_its_own_port_or_on_to_https(given, request_url, sent):
    assert sent_to(given, request_url) is sent


# -- cookies servers set: host-only without Domain, any port -----------------------------------


HOST_ONLY = "sid=server; Path=/"
DOMAIN_WIDE = "sid=server; Domain=example.test; Path=/"


@pytest.mark.parametrize(
    ("set_cookie", "landing", "expected"),
    [
        (HOST_ONLY, "http://sub.example.test/landing", None),
        (DOMAIN_WIDE, "http://sub.example.test/landing", "sid=server"),
        (HOST_ONLY, "http://example.test:8080/landing", "sid=server"),  # no port binding
        (HOST_ONLY, "http://example.test/landing", "sid=server"),
        # RFC 2965's Port, which RFC 6265 ignores: http.cookiejar would bind the cookie by it.
        (HOST_ONLY + "; Port=80", "http://example.test:8080/landing", "sid=server"),
    ],
)
def test_server_cookie_without_domain_stays_on_its_host(hosts, set_cookie, landing, expected):
    through(hosts, go("http://example.test", landing, set_cookie))
    assert hosts.sent(landing) == [expected]


def test_server_cookie_without_domain_stays_on_its_host_in_later_requests(hosts):
    """The session's own jar, not only a redirect's copy."""
    first = go("http://example.test", "/done", HOST_ONLY)
    sub, same = "http://sub.example.test/later", "http://example.test/later"
    through(hosts, first, sub, same)
    assert (hosts.sent(sub), hosts.sent(same)) == ([None], ["sid=server"])


@pytest.mark.parametrize("domain", ["; Domain=", "; Domain", "; Domain=.", "; Domain= "])
def test_an_empty_domain_attribute_is_ignored_and_the_cookie_host_only(hosts, tmp_path, domain):
    """RFC 6265 §5.2.3: an empty Domain is ignored (curl stores the cookie host-only), where
    http.cookiejar dropped the whole cookie (s25 h4 7)."""
    jar, sub, same = tmp_path / "cookies.txt", "http://sub.example.test/", "http://example.test/"
    through(hosts, "-c", str(jar), go("http://example.test", "/done", f"e=1{domain}; Path=/"),
            sub, same)  # fmt: skip
    assert (hosts.sent(sub), hosts.sent(same)) == ([None], ["e=1"])
    assert file_lines(jar) == {"example.test\tFALSE\t/\tFALSE\t0\te\t1"}


# -- IP addresses: no suffix of one is a domain (RFC 6265 §5.1.3) -------------------------------


@pytest.mark.parametrize("domain", ["0.1", ".0.0.1", "127.0.0.1.", "27.0.0.1"])
def test_a_domain_that_is_part_of_an_ip_address_is_refused(hosts, tmp_path, domain):
    """127.0.0.1 could set a cookie with Domain=0.1, saved as a domain cookie '.0.1' and sent to
    every address ending in .0.1 (s25 h4 2); curl refuses it."""
    jar, victim = tmp_path / "cookies.txt", "http://127.5.0.1/victim"
    through(hosts, "-c", str(jar), go("http://127.0.0.1", "/done", f"t=1; Domain={domain}"), victim)
    assert hosts.sent(victim) == [None]
    assert file_lines(jar) == set()


@pytest.mark.parametrize("domain", ["127.0.0.1", ".127.0.0.1"])
def test_an_ip_host_s_own_address_as_domain_makes_a_host_only_cookie(hosts, tmp_path, domain):
    """As curl stores it; and an expired Set-Cookie with the same Domain deletes it."""
    jar, later = tmp_path / "cookies.txt", "http://127.0.0.1/later"
    setting = go("http://127.0.0.1", "/done", f"t=1; Domain={domain}; Path=/")
    through(hosts, "-c", str(jar), setting, later, "http://127.5.0.1/other")
    assert hosts.sent(later) == ["t=1"] and hosts.sent("http://127.5.0.1/other") == [None]
    assert file_lines(jar) == {"127.0.0.1\tFALSE\t/\tFALSE\t0\tt\t1"}
    deleting = go("http://127.0.0.1", "/done", f"t=; Domain={domain}; Path=/; Max-Age=0")
    through(hosts, "-c", str(jar), deleting)
    assert file_lines(jar) == set()


@pytest.mark.parametrize("held", [".127.0.0.1\tTRUE", "127.0.0.1\tTRUE", ".127.0.0.1\tFALSE"])
def test_a_file_s_domain_line_for_an_ip_address_is_its_host_only_cookie(hosts, tmp_path, held):
    """s25 r8 3: an older fetcher saved Domain=127.0.0.1 as '.127.0.0.1 TRUE'. Read as written,
    it was another cookie than the host-only one the server's Domain=127.0.0.1 now makes: a
    login added a second sid, and the logout left the old one, sent ever after."""
    jar, later = tmp_path / "cookies.txt", "http://127.0.0.1/later"
    jar.write_text(f"# Netscape HTTP Cookie File\n{held}\t/\tFALSE\t0\tsid\tOLD\n")
    through(hosts, "-c", str(jar), later)
    assert hosts.sent(later) == ["sid=OLD"]
    assert file_lines(jar) == {"127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tOLD"}  # as curl writes it
    login = go("http://127.0.0.1", "/done", "sid=NEW; Domain=127.0.0.1; Path=/")
    through(hosts, "-c", str(jar), login)
    assert file_lines(jar) == {"127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tNEW"}
    jar.write_text(f"# Netscape HTTP Cookie File\n{held}\t/\tFALSE\t0\tsid\tOLD\n")
    logout = go("http://127.0.0.1", "/done", "sid=; Domain=127.0.0.1; Path=/; Max-Age=0")
    through(hosts, "-c", str(jar), logout)
    assert file_lines(jar) == set()


def test_a_file_s_domain_line_for_part_of_an_ip_address_goes_to_no_other_address(hosts, tmp_path):
    """A line an older fetcher saved ('.0.1 TRUE') is sent to no address but its own."""
    jar, victim = tmp_path / "cookies.txt", "http://127.5.0.1/victim"
    jar.write_text("# Netscape HTTP Cookie File\n.0.1\tTRUE\t/\tFALSE\t0\tt\t1\n")
    through(hosts, "-c", str(jar), victim)
    assert hosts.sent(victim) == [None]


# -- the -c file --------------------------------------------------------------------------------

FILE_LINES = {
    "example.test\tFALSE\t/\tFALSE\t4102444800\thostonly\th",  # curl's host-only line
    ".example.test\tTRUE\t/\tFALSE\t4102444800\tdomainwide\td",  # and its domain line
    "example.test\tTRUE\t/\tFALSE\t4102444800\tflagged\tf",  # curl: a domain line too
}


def test_cookie_file_host_only_and_domain_lines_keep_their_scope(hosts, tmp_path: Path):
    jar = tmp_path / "cookies.txt"
    jar.write_text("# Netscape HTTP Cookie File\n" + "\n".join(sorted(FILE_LINES)) + "\n")
    sub, same = "http://sub.example.test/", "http://example.test/"
    through(hosts, "-c", str(jar), sub, same)
    assert sorted((hosts.sent(sub)[0] or "").split("; ")) == ["domainwide=d", "flagged=f"]
    everything = ["domainwide=d", "flagged=f", "hostonly=h"]
    assert sorted((hosts.sent(same)[0] or "").split("; ")) == everything
    lines = {line for line in jar.read_text().splitlines() if line and not line.startswith("#")}
    flagged = "example.test\tTRUE\t/\tFALSE\t4102444800\tflagged\tf"
    assert lines == FILE_LINES - {flagged} | {f".{flagged}"}  # saved back as curl writes them


def test_a_password_in_the_url_never_reaches_the_cookie_file(tmp_path: Path):
    """requests keeps 'user:password@' in the URL the cookie jar is given, so a server's cookie
    was saved under the domain 'user:password@127.0.0.1' (and a -b cookie never matched). The
    jar sees the host alone, also after a redirect to a URL with credentials."""
    jar = tmp_path / "cookies.txt"
    with counting_server(route) as server:
        origin = f"http://127.0.0.1:{server.port}"
        target = f"http://ann:hop-pw@127.0.0.1:{server.port}/landing"
        first = go(origin.replace("http://", "http://ann:url-pw@"), target, "sid=one; Path=/")
        result = invoke(["-c", str(jar), "-b", f"given={SECRET}", first])
        assert result.exit_code == 0, result.output
        landing_cookie = server.headers_seen[server.paths.index("/landing")].get("Cookie")
    saved = jar.read_text()
    assert "pw" not in saved and "ann" not in saved, saved
    assert "127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tone" in saved, saved
    assert landing_cookie is not None and "sid=one" in landing_cookie
    assert f"given={SECRET}" in landing_cookie


def test_a_dotless_host_is_written_as_curl_writes_it_in_the_cookie_file(tmp_path: Path):
    """http.cookiejar knows a host without a dot as 'localhost.local'; curl's file says
    'localhost', and curl sends no cookie of 'localhost.local' (found on review). The file
    says what curl says, both ways."""
    jar = tmp_path / "cookies.txt"
    jar.write_text("# Netscape HTTP Cookie File\nlocalhost\tFALSE\t/\tFALSE\t0\tgiven\tby-curl\n")
    with counting_server(route) as server:
        url = f"http://localhost:{server.port}/"
        set_one = go(f"http://localhost:{server.port}", url, "sid=server; Path=/")
        result = invoke(["-c", str(jar), set_one])
        assert result.exit_code == 0, result.output
        sent = server.headers_seen[server.paths.index("/")].get("Cookie") or ""
    assert sorted(sent.split("; ")) == ["given=by-curl", "sid=server"], sent
    lines = {line for line in jar.read_text().splitlines() if line and not line.startswith("#")}
    assert lines == {
        "localhost\tFALSE\t/\tFALSE\t0\tgiven\tby-curl",
        "localhost\tFALSE\t/\tFALSE\t0\tsid\tserver",
    }


def test_a_real_local_domain_keeps_its_name_in_the_cookie_file() -> None:
    """Only the name http.cookiejar gives a dotless host loses '.local' in the file: an mDNS
    host 'printer.local' keeps it, and '.local' never becomes an empty domain (found on
    review). A host without a dot other than localhost keeps http.cookiejar's name."""
    from fetcher.http.cookies import file_domain, format_jar_line, jar_domain, parse_jar_line

    assert file_domain(jar_domain("localhost")) == "localhost"
    assert file_domain(jar_domain("[::1]")) == "::1"  # as curl writes it (s26 r1 2)
    assert file_domain("printer.local") == "printer.local"
    assert file_domain(".local") == ".local"
    assert file_domain("localhost.local") == "localhost"
    for line in ("intranet\tFALSE\t/\tFALSE\t0\ta\tb", "intranet.local\tFALSE\t/\tFALSE\t0\ta\tb"):
        cookie = parse_jar_line(line)  # each keeps the host it names (s30 t3 1)
        assert cookie is not None and format_jar_line(cookie) == f"{line}\n"  # round-trips


def file_lines(jar: Path) -> set[str]:
    return {line for line in jar.read_text().splitlines() if line and not line.startswith("#")}


# -- Secure cookies and the __Secure- and __Host- prefixes (RFC 6265bis) -------------------------

SECURE_SID = "example.test\tFALSE\t/\tTRUE\t4102444800\tsid\tGOOD"


@pytest.mark.parametrize(
    "set_cookie",
    [
        "sid=EVIL; Secure; Path=/",  # overwrites a Secure cookie, and is one
        "sid=EVIL2; Path=/",  # overwrites a Secure cookie with a plain one
        "sid=; Max-Age=0; Path=/",  # deletes it
        "new=1; Secure; Path=/",
        "__Host-sid=evil; Path=/",
        "__Secure-t=evil2; Domain=example.test; Path=/",
    ],
)
def test_an_http_answer_neither_sets_nor_touches_secure_cookies(hosts, tmp_path, set_cookie):
    jar = tmp_path / "cookies.txt"
    jar.write_text("# Netscape HTTP Cookie File\n" + SECURE_SID + "\n")
    through(hosts, "-c", str(jar), go("http://example.test", "/done", set_cookie))
    assert file_lines(jar) == {SECURE_SID}


@pytest.mark.parametrize(
    ("held", "origin", "set_cookie"),
    [
        ("example.test\tTRUE", "http://example.test", "sid=EVIL; Path=/"),
        ("example.test\tFALSE", "http://example.test", "sid=EVIL; Domain=example.test; Path=/"),
        ("example.test\tFALSE", "http://www.example.test", "sid=EVIL; Domain=example.test"),
        ("example.test\tFALSE", "http://www.example.test", "sid=EVIL; Path=/"),
        (".example.test\tTRUE", "http://www.example.test", "sid=EVIL; Path=/"),
    ],
)
def test_an_http_answer_leaves_a_secure_cookie_of_the_same_host_domain_or_not(
    hosts, tmp_path, held, origin, set_cookie
):
    """s25 r8 2: RFC 6265bis §5.6 compares the domains without the leading dot, either
    domain-matching the other. http.cookiejar's domain_match had a host-only example.test and
    a Domain=example.test (.example.test) meet neither way, so an http answer shadowed the
    Secure cookie: both were saved, and both sent to https."""
    jar, line = tmp_path / "cookies.txt", f"{held}\t/\tTRUE\t4102444800\tsid\tGOOD"
    jar.write_text("# Netscape HTTP Cookie File\n" + line + "\n")
    later = f"{origin}/later"
    through(hosts, "-c", str(jar), go(origin, "/done", set_cookie), later)
    assert (hosts.sent(f"{origin}/done"), hosts.sent(later)) == ([None], [None])
    saved = line if held.startswith(".") or "FALSE" in held else f".{line}"
    assert file_lines(jar) == {saved}


def test_an_https_answer_sets_secure_and_prefixed_cookies(certs, tmp_path):
    jar = tmp_path / "cookies.txt"
    given = ["sid=s; Secure; Path=/", "__Host-h=1; Secure; Path=/", "__Secure-s=2; Secure"]
    refused = ["__Host-p=1; Secure; Path=/sub", "__Secure-n=1"]  # not as the prefix says
    with tls_server(certs.server_context().wrap_socket, route) as secure:
        urls = [go(f"https://127.0.0.1:{secure.port}", "/done", c) for c in given + refused]
        fetch("--cacert", str(certs.ca_pem), "-c", str(jar), *urls)
    saved = {line.split("\t")[5]: line.split("\t")[3] for line in file_lines(jar)}
    assert saved == {"sid": "TRUE", "__Host-h": "TRUE", "__Secure-s": "TRUE"}


# -- public suffixes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "domain", "victim"),
    [
        ("http://evil.co.uk", "co.uk", "http://shop.co.uk/x"),
        ("http://evil.com.au", "com.au", "http://shop.com.au/x"),
        ("http://evil.s3.amazonaws.com", "s3.amazonaws.com", "http://other.s3.amazonaws.com/x"),
        ("http://evil.github.io", "github.io", "http://victim.github.io/x"),
    ],
)
def test_no_server_sets_a_cookie_for_a_public_suffix(hosts, tmp_path, origin, domain, victim):
    jar = tmp_path / "cookies.txt"
    through(hosts, "-c", str(jar), go(origin, "/done", f"t=1; Domain={domain}; Path=/"), victim)
    assert hosts.sent(victim) == [None]
    assert file_lines(jar) == set()


def test_a_site_under_a_public_suffix_sets_cookies_for_its_own_domain(hosts):
    landing = "http://shop.example.co.uk/x"
    through(hosts, go("http://www.example.co.uk", landing, "t=1; Domain=example.co.uk; Path=/"))
    assert hosts.sent(landing) == ["t=1"]


@pytest.mark.parametrize(
    ("origin", "victim"),
    [
        ("http://co.uk", "http://shop.co.uk/x"),
        ("http://github.io", "http://victim.github.io/x"),
        ("http://intranet", "http://a.intranet/x"),
        ("http://localhost", "http://a.localhost/x"),
    ],
)
def test_a_public_suffix_host_s_cookie_for_its_own_name_is_host_only(
    hosts, tmp_path, origin, victim
):
    """RFC 6265 5.3 step 5: a Domain that names the answering host, a public suffix, leaves the
    cookie host-only. co.uk's and github.io's were domain cookies, sent to every site under
    them (s35 t8 2); localhost's (a dev server's login) and intranet's were dropped, http.cookiejar
    naming the host 'localhost.local' (t8 1)."""
    domain = urlsplit(origin).hostname
    jar, later = tmp_path / "cookies.txt", f"{origin}/later"
    through(hosts, "-c", str(jar), go(origin, "/done", f"t=1; Domain={domain}; Path=/"), later)
    through(hosts, "-c", str(jar), victim, later)
    assert hosts.sent(later) == ["t=1", "t=1"], hosts.sent(later)
    assert hosts.sent(victim) == [None]
    assert {line.split("\t")[1] for line in file_lines(jar)} == {"FALSE"}


@pytest.mark.parametrize("host", ["localhost", "intranet", "co.uk"])
def test_a_curl_file_s_domain_line_of_a_public_suffix_is_its_host_s_cookie(hosts, tmp_path, host):
    """curl writes `.localhost TRUE` for localhost's Domain=localhost: a domain line that
    http.cookiejar matched to no host (it names the host 'localhost.local'), never sent (s35
    t8 1); one of co.uk went to every site under it. Read as the host's own cookie."""
    jar = tmp_path / "cookies.txt"
    jar.write_text(f".{host}\tTRUE\t/\tFALSE\t4102444800\tt\t1\n")
    jar.chmod(0o600)
    through(hosts, "-c", str(jar), f"http://{host}/x", f"http://a.{host}/x")
    assert (hosts.sent(f"http://{host}/x"), hosts.sent(f"http://a.{host}/x")) == (["t=1"], [None])


# -- the Cookie header's bound ---------------------------------------------------------------------


def test_servers_cookies_never_push_a_b_cookie_out_of_the_cookie_header():
    big = "v" * (MAX_COOKIE_BYTES - 2)  # two of them fill the header

    def setting(path: str) -> Route:
        name = path.strip("/")
        if name.startswith("c"):
            return 200, {"Set-Cookie": f"{name}={big}; Path=/"}, b"", 0.0
        return 200, {}, b"", 0.0

    with counting_server(setting) as server:
        fetch("-b", f"auth={SECRET}", *(server.url(f"/c{n}") for n in range(3)), server.url("/b"))
        sent = server.headers_seen[server.paths.index("/b")]["Cookie"]
    pairs = sent.split("; ")
    assert f"auth={SECRET}" in pairs and len(sent) <= MAX_COOKIE_HEADER_BYTES
    assert len(pairs) == 2  # and one of the servers' that fits beside it


# -- https to http: no Cookie header at all (SPEC 2.2) ---------------------------------------------

PLAIN_FILE_LINE = "127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tfiled\tF"  # not Secure


@pytest.mark.parametrize("source", ["answer", "earlier", "file", "b"])
def test_no_cookie_goes_from_https_to_http(certs, tmp_path, source):
    """A redirect from https to http of the same host (another port here: cookies know no
    port) sent the jar's cookies that are not Secure in clear text: requests builds every hop's
    Cookie from the jar (s22 h2 8), where SPEC 2.2 says no credential goes from https to http.
    None goes, whoever set it: the redirect's answer, an earlier answer, the -c file, -b."""
    jar = tmp_path / "cookies.txt"
    jar.write_text("# Netscape HTTP Cookie File\n" + PLAIN_FILE_LINE + "\n")
    with counting_server() as plain, tls_server(certs.server_context().wrap_socket, route) as tls:
        origin, landing = f"https://127.0.0.1:{tls.port}", plain.url("/landing")
        urls = {
            "answer": [go(origin, landing, "sid=server; Path=/")],
            "earlier": [go(origin, "/done", "sid=server; Path=/"), go(origin, landing)],
            "file": ["-c", str(jar), go(origin, landing)],
            "b": ["-b", f"session={SECRET}", go(origin, landing)],
        }[source]
        records = fetch("--cacert", str(certs.ca_pem), *urls)
        sent_secure = [headers.get("Cookie") for headers in tls.headers_seen]
    assert records[-1]["final_url"] == landing
    assert sent_secure[-1] is not None or source == "answer", sent_secure  # the jar had one
    assert plain.paths == ["/landing"] and "Cookie" not in plain.headers_seen[0]


def test_cookies_go_on_over_https_after_a_hop_to_http(certs):
    """Only the hop from https to http goes without: back on https, the jar's cookie goes."""
    context = certs.server_context()
    with counting_server(route) as plain, tls_server(context.wrap_socket, route) as tls:
        secure = f"https://127.0.0.1:{tls.port}"
        down_and_up = go(secure, go(plain.url(""), secure + "/again"), "sid=server; Path=/")
        fetch("--cacert", str(certs.ca_pem), down_and_up)
        sent_secure = [headers.get("Cookie") for headers in tls.headers_seen]
        sent_plain = [headers.get("Cookie") for headers in plain.headers_seen]
    assert sent_secure == [None, "sid=server"], sent_secure
    assert sent_plain == [None], sent_plain


@pytest.mark.parametrize("after", ["plain", "plain-tls-plain"])
def test_no_cookie_goes_on_any_http_hop_once_a_chain_left_https(certs, after):
    """requests builds every hop's Cookie again from the jar: only the hop that left https went
    without, and the next http hop of the same chain sent the https answer's cookie in clear
    text (s22 r2 1). Once a chain has gone from https to http, no http hop of it sends one,
    whoever set it (here the https answer, then the plain one too); its https hops do."""
    context = certs.server_context()
    with counting_server(route) as plain, tls_server(context.wrap_socket, route) as tls:
        secure, landing = f"https://127.0.0.1:{tls.port}", plain.url("/landing")
        last = go(plain.url(""), landing, "plain=set; Path=/")
        if after == "plain-tls-plain":
            last = go(secure, go(plain.url(""), landing))
        start = go(secure, go(plain.url(""), last), "sid=server; Path=/")
        [record] = fetch("--cacert", str(certs.ca_pem), start)
        sent_plain = [headers.get("Cookie") for headers in plain.headers_seen]
        sent_secure = [headers.get("Cookie") for headers in tls.headers_seen]
    assert record["final_url"] == landing
    assert plain.paths[-1] == "/landing" and len(plain.paths) >= 3, plain.paths
    assert sent_plain == [None] * len(sent_plain), sent_plain
    assert sent_secure[0] is None and all(sent_secure[1:]), sent_secure


def test_a_separate_http_url_of_the_run_gets_the_jar_s_cookie_as_rfc_6265_says(certs):
    """The rule is about a redirect chain's hops: a later URL of the run, given as http, gets
    the jar's cookies that are not Secure, as curl and browsers send them (RFC 6265)."""
    context = certs.server_context()
    with counting_server(route) as plain, tls_server(context.wrap_socket, route) as tls:
        setting = go(f"https://127.0.0.1:{tls.port}", "/done", "sid=server; Path=/")
        fetch("--cacert", str(certs.ca_pem), "--ordered", setting, plain.url("/later"))
        assert plain.headers_seen[0].get("Cookie") == "sid=server"


@pytest.mark.parametrize(
    "set_cookie",
    [
        "s=; Max-Age=0; Secure; Path=/",
        "s=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; Path=/",
        "s=; Max-Age=0; Path=/; Secure=",  # a Secure attribute with a value is one (§5.6.5)
        "__Secure-s=; Max-Age=0; Path=/",  # as a prefix says: Secure, or ignored (§4.1.3)
    ],
)
def test_an_http_answer_s_secure_deletion_is_ignored(hosts, tmp_path, set_cookie):
    """s27 r2 6: RFC 6265bis §5.7 ignores a Secure cookie from an http answer entirely (curl
    and browsers do), its deletion too: http.cookiejar carried the deletion out as it read the
    Set-Cookie, before the check that refused the same cookie when set, and the file's cookie
    of that name (not Secure itself) was deleted and saved so."""
    name = set_cookie.partition("=")[0]
    jar, line = tmp_path / "cookies.txt", f"example.test\tFALSE\t/\tFALSE\t4102444800\t{name}\tP"
    jar.write_text("# Netscape HTTP Cookie File\n" + line + "\n")
    later = "http://example.test/later"
    through(hosts, "-c", str(jar), go("http://example.test", "/done", set_cookie), later)
    assert hosts.sent(later) == [f"{name}=P"]
    assert file_lines(jar) == {line}


def test_an_http_answer_s_plain_deletion_still_deletes(hosts, tmp_path):
    """The rule's other side: a deletion that is no Secure cookie deletes the file's."""
    jar, line = tmp_path / "cookies.txt", "example.test\tFALSE\t/\tFALSE\t4102444800\ts\tP"
    jar.write_text("# Netscape HTTP Cookie File\n" + line + "\n")
    later = "http://example.test/later"
    through(hosts, "-c", str(jar), go("http://example.test", "/done", "s=; Max-Age=0"), later)
    assert hosts.sent(later) == [None]
    assert file_lines(jar) == set()
