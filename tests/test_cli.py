"""The command in process (CliRunner): input sources, record formats, output options, env vars."""

import csv
import io
import json
import os
import stat

import pytest

from fetcher import __version__
from fetcher.output.records import CSV_FIELDS
from tests.conftest import invoke
from tests.servers import closed_port, records

JSON_KEYS = {
    "url", "final_url", "ok", "status", "reason", "bytes", "elapsed", "attempts", "redirects",
    "content_type", "sha256", "path", "line", "error",
}  # fmt: skip


def test_jsonl_record_has_every_key(server):
    result = invoke(["--format", "jsonl", server.url("/a"), server.url("/status/404")])
    assert result.exit_code == 1
    by_url = {r["url"]: r for r in records(result.stdout)}
    good, bad = by_url[server.url("/a")], by_url[server.url("/status/404")]
    assert set(good) == JSON_KEYS
    assert good["ok"] is True and good["error"] is None and good["attempts"] == 1
    assert good["bytes"] == len(b"body of /a\n") and len(good["sha256"]) == 64
    assert good["content_type"] == "text/plain" and good["final_url"] == server.url("/a")
    assert bad["ok"] is False and bad["status"] == 404
    assert bad["error"] == {"kind": "http", "message": "404 Not Found"}


def test_text_format_columns(server):
    port = closed_port()
    result = invoke([server.url("/a"), f"http://127.0.0.1:{port}/"])
    lines = {line.split("\t")[3]: line.split("\t") for line in result.stdout.splitlines()}
    good = lines[server.url("/a")]
    assert good[0] == "200" and good[1] == str(len(b"body of /a\n")) and len(good) == 4
    float(good[2])
    bad = lines[f"http://127.0.0.1:{port}/"]
    assert bad[0] == "---" and len(bad) == 5 and bad[4].startswith("connect: ")


def test_csv_format_has_header_and_error_columns(server):
    result = invoke(["--format", "csv", server.url("/a"), server.url("/status/500")])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0].keys()) == CSV_FIELDS
    by_url = {row["url"]: row for row in rows}
    assert by_url[server.url("/status/500")]["error_kind"] == "http"
    assert by_url[server.url("/status/500")]["status"] == "500"
    assert by_url[server.url("/a")]["error_kind"] == "" and by_url[server.url("/a")]["ok"] == "true"


def test_stdin_is_read_implicitly_and_with_dash(server):
    for args in ([], ["-"], ["-i", "-"]):
        result = invoke(["--format", "jsonl", *args], input=server.url("/s") + "\n")
        assert [r["url"] for r in records(result.stdout)] == [server.url("/s")], args


def test_arguments_and_repeated_input_files(server, tmp_path):
    first, second = tmp_path / "one.txt", tmp_path / "two.txt"
    first.write_text(server.url("/1") + "\n")
    second.write_text("# only a comment\n" + server.url("/2") + "\n")
    result = invoke(
        ["--format", "jsonl", "--ordered", server.url("/0"), "-i", str(first), "-i", str(second)]
    )
    got = [(r["url"], r["line"]) for r in records(result.stdout)]
    assert got == [(server.url("/0"), None), (server.url("/1"), 1), (server.url("/2"), 2)]


