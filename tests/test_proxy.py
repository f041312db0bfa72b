"""Proxies through a real forward proxy on 127.0.0.1: -x, the *_PROXY variables and NO_PROXY,
CONNECT tunnels for https, unreachable proxies, proxy credentials (sent, and never printed)
and a proxy that answers 407.
"""

import json
import logging

import pytest

from tests.conftest import invoke
from tests.servers import HostsResolver, closed_port, counting_server, full_backlog
from tests.tls_proxy_servers import (
    basic,
    forward_proxy,
    https_server,
    make_certificates,
)

SECRET = "ppass"
SECRET_BASIC = basic("puser", SECRET).removeprefix("Basic ")


@pytest.fixture(autouse=True)
def restore_logging():
    """-v and -vv point the root logger at the runner's stderr; put it back afterwards."""
    root, ours = logging.getLogger(), logging.getLogger("fetcher")
    handlers, root_level, our_level = root.handlers[:], root.level, ours.level
    yield
    root.handlers[:] = handlers
    root.setLevel(root_level)
    ours.setLevel(our_level)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def target():
    with counting_server() as running:
        yield running


@pytest.fixture
def tls_target(certs):
    with https_server(certs.server_context()) as running:
        yield running


@pytest.fixture
def proxy():
    with forward_proxy() as running:
        yield running


@pytest.fixture
def auth_proxy():
    with forward_proxy(("puser", SECRET)) as running:
        yield running


def fetch(url, *args, **env):
    """Run the command on one URL without retries; return (click result, its one record)."""
    result = invoke(["--format", "jsonl", "--retries", "0", *args, url], **env)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, (result.exit_code, result.stdout, result.stderr)
    return result, json.loads(lines[0])


def assert_ok(result, record):
    assert record["ok"] is True and record["status"] == 200 and record["error"] is None, record
    assert result.exit_code == 0, result.stderr


def assert_failed(result, record, kind, status=None):
    assert record["ok"] is False, record
    assert record["error"]["kind"] == kind, record
    assert record["status"] == status, record
    assert record["attempts"] == 1, record
    assert result.exit_code == 3, result.stderr


def dead_proxy():
    return f"http://127.0.0.1:{closed_port()}"


# -- plain http through the proxy ----------------------------------------------------------------


def test_no_proxy_applies_to_the_proxy_option_as_in_curl(proxy, target):
    result, record = fetch(target.url("/direct"), "-x", proxy.url, NO_PROXY="127.0.0.1")
    assert_ok(result, record)
    assert proxy.request_lines == []
    assert target.paths == ["/direct"]


def test_proxy_option_forwards_http(proxy, target):
    url = target.url("/via-x")
    result, record = fetch(url, "-x", proxy.url)

    assert_ok(result, record)
    assert record["bytes"] == len(b"body of /via-x\n")
    assert proxy.request_lines == [f"GET {url} HTTP/1.1"]  # absolute URI: a proxy request
    assert target.paths == ["/via-x"]
    assert proxy.proxy_authorizations == [None]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_http_proxy_variable_is_honoured(proxy, target, variable):
    url = target.url("/via-env")
    result, record = fetch(url, **{variable: proxy.url})

    assert_ok(result, record)
    assert proxy.request_lines == [f"GET {url} HTTP/1.1"]
    assert target.paths == ["/via-env"]


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "127.0.0.0/8"])
def test_no_proxy_bypasses_the_proxy_variable(proxy, target, no_proxy):
    result, record = fetch(target.url("/direct"), HTTP_PROXY=proxy.url, NO_PROXY=no_proxy)

    assert_ok(result, record)
    assert proxy.request_lines == []
    assert target.paths == ["/direct"]


def test_proxy_option_wins_over_the_variable(proxy, target):
    url = target.url("/x-wins")
    result, record = fetch(url, "-x", proxy.url, HTTP_PROXY=dead_proxy())

    assert_ok(result, record)
    assert proxy.request_lines == [f"GET {url} HTTP/1.1"]


def test_proxy_option_wins_for_https_urls_too(proxy, tls_target, certs):
    url = tls_target.url("/x-wins-tls")
    result, record = fetch(
        url, "--cacert", str(certs.ca_pem), "-x", proxy.url, HTTPS_PROXY=dead_proxy()
    )

    assert_ok(result, record)
    assert len(proxy.request_lines) == 1
    assert proxy.request_lines[0].startswith(f"CONNECT 127.0.0.1:{tls_target.port} ")


