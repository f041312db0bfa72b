"""The Environment (fetcher.http.environment): what requests reads from the process environment,
read once per run, and the same answers requests' own functions give for every host.

Reading it per new host cost 250–1,700 µs of CPU for each one (urllib scans all of os.environ,
several times per look-up): a list of 6,000 distinct hosts took twice the CPU in a pod with 300
variables (s27 t5 2). No timing here: a variable changed after the Environment was made is not
seen, which it would be if the environment were read again; and a matrix of environments and
hosts compared with requests' should_bypass_proxies / get_environ_proxies / get_netrc_auth."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from requests.utils import get_environ_proxies, get_netrc_auth, should_bypass_proxies

from fetcher.http.environment import Environment
from fetcher.input.parsing import with_proxy_scheme

PROXY = "http://127.0.0.1:3128"

# Each a process environment: the spellings of NO_PROXY, both cases of a variable set, the
# all_proxy and CGI (REQUEST_METHOD) rules, a proxy without a scheme, blanks.
ENVIRONMENTS: list[dict[str, str]] = [
    {},
    {"http_proxy": PROXY},
    {"no_proxy": "*"},
    {"NO_PROXY": "*", "http_proxy": PROXY},
    {"no_proxy": " * ", "http_proxy": PROXY},
    {"no_proxy": "*.example.com", "http_proxy": PROXY},
    {"no_proxy": ".example.com", "http_proxy": PROXY, "https_proxy": PROXY},
    {"no_proxy": "example.com:8080", "HTTP_PROXY": PROXY},
    {"no_proxy": "example.com:notaport,localhost", "http_proxy": PROXY},
    {"no_proxy": "EXAMPLE.COM, Localhost", "https_proxy": PROXY},
    {"no_proxy": "10.0.0.0/8, 192.168.1.1 ,,  ", "http_proxy": PROXY},
    {"no_proxy": "127.0.0.0/33,127.0.0.1/x,127.0.0.0/8/8", "http_proxy": PROXY},
    {"no_proxy": "127.0.0.0/8", "all_proxy": "socks5://127.0.0.1:1080"},
    {"no_proxy": "::1,[::1],fe80::/10,[fe80::1]:8080", "http_proxy": PROXY},
    {"no_proxy": "", "NO_PROXY": "example.com", "http_proxy": PROXY},
    {"no_proxy": "a.test", "NO_PROXY": "b.test", "http_proxy": PROXY},
    {"no_proxy": "b.test", "NO_PROXY": "", "http_proxy": PROXY},
    {"HTTP_PROXY": "http://upper:1", "http_proxy": "http://lower:2"},
    {"HTTP_PROXY": "http://upper:1", "http_proxy": ""},
    {"HTTPS_PROXY": "upper:1", "https_proxy": "lower:2", "no_proxy": "a.test"},
    {"HTTP_PROXY": PROXY, "REQUEST_METHOD": "GET"},
    {"http_proxy": PROXY, "REQUEST_METHOD": "GET", "NO_PROXY": "a.test"},
    {"ALL_PROXY": PROXY, "https_proxy": "localhost:3128", "ftp_proxy": "http://f:21"},
    {"all_proxy": PROXY, "No_Proxy": "a.test"},
    {"http_proxy": PROXY, "no_proxy": "127.1,0x7f.0.0.1,xn--bcher-kva.example,example.com."},
]

NETLOCS = [
    "example.com", "www.example.com", "EXAMPLE.com", "Www.Example.Com:8080", "example.com:8080",
    "example.com:80", "www.example.com:8081", "notexample.com", "example.com.", "a.test",
    "x.a.test", "b.test", "localhost", "localhost:3128", "user:pw@example.com", "127.0.0.1",
    "127.0.0.1:8080", "127.1", "10.1.2.3", "192.168.1.1", "192.168.1.2", "[::1]", "[::1]:8080",
    "[fe80::1]", "[fe80::1]:8080", "xn--bcher-kva.example", "*", "",
]  # fmt: skip


def requests_answers(url: str) -> tuple[bool, dict[str, str]]:
    """What requests itself decides for url from os.environ, proxies read as fetcher reads -x."""
    proxies = get_environ_proxies(url, no_proxy=None)
    read = {k: with_proxy_scheme(v) if v and k != "no" else v for k, v in proxies.items()}
    return bool(should_bypass_proxies(url, no_proxy=None)), read


@pytest.mark.parametrize("variables", ENVIRONMENTS, ids=str)
def test_proxies_and_no_proxy_are_decided_as_requests_decides(variables, monkeypatch):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    environment = Environment()
    for scheme in ("http", "https"):
        for netloc in NETLOCS:
            url = urlsplit(f"{scheme}://{netloc}/x")
            expected = requests_answers(f"{scheme}://{netloc}/")
            found = environment.bypasses_proxy(url), environment.proxies_for(url)
            assert found == expected, (variables, scheme, netloc)


def test_the_proxy_variables_are_read_once_per_environment(monkeypatch):
    monkeypatch.setenv("http_proxy", PROXY)
    environment = Environment()
    environment.proxies_for(urlsplit("http://first.test/"))
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "*")
    second = urlsplit("http://second.test/")  # a host not looked up yet
    assert environment.proxies_for(second) == {"http": PROXY}
    assert not environment.bypasses_proxy(second)


NETRC = """\
machine 127.0.0.1 login nora password fromnetrc
machine example.com account acct password onlypass
machine empty.test login "" password ""
default login anyone password fromdefault
"""


def test_netrc_credentials_are_found_as_requests_finds_them(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text(NETRC)
    monkeypatch.setenv("NETRC", str(netrc))
    environment = Environment()
    for netloc in ["127.0.0.1", "127.0.0.1:8080", "EXAMPLE.com", "empty.test", "other.test",
                   "[::1]", "user@example.com", ""]:  # fmt: skip
        url = urlsplit(f"https://{netloc}/x")
        assert environment.netrc_auth(url) == get_netrc_auth(f"https://{netloc}/x"), netloc


def test_netrc_is_read_once_per_environment(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine a.test login a password pa\nmachine b.test login b password pb\n")
    monkeypatch.setenv("NETRC", str(netrc))
    environment = Environment()
    assert environment.netrc_auth(urlsplit("http://a.test/")) == ("a", "pa")
    netrc.write_text("machine a.test login a password pa\n")
    assert environment.netrc_auth(urlsplit("http://b.test/")) == ("b", "pb")
