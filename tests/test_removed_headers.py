"""A credential header removed with -H 'Name:' (or a jsonl line's null) is not sent at all, as
docs/usage.md ("Headers") promises: not Authorization from -u, a URL's user:pw@ or .netrc, not
Cookie from -b, the -c jar or an earlier Set-Cookie, not Proxy-Authorization from -x's
user:pw@; on a redirect's hop neither; and for that request only (s21 f1).
"""

import json

import pytest

from tests.conftest import invoke
from tests.servers import counting_server
from tests.tls_proxy_servers import forward_proxy, https_server, make_certificates


def route(path: str):
    """/hop redirects to /final on the same host; /set sets a cookie; the rest answer 200."""
    if path.startswith("/hop"):
        return 302, {"Location": "/final"}, b"", 0.0
    headers = {"Content-Type": "text/plain"}
    if path.startswith("/set"):
        headers["Set-Cookie"] = "served=yes; Path=/"
    return 200, headers, f"body of {path}\n".encode(), 0.0


@pytest.fixture
def server():
    with counting_server(route) as running:
        yield running


def sent(server, name: str) -> list[str | None]:
    """The value of header name in each request server saw, in order (None: not sent)."""
    return [
        next((v for k, v in headers.items() if k.lower() == name.lower()), None)
        for headers in server.headers_seen
    ]


def run(args: list[str], lines: list[dict] | None = None, **env: str):
    """Run with -j 1 (one session: cookies set are seen by the next URL) and no retries."""
    base = ["-j", "1", "--retries", "0", "--format", "jsonl"]
    if lines is None:
        result = invoke([*base, *args], **env)
    else:
        text = "".join(json.dumps(line) + "\n" for line in lines)
        result = invoke([*base, "--input-format", "jsonl", *args], input=text, **env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def netrc_env(tmp_path) -> dict[str, str]:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login nora password fromnetrc\n")
    netrc.chmod(0o600)
    return {"NETRC": str(netrc)}


@pytest.mark.parametrize("credentials", ["-u", "url", "netrc"])
@pytest.mark.parametrize("how", ["-H", "line"])
@pytest.mark.parametrize("path", ["/a", "/hop"])
def test_a_removed_authorization_sends_no_credentials(server, tmp_path, credentials, how, path):
    """-H 'Authorization:' sent -u's, the URL's and .netrc's credentials all the same: the
    header removed was not in the request when they were added. curl sends none."""
    url, args, env = server.url(path), [], {}
    if credentials == "-u":
        args = ["-u", "user:pw"]
    elif credentials == "url":
        url = url.replace("://", "://u:urlpw@")
    else:
        env = netrc_env(tmp_path)
    if how == "-H":
        run([*args, "-H", "Authorization:", url], **env)
    else:
        run(args, [{"url": url, "headers": {"Authorization": None}}], **env)
    assert server.paths == ([path] if path == "/a" else ["/hop", "/final"])
    assert sent(server, "Authorization") == [None] * len(server.paths)


@pytest.mark.parametrize("how", ["-H", "line"])
@pytest.mark.parametrize("path", ["/a", "/hop"])
def test_a_removed_cookie_sends_no_b_cookies(server, how, path):
    """-H 'Cookie:' sent -b's cookies all the same (requests added them from the jar)."""
    url = server.url(path)
    if how == "-H":
        run(["-b", "c=cmd", "-H", "Cookie:", url])
    else:
        run(["-b", "c=cmd"], [{"url": url, "headers": {"Cookie": None}}])
    assert sent(server, "Cookie") == [None] * len(server.paths)
    assert len(server.paths) == (1 if path == "/a" else 2)


@pytest.mark.parametrize("how", ["-H", "line"])
def test_a_removed_cookie_sends_no_jar_cookies_nor_a_servers(server, tmp_path, how):
    """Neither the -c file's cookies nor one an earlier answer set go out with Cookie removed;
    the server's new cookie is still kept (the jar is saved with it)."""
    jar = tmp_path / "jar"
    jar.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tfromjar\tj\n")
    urls = [server.url("/set"), server.url("/hop")]
    if how == "-H":
        run(["-c", str(jar), "-H", "Cookie:", *urls])
    else:
        lines = [{"url": url, "headers": {"Cookie": None}} for url in urls]
        run(["-c", str(jar)], lines)
    assert server.paths == ["/set", "/hop", "/final"]
    assert sent(server, "Cookie") == [None, None, None]
    assert "\tserved\tyes" in jar.read_text()


def test_a_line_removes_a_credential_header_for_its_own_request_only(server):
    """The lines before and after the one that removes Cookie and Authorization send theirs."""
    plain = {"url": server.url("/set")}
    removed = {"url": server.url("/hop"), "headers": {"Cookie": None, "Authorization": None}}
    run(["-u", "user:pw", "-b", "c=cmd"], [plain, removed, {"url": server.url("/after")}])
    assert server.paths == ["/set", "/hop", "/final", "/after"]
    cookies = sent(server, "Cookie")
    assert cookies[0] == "c=cmd" and cookies[1:3] == [None, None], cookies
    assert cookies[3] is not None and "c=cmd" in cookies[3] and "served=yes" in cookies[3]
    authorizations = sent(server, "Authorization")
    assert authorizations[1:3] == [None, None], authorizations
    assert authorizations[0] and authorizations[0] == authorizations[3], authorizations


def test_a_line_s_own_value_wins_over_a_run_s_removal(server):
    """-H 'Authorization:' for the run, a line's own token for its URL: the line's is sent."""
    lines = [{"url": server.url("/a"), "headers": {"Authorization": "Bearer T"}}]
    run(["-u", "user:pw", "-H", "Authorization:"], lines)
    assert sent(server, "Authorization") == ["Bearer T"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize("how", ["-H", "line"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_removed_proxy_authorization_sends_no_proxy_credentials(server, certs, scheme, how):
    """-x user:pw@ with -H 'Proxy-Authorization:': fetcher's -H applies to every request it
    sends, the proxy's included, so none goes out, on a redirect's hop neither (see
    docs/choices.md: curl's -H does not reach the proxy by default)."""
    with forward_proxy() as proxy, https_server(certs.server_context()) as tls:
        url = server.url("/hop") if scheme == "http" else tls.url("/x")
        proxy_url = f"http://puser:ppass@127.0.0.1:{proxy.port}"
        args = ["--cacert", str(certs.ca_pem), "-x", proxy_url]
        if how == "-H":
            run([*args, "-H", "Proxy-Authorization:", url])
        else:
            run(args, [{"url": url, "headers": {"Proxy-Authorization": None}}, {"url": url}])
    hops = 2 if scheme == "http" else 1
    expected = [None] * hops + ([] if how == "-H" else ["Basic cHVzZXI6cHBhc3M="] * hops)
    assert proxy.proxy_authorizations == expected
