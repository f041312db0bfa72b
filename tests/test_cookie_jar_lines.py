"""How the -c file's lines are read as curl and wget mean them (SPEC §2.2, docs/usage.md
"Cookies"), and -b cookies on redirect hops: a domain line without its leading dot is the
cookie a server's Domain= names (replaced and deleted by it); a -b cookie goes on every hop to
its host and port whatever the servers set; expiries curl reads are read; wget's host:port
domains are its cookies for that host.

Other host names reach a local server through a proxy (test_cookie_scope's ProxyHost).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import invoke
from tests.servers import Route, counting_server, serving
from tests.test_cookie_scope import ProxyHost, fetch, file_lines, go, route, through

HEADER = "# Netscape HTTP Cookie File\n"


@pytest.fixture
def hosts() -> Iterator[ProxyHost]:
    with serving(ProxyHost(route)) as server:
        yield server


def write_jar(path: Path, *lines: str) -> Path:
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    path.chmod(0o600)
    return path


# -- a domain line without its dot (h4 finding 4) ----------------------------------------------

UNDOTTED = "example.test\tTRUE\t/\tFALSE\t0\tsid\tOLD"  # hand-written, or another tool's export


def test_a_server_replaces_a_domain_line_written_without_its_dot(hosts, tmp_path):
    jar = write_jar(tmp_path / "jar", UNDOTTED)
    login = go("http://www.example.test", "/after", "sid=NEW; Domain=example.test; Path=/")
    through(hosts, "-c", str(jar), login)
    assert hosts.sent("http://www.example.test/after") == ["sid=NEW"]
    assert file_lines(jar) == {".example.test\tTRUE\t/\tFALSE\t0\tsid\tNEW"}  # as curl writes it


def test_a_server_deletes_a_domain_line_written_without_its_dot(hosts, tmp_path):
    jar = write_jar(tmp_path / "jar", UNDOTTED)
    logout = "sid=; Domain=example.test; Path=/; Max-Age=0"
    through(hosts, "-c", str(jar), go("http://www.example.test", "/afterlogout", logout))
    assert hosts.sent("http://www.example.test/afterlogout") == [None]
    assert file_lines(jar) == set()


def test_a_domain_line_without_its_dot_is_saved_back_as_curl_writes_it(hosts, tmp_path):
    jar = write_jar(tmp_path / "jar", UNDOTTED)
    through(hosts, "-c", str(jar), "http://sub.example.test/")
    assert hosts.sent("http://sub.example.test/") == ["sid=OLD"]
    assert file_lines(jar) == {".example.test\tTRUE\t/\tFALSE\t0\tsid\tOLD"}


# -- a -b cookie on every redirect hop to its host and port (h4 finding 5) -----------------------

GIVEN = "given=MINE"


def test_a_b_cookie_outlives_a_same_named_cookie_set_by_the_redirect(tmp_path):
    """requests' resolve_redirects read the 302's Set-Cookie into the hop's jar over the -b
    cookie of the same name: the hop sent the server's value, where curl sends the user's."""
    with counting_server(route) as server:
        start = go(f"http://127.0.0.1:{server.port}", "/land", "given=SRV; Path=/")
        fetch("-b", GIVEN, start)
        sent = [headers.get("Cookie") for headers in server.headers_seen]
    assert server.paths[-1] == "/land"
    assert sent == [GIVEN, GIVEN], sent


def test_a_b_cookie_outlives_a_same_named_cookie_of_the_session_jar(tmp_path):
    """The session's jar (here the -c file's cookie, as a cookie an earlier URL set) was merged
    over every hop's cookies: the first request sent the -b value, its redirect the jar's."""
    jar = write_jar(tmp_path / "jar", "127.0.0.1\tFALSE\t/\tFALSE\t0\tgiven\tSRV")
    with counting_server(route) as server:
        fetch("-b", GIVEN, "-c", str(jar), go(f"http://127.0.0.1:{server.port}", "/land"))
        sent = [headers.get("Cookie") for headers in server.headers_seen]
    assert server.paths[-1] == "/land"
    assert sent == [GIVEN, GIVEN], sent
    assert file_lines(jar) == {"127.0.0.1\tFALSE\t/\tFALSE\t0\tgiven\tSRV"}  # not the user's -b


def test_a_b_cookie_goes_beside_a_same_named_cookie_of_a_longer_path(tmp_path):
    """The hop got the redirect's cookie and the jar's, and no -b cookie at all (h4 5)."""
    jar = write_jar(tmp_path / "jar", "127.0.0.1\tFALSE\t/\tFALSE\t0\tgiven\tSRV")
    with counting_server(route) as server:
        start = go(f"http://127.0.0.1:{server.port}", "/land", "given=EVIL2; Path=/land")
        fetch("-b", GIVEN, "-c", str(jar), start)
        sent = server.headers_seen[-1].get("Cookie") or ""
    assert sent.split("; ") == ["given=EVIL2", GIVEN], sent  # the longer path first, as curl


def test_a_hop_to_another_port_gets_the_server_s_cookie_not_the_b_one():
    """The -b cookie stays on its port; the server's cookie of the same name is any port's."""
    with counting_server() as other, counting_server(route) as first:
        landing = other.url("/landing")
        start = go(f"http://127.0.0.1:{first.port}", landing, "given=SRV; Path=/")
        fetch("-b", GIVEN, start)
        assert first.headers_seen[0].get("Cookie") == GIVEN
        assert other.headers_seen[0].get("Cookie") == "given=SRV"


# -- expiries curl reads (h4 finding 8) ----------------------------------------------------------

READ_AS_CURL_READS = {  # curl 7.88's curlx_strtoofft: blanks, then digits; the rest ignored
    "frac": "1900000000.5",  # some browser-export converters write a fraction
    "space": " 1900000000",
    "after": "1900000000 ",
}


def test_an_expiry_curl_reads_is_read_and_saved_back_whole(tmp_path):
    fields = READ_AS_CURL_READS.items()
    lines = [f"127.0.0.1\tFALSE\t/\tFALSE\t{expiry}\t{name}\tv" for name, expiry in fields]
    jar = write_jar(tmp_path / "jar", *lines)
    with counting_server() as server:
        result = invoke(["--retries", "0", "-c", str(jar), server.url("/")])
        sent = server.headers_seen[0].get("Cookie") or ""
    assert result.exit_code == 0 and "skipped" not in result.stderr, result.stderr
    assert sorted(sent.split("; ")) == ["after=v", "frac=v", "space=v"], sent
    assert file_lines(jar) == {
        f"127.0.0.1\tFALSE\t/\tFALSE\t1900000000\t{name}\tv" for name in READ_AS_CURL_READS
    }


@pytest.mark.parametrize("expiry", ["9223372036854775807", "9007199254740993"])  # 2**63-1, 2**53+1
def test_an_expiry_past_a_float_s_precision_round_trips_exactly(tmp_path, expiry):
    """http.cookiejar's Cookie does int(float(expires)): curl's largest was saved as
    ...808, over it, and the next load skipped and dropped the line (s25 r7 7). Kept to the
    digit, through a run and a second one, a wget port line kept as written included."""
    with counting_server() as server, counting_server() as other:
        lines = [
            f"127.0.0.1\tFALSE\t/\tFALSE\t{expiry}\tbig\tv",
            f"127.0.0.1:{server.port}\tFALSE\t/\tFALSE\t{expiry}\tw1\tA",
            f"127.0.0.1:{other.port}\tFALSE\t/\tFALSE\t{expiry}\tw1\tB",
        ]
        jar = write_jar(tmp_path / "jar", *lines)
        for _ in range(2):
            result = invoke(["--retries", "0", "-c", str(jar), server.url("/")])
            assert result.exit_code == 0 and "skipped" not in result.stderr, result.stderr
            assert file_lines(jar) == set(lines)
        assert server.headers_seen[1].get("Cookie") == "big=v; w1=A"


def test_an_expiry_past_curl_s_64_bits_is_skipped_with_a_warning(tmp_path):
    jar = write_jar(
        tmp_path / "jar",
        "127.0.0.1\tFALSE\t/\tFALSE\t9223372036854775808\tover\tv",  # 2**63
        "127.0.0.1\tFALSE\t/\tFALSE\t-5\tnegative\tv",
        "127.0.0.1\tFALSE\t/\tFALSE\t" + "0" * 30 + "1900000000\tzeros\tv",  # read, as strtoll
    )
    with counting_server() as server:
        result = invoke(["--retries", "0", "-c", str(jar), server.url("/")])
        sent = server.headers_seen[0].get("Cookie")
    assert sent == "zeros=v", sent
    assert "skipped 2 lines" in result.stderr and "line 2" in result.stderr, result.stderr


# -- wget's host:port domains (h4 finding 10) ----------------------------------------------------


def test_a_wget_line_for_a_non_default_port_is_its_host_s_cookie(tmp_path):
    """wget --save-cookies writes a host-only cookie of a non-default port as 'HOST:PORT'; it was
    loaded, never sent (no host is named '127.0.0.1:PORT') and saved back."""
    with counting_server() as server, counting_server() as other:
        line = f"127.0.0.1:{server.port}\tFALSE\t/\tFALSE\t0\tsid\tW"
        jar = write_jar(tmp_path / "jar", line)
        result = invoke(["--retries", "0", "-c", str(jar), server.url("/"), other.url("/")])
        assert result.exit_code == 0, result.output
        assert server.headers_seen[0].get("Cookie") == "sid=W"
        assert other.headers_seen[0].get("Cookie") == "sid=W"  # any port, as fetcher's own
    assert file_lines(jar) == {line}  # as wget wrote it, for wget to read again


def test_a_server_replaces_a_wget_line_for_a_non_default_port(tmp_path):
    def setting(path: str) -> Route:
        return 200, {"Set-Cookie": "sid=NEW; Path=/"}, b"", 0.0

    with counting_server(setting) as server:
        jar = write_jar(tmp_path / "jar", f"127.0.0.1:{server.port}\tFALSE\t/\tFALSE\t0\tsid\tW")
        assert invoke(["--retries", "0", "-c", str(jar), server.url("/")]).exit_code == 0
        assert server.headers_seen[0].get("Cookie") == "sid=W"
    assert file_lines(jar) == {"127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tNEW"}  # fetcher's: any port


def test_two_ports_wget_lines_of_one_name_are_both_saved_back(tmp_path):
    """wget keeps a host-only cookie per port: `HOST:P1 ... w1 A` and `HOST:P2 ... w1 B` are
    two. Read as the host's cookie, both had one key, the later replaced the earlier, and the
    save lost P1's line (s25 r7 5). The first is the host's cookie; the other is kept as
    written, saved back unchanged and not sent."""
    with counting_server() as server, counting_server() as other:
        first = f"127.0.0.1:{server.port}\tFALSE\t/\tFALSE\t0\tw1\tA"
        second = f"127.0.0.1:{other.port}\tFALSE\t/\tFALSE\t0\tw1\tB"
        jar = write_jar(tmp_path / "jar", first, second)
        result = invoke(["--retries", "0", "-c", str(jar), server.url("/"), other.url("/")])
        assert result.exit_code == 0, result.output
        assert server.headers_seen[0].get("Cookie") == "w1=A"
        assert other.headers_seen[0].get("Cookie") == "w1=A"  # the host's, any port
    assert file_lines(jar) == {first, second}
    again = invoke(["--retries", "0", "-c", str(jar), "-i", "/dev/null"])  # load, save again
    assert again.exit_code == 0, again.output
    assert file_lines(jar) == {first, second}


@pytest.mark.parametrize("order", ["plain-first", "port-first"])
def test_a_wget_port_line_and_a_plain_line_of_one_name_are_both_saved_back(tmp_path, order):
    """A line without a port is the host's cookie whatever the order; a wget line of the same
    name for one port of it is kept as written (s25 r7 5: the later line replaced the other)."""
    with counting_server() as server:
        plain = "127.0.0.1\tFALSE\t/\tFALSE\t0\tw1\tHOST"
        port = f"127.0.0.1:{server.port}\tFALSE\t/\tFALSE\t0\tw1\tPORT"
        jar = write_jar(
            tmp_path / "jar", *([plain, port] if order == "plain-first" else [port, plain])
        )
        assert invoke(["--retries", "0", "-c", str(jar), server.url("/")]).exit_code == 0
        assert server.headers_seen[0].get("Cookie") == "w1=HOST"
    assert file_lines(jar) == {plain, port}


@pytest.mark.parametrize("domain", ["127.0.0.1:80x", "127.0.0.1:99999"])  # wget: no port; none
def test_a_domain_with_no_port_wget_reads_is_kept_as_it_is(tmp_path, domain):
    line = f"{domain}\tFALSE\t/\tFALSE\t0\tsid\tW"
    jar = write_jar(tmp_path / "jar", line)
    with counting_server() as server:
        assert invoke(["--retries", "0", "-c", str(jar), server.url("/")]).exit_code == 0
        assert server.headers_seen[0].get("Cookie") is None
    assert file_lines(jar) == {line}


def test_the_same_wget_line_twice_is_one_cookie_the_later(tmp_path):
    """Two lines of one port and one name are one cookie, the later, as curl and wget read
    them: c188db1 kept both and sent the first (s25 r9 6)."""
    with counting_server() as server:
        first = f"127.0.0.1:{server.port}\tFALSE\t/\tFALSE\t0\tw1\tA"
        later = f"127.0.0.1:{server.port}\tFALSE\t/\tFALSE\t0\tw1\tB"
        jar = write_jar(tmp_path / "jar", first, later)
        assert invoke(["--retries", "0", "-c", str(jar), server.url("/")]).exit_code == 0
        assert server.headers_seen[0].get("Cookie") == "w1=B"
    assert file_lines(jar) == {later}


@pytest.mark.parametrize("domain", ["::1", ".::1", "[::1]", ".[::1]"])
def test_an_ipv6_line_is_that_address_s_host_only_cookie(domain):
    """curl writes an IPv6 host's line as `::1`; `.[::1]` and `.::1` were other cookies, never
    sent nor replaced (s25 r9 5): every spelling is the address's host-only cookie, as an
    IPv4 address's is (r8 3)."""
    from fetcher.http.cookies import jar_domain

    assert jar_domain(domain, whole_domain=True) == "[::1].local"
    assert jar_domain(domain) == "[::1].local"


