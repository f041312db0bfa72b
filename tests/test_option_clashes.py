"""Options given together (s26 h1 2, 4, 5, 6, 8, 9): a header given twice sends both values,
a cookie given twice is refused; an option beside one that makes it do nothing is a usage
error; -o=DIR and -o given twice are refused; the option names other tools use get a hint;
the messages name the variable a value came from."""

from __future__ import annotations

import pytest

from tests.conftest import invoke
from tests.servers import counting_server


def assert_refused(result, says: str, server, secret: str | None = None) -> None:
    """Exit 2, one "Error:" line saying says, no request sent, the secret nowhere."""
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert server.requests == 0
    if secret is not None:
        assert secret not in result.output


def header(server, name: str) -> str | None:
    """The first request's header name, in any case."""
    found = {key.lower(): value for key, value in server.headers_seen[0].items()}
    return found.get(name.lower())


# -- a header or a cookie given twice ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "name", "sent"),
    [
        (["-H", "Cache-Control: no-cache", "-H", "cache-control: max-age=0"], "Cache-Control",
         "no-cache, max-age=0"),
        (["-H", "Accept: a", "-H", "accept: b"], "Accept", "a, b"),
        (["-H", "Via: 1", "-H", "X-B: 0", "-H", "Via: 2", "-H", "VIA: 3"], "Via", "1, 2, 3"),
        (["-H", "If-None-Match: \"a\"", "-H", "If-None-Match: \"b\""], "If-None-Match",
         '"a", "b"'),
        (["-H", "Cookie: a=1", "-H", "cookie: b=2"], "Cookie", "a=1; b=2"),
        (["-H", "X-A: 1", "-H", "X-A:"], "X-A", None),
        (["-H", "X-A:", "-H", "X-A: 2"], "X-A", "2"),
        (["-H", "X-A: 1", "-H", "X-A:", "-H", "X-A: 3"], "X-A", "3"),
        (["-H", "Host: a.test", "-H", "Host:", "-H", "Host: b.test"], "Host", "b.test"),
    ],
)  # fmt: skip
def test_a_header_given_twice_sends_both_values_in_one_field(server, args, name, sent):
    result = invoke(["-q", *args, server.url("/x")])
    assert result.exit_code == 0, result.output
    assert header(server, name) == sent


def test_a_header_given_twice_in_its_variable_sends_both_values(server):
    value = "X-Forwarded-For: 1.1.1.1\nX-Forwarded-For: 2.2.2.2"
    result = invoke(["-q", server.url("/x")], FETCHER_HEADER=value)
    assert result.exit_code == 0, result.output
    assert header(server, "X-Forwarded-For") == "1.1.1.1, 2.2.2.2"


@pytest.mark.parametrize(
    "name",
    ["Host", "Authorization", "Proxy-Authorization", "Content-Type", "User-Agent", "Range",
     "If-Modified-Since", "Referer", "Origin", "X-A"],
)  # fmt: skip
def test_a_one_value_header_given_twice_is_refused_naming_it_not_its_values(server, name):
    """Host: a.example, b.example and Authorization: Bearer A, Bearer B went out: fields no
    server reads as one value (s26 r3 1). Only list fields are joined."""
    args = ["-q", "-H", f"{name}: secret-1", "-H", f"{name.lower()}: secret-2", server.url("/x")]
    says = f"-H '{name}' given twice: a server reads one value; give it once"
    assert_refused(invoke(args), says, server, secret="secret-")


