"""curl's habits (spec section 2): the flags that mean the same here work, alone and through their
FETCHER_ variables; the curl options that mean something else are usage errors that say what to
use instead; --help is in the spec's sections."""

import gzip
import json
import os
import subprocess
import time

import click
import pytest
from werkzeug import Response

from fetcher.cli import main
from fetcher.command import OTHER, SectionedCommand
from fetcher.habits import fold_habits, output_dir_problem
from fetcher.options import help_sections
from tests.conftest import FETCHER, ROOT, clean_env, invoke
from tests.servers import counting_server, records


def only(result) -> dict:
    got = records(result.stdout)
    assert len(got) == 1, result.stdout
    return got[0]


# -- the flags that mean the same thing -----------------------------------------------------------


def test_location_compressed_and_fail_are_accepted_and_change_nothing(httpserver):
    body = b"decoded " * 100
    httpserver.expect_request("/old").respond_with_response(
        Response(status=302, headers={"Location": "/new"})
    )
    httpserver.expect_request("/new").respond_with_response(
        Response(gzip.compress(body), headers={"Content-Encoding": "gzip"})
    )
    httpserver.expect_request("/gone").respond_with_data("no", status=404)
    urls = [httpserver.url_for("/old"), httpserver.url_for("/gone")]
    plain = invoke(["--format", "jsonl", "--ordered", *urls])
    curl = invoke(["--format", "jsonl", "--ordered", "-L", "--compressed", "-f", *urls])
    assert curl.exit_code == plain.exit_code == 1, curl.stderr
    moved, gone = records(curl.stdout)
    assert moved["redirects"] == 1 and moved["final_url"] == httpserver.url_for("/new")
    assert moved["bytes"] == len(body) and moved["ok"] is True
    assert gone["ok"] is False and gone["error"]["kind"] == "http"
    strip = lambda r: {k: v for k, v in r.items() if k != "elapsed"}  # noqa: E731
    assert list(map(strip, records(plain.stdout))) == list(map(strip, records(curl.stdout)))


def test_head_sends_head_and_saves_nothing(httpserver, tmp_path):
    httpserver.expect_request("/h", method="HEAD").respond_with_data("", status=200)
    for args, env in ((["-I"], {}), ([], {"FETCHER_HEAD": "1"})):
        out = tmp_path / "out"
        result = invoke(["--format", "jsonl", "-o", str(out), *args, httpserver.url_for("/h")],
                        **env)  # fmt: skip
        record = only(result)
        assert record["ok"] is True and record["path"] is None, env
        assert httpserver.log[-1][0].method == "HEAD"
        assert not list(out.rglob("*"))


def head_help() -> str:
    """-I's line in --help."""
    (option,) = [param for param in main.params if "-I" in getattr(param, "opts", ())]
    return " ".join((option.help or "").split())


