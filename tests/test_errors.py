"""errors.classify and errors.describe on real exception chains from real requests calls.

Every chain here comes out of requests talking to a socket on 127.0.0.1 (or, for dns, out of a
patched resolver, which sends nothing); only ``other`` and FetchError are raised by hand.
"""

import socket
import ssl

import pytest
import requests
import trustme
import urllib3.exceptions

from fetcher.errors import ErrorKind, FetchError
from fetcher.http.classify import classify, describe, iter_chain
from tests.servers import FaultServer, closed_port, full_backlog, respond, silent, tls_server

HEAD_100K = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
TIMEOUT = (2, 2)


def assert_short_message(exc):
    """describe() gives one short line: no object reprs, no urllib3 retry boilerplate."""
    message = describe(exc)
    assert message.strip() == message and message
    assert "\n" not in message
    assert len(message) <= 200, message
    assert " at 0x" not in message, message
    assert "Max retries exceeded" not in message, message
    return message


def kind_and_message(exc):
    return classify(exc), assert_short_message(exc)


# -- dns ---------------------------------------------------------------------------------------


def test_dns_failure_from_the_resolver(monkeypatch):
    asked = []

    def getaddrinfo(host, *args, **kwargs):
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(requests.ConnectionError) as exc_info:
        requests.get("http://no-such-host.test/", timeout=TIMEOUT)

    assert asked == ["no-such-host.test"]
    # The outermost exception is the generic ConnectionError: the kind is found down the chain.
    assert type(exc_info.value) is requests.ConnectionError
    kind, message = kind_and_message(exc_info.value)
    assert kind is ErrorKind.DNS
    assert "Name or service not known" in message


# -- connect, connect_timeout, read_timeout ----------------------------------------------------


def test_connection_refused_is_connect():
    with pytest.raises(requests.ConnectionError) as exc_info:
        requests.get(f"http://127.0.0.1:{closed_port()}/", timeout=TIMEOUT)
    kind, message = kind_and_message(exc_info.value)
    assert kind is ErrorKind.CONNECT
    assert "refused" in message.lower()


def test_full_backlog_is_connect_timeout():
    with full_backlog() as url, pytest.raises(requests.ConnectTimeout) as exc_info:
        requests.get(url, timeout=(0.3, 5))
    kind, message = kind_and_message(exc_info.value)
    assert kind is ErrorKind.CONNECT_TIMEOUT
    assert "timed out" in message
    # urllib3's ConnectTimeoutError carries the connection's repr; describe leaves it out.
    assert any(" at 0x" in str(link) for link in iter_chain(exc_info.value))


def test_silent_server_is_read_timeout():
    with FaultServer(silent) as fault, pytest.raises(requests.ReadTimeout) as exc_info:
        requests.get(fault.url(), timeout=(2, 0.3))
    kind, message = kind_and_message(exc_info.value)
    assert kind is ErrorKind.READ_TIMEOUT
    assert "timed out" in message


def test_read_timeout_while_streaming_the_body_is_read_timeout():
    # requests turns a timeout during iter_content into a plain ConnectionError.
    with FaultServer(respond(HEAD_100K + b"x" * 10, end="stall")) as fault:
        with requests.get(fault.url(), timeout=(2, 0.3), stream=True) as response:
            assert response.status_code == 200
            with pytest.raises(requests.ConnectionError) as exc_info:
                response.content  # noqa: B018 - reading the body is the point
    assert not isinstance(exc_info.value, requests.Timeout)
    kind, _ = kind_and_message(exc_info.value)
    assert kind is ErrorKind.READ_TIMEOUT


def test_stalled_tls_handshake_is_connect_timeout():
    with FaultServer(silent) as fault, pytest.raises(requests.Timeout) as exc_info:
        requests.get(f"https://127.0.0.1:{fault.port}/", timeout=(0.3, 5))
    assert classify(exc_info.value) is ErrorKind.CONNECT_TIMEOUT