def test_a_one_value_header_twice_in_its_variable_names_it(server):
    value = "Authorization: Bearer secret-1\nAuthorization: Bearer secret-2"
    result = invoke(["-q", server.url("/x")], FETCHER_HEADER=value)
    assert_refused(
        result, "-H 'Authorization' given twice (from FETCHER_HEADER)", server, "secret-"
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["-H", "Cookie: sid=secret-1", "-H", "cookie: a=1; sid=secret-2"], {}),
        (["-b", "a=1; sid=secret-1", "-b", "sid=secret-2"], {}),
    ],
)
def test_a_cookie_given_twice_by_two_options_is_refused(server, args, env):
    """-b sid=A -b sid=B was refused, and -H 'Cookie: sid=A' -H 'Cookie: sid=B' sent both
    (s26 r3 7)."""
    assert_refused(invoke(["-q", *args, server.url("/x")], **env), "'sid'", server, "secret-")


@pytest.mark.parametrize(
    "args",
    [["-H", "Cookie: JSESSIONID=a; theme=dark; JSESSIONID=b"], ["-b", "_ga=1; sid=x; _ga=2"]],
)
def test_one_cookie_value_naming_a_cookie_twice_is_sent_as_given(server, args):
    """A browser's "Copy as cURL" holds one name twice where cookies of one name were set on
    several paths (RFC 6265 5.4: the most specific first, the one a server reads): refused by
    9364da5, sent as given by curl (s26 r6 3)."""
    result = invoke(["-q", *args, server.url("/x")])
    assert result.exit_code == 0, result.output
    assert header(server, "Cookie") == args[1].removeprefix("Cookie: ")


def test_a_cookie_given_twice_in_fetcher_cookie_names_the_variable(server):
    result = invoke(["-q", server.url("/x")], FETCHER_COOKIE="sid=secret-1\nsid=secret-2")
    assert_refused(result, "'sid' given twice (from FETCHER_COOKIE)", server, "secret-")


def test_a_cookie_header_replaces_the_b_cookies(server):
    result = invoke(["-q", "-H", "Cookie: a=1", "-b", "b=2", server.url("/x")])
    assert result.exit_code == 0, result.output
    assert header(server, "Cookie") == "a=1"


def test_a_cookie_given_twice_is_refused_naming_it_and_not_its_value(server):
    result = invoke(["-q", "-b", "a=secret-1", "-b", "a=secret-2", server.url("/x")])
    assert_refused(result, "'a'", server, secret="secret-")


def test_two_cookies_of_two_names_are_both_sent(server):
    result = invoke(["-q", "-b", "a=1", "-b", "b=2", server.url("/x")])
    assert result.exit_code == 0, result.output
    assert header(server, "Cookie") == "a=1; b=2"


# -- an option that another makes do nothing ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["-I", "--body"], {}, "--body"),
        (["-I", "--include-body", "--format", "jsonl"], {}, "--include-body"),
        ([], {"FETCHER_BODY": "1", "FETCHER_HEAD": "1"}, "-I (from FETCHER_HEAD)"),
        (["-R"], {}, "-R"),
        (["--no-follow", "--max-redirects", "3"], {}, "--max-redirects"),
        ([], {"FETCHER_MAX_REDIRECTS": "3", "FETCHER_NO_FOLLOW": "1"},
         "--no-follow (from FETCHER_NO_FOLLOW)"),
        (["--body", "--format", "jsonl"], {}, "--format"),
        ([], {"FETCHER_BODY": "1", "FETCHER_FORMAT": "csv"}, "--format csv (from FETCHER_FORMAT)"),
        (["--ok-status", "200", "--retry-on", "302"], {}, "--no-follow"),
        (["--ok-status", "200-299", "--retry-on", "300"], {}, "--no-follow"),
        (["--body", "--include-body", "--format", "jsonl"], {}, "--include-body puts"),
        (["--body", "--include-body"], {}, "--include-body puts"),
    ],
)  # fmt: skip
def test_an_option_that_would_do_nothing_is_refused(server, tmp_path, monkeypatch, args, env, says):
    monkeypatch.chdir(tmp_path)
    assert_refused(invoke(["-q", *args, server.url("/x")], **env), says, server)