def test_head_s_help_says_what_its_record_holds_and_promises_no_headers(httpserver):
    """-I's --help promised "the status and headers", which no record, nor -v or -vv, shows
    (s26 h5 5): it names what the record holds, and says the rest of the headers are not
    shown, nor the length (a HEAD reads no body: bytes is 0)."""
    headers = {"X-Custom": "seen-nowhere", "Content-Length": "1234", "ETag": '"v1"'}
    httpserver.expect_request("/h", method="HEAD").respond_with_response(
        Response("", status=200, headers=headers, content_type="text/plain")
    )
    result = invoke(["--format", "jsonl", "-vv", "-I", httpserver.url_for("/h")])
    record = only(result)
    assert (record["status"], record["reason"]) == (200, "OK")
    assert record["content_type"].startswith("text/plain") and record["bytes"] == 0
    assert "seen-nowhere" not in result.stdout + result.stderr  # no header block anywhere
    said = head_help()
    assert "status and headers" not in said, said
    assert all(word in said for word in ("status", "Content-Type", "no other header")), said
    usage = (ROOT / "docs" / "usage.md").read_text()
    (line,) = [row for row in usage.splitlines() if row.startswith("| `-I`, `--head`")]
    assert "Content-Type" in line and "no other header" in line and "-vv" in line, line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-I", "-X", "POST"], "-X POST"),
        (["-I", "-d", "x"], "-I"),
        (["-X", "head", "-d", "x"], "-X"),
    ],
)
def test_head_with_another_method_or_a_body_is_a_usage_error(args, says):
    result = invoke([*args, "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and says in result.stderr and "HEAD" in result.stderr


@pytest.mark.parametrize(
    ("args", "first"),
    [
        (["-I"], '{"url": "%s", "data": "only"}'),
        ([], '{"url": "%s", "method": "HEAD", "data": "x"}'),
    ],
    ids=["-I", "line-s-own-method"],
)
def test_a_line_s_body_beside_head_is_refused_and_the_next_url_is_its_own(httpserver, args, first):
    """A HEAD was sent with the line's data as its body; a server that reads no body on a HEAD
    took it for the start of the next request, and the next URL on the connection got the
    answer to 'onlyHEAD /...', a 501 (s17 h3 6). The line is refused, as -I -d is."""
    httpserver.expect_request("/b").respond_with_data("b")
    lines = [first % httpserver.url_for("/a"), json.dumps({"url": httpserver.url_for("/b")})]
    result = invoke(["--format", "jsonl", "-j", "1", "--ordered", "--input-format", "jsonl", *args],
                    input="\n".join(lines) + "\n")  # fmt: skip
    refused, second = records(result.stdout)
    assert refused["error"]["kind"] == "invalid_url" and "HEAD" in refused["error"]["message"]
    assert second["ok"] is True, second
    assert [entry[0].path for entry in httpserver.log] == ["/b"]  # nothing sent for the first


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-c", "http://127.0.0.1:9/x"], "--continue"),  # wget -c URL: continue
        (["-i", "http://127.0.0.1:9/x"], "as an argument"),  # curl -i URL: headers shown
        (["--ok-status", "299-200"], "200-299"),  # a range written high to low
    ],
    ids=["wget-c", "curl-i", "reversed-range"],
)
def test_another_tools_habit_gets_a_usage_error_that_says_what_to_use(args, says):
    """wget's -c URL said "its folder 'http:/127.0.0.1:9' does not exist", curl's -i URL
    "cannot read input file", and 299-200 "not a status range" (s16 h1 F13)."""
    result = invoke([*args, "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and says in result.stderr, result.stderr


@pytest.mark.parametrize("option", ["-c", "-i"])
def test_the_hint_for_a_url_given_as_a_file_masks_its_password(option):
    """The hints quoted the URL as typed, password and all (s16 r1 7); records show ***."""
    result = invoke([option, "https://user:s3cret@127.0.0.1:9/x", "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "s3cret" not in result.stderr, result.stderr
    assert "user:***@" in result.stderr, result.stderr


@pytest.mark.parametrize("how", ["-m", "--max-time", "FETCHER_MAX_TIME"])
def test_m_is_max_time(server, how):
    args, env = (["--retries", "0"], {how: "0.3"}) if how.startswith("F") else ([how, "0.3"], {})
    result = invoke(["--format", "jsonl", "--retries", "0", *args, server.url("/slow/3/x")], **env)
    record = only(result)
    assert record["error"]["kind"] == "max_time", record
    assert record["elapsed"] < 2.5


@pytest.mark.parametrize("how", ["--retry", "--retries", "FETCHER_RETRIES"])
def test_retry_is_retries(server, how):
    args, env = ([], {how: "1"}) if how.startswith("F") else ([how, "1"], {})
    url = server.url("/status/503")
    result = invoke(["--format", "jsonl", "--backoff", "0", *args, url], **env)
    assert only(result)["attempts"] == 2
    assert server.requests == 2


def test_silent_is_quiet_and_show_error_prints_the_summary_only_on_failure(server):
    ok, bad = server.url("/a"), server.url("/status/404")
    assert invoke([ok, bad]).stderr.startswith("fetcher: 1 ok, 1 failed")  # the default
    silent = invoke(["-s", ok, bad])
    assert silent.exit_code == 1 and silent.stderr == ""
    assert invoke([ok, bad], FETCHER_SILENT="1").stderr == ""
    shown = invoke(["-sS", ok, bad])
    assert shown.exit_code == 1 and shown.stderr.startswith("fetcher: 1 ok, 1 failed")
    assert invoke([ok, bad], FETCHER_SILENT="1", FETCHER_SHOW_ERROR="1").stderr.startswith(
        "fetcher: 1 ok"
    )
    assert invoke(["-q", "-S", ok, bad]).stderr.startswith("fetcher: 1 ok, 1 failed")
    quiet_ok = invoke(["-sS", ok])
    assert quiet_ok.exit_code == 0 and quiet_ok.stderr == ""  # cron: nothing when all is well
    assert invoke(["-sSfL", ok]).stdout.startswith("200\t")  # curl's usual bundle


def params(**given):
    """The parsed options fold_habits reads, as Click gives them when none is set."""
    base = dict(location=False, compressed=False, fail=False, silent=False, head=False,
                quiet=False, progress=None, method=None, data=None, remote_header_name=False,
                output_dir=None, no_follow=False, ok_status=None, remote_time=False,
                body=False, include_body=False)  # fmt: skip
    return base | given


def test_silent_turns_the_progress_display_off_unless_asked_for():
    folded = params(silent=True)
    fold_habits(folded)
    assert folded["quiet"] is True and folded["progress"] is False
    assert not {"silent", "location", "compressed", "fail", "head"} & set(folded)
    asked = params(silent=True, progress=True)
    fold_habits(asked)
    assert asked["quiet"] is True and asked["progress"] is True


# -- a habit beside an option that says the opposite (s17 h3 2, 16) -------------------------------


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["-L", "--no-follow"], {}, "-L follows redirects: it cannot go with --no-follow"),
        (["-L"], {"FETCHER_NO_FOLLOW": "1"}, "with --no-follow (from FETCHER_NO_FOLLOW)"),
        (["--no-follow"], {"FETCHER_LOCATION": "yes"}, "-L (from FETCHER_LOCATION) follows"),
        (
            ["-f", "--ok-status", "200-599"],
            {},
            "-f fails a status of 400 or more: it cannot go with --ok-status",
        ),
        (["-f"], {"FETCHER_OK_STATUS": "200,404"}, "--ok-status (from FETCHER_OK_STATUS)"),
        (["--ok-status", "401"], {"FETCHER_FAIL": "1"}, "-f (from FETCHER_FAIL) fails"),
    ],
)
def test_a_habit_beside_an_option_that_says_the_opposite_is_a_usage_error(server, args, env, says):
    result = invoke([*args, server.url("/a")], **env)
    assert result.exit_code == 2 and says in result.stderr, result.stderr
    assert server.requests == 0


def test_a_habit_beside_an_option_that_agrees_is_accepted(server):
    result = invoke(["-f", "--ok-status", "200-299", "-L", server.url("/a")])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("args", [["-s"], ["-q"], ["-sS"]])
def test_a_typed_s_or_q_beats_a_progress_variable(server, args):
    """A progress display kept in a profile's FETCHER_PROGRESS must not reach a cron job's -s."""
    result = invoke([*args, server.url("/a")], FETCHER_PROGRESS="1")
    assert result.exit_code == 0 and result.stderr == ""


def test_progress_asked_for_where_s_is_given_still_shows(server):
    for args, env in ((["-s", "--progress"], {}), (["--progress"], {"FETCHER_SILENT": "1"}),
                      ([], {"FETCHER_SILENT": "1", "FETCHER_PROGRESS": "1"})):  # fmt: skip
        result = invoke([*args, server.url("/a")], **env)
        assert "fetching" in result.stderr, (args, env)


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["-d", "x"], {"FETCHER_HEAD": "1"}, "-I (from FETCHER_HEAD) sends HEAD"),
        (["-I"], {"FETCHER_DATA": "x"}, "cannot go with -d (from FETCHER_DATA)"),
        (["-I"], {"FETCHER_METHOD": "POST"}, "-X POST (from FETCHER_METHOD)"),
        (["-d", "x"], {"FETCHER_METHOD": "head"}, "-X HEAD (from FETCHER_METHOD) has no body"),
        (
            ["--rate", "5"],
            {"FETCHER_PROCESSES": "2"},
            "--rate works only with --processes 1, not --processes 2 (from FETCHER_PROCESSES)",
        ),
        ([], {"FETCHER_RETRY_ON": "200"}, "--retry-on 200 (from FETCHER_RETRY_ON): an ok"),
    ],
)
def test_a_combination_error_says_which_option_came_from_a_variable(server, args, env, says):
    """An option that needs another, from its variable alone, is not followed, not refused
    (s37 t2 3: test_option_clashes); these are refusals of two options that clash."""
    result = invoke([*args, server.url("/a")], **env)
    assert result.exit_code == 2 and says in result.stderr, result.stderr


def test_a_combination_error_of_typed_options_names_no_variable(server):
    result = invoke(["-I", "-d", "x", server.url("/a")])
    assert result.exit_code == 2 and "(from" not in result.stderr
    assert "-I sends HEAD, which has no body: it cannot go with -d" in result.stderr


# -- the curl options that mean something else ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "advice"),
    [
        (["-O"], "-o DIR"),
        (["--remote-name"], "-o DIR"),
        (["-sO"], "-o DIR"),
        (["--output", "x.html"], "--body > FILE"),
        (["-w", "%{http_code}"], "--format jsonl"),
        (["-C", "-"], "--continue"),
        (["--continue-at", "-"], "--continue"),
        (["--no-check-certificate"], "-k"),
        (["--tries", "3"], "--retries"),
        (["--spider"], "-I"),
        (["-#"], "--progress"),  # Click's bare "No such option" (s35 t6 3)
        (["--progress-bar"], "--progress"),  # Click guessed --processes
        (["--remote-name-all"], "--remote-name-all (curl's)"),  # was answered about -O (t6 4)
        # Click guessed these wrong: '--url' got "did you mean --user", which sent the URL as
        # a password; wget's had no hint or a wrong one (s17 h3 9, 11).
        (["--url", "http://127.0.0.1:9/x"], "as arguments"),
        (["--body-data", "x"], "-d"),
        (["--post-data", "x"], "-d"),
        (["-P", "dl"], "-o DIR"),
        (["--directory-prefix", "dl"], "-o DIR"),
        (["-N"], "--state"),
        (["--timestamping"], "--state"),
        (["-T", "5"], "-t"),
        (["-nc"], "--skip-fresh"),
        (["-nv"], "-q"),  # wget's -nv: the same -n, told apart (s17 r1 5)
        (["--no-clobber"], "--skip-fresh"),
        (["--referer", "http://r/"], "-H 'Referer: URL'"),
        (["-e", "http://r/"], "-H 'Referer: URL'"),
        (["--wait", "1"], "--host-rate"),
        (["--limit-rate", "1k"], "--rate"),
        # curl's proxy options: Click said "did you mean --user" and "--header", which send to
        # every origin server (s19 t1 D3, D4)
        (["--proxy-user", "a:b"], "-x http://USER:PASSWORD@HOST:PORT"),
        (["-U", "a:b"], "-x http://USER:PASSWORD@HOST:PORT"),
        (["--proxy-header", "X: 1"], "not the proxy"),
        (["--noproxy", "*"], "NO_PROXY='*'"),
        (["-x", ""], "NO_PROXY='*'"),
        (["--proxy-insecure"], "every server alike"),  # not "did you mean --insecure" (r5 4)
        (["--proxy-cacert", "ca.pem"], "every server alike"),
        (["--proxy-cert", "c.pem"], "every server alike"),
        (["--proxy-key", "k.pem"], "every server alike"),
    ],
)
def test_curl_options_that_mean_something_else_say_what_to_use(args, advice):
    result = invoke([*args, "http://127.0.0.1:9/"])
    assert result.exit_code == 2
    assert advice in result.stderr and "No such option" not in result.stderr


