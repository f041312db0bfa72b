"""A Proxy-Authorization header given with -H, or in a jsonl line's headers, is the proxy's:
it goes into the CONNECT of an https URL, on the request to the proxy for an http one, and
never to an origin server (a URL that goes direct, NO_PROXY, a redirect's hop). s23 h3 1.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import invoke
from tests.servers import counting_server
from tests.test_proxy import assert_ok, fetch, restore_logging  # noqa: F401 - a fixture
from tests.test_proxy_hardening import redirecting_to
from tests.tls_proxy_servers import basic, forward_proxy, https_server, make_certificates

SECRET = "pa-given"
GIVEN = basic("puser", SECRET)
HEADER = f"Proxy-Authorization: {GIVEN}"
PROXY_AUTH = "proxy-authorization"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_target(certs):
    with https_server(certs.server_context()) as running:
        yield running


@pytest.fixture
def target():
    with counting_server() as running:
        yield running


@pytest.fixture
def auth_proxy():
    with forward_proxy(("puser", SECRET)) as running:
        yield running


def proxy_authorizations(headers_seen):
    """The Proxy-Authorization values an origin server received, in any case."""
    return [v for seen in headers_seen for k, v in seen.items() if k.lower() == PROXY_AUTH]


def test_a_given_proxy_authorization_goes_into_the_connect(auth_proxy, tls_target, certs):
    """It went inside the tunnel to the website, and the proxy answered 407 to the CONNECT."""
    url = tls_target.url("/tunnel")
    result, record = fetch(url, "--cacert", str(certs.ca_pem), "-x", auth_proxy.url, "-H", HEADER)

    assert_ok(result, record)
    assert auth_proxy.request_lines == [f"CONNECT 127.0.0.1:{tls_target.port} HTTP/1.0"]
    assert auth_proxy.proxy_authorizations == [GIVEN]
    assert proxy_authorizations(tls_target.headers_seen) == []


def test_a_lines_proxy_authorization_goes_into_the_connect(auth_proxy, tls_target, certs):
    line = {"url": tls_target.url("/line"), "headers": {"Proxy-Authorization": GIVEN}}
    result = invoke(
        ["--format", "jsonl", "--retries", "0", "--input-format", "jsonl",
         "--cacert", str(certs.ca_pem), "-x", auth_proxy.url],
        input=json.dumps(line) + "\n",
    )  # fmt: skip

    assert_ok(result, json.loads(result.stdout))
    assert auth_proxy.proxy_authorizations == [GIVEN]
    assert proxy_authorizations(tls_target.headers_seen) == []


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_given_proxy_authorization_wins_over_the_proxy_urls_credentials(
    auth_proxy, tls_target, target, certs, scheme
):
    """As -H Authorization wins over -u and a URL's user:password@."""
    url = tls_target.url("/x") if scheme == "https" else target.url("/x")
    proxy = f"http://puser:wrong@127.0.0.1:{auth_proxy.port}"
    result, record = fetch(url, "--cacert", str(certs.ca_pem), "-x", proxy, "-H", HEADER)

    assert_ok(result, record)
    assert auth_proxy.proxy_authorizations == [GIVEN]


def test_a_given_proxy_authorization_goes_to_the_proxy_for_an_http_url(auth_proxy, target):
    result, record = fetch(target.url("/plain"), "-x", auth_proxy.url, "-H", HEADER)

    assert_ok(result, record)
    assert auth_proxy.proxy_authorizations == [GIVEN]


@pytest.mark.parametrize("proxied", ["none", "no_proxy"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_given_proxy_authorization_never_goes_to_a_url_sent_direct(
    auth_proxy, tls_target, target, certs, scheme, proxied
):
    """The proxy's password went to the website, in clear under NO_PROXY's http."""
    server = tls_target if scheme == "https" else target
    env = {} if proxied == "none" else {f"{scheme.upper()}_PROXY": auth_proxy.url}
    result, record = fetch(
        server.url("/direct"), "-v", "--cacert", str(certs.ca_pem), "-H", HEADER,
        NO_PROXY="127.0.0.1", **env,
    )  # fmt: skip

    assert_ok(result, record)
    assert auth_proxy.request_lines == []
    assert server.paths == ["/direct"]
    assert proxy_authorizations(server.headers_seen) == []
    assert "Proxy-Authorization not sent" in result.stderr
    assert SECRET not in result.stderr and GIVEN.split()[1] not in result.stderr


def test_a_redirect_to_another_host_keeps_it_for_the_proxy_only(auth_proxy, tls_target, certs):
    """Each hop's CONNECT carries it (requests dropped it on a redirect: the hop got 407)."""
    landing = f"https://localhost:{tls_target.port}/landing"
    tls_target.locations["/go"] = landing
    result, record = fetch(
        tls_target.url("/go"), "--cacert", str(certs.ca_pem), "-x", auth_proxy.url, "-H", HEADER
    )

    assert_ok(result, record)
    assert record["final_url"] == landing
    assert auth_proxy.request_lines == [
        f"CONNECT 127.0.0.1:{tls_target.port} HTTP/1.0",
        f"CONNECT localhost:{tls_target.port} HTTP/1.0",
    ]
    assert auth_proxy.proxy_authorizations == [GIVEN, GIVEN]
    assert proxy_authorizations(tls_target.headers_seen) == []


def test_an_http_redirect_through_the_proxy_keeps_it_for_the_proxy(auth_proxy):
    with counting_server() as landing_server:
        landing = f"http://localhost:{landing_server.port}/landing"
        with counting_server(redirecting_to({"/go": landing})) as first:
            result, record = fetch(first.url("/go"), "-x", auth_proxy.url, "-H", HEADER)

    assert_ok(result, record)
    start = first.url("/go")
    assert auth_proxy.request_lines == [f"GET {start} HTTP/1.1", f"GET {landing} HTTP/1.1"]
    assert auth_proxy.proxy_authorizations == [GIVEN, GIVEN]


def test_a_redirect_into_no_proxy_drops_it(auth_proxy):
    with counting_server() as landing_server:
        landing = f"http://localhost:{landing_server.port}/landing"  # in NO_PROXY: direct
        with counting_server(redirecting_to({"/go": landing})) as first:
            result, record = fetch(
                first.url("/go"), "-x", auth_proxy.url, "-H", HEADER, NO_PROXY="localhost"
            )

    assert_ok(result, record)
    assert auth_proxy.proxy_authorizations == [GIVEN]
    assert landing_server.paths == ["/landing"]
    assert proxy_authorizations(landing_server.headers_seen) == []