@pytest.mark.parametrize(
    "args",
    [
        ["-R", "-o", "dl"],
        ["--max-redirects", "3"],
        ["--no-follow"],
        ["--body", "--format", "jsonl", "--results", "r.jsonl"],
        ["--body", "--ordered"],
        ["--ok-status", "200", "--retry-on", "302", "--no-follow"],
        ["--format", "jsonl"],
    ],
)
def test_the_same_options_where_they_do_something_are_accepted(server, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", *args, server.url("/x")])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "env", "variable"),
    [
        (["--body"], {"FETCHER_FORMAT": "jsonl"}, "FETCHER_FORMAT"),
        (["--format", "jsonl"], {"FETCHER_BODY": "1"}, "FETCHER_BODY"),
        ([], {"FETCHER_REMOTE_TIME": "1"}, "FETCHER_REMOTE_TIME"),
        (["--no-follow"], {"FETCHER_MAX_REDIRECTS": "5"}, "FETCHER_MAX_REDIRECTS"),
        (["--max-redirects", "3"], {"FETCHER_NO_FOLLOW": "1"}, "FETCHER_NO_FOLLOW"),
        (["-I"], {"FETCHER_INCLUDE_BODY": "1", "FETCHER_FORMAT": "jsonl"}, "FETCHER_INCLUDE_BODY"),
        (["--body"], {"FETCHER_HEAD": "1"}, "FETCHER_HEAD"),
        ([], {"FETCHER_OK_STATUS": "200-299", "FETCHER_RETRY_ON": "301,429"}, "FETCHER_RETRY_ON"),
        # s29 t3 5: with the default ok statuses a 3xx is ok too, and was refused as such
        ([], {"FETCHER_RETRY_ON": "302"}, "FETCHER_RETRY_ON"),
        ([], {"FETCHER_RETRY_ON": "301,500"}, "FETCHER_RETRY_ON"),
        # s37 t2 3: a profile's variable for an option that needs another refused every run
        # without that other, where the docs say a profile's default never refuses a run
        ([], {"FETCHER_REMOTE_HEADER_NAME": "1"}, "FETCHER_REMOTE_HEADER_NAME"),
        ([], {"FETCHER_METRICS_LABEL": "host=web1"}, "FETCHER_METRICS_LABEL"),
        ([], {"FETCHER_INCLUDE_BODY": "1"}, "FETCHER_INCLUDE_BODY"),
        (["--format", "csv"], {"FETCHER_INCLUDE_BODY": "1"}, "FETCHER_INCLUDE_BODY"),
        ([], {"FETCHER_CONTINUE": "1"}, "FETCHER_CONTINUE"),
        ([], {"FETCHER_SKIP_FRESH": "6h"}, "FETCHER_SKIP_FRESH"),
        ([], {"FETCHER_RETRY_FAILED": "1"}, "FETCHER_RETRY_FAILED"),
        ([], {"FETCHER_KEY": "/etc/hostname"}, "FETCHER_KEY"),
        # s37 r3 5: a typed option that makes the variable's do nothing wins
        (["--body"], {"FETCHER_CONTINUE": "1", "FETCHER_STATE": "s.db", "FETCHER_OUTPUT_DIR": "o"},
         "FETCHER_CONTINUE"),
        (["-H", "Range: bytes=0-1"], {"FETCHER_CONTINUE": "1", "FETCHER_STATE": "s.db",
                                      "FETCHER_OUTPUT_DIR": "o"}, "FETCHER_CONTINUE"),
        (["--processes", "2"], {"FETCHER_INCLUDE_BODY": "1", "FETCHER_FORMAT": "jsonl"},
         "FETCHER_INCLUDE_BODY"),
        ([], {"FETCHER_RETRY_FAILED": "1", "FETCHER_STATE": "s.db"}, "FETCHER_RETRY_FAILED"),
    ],
)  # fmt: skip
def test_a_variable_that_a_typed_option_makes_do_nothing_is_said_and_ignored(
    httpserver, tmp_path, monkeypatch, args, env, variable
):
    """A profile's FETCHER_FORMAT refused every --body run, FETCHER_REMOTE_TIME every run
    without -o (s26 r3 2): the typed option stands, and one line says the variable is not
    followed."""
    monkeypatch.chdir(tmp_path)
    httpserver.expect_request("/x").respond_with_data("x")  # any method: -I sends HEAD
    result = invoke([*args, httpserver.url_for("/x")], **env)
    assert result.exit_code == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if variable in line]
    assert len(said) == 1 and "not followed" in said[0], result.stderr
    assert len(httpserver.log) == 1


