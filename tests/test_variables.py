"""What a FETCHER_ variable's value may hold (s26 h1 1, 3, 7): quotes an env file kept
(docker --env-file), blanks around a path, a variable fetcher has no option for. Each is said
before anything is fetched, naming the variable and never a value that may be a secret."""

from __future__ import annotations

import pytest

from tests.conftest import invoke
from tests.test_option_clashes import assert_refused

QUOTES_KEPT = "an env file that keeps quotes (docker --env-file) passes them on; remove them"


@pytest.mark.parametrize(
    ("variable", "value", "secret"),
    [
        ("FETCHER_HEADER", "'Authorization: Bearer tok'", "tok"),
        ("FETCHER_HEADER", '"Authorization: Bearer tok"', "tok"),
        ("FETCHER_USER", "'bob:pw-secret'", "pw-secret"),
        ("FETCHER_COOKIE", "'session=cookie-secret'", "cookie-secret"),
        ("FETCHER_PROXY", "'http://u:proxy-secret@127.0.0.1:3128'", "proxy-secret"),
        ("FETCHER_OUTPUT_DIR", '"/srv/dl"', None),
        ("FETCHER_RESULTS", "'out.jsonl'", None),
        ("FETCHER_USER_AGENT", "'agent'", None),
        ("FETCHER_WORKERS", "'8'", None),
        ("FETCHER_HEAD", "'1'", None),
    ],
)
def test_a_value_in_quotes_from_a_variable_is_refused(
    server, tmp_path, monkeypatch, variable, value, secret
):
    monkeypatch.chdir(tmp_path)  # before the fix, '"/srv/dl"' and "'out.jsonl'" were made here
    result = invoke(["-q", server.url("/x")], **{variable: value})
    assert_refused(result, f"{variable}'s value is in quotes", server, secret)
    assert QUOTES_KEPT in result.stderr


def test_a_line_in_quotes_of_a_repeatable_option_s_variable_is_refused(server):
    result = invoke(["-q", server.url("/x")], FETCHER_HEADER="X-A: 1\n'Authorization: Bearer tok'")
    assert_refused(result, "line 2 of FETCHER_HEADER is in quotes ('…')", server, "tok")


def test_the_message_shows_which_quote_and_not_the_value(server):
    result = invoke(["-q", server.url("/x")], FETCHER_HEADER="'Authorization: Bearer tok'")
    assert "FETCHER_HEADER's value is in quotes ('…')" in result.stderr
    result = invoke(["-q", server.url("/x")], FETCHER_HEADER='"Authorization: Bearer tok"')
    assert 'FETCHER_HEADER\'s value is in quotes ("…")' in result.stderr


def test_a_json_string_in_fetcher_data_is_a_body(httpserver):
    httpserver.expect_request("/x", method="POST", data='"a json string"').respond_with_data("ok")
    result = invoke(["-q", httpserver.url_for("/x")], FETCHER_DATA='"a json string"')
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("value", ["'agent", "it's", "'a' and 'b'", "\"x'"])
def test_quotes_that_do_not_wrap_the_whole_value_are_kept(server, value):
    result = invoke(["-q", server.url("/x")], FETCHER_USER_AGENT=value)
    assert result.exit_code == 0, result.output
    assert server.headers_seen[0]["User-Agent"] == value


def test_a_typed_value_in_quotes_is_left_as_it_is(server):
    result = invoke(["-q", "-A", "'agent'", server.url("/x")])
    assert result.exit_code == 0, result.output
    assert server.headers_seen[0]["User-Agent"] == "'agent'"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FETCHER_OUTPUT_DIR", " "),
        ("FETCHER_OUTPUT_DIR", "out "),
        ("FETCHER_STATE", "s.db "),
        ("FETCHER_RESULTS", " r.txt"),
        ("FETCHER_FAILED", "f.txt\t"),
        ("FETCHER_SUMMARY", "s.json "),
        ("FETCHER_METRICS", "m.prom "),
        ("FETCHER_COOKIE_JAR", "jar.txt "),
        ("FETCHER_INPUT", "urls.txt "),
        ("FETCHER_CACERT", "ca.pem "),
    ],
)
def test_blanks_around_a_path_from_a_variable_are_refused(
    server, tmp_path, monkeypatch, variable, value
):
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", server.url("/x")], **{variable: value})
    assert_refused(result, variable, server)
    assert "blank" in result.stderr
    assert sorted(tmp_path.iterdir()) == []


def test_a_typed_path_with_a_blank_is_left_as_it_is(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", "--results", "r.txt ", server.url("/x")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.txt ").exists()


# -- a FETCHER_ variable that is no option's ----------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("FETCHER_OUTPUT", "FETCHER_OUTPUT_DIR"),
        ("FETCHER_RETRY", "FETCHER_RETRIES"),
        ("FETCHER_HEADERS", "FETCHER_HEADER"),
        ("FETCHER_COOKIES", "FETCHER_COOKIE"),
        ("FETCHER_WROKERS", "FETCHER_WORKERS"),
        ("FETCHER_quiet", "FETCHER_QUIET"),  # s37 t2 7: no guess for another case
        ("FETCHER_Output_Dir", "FETCHER_OUTPUT_DIR"),
    ],
)
def test_an_unknown_variable_is_said_once_even_under_q(server, variable, meant):
    result = invoke(["-q", server.url("/x")], **{variable: "1"})
    assert result.exit_code == 0, result.output
    line = f"fetcher: {variable} is not a fetcher variable and is ignored (did you mean {meant}?)"
    assert result.stderr.splitlines() == [line]


