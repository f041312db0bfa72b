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

from tests.servers import serving
from tests.test_cookie_scope import ProxyHost, file_lines, go, route, through

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