@pytest.mark.parametrize(
    ("env", "field", "default"),
    [
        ({"FETCHER_KEY": "/etc/hostname"}, "client_cert", None),
        ({"FETCHER_INCLUDE_BODY": "1"}, "include_body", False),
        ({"FETCHER_METRICS_LABEL": "host=web1"}, "metrics_labels", ()),
        ({"FETCHER_CONTINUE": "1"}, "resume", False),
        ({"FETCHER_SKIP_FRESH": "6h"}, "skip_fresh", None),
        ({"FETCHER_RETRY_FAILED": "1"}, "retry_failed", False),
        ({"FETCHER_REMOTE_HEADER_NAME": "1"}, "remote_header_name", False),
    ],
)
def test_a_variable_not_followed_takes_no_effect(monkeypatch, env, field, default):
    """s37 r2 2: the variable was said not followed, but dropped from a copy of the options:
    the run's settings kept it (FETCHER_KEY without --cert made every https URL fail 'other',
    FETCHER_RETRY_FAILED turned off the checks of a cron line's empty variable)."""
    from fetcher.cli import main
    from fetcher.options import build_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with main.make_context("fetcher", ["http://127.0.0.1:9/"]) as context:
        params = dict(context.params)
        urls = params.pop("urls")
        settings = build_settings(tuple(urls), params)
    assert getattr(settings, field) == default


def test_a_retry_failed_variable_not_followed_leaves_the_cron_checks_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(["--results", "example.org/feed.xml"], input=b"", FETCHER_RETRY_FAILED="1")
    assert result.exit_code == 2 and "looks like a URL" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_typed_option_is_the_one_that_stands(server):
    result = invoke(["-q", "--body", server.url("/x")], FETCHER_HEAD="1", FETCHER_FORMAT="jsonl")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "body of /x\n"
    result = invoke(["-q", "--format", "jsonl", server.url("/y")], FETCHER_BODY="1")
    assert result.exit_code == 0 and '"status": 200' in result.stdout, result.stderr


def test_q_keeps_the_line_about_a_variable_not_followed_off_stderr(server):
    result = invoke(["-q", "--body", server.url("/x")], FETCHER_FORMAT="jsonl")
    assert result.exit_code == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize("status", [304, 305, 306, 399])
def test_a_3xx_never_followed_can_be_retried(status):
    """--retry-on 300 under --ok-status 200-299 was refused as "a redirect followed", but a
    300 without Location is the answer, and 304-306, 399 are never followed (s26 r3 8)."""
    with counting_server(lambda path: (status, {}, b"", 0.0)) as server:
        args = ["-q", "--ok-status", "200-299", "--retry-on", str(status), "--retries", "1"]
        result = invoke([*args, "--backoff", "0", server.url("/x")])
        assert result.exit_code != 2, result.stderr
        assert server.requests == 2