# -- https through a CONNECT tunnel --------------------------------------------------------------


def test_https_goes_through_a_connect_tunnel(proxy, tls_target, certs):
    result, record = fetch(
        tls_target.url("/tunnel"), "--cacert", str(certs.ca_pem), "-x", proxy.url
    )

    assert_ok(result, record)
    assert record["bytes"] == len(b"secure /tunnel\n")
    assert len(proxy.request_lines) == 1
    assert proxy.request_lines[0].startswith(f"CONNECT 127.0.0.1:{tls_target.port} ")
    assert tls_target.paths == ["/tunnel"]  # end to end: the proxy only saw the tunnel


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_https_proxy_variable_is_honoured(proxy, tls_target, certs, variable):
    url = tls_target.url("/tunnel-env")
    result, record = fetch(url, "--cacert", str(certs.ca_pem), **{variable: proxy.url})

    assert_ok(result, record)
    assert [line.split()[:2] for line in proxy.request_lines] == [
        ["CONNECT", f"127.0.0.1:{tls_target.port}"]
    ]
    assert tls_target.paths == ["/tunnel-env"]


def test_certificate_is_verified_through_the_tunnel(proxy, tls_target):
    """The tunnel carries TLS end to end: without --cacert the target's certificate is still
    checked, and the failure is the target's (tls), not the proxy's."""
    result, record = fetch(tls_target.url("/untrusted"), "-x", proxy.url)

    assert_failed(result, record, "tls")
    assert len(proxy.request_lines) == 1 and proxy.request_lines[0].startswith("CONNECT ")
    assert tls_target.paths == []


# -- unreachable proxy ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("how", ["option", "variable", "ALL_PROXY"])
def test_unreachable_proxy_is_kind_proxy(target, tls_target, scheme, how):
    """ALL_PROXY's failures were counted against the websites, and did not name the proxy:
    the proxy was looked up by the URL's scheme alone, not as requests chooses it (s37 t1 1)."""
    url = target.url("/unreached") if scheme == "http" else tls_target.url("/unreached")
    dead = dead_proxy()
    if how == "option":
        result, record = fetch(url, "-x", dead)
    elif how == "ALL_PROXY":
        result, record = fetch(url, ALL_PROXY=dead)
    else:
        result, record = fetch(url, **{f"{scheme.upper()}_PROXY": dead})

    assert_failed(result, record, "proxy")
    assert target.paths == [] and tls_target.paths == []
    # The proxy is named, and counted against, not the URL's host, never reached (s32 t2 7).
    proxy_host = dead.removeprefix("http://")
    assert record["error"]["message"].startswith(f"proxy {proxy_host}: "), record
    assert f"most failures: {proxy_host} (1)" in result.stderr, result.stderr


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_that_does_not_accept_in_time_names_the_connect_timeout(target, tls_target, scheme):
    """A proxy whose backlog is full: its record said 'proxy ...: timed out', naming neither
    the limit nor what was not done (s35 r2 6), where a website's says both."""
    url = target.url("/unreached") if scheme == "http" else tls_target.url("/unreached")
    with full_backlog() as proxy_url:
        result, record = fetch(url, "-x", proxy_url, "--connect-timeout", "0.5")
    assert_failed(result, record, "proxy")
    proxy_host = proxy_url.removeprefix("http://").rstrip("/")
    said = "timed out: no connection within --connect-timeout's 0.5 s"
    said = f"proxy {proxy_host}: {said}"
    assert record["error"]["message"] == said, record


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_whose_name_does_not_resolve_in_time_is_kind_proxy(target, tls_target, scheme):
    """The connect timeout's bound on a lookup said dns, where a proxy name not known at once
    is proxy: one proxy had two kinds by its resolver's speed (s29 r1 3)."""
    url = target.url("/unreached") if scheme == "http" else tls_target.url("/unreached")
    with HostsResolver({"proxy.test": ["127.0.0.1"]}, frozenset({"proxy.test"})):
        result, record = fetch(url, "-x", "http://proxy.test:9", "--connect-timeout", "0.3")
    assert_failed(result, record, "proxy")
    assert "proxy.test did not resolve in time" in record["error"]["message"], record


# -- credentials -----------------------------------------------------------------------------------


def assert_secret_not_printed(result):
    for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        assert SECRET not in text, f"the proxy password is on {stream}:\n{text}"
        assert SECRET_BASIC not in text, f"the Proxy-Authorization value is on {stream}:\n{text}"