def test_a_file_given_as_a_url_points_at_i(tmp_path, monkeypatch):
    """'fetcher urls.txt', a wget user's first slip, looked the file's name up in DNS (s17 h3
    3). A scheme-less argument naming a file here is refused with the option to use."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:9/\n")
    result = invoke(["urls.txt"])
    assert result.exit_code == 2 and "-i urls.txt" in result.stderr, result.stderr
    assert invoke(["--version", "http://127.0.0.1:9/urls.txt"]).exit_code == 0
    # A URL with a path is a URL, whatever file an earlier 'fetcher -o .' saved under its name
    # (that run's own file refused the next run, s17 r1 1).
    (tmp_path / "127.0.0.1:9").mkdir()
    (tmp_path / "127.0.0.1:9" / "x.txt").write_text("saved\n")
    result = invoke(["--retries", "0", "-t", "2", "127.0.0.1:9/x.txt"])
    assert result.exit_code == 3, result.output  # fetched (and refused by the closed port)


def test_curl_s_header_file_points_at_the_header_variable(server, tmp_path):
    """curl's -H @FILE reads headers from FILE; here FETCHER_HEADER takes one a line."""
    headers = tmp_path / "headers.txt"
    headers.write_text("Authorization: Bearer secret\n")
    result = invoke(["-H", f"@{headers}", server.url("/a")])
    assert result.exit_code == 2 and server.requests == 0
    assert "-H @FILE" in result.stderr and 'FETCHER_HEADER="$(cat FILE)"' in result.stderr
    assert "secret" not in result.stderr
    shown = invoke([server.url("/a")], FETCHER_HEADER=headers.read_text())
    assert shown.exit_code == 0 and server.headers_seen[-1]["Authorization"] == "Bearer secret"
    # Said to one who uses FETCHER_HEADER already, it pointed at FETCHER_HEADER (s18 r3 5).
    in_variable = invoke([server.url("/a")], FETCHER_HEADER=f"@{headers}")
    assert in_variable.exit_code == 2 and "one a line" in in_variable.stderr
    assert "FETCHER_HEADER=" not in in_variable.stderr


def test_an_unknown_option_is_still_clicks_error():
    result = invoke(["--fial", "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "No such option" in result.stderr


@pytest.mark.parametrize("name", ["out.html", "page.json", "urls.txt", "a.tar.gz", "example.com"])
def test_o_with_a_new_file_name_is_refused_and_creates_nothing(server, tmp_path, name):
    target = tmp_path / name
    result = invoke(["-o", str(target), server.url("/a")])
    assert result.exit_code == 2
    assert "--body > FILE" in result.stderr and "--results FILE" in result.stderr
    assert f"{name}/" in result.stderr  # how to say "a folder of that name" all the same
    assert not target.exists() and server.requests == 0


@pytest.mark.parametrize(
    ("name", "path"), [("kubectl", "/bin/kubectl"), ("tool", "/tool?v=2"), ("jq", "/dl/jq#x")]
)
def test_o_named_as_a_url_s_file_is_refused_and_creates_nothing(server, tmp_path, name, path):
    """s32 t5 1: curl's install line, `curl -fsSLo kubectl URL/kubectl`, made the folder
    kubectl/ with the file deep in it, exit 0, and the script's next step (chmod +x kubectl)
    failed far from the cause. A new -o name that is the last name of a URL's path is curl's
    -o FILE. (A path that ends in '/' names a folder: -o docs for /docs/ is fine.)"""
    target = tmp_path / name
    result = invoke(["-fsSLo", str(target), server.url(path)])
    assert result.exit_code == 2, result.output
    assert "--body > FILE" in result.stderr and f"{name}/" in result.stderr, result.stderr
    assert not target.exists() and server.requests == 0


def test_o_named_as_a_url_s_file_beside_an_input_is_a_folder(server, tmp_path):
    """s32 r3 7: -o releases -i list.txt URL/releases fetches several URLs: no curl -o FILE."""
    listed = tmp_path / "list.txt"
    listed.write_text(server.url("/a") + "\n")
    result = invoke(["-q", "-o", str(tmp_path / "releases"), "-i", str(listed),
                     server.url("/owner/releases")])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "releases").is_dir()


@pytest.mark.parametrize(
    "paths", [["/docs", "/docs/intro.html"], ["/a.html", "/b/site"]], ids=["mirror", "second"]
)
def test_o_named_as_a_url_s_file_among_several_urls_is_a_folder(server, tmp_path, paths):
    """s32 r2 3: -o docs beside URLs of /docs and /docs/intro.html was refused as curl's -o
    FILE, which takes one URL: among several, a name is a folder's."""
    name = paths[-1].rsplit("/", 1)[1] if paths[1] == "/b/site" else "docs"
    result = invoke(["-q", "-o", str(tmp_path / name), *(server.url(p) for p in paths)])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / name).is_dir()