# -- a short option glued to '=', -o given twice -------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-o=dl"], "-o=dl: a short option's value follows it without '=' (-o dl)"),
        (["-c=jar.txt"], "-c=jar.txt: a short option's value follows it without '=' (-c jar.txt)"),
        (["-j=4"], "-j=4: a short option's value follows it without '=' (-j 4)"),
        (["-u=bob:pw-secret"], "-u=…: a short option's value follows it without '=' (-u VALUE)"),
        (["-x=http://127.0.0.1:3128"], "-x=…: a short option's value follows it without '='"),
        (["-H=X-A: 1"], "-H=…"),
        (["-so=dl"], "-so=dl: a short option's value follows it without '=' (-so dl)"),
        (["-su=bob:pw-secret"], "-su=…: a short option's value follows it without '=' (-su VALUE)"),
        (["-sH=X-A: 1"], "-sH=…"),
        (["-sSx=http://127.0.0.1:3128"], "-sSx=…"),
    ],
)  # fmt: skip
def test_a_short_option_glued_to_an_equals_sign_is_refused(
    server, tmp_path, monkeypatch, args, says
):
    monkeypatch.chdir(tmp_path)
    assert_refused(invoke(["-q", *args, server.url("/x")]), says, server, secret="pw-secret")
    assert sorted(tmp_path.iterdir()) == []


def test_a_long_option_with_an_equals_sign_and_a_value_with_one_are_kept(
    server, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", "--output-dir=dl", "-A", "-o=x", "-b", "a==b", server.url("/x")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dl").is_dir()


@pytest.mark.parametrize(
    ("args", "agent"),
    [(["-sA", "-o=1"], "-o=1"), (["-sA", "-json"], "-json"), (["-A", "-x", "-sA", "-o=1"], "-o=1")],
)
def test_the_value_after_a_cluster_ending_in_a_valued_option_is_its_value(server, args, agent):
    """-sd -o=1 sends the body '-o=1', as -d -o=1 does: it was refused as -o=... (s26 r3 5)."""
    result = invoke(["-q", *args, server.url("/x")])
    assert result.exit_code == 0, result.stderr
    assert header(server, "User-Agent") == agent


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "a/", "-o", "b/"],
        ["-o", "a/", "--output-dir", "b/"],
        ["--output-dir=a/", "-ob/"],
        ["-sSo", "a/", "-o", "b/"],
    ],
)
def test_o_given_twice_is_refused(server, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    assert_refused(invoke([*args, server.url("/x")]), "-o given twice", server)


def test_o_typed_beside_its_variable_is_not_twice(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", "-o", "a/", server.url("/x")], FETCHER_OUTPUT_DIR="b/")
    assert result.exit_code == 0, result.output


# -- other tools' option names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("--concurrency", "-j N"),
        ("--threads", "-j N"),
        ("--jobs", "-j N"),
        ("--resume", "--continue"),
        ("--ca-bundle", "--cacert"),
        ("--out", "-o DIR"),
        ("--show-headers", "--format jsonl"),
        ("--ssl", "no equal"),
    ],
)
def test_other_tools_option_names_get_what_to_use(server, option, says):
    result = invoke([option, "x", server.url("/x")])
    assert_refused(result, option, server)
    assert says in result.stderr and "Did you mean" not in result.stderr


# -- the messages name the variable -------------------------------------------------------------


def test_data_from_stdin_beside_fetcher_input_names_the_variable(server):
    result = invoke(["-q", "-d", "@-", server.url("/x")], input="", FETCHER_INPUT="-")
    assert_refused(result, "-i - (from FETCHER_INPUT)", server)


def test_fetcher_data_from_stdin_beside_i_names_the_variable(server):
    result = invoke(["-q", "-i", "-"], input=server.url("/x"), FETCHER_DATA="@-")
    assert_refused(result, "-d @- (from FETCHER_DATA)", server)


@pytest.mark.parametrize("value", ["-", "out.html", "http://example.com/"])
def test_an_output_dir_from_the_variable_is_named_so(server, tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", server.url("/x")], FETCHER_OUTPUT_DIR=value)
    assert_refused(result, "(from FETCHER_OUTPUT_DIR)", server)


def test_an_output_dir_that_is_a_file_from_the_variable_is_named_so(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain").write_text("")
    result = invoke(["-q", server.url("/x")], FETCHER_OUTPUT_DIR="plain")
    assert_refused(result, "(from FETCHER_OUTPUT_DIR)", server)