# -- tls -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca):
    with ca.cert_pem.tempfile() as path:
        yield path


def serve_tls(ca, name):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return tls_server(context.wrap_socket)


@pytest.fixture(scope="module")
def tls_for_ip(ca):
    """HTTPS on 127.0.0.1 with a certificate for 127.0.0.1 from a CA only ca_file trusts."""
    with serve_tls(ca, "127.0.0.1") as server:
        yield f"https://127.0.0.1:{server.port}/"


@pytest.fixture(scope="module")
def tls_for_localhost(ca):
    """HTTPS on 127.0.0.1 with a certificate for localhost only."""
    with serve_tls(ca, "localhost") as server:
        yield f"https://127.0.0.1:{server.port}/"


def test_trusted_certificate_works(tls_for_ip, ca_file):
    # The control for the two tests below: the server is fine when its CA is trusted.
    with requests.get(tls_for_ip, verify=ca_file, timeout=TIMEOUT) as response:
        assert response.status_code == 200


def test_untrusted_certificate_is_tls(tls_for_ip):
    with pytest.raises(requests.exceptions.SSLError) as exc_info:
        requests.get(tls_for_ip, timeout=TIMEOUT)
    kind, message = kind_and_message(exc_info.value)
    assert kind is ErrorKind.TLS
    assert "certificate verify failed" in message


def test_certificate_for_another_name_is_tls(tls_for_localhost, ca_file):
    with pytest.raises(requests.exceptions.SSLError) as exc_info:
        requests.get(tls_for_localhost, verify=ca_file, timeout=TIMEOUT)
    kind, message = kind_and_message(exc_info.value)
    assert kind is ErrorKind.TLS
    assert "127.0.0.1" in message


def test_https_to_a_plain_http_server_is_tls(server):
    with pytest.raises(requests.exceptions.SSLError) as exc_info:
        requests.get(f"https://127.0.0.1:{server.port}/", timeout=TIMEOUT)
    kind, _ = kind_and_message(exc_info.value)
    assert kind is ErrorKind.TLS
    assert server.requests == 0


# -- proxy ---------------------------------------------------------------------------------------


def test_refused_proxy_is_proxy_not_connect(server):
    proxies = {"http": f"http://127.0.0.1:{closed_port()}"}
    with pytest.raises(requests.exceptions.ProxyError) as exc_info:
        requests.get(server.url("/"), proxies=proxies, timeout=TIMEOUT)
    # The chain also holds the ConnectionRefusedError: proxy must win over connect.
    assert any(isinstance(link, ConnectionRefusedError) for link in iter_chain(exc_info.value))
    kind, _ = kind_and_message(exc_info.value)
    assert kind is ErrorKind.PROXY
    assert server.requests == 0


def test_proxy_that_never_accepts_is_proxy_not_connect_timeout(server):
    with full_backlog() as proxy, pytest.raises(requests.exceptions.ProxyError) as exc_info:
        requests.get(server.url("/"), proxies={"http": proxy}, timeout=(0.3, 5))
    kind, _ = kind_and_message(exc_info.value)
    assert kind is ErrorKind.PROXY


# -- protocol, too_many_redirects, invalid_url ---------------------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(respond(HEAD_100K + b"x" * 1000, end="reset"), id="reset-mid-body"),
        pytest.param(respond(HEAD_100K + b"x" * 1000, end="close"), id="truncated-body"),
    ],
)
def test_broken_body_is_protocol(behaviour):
    with FaultServer(behaviour) as fault:
        with requests.get(fault.url(), timeout=TIMEOUT, stream=True) as response:
            with pytest.raises(requests.exceptions.ChunkedEncodingError) as exc_info:
                response.content  # noqa: B018 - reading the body is the point
    kind, _ = kind_and_message(exc_info.value)
    assert kind is ErrorKind.PROTOCOL


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(respond(b"GARBAGE\r\n\r\n"), id="garbage-status-line"),
        pytest.param(respond(b"HTTP/1.1 abc OK\r\n\r\n"), id="bad-status-code"),
        pytest.param(respond(b"", end="close"), id="closed-without-response"),
        pytest.param(respond(b"", end="reset"), id="reset-without-response"),
    ],
)
def test_broken_response_is_protocol_not_connect(behaviour):
    # requests raises the same generic ConnectionError as for a refused connection.
    with FaultServer(behaviour) as fault, pytest.raises(requests.ConnectionError) as exc_info:
        requests.get(fault.url(), timeout=TIMEOUT)
    assert type(exc_info.value) is requests.ConnectionError
    kind, _ = kind_and_message(exc_info.value)
    assert kind is ErrorKind.PROTOCOL