def test_one_record_per_url_read_over_thousands_of_mixed_lines(server, tmp_path):
    port = closed_port()
    lines, expected = [], {}
    for n in range(3000):
        # The kind of line by n % 6, its variant by the round n // 6: n % 2 would be fixed by
        # the kind (n = 6k + 1 is always odd), and one variant would never occur.
        kind, variant = n % 6, (n // 6) % 2
        if kind == 0:
            line = server.url(f"/ok/{n}")
        elif kind == 1:
            line = server.url(f"/status/{404 if variant else 500}?n={n}")
        elif kind == 2:
            line = f"ftp://bad.test/{n}"
        elif kind == 3:
            line = f"http://127.0.0.1:{port}/{n}"
        elif kind == 4:
            line = "" if variant else f"# comment {n}"
        else:
            line = f"  {server.url(f'/spaced/{n}')}  \r"
        lines.append(line)
        if kind != 4:
            expected[n + 1] = line.strip()
    assert lines.count("") == 250 and sum(line.startswith("# ") for line in lines) == 250
    path = tmp_path / "mixed.txt"
    path.write_text("\n".join(lines) + "\n")
    result = invoke(["--format", "jsonl", "-j", "8", "--retries", "0", "-i", str(path)])
    got = records(result.stdout)
    assert len(got) == len(expected)
    assert {r["line"]: r["url"] for r in got} == expected
    kinds = {}
    for r in got:
        key = r["error"]["kind"] if r["error"] else "ok"
        kinds[key] = kinds.get(key, 0) + 1
    assert kinds == {"ok": 1000, "http": 500, "invalid_url": 500, "connect": 500}
    statuses = [r["status"] for r in got if r["error"] and r["error"]["kind"] == "http"]
    assert (statuses.count(404), statuses.count(500)) == (250, 250)
    assert result.exit_code == 1


def test_results_file_takes_the_records(server, tmp_path):
    out = tmp_path / "records.jsonl"
    result = invoke(["--format", "jsonl", "--results", str(out), server.url("/a")])
    assert result.stdout == ""
    assert records(out.read_text())[0]["url"] == server.url("/a")


def test_failed_file_has_verbatim_lines_and_mode_0600(server, tmp_path):
    failed = tmp_path / "failed.txt"
    source = tmp_path / "in.txt"
    bad_utf8 = b"http://x.test/\xff"
    source.write_bytes(
        b"  " + server.url("/status/404").encode() + b"  \r\n"
        + server.url("/ok").encode() + b"\n"
        + b"ftp://nope.test/\n" + bad_utf8 + b"\n"
    )  # fmt: skip
    result = invoke(["-i", str(source), "--failed", str(failed)])
    assert result.exit_code == 1
    assert stat.S_IMODE(os.stat(failed).st_mode) == 0o600
    assert sorted(failed.read_bytes().splitlines()) == sorted(
        [b"  " + server.url("/status/404").encode() + b"  ", b"ftp://nope.test/", bad_utf8]
    )


def test_failed_takes_no_argument_that_would_read_back_as_other_lines(server, tmp_path):
    """An argument is written to --failed as a line, so that ``fetcher -i FILE`` retries it.
    One with a line break inside read back as two URLs nobody listed (fetched, ok); a blank
    one, or one starting with '#', read back as nothing, and its failure left the loop with
    exit 0 (s16 h1 F14). Such arguments are not written, and stderr says so; every other
    failure is."""
    failed = tmp_path / "failed.txt"
    missing = server.url("/status/404")
    odd = ["", "   ", "#frag", server.url("/ok") + "\n" + server.url("/ok")]
    result = invoke(["--failed", str(failed), *odd, missing])
    assert result.exit_code == 3  # all failed
    assert len(records(invoke(["--format", "jsonl", *odd]).stdout)) == len(odd)  # each failed
    assert failed.read_text() == missing + "\n"
    assert "--failed: 4 command-line arguments not written" in result.stderr, result.stderr


def test_failed_takes_no_argument_that_unicode_blanks_or_a_bom_would_change(server, tmp_path):
    """The reader strips Unicode blanks and drops a byte-order mark at a line's start: an
    argument after a BOM was read back as another URL (fetched, ok), one of U+3000 or
    NBSP-then-# as blank or a comment (s16 r1 2). An argument drops its marks too now, as a
    line does (s34 t3 2): it is that URL, fetched."""
    failed = tmp_path / "failed.txt"
    odd = ["\u00a0#" + server.url("/ok"), "\x1c", "\u3000"]
    marked = "\ufeff" + server.url("/ok")
    result = invoke(["--failed", str(failed), "--format", "jsonl", marked, *odd,
                     server.url("/status/404")])  # fmt: skip
    assert failed.read_text() == server.url("/status/404") + "\n"
    assert "--failed: 3 command-line arguments not written" in result.stderr, result.stderr
    fetched = {record["url"]: record["ok"] for record in records(result.stdout)}
    assert fetched[server.url("/ok")], result.stdout


@pytest.mark.parametrize("input_format", ["jsonl", "csv"])
def test_an_argument_beside_jsonl_or_csv_is_not_written_as_a_bare_line(
    server, tmp_path, input_format
):
    """Written to --failed first, a bare URL became the csv header of the retry (every record
    then invalid_url), or a jsonl line that is not JSON (s16 r1 4). It is left out, and the
    file's own failed line is retried."""
    listing, failed = tmp_path / "in", tmp_path / "failed"
    missing = server.url("/status/404/in-file")
    listing.write_text(
        f"url,n\n{missing},1\n" if input_format == "csv" else json.dumps({"url": missing}) + "\n"
    )
    options = ["--input-format", input_format, "--failed", str(failed)]
    result = invoke([*options, "-i", str(listing), server.url("/status/404/argument")])
    assert "1 command-line argument not written" in result.stderr, result.stderr
    again = invoke(["--format", "jsonl", "--input-format", input_format, "-i", str(failed)])
    assert [(r["url"], r["status"]) for r in records(again.stdout)] == [(missing, 404)]


def test_failed_file_mode_is_fixed_even_if_it_existed(server, tmp_path):
    failed = tmp_path / "failed.txt"
    failed.write_text("old\n")
    os.chmod(failed, 0o644)
    invoke(["--failed", str(failed), server.url("/status/404")])
    assert stat.S_IMODE(os.stat(failed).st_mode) == 0o600
    assert failed.read_text() == server.url("/status/404") + "\n"


def test_ordered_keeps_input_order(server):
    urls = [server.url("/slow/0.3/first"), *(server.url(f"/fast/{n}") for n in range(6))]
    unordered = invoke(["--format", "jsonl", "-j", "4", *urls])
    as_written = [r["url"] for r in records(unordered.stdout)]
    # The control: without --ordered a fast URL overtakes the slow first one.
    assert sorted(as_written) == sorted(urls) and as_written[0] != urls[0]
    ordered = invoke(["--format", "jsonl", "-j", "4", "--ordered", *urls])
    assert [r["url"] for r in records(ordered.stdout)] == urls


def test_unordered_writes_as_results_complete(server):
    urls = [server.url("/slow/0.5/first"), server.url("/fast")]
    result = invoke(["--format", "jsonl", "-j", "2", *urls])
    assert [r["url"] for r in records(result.stdout)] == [urls[1], urls[0]]


def test_ok_status_narrows_and_widens(server):
    result = invoke(["--format", "jsonl", "--ok-status", "200,404", server.url("/status/404")])
    assert result.exit_code == 0 and records(result.stdout)[0]["ok"] is True
    result = invoke(["--format", "jsonl", "--ok-status", "201-299", server.url("/a")])
    assert result.exit_code == 3
    assert records(result.stdout)[0]["error"]["kind"] == "http"


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--retry-on", "202"], {}), (["--retry-on", "503", "--ok-status", "200-599"], {}),
     ([], {"FETCHER_RETRY_ON": "202"})],
)  # fmt: skip
def test_a_retry_on_status_that_counts_as_ok_is_a_usage_error(args, env):
    """An ok answer is never retried: --retry-on 202 was accepted and did nothing (s14 spec
    audit, 11). The default list beside --ok-status 200-599 is no one's mistake."""
    result = invoke([*args, "http://127.0.0.1:9/"], **env)
    assert result.exit_code == 2 and "--ok-status" in result.stderr, result.output
    quiet = invoke(["--ok-status", "200-599", "--retries", "0", "http://127.0.0.1:9/"])
    assert quiet.exit_code == 3, quiet.output  # refused connection: failed, not refused