def test_o_dash_is_refused(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(["-o", "-", server.url("/a")])
    assert result.exit_code == 2 and "--body" in result.stderr
    assert not (tmp_path / "-").exists() and server.requests == 0


def test_o_with_an_existing_file_is_refused_with_advice(tmp_path):
    existing = tmp_path / "notes"
    existing.write_text("mine")
    result = invoke(["-o", str(existing), "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "--body > FILE" in result.stderr
    assert existing.read_text() == "mine"


@pytest.mark.parametrize("name", ["mirror", "v1.2", "backup.2024", ".cache", "out.html/"])
def test_o_with_a_folder_name_saves_there(server, tmp_path, name):
    result = invoke(["--format", "jsonl", "-o", f"{tmp_path}/{name}", server.url("/a")])
    assert result.exit_code == 0, result.stderr
    saved = tmp_path / name.rstrip("/") / f"127.0.0.1_{server.port}" / "a"
    assert saved.read_bytes() == b"body of /a\n"


def test_o_with_an_existing_folder_named_like_a_file_is_fine(server, tmp_path):
    folder = tmp_path / "site.html"
    folder.mkdir()
    result = invoke(["-o", str(folder), server.url("/a")])
    assert result.exit_code == 0, result.stderr
    assert (folder / f"127.0.0.1_{server.port}" / "a").is_file()


def test_output_dir_rule():
    assert output_dir_problem("-") is not None
    assert output_dir_problem("report.pdf") is not None
    assert output_dir_problem("sub/dir/index.htm") is not None
    for folder in ("out", "out/", "v2.0", "data.2024", ".hidden", "a/b", "out.html/"):
        assert output_dir_problem(folder) is None, folder


def test_remote_header_name_needs_output_dir():
    result = invoke(["-J", "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "-o DIR" in result.stderr


# -- --help in sections ---------------------------------------------------------------------------


def test_help_is_in_the_specs_sections_with_examples_last():
    text = invoke(["--help"]).stdout
    headings = [line[:-1] for line in text.splitlines() if line and line[0] != " " and
                line.endswith(":")]  # fmt: skip
    expected = [heading for heading, _ in help_sections()]
    assert headings[: len(expected)] == expected
    assert expected[:2] == ["Input", "Requests"] and "Output" in expected
    assert headings[-1] == OTHER
    assert text.index("Examples:") > text.index(OTHER + ":")
    assert "FETCHER_SILENT" in text and "FETCHER_WORKERS" in text  # env vars still shown
    sections = dict(help_sections())
    assert "head" in sections["Requests"]
    assert "max_time" in sections["Timeouts, retries and redirects"]
    assert "workers" in sections["Concurrency"] and "remote_time" in sections["Output"]


def test_every_option_is_in_one_section():
    named = [name for _, names in help_sections() for name in names]
    assert len(named) == len(set(named))
    options = {p.name for p in main.params if isinstance(p, click.Option)}
    assert set(named) == options - {"help", "version"}


def test_a_new_section_is_a_heading_and_its_names():
    @click.command(cls=SectionedCommand, sections=[("Later", ["b"]), ("Sooner", ["a"])])
    @click.option("-a", help="first")
    @click.option("-b", help="second")
    @click.option("-c", help="third")
    def command(a, b, c):
        pass

    text = click.testing.CliRunner().invoke(command, ["--help"]).output
    assert text.index("Later:") < text.index("-b") < text.index("Sooner:") < text.index("-a")
    assert text.index(OTHER + ":") < text.index("-c")
    # one column for the text of every section
    assert len({line.index("first" if "first" in line else "second") for line in
                text.splitlines() if "first" in line or "second" in line}) == 1  # fmt: skip


# -- environment variables ------------------------------------------------------------------------


def test_every_repeatable_option_takes_one_value_per_line_of_its_variable():
    repeatable = [p for p in main.params if isinstance(p, click.Option) and p.multiple]
    assert {p.name for p in repeatable} >= {"inputs", "headers", "cookies"}
    for param in repeatable:
        assert param.envvar and param.show_envvar, param.name
        assert param.type.split_envvar_value("a b\r\n\nc d\n") == ["a b", "c d"], param.name


def test_every_option_has_a_shown_fetcher_variable():
    for param in main.params:
        if isinstance(param, click.Option) and param.name not in {"help", "version"}:
            assert str(param.envvar).startswith("FETCHER_") and param.show_envvar, param.name


def test_shell_completion_as_documented():
    """docs/usage.md#shell-completion: Click's _FETCHER_COMPLETE gives a script and completes."""
    script = subprocess.run([*FETCHER], env=clean_env(_FETCHER_COMPLETE="bash_source"),
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert script.returncode == 0 and "_fetcher_completion()" in script.stdout
    env = clean_env(_FETCHER_COMPLETE="bash_complete", COMP_WORDS="fetcher --remote-t",
                    COMP_CWORD="1")  # fmt: skip
    words = subprocess.run([*FETCHER], env=env, capture_output=True, text=True, timeout=30,
                           check=False)  # fmt: skip
    assert words.stdout.split() == ["plain,--remote-time"]


@pytest.mark.parametrize("spelled", ["dang", "dang/", "dang/sub", "chain/sub/more"])
def test_o_with_a_dangling_link_says_what_it_is_and_creates_nothing(server, tmp_path, spelled):
    """-o on a link to a folder that does not exist: 'dang' was called a file, and 'dang/' made
    the link's target and saved there (s17 h3, minor notes); so did 'dang/sub', a folder below
    it (s19 t3 7). mkdir -p refuses it; so does -o, saying what it is."""
    target = tmp_path / "elsewhere" / "missing"
    (tmp_path / "dang").symlink_to(target)
    (tmp_path / "chain").symlink_to(tmp_path / "dang")
    result = invoke(["-o", str(tmp_path / spelled), server.url("/a")])
    assert result.exit_code == 2, result.stderr
    assert "symbolic link" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-x", "http://127.0.0.1:9/a"], "-x took"),  # wget's -x (--force-directories)
        (["-d", "http://127.0.0.1:9/a"], "-d took"),  # wget's -d (--debug)
        (["-u", "http://127.0.0.1:9/a"], "-u took"),  # httpx's -u TARGET
        (["-A", "http://127.0.0.1:9/a"], "-A took"),
        (["-H", "http://127.0.0.1:9/a"], "-H took"),  # wget's -H (--span-hosts)
    ],
    ids=["x", "d", "u", "A", "H"],
)
def test_an_option_that_took_the_only_url_is_a_usage_error(args, says):
    """With standard input not a terminal (cron, ssh, CI), the one URL taken as an option's
    value left none: the empty standard input was read, nothing fetched, exit 0 (s20 h3 1)."""
    result = invoke(args, input=b"")
    assert result.exit_code == 2 and says in result.stderr, result.stderr
    assert "http://127.0.0.1:9/a" in result.stderr


def test_a_proxy_with_urls_from_standard_input_is_not_taken_for_a_url(server):
    """`producer | fetcher -x http://proxy:3128`: a proxy's URL has no path."""
    proxy = server.url("").rstrip("/")
    result = invoke(["-q", "-x", proxy], input=b"")
    assert result.exit_code == 0, result.stderr
    result = invoke(["-q", "-x", proxy + "/"], input=b"")
    assert result.exit_code == 0, result.stderr


def test_o_given_a_url_is_refused_and_makes_no_folder(tmp_path, monkeypatch):
    """-o URL made the folders ./http:/127.0.0.1:9/a and read standard input (s20 h3 1)."""
    monkeypatch.chdir(tmp_path)
    result = invoke(["-o", "http://127.0.0.1:9/a", "http://127.0.0.1:9/b"], input=b"")
    assert result.exit_code == 2 and "-o takes a folder" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spelled", ["./dl", "dl/", "absolute"])
def test_d_given_an_existing_folder_is_refused(tmp_path, monkeypatch, server, spelled):
    """aria2's -d DIR is its download folder: here it POSTed the folder's name to every URL
    (s20 h3 2). A bare word is a body, whatever folder of that name is here (a cron job's
    '-d ping' must not depend on the folder it runs in, s20 r2 3)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dl").mkdir()
    spelled = str(tmp_path / "dl") if spelled == "absolute" else spelled
    result = invoke(["-d", spelled, server.url("/a")])
    assert result.exit_code == 2 and "-o DIR" in result.stderr, result.stderr
    assert server.requests == 0
    sent = invoke(["--format", "jsonl", "-d", "dl", server.url("/a")])
    [record] = records(sent.stdout)
    assert record["attempts"] == 1 and record["status"] is not None, record  # a POST, sent


@pytest.mark.parametrize(
    "args",
    [
        ["-x", "http://127.0.0.1:9/a/b"],
        ["-H", "http://127.0.0.1:9/a"],
        ["-u", "http://127.0.0.1:9/a"],
    ],
    ids=["x", "H", "u"],
)
def test_a_url_taken_for_a_proxy_header_or_user_is_refused_beside_other_urls(args):
    """`-x URL1 URL2` sent URL2 through URL1's host as a proxy, and URL1 got no record; `-H URL1
    URL2` sent a header named http (s20 r2 1). No proxy URL has a path, no header or user is
    named http: refused whatever else is given."""
    result = invoke([*args, "http://127.0.0.1:9/c"])
    assert result.exit_code == 2 and f"{args[0]} took" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("FETCHER_DATA", "http://cb.example/hook"), ("FETCHER_HEADER", "https://x.example/y"),
     ("FETCHER_PROXY", "")],
)  # fmt: skip
def test_a_url_from_a_variable_took_nothing_from_the_command_line(server, variable, value):
    """A variable's value cannot have taken a URL typed after it (s20 r2 3): not refused."""
    value = value or server.url("/proxy/path").replace("http://", "http://u:pw@")
    env = {variable: value}
    result = invoke(["-q", "--retries", "0"], input=f"{server.url('/a')}\n".encode(), **env)
    assert "took" not in result.stderr, result.stderr


@pytest.mark.parametrize("option", ["-x", "-d", "-u"])
def test_an_option_that_took_the_next_option_says_so(option, tmp_path, monkeypatch):
    """`-x -i urls.txt`: -x took '-i' for its value, and the message said to use -i urls.txt,
    which was given (s20 h3 3)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:9/\n")
    result = invoke([option, "-i", "urls.txt"])
    assert result.exit_code == 2 and "use -i urls.txt" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-U", "bot/1"], "-A"),  # wget's --user-agent
        (["-w", "2"], "--host-rate"),  # wget's --wait
        (["-nd"], "-o DIR"),  # wget's --no-directories
        (["-O", "-"], "--body"),  # wget's -O - (standard output)
        (["--content-disposition"], "-J"),  # wget's
        (["-Z"], "-j"),  # curl's --parallel
        (["--parallel"], "-j"),
        (["-l", "urls.txt"], "-i"),  # httpx's -list
        (["-silent"], "-s"),  # httpx's single-dash long options
        (["-json"], "--format jsonl"),
        (["-threads", "8"], "-j"),
        (["-status-code"], "status"),
        (["-retries", "2"], "--retries"),  # any fetcher option given one dash
        (["-help"], "-help is --help"),  # s37 t2 6: it said '-e: curl's --referer ...'
    ],
)
def test_other_tools_habits_say_what_to_use(args, says):
    result = invoke([*args, "http://127.0.0.1:9/"])
    assert result.exit_code == 2, result.stderr
    assert says in result.stderr and "No such option" not in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["4", "16"])
def test_a_number_for_a_proxy_is_refused(value):
    """aria2's -x N (connections a server) became the proxy http://N, 0.0.0.N: every request
    and its headers went to an address nobody meant (s20 h3 5)."""
    result = invoke(["-x", value, "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "aria2" in result.stderr, result.stderr


@pytest.mark.parametrize("args", [["-s", "4"], ["4"], ["-j", "4", "16"]])
def test_a_number_for_a_url_is_refused(args):
    """aria2's -s N (pieces of one download), beside -x N refused, left the N as a URL: fetched
    as https://4, the address 0.0.0.4, one failure record and exit 1 (s25 h2 7). A number
    alone is no URL anyone means: a usage error before anything is sent."""
    with counting_server() as server:
        result = invoke([*args, server.url("/a")])
        assert server.paths == []
    assert result.exit_code == 2, result.stderr
    assert "is no URL" in result.stderr and "aria2" in result.stderr, result.stderr


@pytest.mark.parametrize("args", [["-d", "-json"], ["-A", "-silent"], ["--data", "-threads"]])
def test_a_one_dash_word_given_as_an_option_s_value_is_that_value(args):
    """`-d -json` sends the text '-json': it was refused as httpx's -json (s20 r2 4)."""
    result = invoke([*args, "http://127.0.0.1:9/"])
    assert "httpx" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "advice"),
    [
        (["--retry-delay", "5"], "--backoff"),  # Click: "did you mean --retry" (a count)
        (["--retry-max-time", "60"], "--max-time"),
        (["--retry-connrefused"], "retried already"),
        (["--retry-all-errors"], "--retry-on"),
        (["--waitretry", "5"], "--backoff"),  # wget's
        (["--request", "POST"], "-X"),  # Click: --quiet, --results or --retries
        (["--no-proxy"], "NO_PROXY='*'"),  # wget's spelling of curl's --noproxy
        (["--resolve", "a.test:80:127.0.0.1"], "-H 'Host: NAME'"),
        (["--connect-to", "a.test:80:b.test:80"], "-H 'Host: NAME'"),
        (["-r", "0-99"], "-H 'Range: bytes="),  # curl's --range; wget's --recursive
        (["--range", "0-99"], "-H 'Range: bytes="),
        (["--recursive"], "no link is followed"),
        (["--mirror"], "no link is followed"),
        (["--netrc-file", "n.txt"], "NETRC=FILE"),  # Click: --failed, which writes over it
        (["--netrc"], "~/.netrc"),
        (["--netrc-optional"], "~/.netrc"),
        (["--json", "{}"], "Content-Type: application/json"),  # Click: --version
        (["--digest"], "basic authentication only"),  # Click: --quiet
        (["--ntlm"], "basic authentication only"),
        (["--basic"], "-u sends basic authentication"),
        (["--fail-with-body"], "--include-body"),
        (["--data-urlencode", "a=b c"], "%-encode"),
        (["--data-binary", "@f"], "-d @FILE"),
        (["--data-raw", "x"], "-d"),
        (["-G"], "in the URL"),
        (["--get"], "in the URL"),
        (["-F", "a=b"], "multipart"),
        (["--form", "a=b"], "multipart"),  # Click: --format
        (["-K", "curlrc"], "FETCHER_"),
        (["--config", "curlrc"], "FETCHER_"),  # Click: --continue
        (["-D", "headers.txt"], "--format jsonl"),
        (["--dump-header", "headers.txt"], "--format jsonl"),  # Click: --head, --header
        (["-4"], "as the system resolves"),
        (["-6"], "as the system resolves"),
        (["--ipv4"], "as the system resolves"),  # Click: --input
        (["--inet6-only"], "as the system resolves"),
        (["-E", "c.pem"], "--cert FILE"),
        (["--create-dirs"], "-o DIR makes"),
        (["--ask-password"], "-u USER"),
        (["--password", "pw"], "-u USER"),
        (["--http-user", "u"], "-u USER"),
        (["--http-password", "pw"], "-u USER"),
        (["--keep-session-cookies"], "-c FILE"),
        (["--load-cookies", "c.txt"], "-c FILE"),
        (["--save-cookies", "c.txt"], "-c FILE"),
    ],
)
def test_more_curl_and_wget_options_say_what_to_use_not_clicks_guess(args, advice):
    """These got Click's bare "No such option", or a "Did you mean" that means something else:
    --netrc-file's was --failed, which would write the list of failed URLs over the netrc
    (s22 h2 11). Each is refused with what to use here; no value is repeated."""
    result = invoke([*args, "http://127.0.0.1:9/"])
    assert result.exit_code == 2, result.stderr
    assert advice in result.stderr, result.stderr
    assert "No such option" not in result.stderr and "Did you mean" not in result.stderr
    if len(args) > 1 and len(args[1]) > 2:
        assert args[1] not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "advice"),
    [
        (["--output-document", "page.html"], "--body > FILE"),  # Click: --output-dir
        (["--output-file", "wget.log"], "2> FILE"),  # wget's log; Click: --output-dir
        (["--certificate", "c.pem"], "--cert FILE"),  # Click: --cert, --rate or --state
        (["--private-key", "k.pem"], "--key FILE"),  # Click: --rate
        (["--trace", "trace.txt"], "-vv"),  # Click: --state, which writes an SQLite file there
        (["--trace-ascii", "trace.txt"], "-vv"),
        (["--stderr", "err.txt"], "2> FILE"),  # Click: --state
        (["--globoff"], "never expanded"),  # Click: --backoff
        (["-g"], "never expanded"),
        (["--pass", "s3cr3t-phr"], "encrypted --key"),  # Click: --progress
        (["--speed-time", "30"], "-t/--timeout"),  # Click: --max-time
        (["--speed-limit", "1000"], "-t/--timeout"),
        (["--keepalive-time", "60"], "keeps its connections alive"),  # Click: --max-time
        (["--http2"], "HTTP/1.1"),  # Click: --help
        (["--http1.1"], "what fetcher does"),
        (["--http1.0"], "HTTP/1.1"),
        (["--tlsv1.2"], "TLS 1.2 or 1.3"),
        (["--tlsv1.3"], "TLS 1.2 or 1.3"),
        (["--fail-early"], "every URL is fetched"),  # Click: --failed, which writes the file
        (["--crlfile", "crl.pem"], "no equal"),  # Click: --failed
        (["--egd-file", "f"], "no equal"),  # Click: --failed
        (["--hsts", "hsts.txt"], "HSTS"),  # Click: --results, --state
        (["--disable"], "no config"),  # Click: --state
        (["--start-pos", "100"], "Range: bytes="),  # Click: --state
        (["--no-netrc"], "-u USER"),  # Click: --metrics
        (["--relative"], "no link is followed"),  # Click: --results
        (["--cut-dirs", "2"], "DIR/<host>/<path>"),  # Click: --output-dir
        (["--body-file", "b.json"], "-d @FILE"),  # Click: --body, --failed
        (["--time-cond", "file"], "--state FILE"),  # Click: --timeout
        (["--no-verbose"], "-q"),  # Click: --verbose, the opposite
        (["--include"], "--format jsonl"),
        (["--oauth2-bearer", "tok-s3cr3t"], "Authorization: Bearer"),
        (["--socks5", "127.0.0.1:1080"], "-x takes"),
        (["--post301"], "becomes a GET"),
        (["--debug"], "-v"),
    ],
)
def test_even_more_curl_and_wget_options_say_what_to_use(args, advice):
    """More that got Click's guess, often an option that writes the file named: '--trace F'
    and '--stderr F' suggested --state, '--fail-early' --failed (s22 r2 5). Refused with what
    to use here; no value repeated."""
    result = invoke([*args, "http://127.0.0.1:9/"])
    assert result.exit_code == 2, result.stderr
    assert advice in result.stderr, result.stderr
    assert "No such option" not in result.stderr and "Did you mean" not in result.stderr
    if len(args) > 1 and len(args[1]) > 2:
        assert args[1] not in result.stderr, result.stderr


def test_no_refusal_shadows_an_option_of_fetcher_s():
    """REFUSED is consulted only for an option Click does not know; none of its names is one."""
    from fetcher.habits import REFUSED

    names = {name for param in main.params for name in param.opts + param.secondary_opts}
    assert names.isdisjoint(REFUSED), names & set(REFUSED)


# -- other tools' habits that wrote a cookie jar with -c (s22 h2 6) -------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-fc", "404"], "-fc"),  # httpx's filter-code: -f -c 404 wrote ./404
        (["-fc", "404,403"], "-fc"),
        (["-cname"], "httpx"),  # -c name
        (["-cdn"], "httpx"),
        (["-cl"], "httpx"),  # two letters: -c l
        (["-ct"], "httpx"),
        (["-csp-probe"], "httpx"),
        (["-fcdn"], "httpx"),  # -f -c dn
        (["-config", "httpx.yaml"], "httpx"),  # -c onfig, and the yaml fetched as a URL
        # Found on review (s22 r2 3): each wrote a jar and most ended 0.
        (["-cpe"], "httpx"),  # display CPE: -c pe
        (["-csvo", "utf-8"], "httpx"),  # csv-output-encoding: -c svo, utf-8 fetched as a URL
        (["-cff", "fingerprints.json"], "httpx"),  # custom-fingerprint-file: -c ff
        (["-ffc", "1494302000"], "httpx"),  # filter-favicon, as httpx's help has it: -f -f -c
        (["-fc", "1494302000"], "-fc"),  # a favicon hash: nine or ten digits, maybe signed
        (["-fc", "-1494302000"], "-fc"),
        # Ten digits two years from now are no time a jar is named after: a hash still.
        pytest.param(["-c", str(int(time.time()) - 2 * 366 * 86400)], "-fc", id="2-years-ago"),
        pytest.param(["-c", str(int(time.time()) + 2 * 366 * 86400)], "-fc", id="in-2-years"),
        (["-fc", "404, 403"], "-fc"),  # a blank after the comma
        (["-fc", "404,"], "-fc"),
        (["-fc", "200 - 299"], "-fc"),
    ],
)
def test_httpx_options_read_as_c_are_refused_and_write_no_jar(server, tmp_path, monkeypatch,
                                                               args, says):  # fmt: skip
    """Click read httpx's -fc 404 as -f -c 404, -cname as -c name: the run fetched, ended 0 and
    left a cookie jar of the servers' cookies in the current folder, named 404 or name."""
    monkeypatch.chdir(tmp_path)
    result = invoke([*args, server.url("/a")])
    assert result.exit_code == 2 and says in result.stderr, result.stderr
    assert "No such option" not in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == [] and server.requests == 0


@pytest.mark.parametrize(
    "args",
    [
        ["-fdc", "status_code==200"],  # httpx's filter-condition: -f -d c, every URL POSTed
        ["-delay", "1s"],  # -d elay
        ["-debug"],  # -d ebug
        ["-debug-req"],
        ["-debug-resp"],
        ["-deny", "10.0.0.0/8"],  # -d eny
        ["-duc"],  # disable-update-check: -d uc
        ["-unsafe"],  # -u nsafe: Basic credentials 'nsafe:' sent to every server
        ["-update"],  # -u pdate
        ["-oa"],  # output-all: -o a, every body saved under ./a
        ["-ob"],  # omit-body: -o b
        # s29 t3 1: long names with an inner dash that the list did not hold
        ["-disable-update-check"],  # -d isable-update-check: every URL POSTed
        ["-omit-body"],  # -o mit-body
        ["-follow-host-redirects"],  # -f -o llow-host-redirects
        ["-content-type"],  # -c ontent-type: a cookie jar written
        ["-csv-output-encoding"],
        ["-up"],  # update: -u p, Basic credentials 'p:' to every server
    ],
)
def test_httpx_options_read_as_a_body_a_user_or_a_folder_are_refused(
    server, tmp_path, monkeypatch, args
):
    """Click read httpx's -fdc EXPR as -f -d c: every URL was POSTed with the body 'c' (s22 r2
    3); -delay, -debug, -deny and -duc the same way, -unsafe and -update as -u USER (Basic
    credentials to every server), -oa and -ob as -o DIR (every body saved there, ending 0).
    Refused as httpx's -json is, before anything is sent or written."""
    monkeypatch.chdir(tmp_path)
    result = invoke([*args, server.url("/a")], input=b"")
    assert result.exit_code == 2 and "httpx" in result.stderr, result.stderr
    assert server.paths == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argument", ["-dtoken-s3cret", "-kuapi-token-s3cret", "-vdkey-s3cret"])
def test_a_dashed_word_s_value_is_not_shown(argument):
    """-dkey-word reads as -d key-word, and a cluster ending in -u or -d (-kuapi-token) gives
    it a secret too (s29 r2 3): the value is never shown."""
    result = invoke([argument, "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "no option here" in result.stderr, result.stderr
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize("args", [["-fd", "a=1"], ["-sd", "a=1"], ["-o", "b"], ["-fsSo", "b"]])
def test_curl_clusters_beside_the_httpx_words_still_work(server, tmp_path, monkeypatch, args):
    """curl's -f -d DATA, -s -d DATA and -o NAME are not httpx's words: kept."""
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", *args, server.url("/a")])
    assert "httpx" not in result.stderr, result.stderr


@pytest.mark.parametrize("host", ["example.com", "www.example.org", "127.0.0.1", "host:8080"])
def test_wget_s_c_host_with_no_url_is_refused_and_writes_no_jar(tmp_path, monkeypatch, host):
    """wget's -c HOST (continue): with standard input not a terminal (cron, ssh) fetcher read an
    empty list, ended 0 having fetched nothing, and wrote a cookie jar named after the host."""
    monkeypatch.chdir(tmp_path)
    result = invoke(["-c", host], input=b"")
    assert result.exit_code == 2 and "wget" in result.stderr, result.stderr
    assert f"./{host}" in result.stderr and "-i -" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "jar"),
    [
        (["-c", "jar.txt"], "jar.txt"),
        (["-c", "cookies"], "cookies"),
        (["-c", "./x"], "x"),
        (["-c", "./example.com"], "example.com"),  # the way to name a jar like a host
        (["-fc", "jar.txt"], "jar.txt"),  # curl's -f -c FILE
        (["-sc", "cookies"], "cookies"),
        (["-c./404"], "404"),
        (["-c", "2024-06-01"], "2024-06-01"),  # a jar of the day, -c $(date +%F) (s22 r3 2)
        (["-c", "20240601"], "20240601"),
        (["-c", "1"], "1"),
        # -c $(date +%s): ten digits, as a favicon hash, but the time of these years (s22 r4 5)
        pytest.param(["-c", str(int(time.time()))], str(int(time.time())), id="date-s"),
        pytest.param(
            ["-c", str(int(time.time()) + 200 * 86400)],
            str(int(time.time()) + 200 * 86400),
            id="date-s-in-200-days",
        ),
    ],
)
def test_a_cookie_jar_named_as_a_file_still_works(server, tmp_path, monkeypatch, args, jar):
    monkeypatch.chdir(tmp_path)
    from_stdin = invoke(["-q", *args], input=f"{server.url('/a')}\n".encode())
    assert from_stdin.exit_code == 0, from_stdin.stderr
    assert (tmp_path / jar).is_file() and server.requests == 1
    (tmp_path / jar).unlink()
    given = invoke(["-q", *args, server.url("/b")])
    assert given.exit_code == 0 and (tmp_path / jar).is_file(), given.stderr


def test_a_jar_named_like_a_host_beside_urls_is_a_jar(server, tmp_path, monkeypatch):
    """A jar named after the site it holds cookies for may be meant: refused only when no URL
    is given (standard input then read), as a URL given to -d or -A."""
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", "-c", "api.example.com", server.url("/a")])
    assert result.exit_code == 0 and (tmp_path / "api.example.com").is_file(), result.stderr
    again = invoke(["-q", "-c", "api.example.com"], input=f"{server.url('/b')}\n".encode())
    assert again.exit_code == 0, again.stderr  # it exists now: a jar, whatever its name


# -- a '~' no shell expanded ---------------------------------------------------------------------
# FETCHER_OUTPUT_DIR='~/dl' in a crontab or a systemd EnvironmentFile (neither expands '~'), or a
# quoted -o '~/dl', made a folder named '~' in the current folder, exit 0: the bodies were not
# in the home folder, and the obvious clean-up, rm -rf ~, removes that (s25 h5 6).


@pytest.mark.parametrize("folder", ["~/dl", "~", "~/", "~root/dl"])
@pytest.mark.parametrize("from_variable", [False, True])
def test_a_new_output_dir_under_an_unexpanded_tilde_is_refused(
    server, tmp_path, monkeypatch, folder, from_variable
):
    monkeypatch.chdir(tmp_path)
    if from_variable:
        result = invoke(["-q", server.url("/a")], FETCHER_OUTPUT_DIR=folder)
    else:
        result = invoke(["-q", "-o", folder, server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "~" in result.stderr and "shell" in result.stderr, result.stderr
    assert "FETCHER_OUTPUT_DIR" in result.stderr or not from_variable, result.stderr
    assert list(tmp_path.iterdir()) == [] and server.requests == 0


@pytest.mark.parametrize("option", ["--results", "--failed", "--summary", "--state"])
@pytest.mark.parametrize("path", ["~", "~/r.txt"])
def test_a_new_run_file_under_an_unexpanded_tilde_is_refused_with_the_hint(
    server, tmp_path, monkeypatch, option, path
):
    monkeypatch.chdir(tmp_path)
    result = invoke(["-q", option, path, server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "shell" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == [] and server.requests == 0


def test_a_folder_named_tilde_that_exists_is_used_as_any_folder(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "~").mkdir()
    result = invoke(["-q", "-o", "~/dl", "--results", "~/r.txt", server.url("/a")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "~" / "dl" / f"127.0.0.1_{server.port}" / "a").is_file()
    assert (tmp_path / "~" / "r.txt").is_file()


def test_each_refusal_names_the_option_typed():
    """s30 t1 9: --post-data was refused with --body-data's message, naming an option the user
    never typed. A few options share the message of the one they go with."""
    from fetcher.habits import REFUSED

    shared = {"--parallel-max", "--parallel-immediate"}  # --remote-name-all names itself (s35 t6 4)
    unnamed = {name for name, message in REFUSED.items() if name not in message}
    assert unnamed == shared, unnamed - shared


@pytest.mark.parametrize("word", ["help", "version", "Help", "usage"])
def test_a_command_word_given_as_the_url_is_a_usage_error(word):
    """s30 t1 7: `fetcher help` looked the host 'help' up and recorded a dns failure."""
    result = invoke([word])
    assert result.exit_code == 2, result.output
    assert "--help" in result.stderr and "--version" in result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [(["--retry", "3", "-d", "x=1"], "POST"), (["--retry", "2", "-X", "PATCH"], "PATCH"),
     (["--retry", "3", "-d", "x", "--retry-all-methods"], None), (["-d", "x"], None),
     (["--retry", "3"], None), (["-s", "--retry", "3", "-d", "x"], None),
     (["-sS", "--retry", "3", "-d", "x"], "POST"),
     (["-q", "-S", "--retry", "2", "-d", "x"], "POST")],
)  # fmt: skip
def test_retry_beside_a_method_it_does_not_retry_says_so(args, said):
    """s32 t5 2: curl's --retry retries a POST; fetcher's (SPEC 2.2) retries only methods that
    may be sent twice, and a typed --retry 3 -d x=1 made one request and nothing said why.
    Said under -sS too, curl's cron line (s38 t4 3), not under -s alone."""
    result = invoke([*args, "--max-time", "1", "http://127.0.0.1:9/x"])
    hint = [line for line in result.stderr.splitlines() if "--retry-all-methods" in line]
    if said is None:
        assert hint == [], result.stderr
    else:
        assert len(hint) == 1 and f"does not retry a {said}" in hint[0], result.stderr


@pytest.mark.parametrize(
    ("url", "glob"),
    [("http://127.0.0.1:9/img[1-3].jpg", True), ("http://127.0.0.1:9/{a,b}.html", True),
     ("http://127.0.0.1:9/p[a-z]/x", True), ("http://[::1]:9/x", False),
     ("http://127.0.0.1:9/a?x={y}", False), ("http://127.0.0.1:9/a[1]", False),
     ("127.0.0.1:9/img[1-3].jpg", True), ("127.0.0.1:9/img[1-3].jpg?next=http://a.test/", True),
     ("http://127.0.0.1:9?q=img[1-3]", True), ("127.0.0.1:9?x=[1-3]", True),
     ("http://{a,b}.test/", True), ("http://[::1]:9?x=[a]", False)],
)  # fmt: skip
def test_a_curl_glob_in_a_url_argument_is_said_to_be_fetched_as_written(url, glob):
    """s32 t5 3: curl expands img[1-3].jpg and {a,b}.html into several URLs; fetcher fetched
    the one literal URL (%5B1-3%5D), ok on a server that answers any path, nothing said. curl
    globs the whole URL, its host and query too (s33 r1 2)."""
    result = invoke(["--max-time", "1", url])
    said = [line for line in result.stderr.splitlines() if "curl glob" in line]
    assert len(said) == (1 if glob else 0), result.stderr


@pytest.mark.parametrize("option", ["--results", "--summary", "--metrics", "--failed", "--state"])
@pytest.mark.parametrize(
    "value", ["example.org/feed.xml", "localhost:9100/metrics", "10.0.0.1/x?y"]
)
def test_a_scheme_less_url_taken_as_a_file_option_s_value_writes_nothing(
    tmp_path, monkeypatch, option, value
):
    """s37 t2 1: cron's `--results $OUT example.org/feed.xml` with OUT empty: the URL was the
    file's name, standard input (empty) was read, the run ended 0 having fetched nothing, and a
    file named after the URL was made, or emptied (a wget mirror's copy of that very URL). As
    wget's -c HOST is, such a value is refused when no URL is given; ./NAME names a file."""
    monkeypatch.chdir(tmp_path)
    site = tmp_path / "example.org"
    site.mkdir()
    (site / "feed.xml").write_text("<rss>mirrored</rss>")
    result = invoke([option, value], input=b"")
    assert result.exit_code == 2, result.stderr
    assert f"./{value}" in result.stderr and "-i -" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["example.org", "feed.xml"]
    assert (site / "feed.xml").read_text() == "<rss>mirrored</rss>"


@pytest.mark.parametrize("option", ["--results", "--state"])
def test_a_file_option_named_like_a_url_with_dot_slash_or_beside_urls_is_a_file(
    server, tmp_path, monkeypatch, option
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "example.org").mkdir()
    given = invoke(["-q", option, "./example.org/out", server.url("/a")])
    assert given.exit_code == 0 and (tmp_path / "example.org" / "out").is_file(), given.stderr
    beside = invoke(["-q", option, "example.org/out2"], input=f"{server.url('/b')}\n".encode())
    assert beside.exit_code == 2, beside.stderr  # standard input alone: refused
    piped = invoke(
        ["-q", option, "example.org/out3", "-i", "-"], input=f"{server.url('/c')}\n".encode()
    )
    assert piped.exit_code == 0 and (tmp_path / "example.org" / "out3").is_file(), piped.stderr


@pytest.mark.parametrize(
    ("args", "always"),
    [(["-u", "example.org/x"], True), (["-d", "example.org/x"], False),
     (["-d", "localhost:8080/a"], False)],
)  # fmt: skip
def test_a_scheme_less_url_taken_as_u_d_or_a_s_value_is_refused(server, args, always):
    """s37 t2 2: only 'http://' values were caught. -u example.org/x sent Basic
    'example.org/x:' to the next URL and never fetched example.org/x; -d and -A with nothing
    else read an empty standard input and ended 0."""
    alone = invoke(args, input=b"")
    assert alone.exit_code == 2 and "as its value" in alone.stderr, alone.stderr
    beside = invoke(["-q", *args, server.url("/a")])
    assert (beside.exit_code == 2) is always, beside.stderr


def test_a_file_named_like_a_host_alone_is_a_file_and_cron_s_pipe_is_no_source(server, tmp_path):
    """s37 r2 3: `producer | fetcher --results results.de` was refused as 'no URL is given'; a
    host alone, or a name with a colon, is as likely a file's name: only a host with a path is
    taken for a URL. r3 1: standard input is no sign either way: cron's is a pipe it closes,
    and a look at it let the cron line these checks are for through."""
    from tests.conftest import run_process

    url = f"{server.url('/a')}\n".encode()
    for option, name in (("--results", "results.de"), ("--failed", "urls.in"),
                         ("--summary", "out-12:30:00")):  # fmt: skip
        done = run_process(["-q", option, name], input=url, cwd=tmp_path)
        assert done.returncode == 0 and (tmp_path / name).exists(), (option, done.stderr)
    reader, writer = os.pipe()
    os.close(writer)  # as cron leaves it: a pipe, closed, nothing in it
    try:
        done = subprocess.run([*FETCHER, "-q", "--results", "example.org/feed.xml"],
                              cwd=tmp_path, stdin=reader, capture_output=True, env=clean_env(),
                              timeout=60, check=False)  # fmt: skip
    finally:
        os.close(reader)
    assert done.returncode == 2 and b"looks like a URL" in done.stderr, done.stderr
    assert not (tmp_path / "example.org").exists()


@pytest.mark.parametrize("user", ["alice:1234/abcd", "deploy:2024/Winter", "acme.io/bot:tok"])
def test_a_user_whose_password_looks_like_a_port_and_path_is_sent(server, user):
    """s37 r2 1: -u alice:1234/abcd read as host alice, port 1234, path /abcd: the run was
    refused, and the message showed the password. A user's value with a password is a user."""
    import base64

    result = invoke(["-q", "-u", user, server.url("/a")])
    assert result.exit_code == 0 and user.split(":")[1] not in result.stderr, result.stderr
    sent = server.headers_seen[-1].get("Authorization")
    assert sent == "Basic " + base64.b64encode(user.encode()).decode()


def test_a_body_taken_for_a_url_is_not_quoted_back():
    """s37 r4 1: -d token:31337/s3cretBody read as host, port and path was refused with the
    body quoted whole; a body, a header, a user may be secrets (SECRET_VALUES)."""
    result = invoke(["-q", "-d", "token:31337/s3cretBody"], input=b"")
    assert result.exit_code == 2 and "-d took '…' as its value" in result.stderr, result.stderr
    assert "s3cret" not in result.stderr