def test_redirect_loop_is_too_many_redirects(server):
    with requests.Session() as session:
        session.max_redirects = 3
        with pytest.raises(requests.TooManyRedirects) as exc_info:
            session.get(server.url("/redirect-loop"), timeout=TIMEOUT)
    kind, message = kind_and_message(exc_info.value)
    assert kind is ErrorKind.TOO_MANY_REDIRECTS
    assert "3" in message
    assert server.requests == 4


@pytest.mark.parametrize(
    "url",
    [
        "http://" + "a" * 64 + ".test/",  # a DNS label longer than 63: refused before resolving
        "127.0.0.1/no-scheme",
        "ftp://127.0.0.1/",
        "http://",
    ],
)
def test_urls_requests_refuses_are_invalid_url(url, monkeypatch):
    def getaddrinfo(*args, **kwargs):
        raise AssertionError("an invalid URL must not be resolved")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    # The long label escapes requests unwrapped, as urllib3's LocationParseError (a ValueError).
    with pytest.raises((requests.RequestException, urllib3.exceptions.LocationValueError)) as info:
        requests.get(url, timeout=TIMEOUT)
    kind, _ = kind_and_message(info.value)
    assert kind is ErrorKind.INVALID_URL


# -- other, FetchError ---------------------------------------------------------------------------


def test_unknown_exception_is_other():
    assert classify(ValueError("plain")) is ErrorKind.OTHER
    assert describe(ValueError("plain")) == "plain"
    assert classify(KeyboardInterrupt()) is ErrorKind.OTHER


def test_exception_without_text_is_described_by_its_type():
    assert describe(RuntimeError()) == "RuntimeError"


def test_message_is_one_line():
    assert describe(ValueError("two\nlines  and\tspaces")) == "two lines and spaces"


def test_fetch_error_carries_its_kind():
    assert classify(FetchError("body too large", ErrorKind.TOO_LARGE)) is ErrorKind.TOO_LARGE
    assert classify(FetchError("something")) is ErrorKind.OTHER
    assert describe(FetchError("body too large", ErrorKind.TOO_LARGE)) == "body too large"


def test_fetch_error_wins_over_the_requests_chain_it_wraps():
    with FaultServer(silent) as fault, pytest.raises(FetchError) as exc_info:
        try:
            requests.get(fault.url(), timeout=(2, 0.3))
        except requests.ReadTimeout as exc:
            raise FetchError("took longer than --max-time", ErrorKind.MAX_TIME) from exc
    assert any(isinstance(link, requests.ReadTimeout) for link in iter_chain(exc_info.value))
    assert classify(exc_info.value) is ErrorKind.MAX_TIME


def test_fetch_error_inside_a_chain_still_decides():
    try:
        try:
            raise FetchError("disk full", ErrorKind.IO)
        except FetchError as inner:
            raise RuntimeError("while saving") from inner
    except RuntimeError as outer:
        assert classify(outer) is ErrorKind.IO


def test_cyclic_chain_terminates():
    first, second = ValueError("first"), ValueError("second")
    first.__context__ = second
    second.__context__ = first
    assert classify(first) is ErrorKind.OTHER
    assert describe(first) in ("first", "second")
    assert len(list(iter_chain(first))) == 2