# -- IPv6 lines: wget's address:port, curl's spelling, mapped and long forms (s26 r1 1, 2, 4) ----


def jar_line(domain: str, name: str = "sid", value: str = "secret") -> str:
    return f"{domain}\tFALSE\t/\tFALSE\t0\t{name}\t{value}"


@pytest.mark.parametrize("field", ["::1:8123", "2001:db8::5:8080"])
def test_a_wget_ipv6_line_with_a_port_goes_to_no_other_address(hosts, tmp_path, field):
    """wget writes [::1]:8123's line as '::1:8123', which is also the address ::1:8123: it was
    sent there, a credential to another host (s26 r1 1). Read either way it is a guess: sent
    nowhere, and written back as it was."""
    line = jar_line(field)
    jar = write_jar(tmp_path / "jar", line)
    address = f"http://[{field}]/"
    through(hosts, "-c", str(jar), address, "http://[::1]:8123/")
    assert hosts.sent(address) == [None]
    assert hosts.sent("http://[::1]:8123/") == [None]
    assert file_lines(jar) == {line}


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("::1", "http://[::1]/"),
        ("0:0:0:0:0:0:0:1", "http://[::1]/"),
        ("::ffff:127.0.0.1", "http://[::ffff:127.0.0.1]/"),
        ("[::ffff:127.0.0.1]", "http://[::ffff:127.0.0.1]/"),
        ("::FFFF:127.0.0.1", "http://[::ffff:127.0.0.1]/"),
        ("0:0:0:0:0:ffff:7f00:1", "http://[::ffff:127.0.0.1]/"),
    ],
)
def test_an_ipv6_line_in_any_spelling_is_sent_to_its_address(hosts, tmp_path, field, url):
    """An IPv4-mapped address had '.local' added (it has dots, so http.cookiejar names it
    without), and a long spelling was another name: neither was sent (s26 r1 4). Each is
    written back as curl writes it (inet_ntop's spelling, no brackets: s26 r1 2)."""
    jar = write_jar(tmp_path / "jar", jar_line(field))
    through(hosts, "-c", str(jar), url)
    assert hosts.sent(url) == ["sid=secret"]
    assert file_lines(jar) == {jar_line(url.split("[")[1].split("]")[0])}