@pytest.mark.parametrize("value", ["abc", "99", "300-200", "", "200-", "-299", "200-299-300"])
@pytest.mark.parametrize("option", ["--ok-status", "--retry-on"])
def test_bad_ok_status_is_a_usage_error(value, option):
    """An open range (200-) meant the single status 200, without a word."""
    result = invoke([option, value, "http://a.test/"])
    assert result.exit_code == 2
    assert option in result.stderr


def test_environment_variables_set_options(server):
    result = invoke([server.url("/a")], FETCHER_FORMAT="jsonl", FETCHER_WORKERS="2")
    assert records(result.stdout)[0]["ok"] is True
    bad = invoke([server.url("/a")], FETCHER_WORKERS="0")
    assert bad.exit_code == 2


def test_help_shows_env_vars_and_ends_with_examples():
    result = invoke(["--help"])
    assert result.exit_code == 0
    assert "FETCHER_WORKERS" in result.stdout and "FETCHER_FORMAT" in result.stdout
    tail = result.stdout.rstrip().splitlines()[-8:]
    assert any(line.strip().startswith("fetcher ") for line in tail) or "Exit status" in tail[-2]
    assert "Examples:" in result.stdout


def test_version():
    result = invoke(["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def test_unreadable_input_file_is_a_usage_error(tmp_path):
    result = invoke(["-i", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2
    assert "cannot read input file" in result.stderr
    result = invoke(["-i", str(tmp_path)])
    assert result.exit_code == 2


def test_summary_file_and_quiet(server, tmp_path):
    summary = tmp_path / "summary.json"
    result = invoke(
        ["-q", "--summary", str(summary), server.url("/a"), server.url("/status/404"), "ftp://x"]
    )
    assert result.stderr == ""
    data = json.loads(summary.read_text())
    assert (data["ok"], data["failed"], data["exit_status"]) == (1, 2, 1)
    assert data["by_kind"]["http"] == {"count": 1, "examples": [server.url("/status/404")]}
    assert data["by_kind"]["invalid_url"]["count"] == 1
    # ftp://x was never sent anywhere: an invalid URL counts under no host
    assert data["by_host"] == {f"127.0.0.1:{server.port}": 1}


def test_summary_on_stderr_groups_errors_by_kind(server):
    urls = [server.url(f"/status/404?{n}") for n in range(5)]
    result = invoke([*urls, server.url("/a")])
    lines = result.stderr.splitlines()
    assert lines[0].startswith("fetcher: 1 ok, 5 failed")
    http_line = next(line for line in lines if line.strip().startswith("http "))
    assert " 5 " in http_line and http_line.count("http://") == 3  # three examples
    assert f"most failures: 127.0.0.1:{server.port} (5)" in result.stderr


def test_unique_skips_repeated_urls(server):
    url = server.url("/u")
    result = invoke(["--format", "jsonl", "--unique", url, url, url])
    assert len(records(result.stdout)) == 1
    assert server.requests == 1
    assert "duplicates skipped: 2" in result.stderr


def test_password_in_url_is_masked_everywhere(server, tmp_path):
    secret_url = server.url("/status/404").replace("127.0.0.1", "user:hunter2@127.0.0.1")
    summary = tmp_path / "s.json"
    for fmt in ("text", "jsonl", "csv"):
        result = invoke(["--format", fmt, "--summary", str(summary), "-v", secret_url])
        assert "hunter2" not in result.stdout + result.stderr + summary.read_text()
        assert "user:***@127.0.0.1" in result.stdout
        assert "user:***@127.0.0.1" in result.stderr


def test_repeatable_options_take_one_value_per_line_of_their_variable(server, tmp_path):
    """Issue 11: FETCHER_HEADER='Authorization: Bearer x' was split on spaces and refused."""
    first, second = tmp_path / "one.txt", tmp_path / "two words.txt"
    first.write_text(server.url("/from-one") + "\n")
    second.write_text(server.url("/from-two") + "\n")
    result = invoke(
        [],
        FETCHER_HEADER="Authorization: Bearer x\nX-Two: two words\r\n",
        FETCHER_INPUT=f"{first}\n{second}\n",
        FETCHER_COOKIE="a=1\nb=two",
        FETCHER_FORMAT="jsonl",
    )
    assert result.exit_code == 0, result.stderr
    assert sorted(server.paths) == ["/from-one", "/from-two"]
    for seen in server.headers_seen:
        assert seen["Authorization"] == "Bearer x"
        assert seen["X-Two"] == "two words"
        assert seen["Cookie"] == "a=1; b=two"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("FETCHER_PIN", "pin", True),
        ("FETCHER_PIN", "no-pin", False),
        ("FETCHER_PIN", "0", False),
        ("FETCHER_PROGRESS", "no-progress", False),
        ("FETCHER_PROGRESS", "Progress", True),
        ("FETCHER_PROGRESS", "yes", True),
    ],
)
def test_a_flag_pair_takes_its_own_names_from_the_environment(variable, value, expected):
    """--help shows 'default: pin': FETCHER_PIN=pin must work, as must the booleans."""
    from fetcher.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(variable, value)
        ctx = main.make_context("fetcher", [])
    name = variable.removeprefix("FETCHER_").lower()
    assert ctx.params[name] is expected


def test_a_flag_pair_refuses_other_words_from_the_environment():
    result = invoke(["http://a.test/"], FETCHER_PIN="pinned")
    assert result.exit_code == 2
    assert "FETCHER_PIN" in result.stderr and "pin, no-pin" in result.stderr
    assert "pinned" not in result.stderr  # a variable's value is not quoted back (s29 t3 3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("yes", 1), ("True", 1), ("on", 1), ("1", 1), ("2", 2), ("no", 0), ("off", 0), ("", 0)],
)
def test_the_verbose_count_takes_a_flag_s_words_from_the_environment(value, expected):
    """usage.md: a flag's variable takes 1, true, yes or on; -v is a count, and -vv is 2."""
    from fetcher.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FETCHER_VERBOSE", value)
        ctx = main.make_context("fetcher", [])
        typed = main.make_context("fetcher", ["-vv"])
    assert ctx.params["verbose"] == expected
    assert typed.params["verbose"] == 2  # typed, it replaces the variable: a count as ever


def test_the_verbose_count_refuses_other_words_from_the_environment():
    result = invoke(["http://a.test/"], FETCHER_VERBOSE="loud")
    assert result.exit_code == 2
    assert "FETCHER_VERBOSE" in result.stderr and "yes" in result.stderr
    assert "loud" not in result.stderr  # a variable's value is not quoted back (s29 t3 3)


def test_a_usage_error_still_points_to_help():
    """fetcher's own --help callback (it says when stdout cannot take the help) had replaced
    Click's help option, and with it every usage error's "Try 'fetcher --help' for help."
    line, which the README shows (s18 r3 1)."""
    result = invoke(["--bogus"])
    assert result.exit_code == 2
    assert "Try 'main --help' for help." in result.stderr, result.stderr  # in process: 'main'
    shown = invoke(["-h"])
    assert shown.exit_code == 0 and "Usage: main" in shown.stdout


def test_lines_that_are_no_url_make_no_request_a_second(tmp_path):
    """Two invalid_url lines were `346.6 req/s` (s23 h1 3)."""
    summary = tmp_path / "summary.json"
    result = invoke(["--summary", str(summary)], input="mailto:x\nftp://a/b\n")
    assert result.exit_code == 3, result.output
    assert json.loads(summary.read_text())["requests_per_second"] == 0.0
    assert ", 0.0 req/s" in result.stderr.splitlines()[0], result.stderr


def test_a_line_refused_before_sending_made_no_attempt(tmp_path, httpserver):
    """A HEAD with data is refused before anything is sent, yet said `"attempts": 1` and made
    2653.5 req/s (s23 r4 4): a line that sent nothing made no attempt and no request."""
    summary = tmp_path / "summary.json"
    lines = "".join(
        json.dumps({"url": httpserver.url_for(f"/h/{n}"), "method": "HEAD", "data": "x"}) + "\n"
        for n in range(5)
    )
    result = invoke(
        ["--summary", str(summary), "--format", "jsonl", "--input-format", "jsonl"], input=lines
    )
    assert result.exit_code == 3, result.output
    assert httpserver.log == []  # the server was sent nothing
    got = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["error"]["kind"], r["attempts"]) for r in got] == [("invalid_url", 0)] * 5, got
    assert json.loads(summary.read_text())["requests_per_second"] == 0.0
    assert ", 0.0 req/s" in result.stderr.splitlines()[0], result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FETCHER_HEAD", "Accept: text/html\nAuthorization: Bearer s3cretTOK"),
        ("FETCHER_HEAD", "Bearer s3cretTOK\tx"),
        ("FETCHER_HEAD", "Bearer s3cret\\TOK"),
        ("FETCHER_HEAD", 'it\'s "s3cretTOK"'),
        ("FETCHER_WORKERS", "s3cretTOK\n"),
        ("FETCHER_FORMAT", "s3cret\\TOK"),
        ("FETCHER_MAX_TIME", "a\tb s3cretTOK"),
    ],
    ids=["line-break", "tab", "backslash", "both-quotes", "int", "choice", "float"],
)
def test_a_refused_variable_s_value_with_escapes_is_not_shown(variable, value):
    """s30 r1 1: Click quotes the value as repr() does (\\n, \\t, \\\\, escaped quotes), which the
    mask compared with the raw value and never found: FETCHER_HEAD's two lines, token and all,
    went to stderr."""
    result = invoke(["http://a.test/"], **{variable: value})
    assert result.exit_code == 2
    assert variable in result.stderr
    assert "s3cret" not in result.stderr and "TOK" not in result.stderr, result.stderr
