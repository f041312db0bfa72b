"""Secrets and proxies across a request's life: an https proxy's certificate is checked for http
URLs too (its password goes nowhere else), .netrc credentials are never added on a redirect, and
each redirect hop is proxied (-x, NO_PROXY) as a first URL would be.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.servers import Route, counting_server, default_route, serving, wait_for
from tests.test_proxy import assert_ok, fetch
from tests.tls_proxy_servers import (
    SOCKET_TIMEOUT,
    ForwardProxy,
    basic,
    forward_proxy,
    make_certificates,
)

SECRET = "ppass-hardening"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


# -- 1. an https proxy's certificate, for http URLs ---------------------------------------------


class TLSForwardProxy(ForwardProxy):
    """The forward proxy behind TLS (an https:// proxy). A handshake the client refuses is
    recorded in ``tls_errors``; such a connection never reaches the handler."""

    def __init__(self, context: ssl.SSLContext, credentials: tuple[str, str]) -> None:
        super().__init__(credentials)
        self.context = context
        self.tls_errors: list[str] = []

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        request.settimeout(SOCKET_TIMEOUT)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except OSError as exc:
            with self.lock:
                self.tls_errors.append(str(exc))
            return
        with tls:
            self.RequestHandlerClass(tls, client_address, self)


@contextlib.contextmanager
def tls_forward_proxy(context: ssl.SSLContext) -> Iterator[TLSForwardProxy]:
    proxy = TLSForwardProxy(context, ("puser", SECRET))
    with serving(proxy):
        try:
            yield proxy
        finally:
            proxy.stopping.set()  # ends any tunnel's relaying before the server joins it


@pytest.fixture
def tls_proxy(certs):
    with tls_forward_proxy(certs.server_context()) as running:
        yield running


@pytest.fixture
def target():
    with counting_server() as running:
        yield running


def tls_proxy_url(proxy: TLSForwardProxy) -> str:
    return f"https://puser:{SECRET}@127.0.0.1:{proxy.port}"


# As a user's run would: urllib3's warning for an unverified connection is not an error there.
show_insecure_warnings = pytest.mark.filterwarnings(
    "default::urllib3.exceptions.InsecureRequestWarning"
)


@show_insecure_warnings
@pytest.mark.parametrize("cacert", [None, "other"], ids=["default-bundle", "cacert-of-another-ca"])
def test_an_untrusted_https_proxy_gets_nothing_for_an_http_url(tls_proxy, target, certs, cacert):
    """curl refuses too (exit 60): the proxy's password goes only to a proxy the run trusts."""
    args = ["-x", tls_proxy_url(tls_proxy)]
    if cacert is not None:
        args += ["--cacert", str(certs.other_ca_pem)]
    result, record = fetch(target.url("/never"), *args)

    assert record["ok"] is False and record["error"]["kind"] in ("proxy", "tls"), record
    assert result.exit_code == 3, result.stderr
    wait_for(lambda: bool(tls_proxy.tls_errors), "the proxy to see its certificate refused")
    assert tls_proxy.request_lines == [] and tls_proxy.proxy_authorizations == []
    assert target.paths == []


@pytest.mark.parametrize("trust", ["cacert", "insecure"])
def test_an_https_proxy_trusted_by_cacert_or_k_relays_http_urls(tls_proxy, target, certs, trust):
    """Verified with --cacert (an unverified connection's warning would fail this test: warnings
    are errors here), or not checked with -k, whose warnings are silenced."""
    url = target.url("/relayed")
    trusting = ["--cacert", str(certs.ca_pem)] if trust == "cacert" else ["-k"]
    result, record = fetch(url, "-x", tls_proxy_url(tls_proxy), *trusting)

    assert_ok(result, record)
    assert tls_proxy.request_lines == [f"GET {url} HTTP/1.1"]
    assert tls_proxy.proxy_authorizations == [basic("puser", SECRET)]
    assert target.paths == ["/relayed"]


# -- 2. .netrc credentials and redirects ------------------------------------------------------


def redirecting_to(locations: dict[str, str]):
    """A route that answers 302 to locations[path] for the paths it names, as default_route
    otherwise."""

    def route(path: str) -> Route:
        if path in locations:
            return 302, {"Location": locations[path]}, b"", 0.0
        return default_route(path)

    return route


@pytest.fixture
def netrc(tmp_path):
    """A .netrc with an entry for 127.0.0.1 and a default entry (for any other host)."""
    path = tmp_path / "netrc"
    path.write_text(
        "machine 127.0.0.1 login nora password fromnetrc\ndefault login dora password fromdefault\n"
    )
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["other-host", "other-port"])
def test_netrc_credentials_are_not_added_on_a_redirect_to_another_origin(netrc, host):
    """SPEC 2.2: credentials are not forwarded to another host (host and port); curl sends the
    .netrc ones to the first host only (without --location-trusted). A `default` entry would
    otherwise give them to any host a server chose."""
    with counting_server() as landing:
        location = f"http://{host}:{landing.port}/landing"
        with counting_server(redirecting_to({"/go": location})) as first:
            result, record = fetch(first.url("/go"), NETRC=netrc)

    assert_ok(result, record)
    assert record["final_url"] == location
    assert first.headers_seen[0].get("Authorization") == basic("nora", "fromnetrc")
    assert landing.paths == ["/landing"]
    assert "Authorization" not in landing.headers_seen[0], landing.headers_seen[0]