def test_a_curl_ipv6_line_is_written_back_as_curl_wrote_it(hosts, tmp_path):
    """A run that never met the address rewrote curl's '::1' line as '[::1]', which curl does
    not send (s26 r1 2)."""
    lines = {jar_line("::1"), "#HttpOnly_" + jar_line("::1", "h", "v")}
    jar = write_jar(tmp_path / "jar", *lines)
    through(hosts, "-c", str(jar), "http://example.test/")
    written = jar.read_text().splitlines()
    assert {line for line in written if line and not line.startswith("# ")} == lines


def test_a_server_s_ipv6_cookie_is_saved_as_curl_writes_it_and_sent_again(hosts, tmp_path):
    jar = tmp_path / "jar"
    url = "http://[::ffff:127.0.0.1]/"
    through(hosts, "-c", str(jar), go("http://[::ffff:127.0.0.1]", url, "sid=new"))
    assert [line.split("\t")[0] for line in file_lines(jar)] == ["::ffff:127.0.0.1"]
    through(hosts, "-c", str(jar), url)
    assert hosts.sent(url)[-1] == "sid=new"


# -- an IPv6 host spelled otherwise than inet_ntop spells it (s26 r2 3) ------------------------

LONG = "http://[0:0:0:0:0:0:0:1]"  # ::1, spelled out


