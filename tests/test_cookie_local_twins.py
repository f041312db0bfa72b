"""http.cookiejar knows a host without a dot (intranet, localhost) as 'intranet.local', and so
took it and the mDNS name 'intranet.local' (which anyone on the local network can answer for)
for one host: a -b cookie, a server's host-only cookie and a -c file's line went from one to
the other, on a redirect too (s30 t3 1). A host-only cookie goes to the host it came from, as
curl sends it; the file names that host, as curl writes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import serving
from tests.test_cookie_scope import SECRET, ProxyHost, file_lines, go, route, through


@pytest.fixture
def hosts() -> Iterator[ProxyHost]:
    with serving(ProxyHost(route)) as server:
        yield server


TWINS = [("http://intranet", "http://intranet.local"), ("http://intranet.local", "http://intranet"),
         ("http://localhost", "http://localhost.local")]  # fmt: skip


@pytest.mark.parametrize(("origin", "twin"), TWINS, ids=["dotless", "mdns", "localhost"])
def test_a_b_cookie_is_not_sent_to_its_host_s_local_twin(hosts, origin, twin):
    start = go(origin, f"{twin}/landing")
    through(hosts, "-b", f"session={SECRET}", start)
    assert hosts.sent(start) == [f"session={SECRET}"]
    assert hosts.sent(f"{twin}/landing") == [None]


@pytest.mark.parametrize(("origin", "twin"), TWINS, ids=["dotless", "mdns", "localhost"])
def test_a_server_s_host_only_cookie_stays_on_its_host_not_its_local_twin(hosts, origin, twin):
    setting = go(origin, f"{origin}/home", "sid=server; Path=/")
    through(hosts, setting, f"{twin}/landing", f"{origin}/later")
    assert hosts.sent(f"{origin}/home") == ["sid=server"]
    assert hosts.sent(f"{origin}/later") == ["sid=server"]
    assert hosts.sent(f"{twin}/landing") == [None]


def test_a_file_s_dotless_line_goes_to_its_host_and_is_written_back_as_it_was(hosts, tmp_path):
    jar = tmp_path / "cookies.txt"
    given = "intranet\tFALSE\t/\tFALSE\t0\tgiven\tby-curl"
    jar.write_text(f"# Netscape HTTP Cookie File\n{given}\n")
    setting = go("http://intranet", "http://intranet/home", "sid=server; Path=/")
    through(hosts, "-c", str(jar), setting, "http://intranet.local/landing")
    assert hosts.sent("http://intranet/home") == ["given=by-curl; sid=server"]
    assert hosts.sent("http://intranet.local/landing") == [None]
    assert file_lines(jar) == {given, "intranet\tFALSE\t/\tFALSE\t0\tsid\tserver"}


def test_a_file_s_local_line_stays_on_the_local_host(hosts, tmp_path: Path):
    jar = tmp_path / "cookies.txt"
    line = "printer.local\tFALSE\t/\tFALSE\t0\tsid\tmdns"
    jar.write_text(f"{line}\n")
    through(hosts, "-c", str(jar), "http://printer.local/a", "http://printer/b")
    assert hosts.sent("http://printer.local/a") == ["sid=mdns"]
    assert hosts.sent("http://printer/b") == [None]
    assert file_lines(jar) == {line}


@pytest.mark.parametrize("host", ["a.test", "a.test:8080", "A.TEST"])
def test_a_b_cookie_goes_with_a_host_header_given(hosts, host):
    """s30 t3 3: requests shows its cookie jar the Host header's name, and the -b cookie,
    bound to the URL's host, was not sent, with no word (curl sends it). usage.md gives
    -H 'Host: NAME' for curl's --resolve."""
    url = "http://example.test/page"
    through(hosts, "-H", f"Host: {host}", "-b", f"session={SECRET}", url)
    assert hosts.sent(url) == [f"session={SECRET}"]