def test_netrc_credentials_stay_on_a_redirect_within_the_origin(netrc):
    """requests keeps Authorization where it may go: the same scheme, host and port."""
    routes: dict[str, str] = {}
    with counting_server(redirecting_to(routes)) as server:
        routes["/go"] = server.url("/landing")
        result, record = fetch(server.url("/go"), NETRC=netrc)

    assert_ok(result, record)
    assert server.paths == ["/go", "/landing"]
    expected = basic("nora", "fromnetrc")
    assert [seen.get("Authorization") for seen in server.headers_seen] == [expected, expected]


@pytest.mark.parametrize(
    ("userinfo", "sent"),
    [
        ("urluser:urlpw@", basic("urluser", "urlpw")),
        ("TOKEN_abc@", basic("TOKEN_abc", "")),
        ("nora:other@", basic("nora", "other")),
        ("", basic("nora", "fromnetrc")),  # none in the URL: .netrc's
        ("nora@", basic("nora", "fromnetrc")),  # its user alone: that login's password (curl)
        ("nora:@", basic("nora", "")),  # an empty password given is given
        ("@", basic("nora", "fromnetrc")),  # an empty user info gives none either
    ],
)
def test_a_url_s_own_credentials_win_over_netrc(netrc, userinfo, sent):
    """s37 t4 1: a .netrc entry for the host replaced the credentials the URL gave, requests'
    order (its auth before the URL's): a DELETE from a list that named a service account ran
    as the .netrc one, and the record, showing the URL, said nothing. The URL's go, as curl
    sends them; .netrc is for a URL that gives none."""
    with counting_server() as server:
        result, record = fetch(server.url("/a").replace("://", f"://{userinfo}"), NETRC=netrc)
    assert_ok(result, record)
    assert server.headers_seen[0].get("Authorization") == sent, server.headers_seen[0]


# -- 3. each redirect hop is proxied as a first URL ---------------------------------------------


@pytest.fixture
def proxy():
    with forward_proxy() as running:
        yield running


def test_proxy_option_applies_after_a_redirect_out_of_no_proxy(proxy: ForwardProxy):
    """choices.md: NO_PROXY applies to -x; a hop to a host it does not cover goes through -x."""
    with counting_server() as landing:
        location = landing.url("/landing")  # 127.0.0.1: not in NO_PROXY
        with counting_server(redirecting_to({"/go": location})) as first:
            start = f"http://localhost:{first.port}/go"  # in NO_PROXY
            result, record = fetch(start, "-x", proxy.url, NO_PROXY="localhost")

    assert_ok(result, record)
    assert first.paths == ["/go"]  # direct
    assert proxy.request_lines == [f"GET {location} HTTP/1.1"]
    assert landing.paths == ["/landing"]


@pytest.mark.parametrize("how", ["option", "variable"])
def test_a_redirect_into_no_proxy_goes_direct(proxy: ForwardProxy, how):
    """As curl decides for every URL it is sent to: NO_PROXY covers the hop, not only the first
    URL."""
    with counting_server() as landing:
        location = f"http://localhost:{landing.port}/landing"  # in NO_PROXY
        with counting_server(redirecting_to({"/go": location})) as first:
            start = first.url("/go")
            env = {"NO_PROXY": "localhost"}
            if how == "option":
                result, record = fetch(start, "-x", proxy.url, **env)
            else:
                result, record = fetch(start, HTTP_PROXY=proxy.url, **env)

    assert_ok(result, record)
    assert proxy.request_lines == [f"GET {start} HTTP/1.1"]
    assert first.paths == ["/go"]  # relayed by the proxy
    assert landing.paths == ["/landing"]  # and only once: directly
    assert landing.requests == 1


@pytest.mark.parametrize(("user", "password"), [("alice", "PA"), ("bob", "PB"), ("dora", "PD")])
def test_a_url_s_user_alone_takes_the_password_of_its_own_login_among_several(
    tmp_path, user, password
):
    """s37 r3 3: Python's netrc keeps a host's last entry alone; a URL naming the first of two
    logins of one host got an empty password, where curl sends that login's. A default entry
    of that login gives it too."""
    path = tmp_path / "netrc"
    path.write_text("machine 127.0.0.1 login alice password PA\n"
                    "machine 127.0.0.1 login bob password PB\n"
                    "default login dora password PD\n")  # fmt: skip
    path.chmod(0o600)
    with counting_server() as server:
        result, record = fetch(server.url("/a").replace("://", f"://{user}@"), NETRC=str(path))
    assert_ok(result, record)
    assert server.headers_seen[0].get("Authorization") == basic(user, password)