def test_a_long_spelled_ipv6_host_s_cookie_is_saved_as_curl_writes_it_and_sent_again(
    hosts, tmp_path
):
    """The cookie a server at [0:0:0:0:0:0:0:1] set was saved under that spelling, not curl's
    '::1', and a later run to the same URL did not send it: http.cookiejar compares the host's
    text. curl writes '::1', and sends that line to any spelling of ::1."""
    jar = tmp_path / "jar"
    through(hosts, "-c", str(jar), go(LONG, f"{LONG}/landing", "s=1"))
    assert file_lines(jar) == {jar_line("::1", "s", "1")}
    through(hosts, "-c", str(jar), f"{LONG}/again")
    assert hosts.sent(f"{LONG}/again") == ["s=1"]


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("::1", f"{LONG}/"),
        ("::1", "http://[::0:1]/"),
        ("::ffff:127.0.0.1", "http://[::ffff:7f00:1]/"),
        ("0:0:0:0:0:0:0:1", "http://[0::1]/"),
    ],
)
def test_an_ipv6_line_is_sent_to_its_address_however_the_url_spells_it(hosts, tmp_path, field, url):
    jar = write_jar(tmp_path / "jar", jar_line(field))
    through(hosts, "-c", str(jar), url)
    assert hosts.sent(url) == ["sid=secret"]