@pytest.mark.parametrize("verbosity", [[], ["-v"], ["-vv"]])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_proxy_credentials_are_sent_and_never_printed(
    auth_proxy, target, tls_target, certs, scheme, verbosity
):
    url = target.url("/cred") if scheme == "http" else tls_target.url("/cred")
    proxy_url = f"http://puser:{SECRET}@127.0.0.1:{auth_proxy.port}"
    result, record = fetch(url, "--cacert", str(certs.ca_pem), "-x", proxy_url, *verbosity)

    assert_ok(result, record)
    assert auth_proxy.proxy_authorizations == [basic("puser", SECRET)]
    if verbosity == ["-vv"]:  # the secret is absent from a log that is really there
        assert "urllib3.connectionpool DEBUG Starting new HTTP" in result.stderr, result.stderr
    if verbosity:
        assert f"200 ok {url}" in result.stderr, result.stderr
    assert_secret_not_printed(result)


@pytest.mark.parametrize("fmt", ["text", "jsonl", "csv"])
@pytest.mark.parametrize("how", ["option", "variable"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_password_of_an_unreachable_proxy_is_not_printed(target, tls_target, scheme, how, fmt):
    url = target.url("/dead") if scheme == "http" else tls_target.url("/dead")
    dead = f"http://puser:{SECRET}@127.0.0.1:{closed_port()}"
    args = ["--format", fmt, "--retries", "0", "-vv", url]
    if how == "option":
        result = invoke(["-x", dead, *args])
    else:
        result = invoke(args, **{f"{scheme.upper()}_PROXY": dead})

    assert result.exit_code == 3, result.stderr
    assert "proxy" in result.stdout, result.stdout  # the kind, in every format
    assert_secret_not_printed(result)


def test_proxy_credentials_from_the_variable_are_sent(auth_proxy, tls_target, certs):
    proxy_url = f"http://puser:{SECRET}@127.0.0.1:{auth_proxy.port}"
    result, record = fetch(
        tls_target.url("/cred-env"), "--cacert", str(certs.ca_pem), "-vv", HTTPS_PROXY=proxy_url
    )

    assert_ok(result, record)
    assert auth_proxy.proxy_authorizations == [basic("puser", SECRET)]
    assert_secret_not_printed(result)


def test_407_for_an_https_url_is_kind_proxy(auth_proxy, tls_target, certs):
    """requests turns a refused CONNECT into a ProxyError: no response reaches the record."""
    proxy_url = f"http://puser:wrong-{SECRET}@127.0.0.1:{auth_proxy.port}"
    result, record = fetch(
        tls_target.url("/refused"), "--cacert", str(certs.ca_pem), "-x", proxy_url, "-vv"
    )

    assert_failed(result, record, "proxy")
    assert "407" in record["error"]["message"], record
    assert auth_proxy.proxy_authorizations == [basic("puser", f"wrong-{SECRET}")]
    assert tls_target.paths == []
    assert_secret_not_printed(result)


def test_407_for_an_http_url_is_a_failed_record(auth_proxy, target):
    """For a plain http URL the 407 is an ordinary response, relayed by the proxy itself."""
    result, record = fetch(target.url("/refused"), "-x", auth_proxy.url, "--retries", "2")

    assert record["ok"] is False and record["status"] == 407, record
    assert record["error"] is not None, record
    assert record["attempts"] == 1, record  # 407 is not in --retry-on: credentials won't change
    assert result.exit_code == 3
    assert auth_proxy.proxy_authorizations == [None]
    assert target.paths == []


def test_407_for_an_http_url_is_kind_proxy(auth_proxy, target):
    result, record = fetch(target.url("/refused"), "-x", auth_proxy.url)

    assert_failed(result, record, "proxy", status=407)


# -- malformed proxy URLs --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["http://a..b:1", "a..b:3128", "http://" + "a" * 64 + ".b:1"])
def test_a_proxy_whose_host_cannot_be_looked_up_is_a_usage_error(target, bad):
    result = invoke(["--format", "jsonl", "-x", bad, target.url("/never")])
    assert result.exit_code == 2 and "proxy" in result.stderr, (result.stdout, result.stderr)
    assert result.stdout == "" and target.paths == []


@pytest.mark.parametrize(
    ("variable", "bad"),
    [
        ("HTTP_PROXY", f"http://puser:{SECRET}@127.0.0.1:99999"),
        ("http_proxy", "socks5://127.0.0.1:1"),
        ("HTTP_PROXY", f"http://puser:{SECRET}@127.0.0.1:0"),  # urllib3: port 80 (s19 t1 D5)
        # s29 t3 4: hosts IDNA refuses made every record invalid_url, blaming the input
        ("HTTP_PROXY", f"http://puser:{SECRET}@a..b:1"),
        ("HTTP_PROXY", "http://" + "a" * 64 + ".example:1"),
        ("HTTP_PROXY", "http://.:1"),
    ],
)
def test_a_proxy_variable_that_cannot_be_used_is_a_usage_error_as_x_is(target, variable, bad):
    """It made every URL of the run an invalid_url or other record, as if the input were bad
    (s14 spec audit, 10): refused before anything is read, naming the variable, its password
    masked."""
    result = invoke(["--format", "jsonl", target.url("/never")], **{variable: bad})
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert variable in result.stderr and result.stdout == ""
    assert_secret_not_printed(result)
    assert target.paths == []


@pytest.mark.parametrize(
    "env",
    [{"ALL_PROXY": "socks5h://127.0.0.1:1", "NO_PROXY": "*"},
     {"http_proxy": "", "HTTP_PROXY": "socks5://127.0.0.1:1"}],
    ids=["no-proxy-star", "empty-lower-case-wins"],
)  # fmt: skip
def test_a_bad_proxy_variable_that_urllib_would_not_use_is_no_matter(target, env):
    """What requests would not use is not refused (s14 review, 4)."""
    result, record = fetch(target.url("/direct"), **env)
    assert_ok(result, record)


@pytest.mark.parametrize("all_name", ["all_proxy", "ALL_PROXY"])
@pytest.mark.parametrize("http_name", ["http_proxy", "HTTP_PROXY"])
def test_all_proxy_beside_both_scheme_proxies_is_never_used_so_never_refused(
    proxy, target, all_name, http_name
):
    """GNOME's and KDE's manual proxy settings export http_proxy, https_proxy and
    all_proxy=socks://...: requests takes a scheme's own proxy before all_proxy, so no request
    of a run (http or https) would use it, and refusing it stopped every run with exit 2 (s24
    h1 2). The run goes through the http proxy."""
    url = target.url("/desktop")
    env = {http_name: proxy.url, "https_proxy": proxy.url, all_name: "socks://127.0.0.1:1080/"}
    result, record = fetch(url, **env)

    assert_ok(result, record)
    assert proxy.request_lines == [f"GET {url} HTTP/1.1"]


@pytest.mark.parametrize(
    "env",
    [{"http_proxy": "http://127.0.0.1:1/"}, {"https_proxy": "http://127.0.0.1:1/"},
     {"http_proxy": "", "HTTP_PROXY": "http://127.0.0.1:1/", "https_proxy": "http://127.0.0.1:1/"}],
    ids=["http-only", "https-only", "http-emptied-in-lower-case"],
)  # fmt: skip
def test_all_proxy_that_one_scheme_would_use_is_still_refused(target, env):
    """With one scheme without a proxy of its own, its URLs would go to all_proxy: refused, as
    before, naming it (an empty lower-case http_proxy wins over HTTP_PROXY, and unsets it)."""
    result = invoke(
        ["--format", "jsonl", target.url("/never")], all_proxy="socks://127.0.0.1:1080/", **env
    )
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "all_proxy cannot be used" in result.stderr, result.stderr
    assert target.paths == []


@pytest.mark.parametrize("cgi", [False, True])
@pytest.mark.parametrize("bad", ["socks5://127.0.0.1:1080", "http://u:p/w@127.0.0.1:1"])
def test_the_bad_proxy_error_names_the_variable_whose_value_was_read(target, proxy, bad, cgi):
    """With HTTP_PROXY and http_proxy both set, urllib (and so requests) reads the lower-case
    one, and the error named whichever came first in os.environ: HTTP_PROXY here, which the
    user then edited in vain (s22 r2 4). It names http_proxy, under CGI (REQUEST_METHOD set,
    where HTTP_PROXY is never read) too."""
    env = {"HTTP_PROXY": proxy.url, "http_proxy": bad}  # in this order in os.environ
    if cgi:
        env["REQUEST_METHOD"] = "GET"
    result = invoke(["--format", "jsonl", target.url("/never")], **env)

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "http_proxy cannot be used" in result.stderr, result.stderr
    assert "HTTP_PROXY" not in result.stderr and target.paths == []


def test_a_bad_http_proxy_upper_case_is_no_matter_under_cgi(target):
    """Under CGI (REQUEST_METHOD set) urllib never reads HTTP_PROXY, which a client's 'Proxy:'
    header may have set (CVE-2016-1000110): nor does the check, and the run goes direct."""
    env = {"REQUEST_METHOD": "GET", "HTTP_PROXY": "socks5://127.0.0.1:1"}
    result, record = fetch(target.url("/direct"), **env)
    assert_ok(result, record)


def test_a_bad_proxy_variable_is_no_matter_under_x(proxy, target):
    """-x replaces the variables: a bad one is not read."""
    result, record = fetch(target.url("/via"), "-x", proxy.url, HTTP_PROXY="socks5://x:1")
    assert_ok(result, record)


@pytest.mark.parametrize("proxy_url", ["http://127.0.0.1:99999", "ftp://127.0.0.1:21", "http://"])
def test_malformed_proxy_option_is_a_usage_error(target, proxy_url):
    result = invoke(["--format", "jsonl", "--retries", "0", "-x", proxy_url, target.url("/never")])

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert target.paths == []


def test_part_of_a_malformed_proxy_password_is_not_printed(target):
    result = invoke(
        [
            "--format",
            "jsonl",
            "--retries",
            "0",
            "-vv",
            "-x",
            "http://puser:s3cr/et@127.0.0.1:1",
            target.url("/never"),
        ]
    )

    assert result.exit_code != 0
    assert "s3cr" not in result.stdout + result.stderr


def redirecting(path: str):
    """/hop redirects to /final on the same server; anything else as counting_server's."""
    if path == "/hop":
        return 302, {"Location": "/final"}, b"", 0.0
    return 200, {"Content-Type": "text/plain"}, f"body of {path}\n".encode(), 0.0


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_proxy_credentials_are_sent_utf8_encoded_as_u_s_are(proxy, tls_target, certs, scheme):
    """-x user:password went out Latin-1 encoded (requests' rule: 'café' as caf\\xe9, and
    anything beyond Latin-1 failed), where -u and a URL's credentials go out UTF-8, as curl
    sends what was typed (s17 h1): the same for a proxy, on a redirect's hop too."""
    import base64

    expected = "Basic " + base64.b64encode("bøb:café€".encode()).decode()
    proxy_url = f"http://b%C3%B8b:caf%C3%A9%E2%82%AC@127.0.0.1:{proxy.port}"
    with counting_server(redirecting) as target:
        url = target.url("/hop") if scheme == "http" else tls_target.url("/x")
        result, record = fetch(url, "--cacert", str(certs.ca_pem), "-x", proxy_url)
    assert_ok(result, record)
    sent = proxy.proxy_authorizations
    assert sent and all(value == expected for value in sent), sent
    assert len(sent) == (2 if scheme == "http" else 1)  # the redirect's hop has them too


# -- *_PROXY as curl reads it: no scheme is http://, a user name alone is Basic 'NAME:' -----------


@pytest.mark.parametrize(
    ("variable", "scheme"),
    [
        ("http_proxy", "http"),
        ("HTTPS_PROXY", "https"),
        ("ALL_PROXY", "http"),
        ("ALL_PROXY", "https"),
    ],
)
def test_a_proxy_variable_without_a_scheme_is_used_as_http(
    proxy, target, tls_target, certs, variable, scheme
):
    """'localhost:3128' (curl and wget take it as http://) passed the start-up check, read as
    -x reads it, then every URL was invalid_url: requests took 'localhost' for its scheme (s22
    h2 4). The run reads it as the check does: through it, as http://."""
    url = target.url("/bare") if scheme == "http" else tls_target.url("/bare")
    bare = f"localhost:{proxy.port}"
    result, record = fetch(url, "--cacert", str(certs.ca_pem), **{variable: bare})

    assert_ok(result, record)
    expected = f"GET {url} HTTP/1.1" if scheme == "http" else f"CONNECT 127.0.0.1:{tls_target.port}"
    assert len(proxy.request_lines) == 1 and proxy.request_lines[0].startswith(expected)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_credentials_of_a_proxy_variable_without_a_scheme_are_sent(
    auth_proxy, tls_target, certs, scheme
):
    """'puser:ppass@127.0.0.1:PORT': requests read 'puser' as the scheme (s22 h2 4); on a
    redirect's hop too (its proxies are decided again)."""
    with counting_server(redirecting) as target:
        url = target.url("/hop") if scheme == "http" else tls_target.url("/bare-cred")
        bare = f"puser:{SECRET}@127.0.0.1:{auth_proxy.port}"
        env = {"http_proxy": bare, "https_proxy": bare}
        result, record = fetch(url, "--cacert", str(certs.ca_pem), "-vv", **env)
    assert_ok(result, record)
    sent = auth_proxy.proxy_authorizations
    assert sent == [basic("puser", SECRET)] * (2 if scheme == "http" else 1), sent
    assert_secret_not_printed(result)


@pytest.mark.parametrize("variable", ["http_proxy", "HTTPS_PROXY", "ALL_PROXY"])
@pytest.mark.parametrize("cut", ["/", "?", "#"])
def test_a_proxy_variable_whose_password_ends_its_authority_is_never_quoted(target, variable, cut):
    """A '/', '?' or '#' in the password ends the authority: redact_url found no user info in
    what was left, and the usage error quoted the whole value, password and all (s22 h2 2).
    The error names the variable and what is wrong, as -x's does, and never the value."""
    value = f"http://puser:SEK{cut}RIT{SECRET}@127.0.0.1:1"
    result = invoke(["--format", "jsonl", target.url("/never")], **{variable: value})

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert variable in result.stderr and "malformed proxy URL" in result.stderr, result.stderr
    for part in ("SEK", "RIT", SECRET, "puser"):
        assert part not in result.stdout + result.stderr, result.stderr
    assert target.paths == []


def test_a_proxy_option_whose_password_ends_its_authority_is_refused(proxy, target):
    """'puser:12/SECRET@proxy': urllib3 found the host 'puser', port 12, and every request went
    there. An '@' after the end of a proxy URL's authority is a password typed raw: refused,
    with the %-escapes to write, and never quoted."""
    bad = f"http://puser:12/{SECRET}@127.0.0.1:{proxy.port}"
    result = invoke(["--format", "jsonl", "--retries", "0", "-x", bad, target.url("/never")])

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "%2F" in result.stderr and SECRET not in result.stdout + result.stderr
    assert proxy.request_lines == [] and target.paths == []


@pytest.mark.parametrize("how", ["option", "variable"])
def test_a_backslash_in_a_proxy_password_is_refused_as_a_slash_is(proxy, target, how):
    """urllib3's authority ends at a '\\' too: 'http://127.0.0.1:PORT\\SECRET@proxy.invalid'
    passed the check, and every request went to 127.0.0.1:PORT, a host taken from the user
    name (s22 r2 2). Refused as '/' is, with %5C among the escapes, never quoted."""
    bad = f"http://127.0.0.1:{proxy.port}\\{SECRET}@proxy.invalid:3128"
    given = ["-x", bad] if how == "option" else []
    env = {} if how == "option" else {"http_proxy": bad}
    result = invoke(["--format", "jsonl", "--retries", "0", *given, target.url("/never")], **env)

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "%5C" in result.stderr and "malformed proxy URL" in result.stderr, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert proxy.request_lines == [] and target.paths == []


@pytest.mark.parametrize("how", ["option", "variable"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_user_name_without_a_password_is_sent_with_an_empty_one(
    proxy, tls_target, certs, how, scheme
):
    """-x http://TOKEN@proxy sent no Proxy-Authorization; curl sends 'TOKEN:', as fetcher does
    for an origin URL's TOKEN@ (s22 h2 10): a proxy's API key as the user name. Sent on a
    redirect's hop too, and never printed."""
    token = "APIKEY-s22"
    proxy_url = f"http://{token}@127.0.0.1:{proxy.port}"
    given = ["-x", proxy_url] if how == "option" else []
    env = {} if how == "option" else {f"{scheme}_proxy": proxy_url}
    with counting_server(redirecting) as target:
        url = target.url("/hop") if scheme == "http" else tls_target.url("/token")
        result, record = fetch(url, "--cacert", str(certs.ca_pem), "-vv", *given, **env)
    assert_ok(result, record)
    sent = proxy.proxy_authorizations
    assert sent == [basic(token, "")] * (2 if scheme == "http" else 1), sent
    output = result.stdout + result.stderr
    assert token not in output and basic(token, "").removeprefix("Basic ") not in output


def test_a_proxy_url_with_an_empty_user_name_sends_no_credentials(proxy, target):
    """'http://@proxy' names nobody: no header, as curl sends none."""
    result, record = fetch(target.url("/nobody"), "-x", f"http://@127.0.0.1:{proxy.port}")
    assert_ok(result, record)
    assert proxy.proxy_authorizations == [None]