def test_an_unknown_variable_like_none_is_said_without_a_guess(server):
    result = invoke(["-q", server.url("/x")], FETCHER_ZZZZZZZZZZZZ="1")
    assert result.stderr.splitlines() == [
        "fetcher: FETCHER_ZZZZZZZZZZZZ is not a fetcher variable and is ignored"
    ]


def test_an_unknown_variable_s_name_is_shown_as_it_shows(server):
    """s31 t4 2: printed raw, an escape sequence in the name drove the terminal (a window
    title set by OSC 0) and a line break forged a line of a quiet cron job's stderr."""
    hostile = {"FETCHER_OUT\x1b]0;PWNED\x07PUT": "x", "FETCHER_X\nfetcher: 9 ok": "1"}
    result = invoke(["-q", server.url("/x")], **hostile)
    assert result.stderr.splitlines() == [
        "fetcher: FETCHER_OUT\\x1b]0;PWNED\\x07PUT is not a fetcher variable and is ignored",
        "fetcher: FETCHER_X\\nfetcher: 9 ok is not a fetcher variable and is ignored",
    ]


@pytest.mark.parametrize(
    "variable",
    ["FETCHER_SOAK_URLS", "FETCHER_STORM_RUNS", "FETCHER_HARD_STOP_PLANS", "FETCHER_SCALE",
     "FETCHER_GC_EXPERIMENT", "FETCHER_GC_EXPERIMENT_REPORT", "FETCHER_TRANSPORT_EXPERIMENT"],
)  # fmt: skip
def test_the_test_suite_s_and_bench_s_own_variables_are_not_warned_about(server, variable):
    result = invoke(["-q", server.url("/x")], **{variable: "1"})
    assert result.exit_code == 0 and result.stderr == ""


def test_the_option_variables_are_not_warned_about(server):
    result = invoke(["-q", server.url("/x")], FETCHER_RETRIES="0", FETCHER_HEADER="X-A: 1")
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FETCHER_HEAD", "Authorization: Bearer s3cretTOK"),  # meant for FETCHER_HEADER
        ("FETCHER_WORKERS", "s3cretTOK"),
        ("FETCHER_FORMAT", "s3cretTOK"),
        ("FETCHER_MAX_TIME", "x:s3cretTOK@h"),
        ("FETCHER_QUIET", "Cookie: sid=s3cretTOK"),
        ("FETCHER_OK_STATUS", " s3cretTOK "),  # s29 r2 7: stripped, or one of a list
        ("FETCHER_RETRY_ON", "s3cretTOK,1"),
        ("FETCHER_PROCESSES", " s3cretTOK"),
    ],
)
def test_a_variables_bad_value_is_not_quoted_back(server, variable, value):
    """Click quotes a bad value in its message: FETCHER_HEAD='Authorization: Bearer ...', a
    variable meant to be FETCHER_HEADER, put the token on stderr (s29 t3 3)."""
    result = invoke([server.url("/a")], **{variable: value})
    assert result.exit_code == 2, result.stderr
    assert variable in result.stderr and "s3cretTOK" not in result.stderr, result.stderr


def test_a_host_named_like_a_header_with_its_port_is_a_url(server):
    """cookie:8080/x is the host cookie, port 8080 (s29 r2 8): not refused as a header."""
    result = invoke(["--format", "jsonl", "--retries", "0", "-x", server.url(""), "cookie:8080/x"])
    assert result.exit_code != 2, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--head", "Authorization: Bearer s3cretTOK"],  # --head is -I: the header a URL
        ["Cookie: session=s3cretTOK"],  # -H forgotten
        ["proxy-authorization:Basic s3cretTOK"],
    ],
)
def test_a_credential_header_given_as_a_url_is_refused_unshown(server, args):
    """It was fetched as a URL: an invalid_url record and the summary showed the token (s29 t3
    3). A usage error names the header and says to give it with -H, its value not shown."""
    result = invoke([*args, server.url("/a")])
    assert result.exit_code == 2 and "-H" in result.stderr, result.stderr
    assert "s3cretTOK" not in result.stderr + result.stdout and server.paths == []


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("FETCHER_WORKERS", "48213377", "'…' is not in the range 1<=x<=1024"),
        ("FETCHER_TIMEOUT", "-4821337.5", "'…' is not in the range 0<x<=1000000000"),
        ("FETCHER_FORMAT", " jsonl", "'…' is not one of 'text', 'jsonl', 'csv'"),
        ("FETCHER_FORMAT", "csv ", "'…' is not one of 'text', 'jsonl', 'csv'"),
    ],
)
def test_a_variables_refused_value_is_masked_and_the_choices_are_not(
    server, variable, value, shown
):
    """s37 t2 4: a number out of range was shown whole, against usage.md; a value holding a
    choice word masked that word in the list of choices, the one that would fix it."""
    result = invoke([server.url("/a")], **{variable: value})
    assert result.exit_code == 2 and shown in result.stderr, result.stderr


def test_a_typed_value_out_of_range_is_shown_beside_a_variable_of_the_option(server):
    """s37 r2 7: the variable's value is masked, not a typed one's, though both are set."""
    result = invoke(["-j", "48213377", server.url("/a")], FETCHER_WORKERS="4")
    assert result.exit_code == 2 and "48213377 is not in the range" in result.stderr, result.stderr


def test_a_typed_bad_value_is_said_though_its_variable_is_in_quotes(server):
    """s37 r3 6: the variable's own complaint (in quotes) replaced the typed value's."""
    result = invoke(["-j", "48213377", server.url("/a")], FETCHER_WORKERS='"4"')
    assert result.exit_code == 2 and "48213377 is not in the range" in result.stderr, result.stderr