def test_a_b_cookie_of_a_long_spelled_ipv6_url_goes_to_every_spelling_of_its_host(hosts):
    """-b binds its cookies to the URL's host and port: the same address, in any spelling,
    on a redirect's hop too; another address gets none of them."""
    elsewhere = "http://[::2]/other"
    start = go(LONG, "http://[::1]/landing?x")
    through(hosts, "-b", GIVEN, start, f"{LONG}/second")
    assert hosts.sent(start) == [GIVEN]
    assert hosts.sent("http://[::1]/landing?x") == [GIVEN]
    through(hosts, "-b", GIVEN, go(LONG, elsewhere))
    assert hosts.sent(elsewhere) == [None]


@pytest.mark.parametrize(
    ("domain", "written"),
    [
        ("[0:0:0:0:0:0:0:1].local", "::1"),
        ("[::0:1].local", "::1"),
        ("[0:0:0:0:0:ffff:7f00:1]", "::ffff:127.0.0.1"),
        ("[0:0:0:0:0:1:0:8123].local", "[::1:0:8123]"),  # would read as wget's ::1:0 port 8123
    ],
)
def test_a_jar_s_ipv6_domain_is_written_in_inet_ntop_s_spelling(domain, written):
    """file_domain wrote the brackets' text as it was ('0:0:0:0:0:0:0:1'), not curl's."""
    from fetcher.http.cookies import file_domain

    assert file_domain(domain) == written
