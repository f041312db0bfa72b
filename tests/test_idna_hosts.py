"""Internationalised host names: requests sends a Unicode host in its IDNA (punycode) form, so
whatever fetcher binds to a host (a -b cookie, a Retry-After pause) must name it the same way.

Other host names reach a local server through a proxy (test_cookie_scope.py's ProxyHost): it
answers for whichever host the URL names and records the absolute URL each request was sent to.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import run_process
from tests.servers import Route, serving
from tests.test_cookie_scope import ProxyHost, route, through

UNICODE_HOST, PUNYCODE_HOST = "bücher.example", "xn--bcher-kva.example"
RETRY_AFTER = 2  # seconds the 503 asks for
SLOW = 0.5  # seconds /slow takes to answer
SLACK = 0.2  # the scheduler's clock and the server's differ by a request's way there


def test_b_cookie_is_sent_to_a_unicode_host():
    with serving(ProxyHost(route)) as hosts:
        through(hosts, "-b", "a=1", f"http://{UNICODE_HOST}/echo")
        assert hosts.sent(f"http://{PUNYCODE_HOST}/echo") == ["a=1"]


class PausingHost(ProxyHost):
    """``/r503`` redirects to ``/s503`` on the same host, which answers 503 with Retry-After;
    anything else 200. Notes when each path (without its host or query) arrived."""

    def __init__(self) -> None:
        super().__init__(self.answer)
        self.arrivals: list[tuple[float, str]] = []
        self.arrivals_lock = threading.Lock()

    def answer(self, url: str) -> Route:
        path = urlsplit(url).path
        with self.arrivals_lock:
            self.arrivals.append((time.monotonic(), path))
        if path == "/r503":
            return 302, {"Location": "/s503"}, b"", 0.0
        if path == "/s503":
            return 503, {"Retry-After": str(RETRY_AFTER)}, b"busy", 0.0
        if path == "/slow":
            return 200, {}, b"ok\n", SLOW
        return 200, {}, b"ok\n", 0.0

    def times(self, path: str) -> list[float]:
        with self.arrivals_lock:
            return sorted(t for t, p in self.arrivals if p == path)


def through_proxy(
    proxy: PausingHost, tmp_path, lines: list[str], *options: str
) -> subprocess.CompletedProcess[bytes]:
    """Run fetcher -q over lines (in a file) through proxy, which answers for every host."""
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"{line}\n" for line in lines))
    args = ["-x", f"http://127.0.0.1:{proxy.port}", "-q", *options, "-i", str(urls)]
    return run_process(args, timeout=30)


@pytest.mark.parametrize("host", ["plain.example", UNICODE_HOST], ids=["ascii", "unicode"])
def test_a_retry_after_after_a_same_host_redirect_pauses_a_unicode_host(tmp_path, host):
    lines = [f"http://{host}/r503", f"http://{host}/echo?1", f"http://{host}/echo?2"]
    with serving(PausingHost()) as proxy:
        started = time.monotonic()
        result = through_proxy(proxy, tmp_path, lines, "-j", "1", "--retries", "0")
        assert result.returncode != 0, result.stderr  # the 503 is the run's failure
        assert time.monotonic() - started < 15
        [told] = proxy.times("/s503")
        echoes = proxy.times("/echo")
    assert len(echoes) == 2
    assert echoes[0] >= told + RETRY_AFTER - SLACK, f"fetched {echoes[0] - told:.2f} s after"


@pytest.mark.parametrize("first", [UNICODE_HOST, PUNYCODE_HOST], ids=["unicode", "punycode"])
def test_a_retry_after_pauses_both_spellings_of_a_host(tmp_path, first):
    """One server, two spellings in the list: the pause it asks for holds for both (s15 h2 2:
    the other spelling's URL went at once, during the pause)."""
    other = PUNYCODE_HOST if first == UNICODE_HOST else UNICODE_HOST
    lines = [f"http://{first}/s503", f"http://{other}/echo?1"]
    with serving(PausingHost()) as proxy:
        result = through_proxy(proxy, tmp_path, lines, "-j", "1", "--retries", "0")
        assert result.returncode != 0, result.stderr
        [told] = proxy.times("/s503")
        [echo] = proxy.times("/echo")
    assert echo >= told + RETRY_AFTER - SLACK, f"fetched {echo - told:.2f} s after"


def test_per_host_counts_both_spellings_of_a_host_as_one(tmp_path):
    """--per-host 1 over two spellings of one host: one request at a time reaches it."""
    lines = [f"http://{UNICODE_HOST}/slow?1", f"http://{PUNYCODE_HOST}/slow?2"]
    with serving(PausingHost()) as proxy:
        result = through_proxy(proxy, tmp_path, lines, "-j", "4", "--per-host", "1")
        first, second = proxy.times("/slow")
    assert result.returncode == 0, result.stderr
    assert second - first >= SLOW - SLACK, f"the second came {second - first:.2f} s after"


def test_a_redirect_to_a_unicode_host_goes_to_its_idna_form():
    """A Location naming a Unicode host (raw UTF-8, as servers send it) was sent on with the
    host %-encoded: looked up as '%C3%BC...' (dns), under -x an assertion (s17 h1 D5). It goes
    where the same URL typed goes: to the host's IDNA form, as curl and browsers go."""

    def answer(url: str) -> Route:
        if urlsplit(url).path == "/away":
            location = f"http://{UNICODE_HOST}/there?q=ü".encode().decode("latin-1")
            return 302, {"Location": location}, b"", 0.0
        return 200, {}, b"ok\n", 0.0

    with serving(ProxyHost(answer)) as hosts:
        [record] = through(hosts, "http://start.example/away")
        assert hosts.sent(f"http://{PUNYCODE_HOST}/there?q=%C3%BC") == [None]
        assert record["final_url"] == f"http://{PUNYCODE_HOST}/there?q=%C3%BC"


@pytest.mark.parametrize(
    "host",
    ["\N{GRINNING FACE}.example", "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11"],
    ids=["refused", "look-alike"],
)
def test_a_redirect_to_a_host_idna_refuses_is_the_server_s_error(host):
    """A look-alike (fullwidth digits: IDNA maps them to 127.0.0.1) was followed to the plain
    host (s17 r1 8). The server's Location is not the user's: the same URL typed goes to
    127.0.0.1 (UTS #46, as curl), but a redirect there stays refused."""

    def answer(url: str) -> Route:
        location = f"http://{host}/".encode().decode("latin-1")
        return 302, {"Location": location}, b"", 0.0

    with serving(ProxyHost(answer)) as hosts:
        result = run_process(["-x", f"http://127.0.0.1:{hosts.port}", "--format", "jsonl",
                              "http://start.example/away"])  # fmt: skip
        [record] = [json.loads(line) for line in result.stdout.splitlines()]
        assert record["error"]["kind"] == "protocol" and record["attempts"] == 1, record
        assert "invalid host name" in record["error"]["message"]
        assert result.returncode == 3


# -- UTS #46: the host name typed is mapped as requests' own IDNA and curl's libidn2 map it ----

FULL_WIDTH = "\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com"  # ＥＸＡＭＰＬＥ.com
LIGATURE = "\ufb01.example"  # ﬁ.example


@pytest.mark.parametrize(
    ("typed", "sent"),
    [(FULL_WIDTH, "example.com"), (LIGATURE, "fi.example"), ("B\u00dcCHER.example", PUNYCODE_HOST)],
    ids=["full-width", "ligature", "upper-case"],
)
def test_a_host_typed_in_compatibility_letters_goes_to_its_mapped_form(typed, sent):
    """Full-width letters and a ligature were invalid_url, "Codepoint U+FF45 ... not allowed"
    (s26 h5 6): urllib3's strict IDNA 2008 refuses them, where curl (libidn2) and requests'
    own IDNA map them by UTS #46. The record's url stays as typed."""
    with serving(ProxyHost(route)) as hosts:
        [record] = through(hosts, f"http://{typed}/echo")
        assert hosts.sent(f"http://{sent}/echo") == [None]
    assert record["url"] == f"http://{typed}/echo"


def test_the_mapped_spelling_is_the_one_of_the_state_unique_and_o_folders(tmp_path):
    """One server typed two ways is one URL for --unique, one --state row and one -o folder."""
    state, out = tmp_path / "state.db", tmp_path / "out"
    with serving(ProxyHost(route)) as hosts:
        records = through(hosts, "--unique", "--state", str(state), "-o", str(out),
                          f"http://{FULL_WIDTH}/echo", "http://example.com/echo")  # fmt: skip
        assert len(hosts.paths) == 1, hosts.paths
    assert len(records) == 1
    assert [p.relative_to(out).as_posix() for p in out.rglob("*")] == [
        "example.com",
        "example.com/echo",
    ]
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT url FROM urls").fetchall() == [("http://example.com/echo",)]


@pytest.mark.parametrize(
    "char",
    ["\u202e", "\u200b", "\u200d", "\u00ad", "\u2060"],
    ids=["bidi", "zero-width-space", "zero-width-joiner", "soft-hyphen", "word-joiner"],
)
def test_a_host_with_a_bidi_or_invisible_character_stays_refused_with_one_escaping(char):
    """UTS #46 drops a zero-width space or a soft hyphen from a name: a host that hides one is
    refused before any request, as IDNA refuses a bidi control. The message holds the
    character itself, which each output escapes once: it quoted repr()'s escape, which text
    output escaped again ('a\\\\u202eb')."""
    url = f"http://a{char}b.example/"
    result = run_process(["--format", "jsonl", "-x", "http://127.0.0.1:9", url])
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["error"]["kind"] == "invalid_url" and record["attempts"] == 0, record
    message = record["error"]["message"]
    assert f"U+{ord(char):04X}" in message, message
    assert "\\" not in message, message


# -- The case of a host: DNS ignores it, so one server is one --state row, --unique URL, file ---

UPPER_CASE = "B\u00dcCHER.example"  # BÜCHER.example: UTS #46 maps it to bücher.example


@pytest.mark.parametrize(
    ("spellings", "mapped"),
    [(["EXAMPLE.com", FULL_WIDTH, "example.com"], "example.com"),
     ([UPPER_CASE, UNICODE_HOST], UNICODE_HOST)],
    ids=["ascii-capitals", "unicode-capitals"],
)  # fmt: skip
@pytest.mark.parametrize("unique", [True, False], ids=["unique", "each"])
def test_a_host_typed_in_capitals_is_one_state_row_unique_url_and_file(
    tmp_path, spellings, mapped, unique
):
    """EXAMPLE.com's was a row, a --unique URL and a file of its own beside ＥＸＡＭＰＬＥ.com's
    (mapped to example.com): the mapping skipped a host that was ASCII, or whose mapped form
    only lower-cased it, and left its capitals in the key; the second file was named ~<hash>."""
    state, out = tmp_path / "state.db", tmp_path / "out"
    urls = [f"http://{host}/echo" for host in spellings]
    with serving(ProxyHost(route)) as hosts:
        records = through(hosts, *(["--unique"] if unique else []), "--state", str(state),
                          "-o", str(out), *urls)  # fmt: skip
        sent = len(hosts.paths)
    assert len(records) == sent == (1 if unique else len(urls))
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert files == [mapped, f"{mapped}/echo"]
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT url FROM urls").fetchall() == [(f"http://{mapped}/echo",)]


def typed_over_an_older_row(
    state: Path, out: Path, typed: str, given: str, extra: list[str], urls: list[str] | None = None
) -> tuple[subprocess.CompletedProcess[bytes], list[str | None]]:
    """A run of http://example.com/echo saved under -o, its row then keyed as an earlier
    fetcher keyed it (typed, with an ETag), then a run of typed, or of urls when given (as
    arguments or a pipe's lines, with extra): that run, and the If-None-Match of each request
    the host saw."""
    urls = urls or [typed]
    with serving(ProxyHost(route)) as hosts:
        through(hosts, "--state", str(state), "-o", str(out), "http://example.com/echo")
        with sqlite3.connect(state) as db:  # as an earlier fetcher keyed it, with an ETag
            db.execute("UPDATE urls SET url = ?, etag = '\"v1\"'", (typed,))
        args = ["-x", f"http://127.0.0.1:{hosts.port}", "--format", "jsonl", "--state",
                str(state), "-o", str(out), *extra]  # fmt: skip
        if given == "pipe":
            result = run_process(
                [*args, "-i", "-"], input="".join(f"{url}\n" for url in urls).encode()
            )
        else:
            result = run_process([*args, *urls])
        with hosts.lock:
            seen = [headers.get("If-None-Match") for headers in hosts.headers_seen]
    return result, seen


@pytest.mark.parametrize("given", ["argument", "pipe"])
@pytest.mark.parametrize("fresh", [False, True], ids=["validated", "skip-fresh"])
def test_a_row_an_earlier_fetcher_keyed_with_capitals_is_still_the_url_s_row(
    tmp_path, given, fresh
):
    """A state from before the host's case was folded holds EXAMPLE.com's row under its
    capitals: the URL typed so again finds that row (its validators go out, or it is fresh),
    and its answer goes to it, not to a new row with a second file (~<hash>). Looked up in a
    batch (arguments) and one at a time (a pipe)."""
    state, out = tmp_path / "state.db", tmp_path / "out"
    typed = "http://EXAMPLE.com/echo"
    result, seen = typed_over_an_older_row(
        state, out, typed, given, ["--skip-fresh", "1h"] if fresh else []
    )
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["ok"] and record["skipped"] is fresh, (record, result.stderr)
    assert seen == ([None] if fresh else [None, '"v1"'])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "example.com",
        "example.com/echo",
    ]
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT url FROM urls").fetchall() == [(typed,)]


@pytest.mark.parametrize(
    ("given", "first", "extra"),
    [("argument", "capitals", []), ("argument", "folded", []), ("pipe", "capitals", []),
     ("argument", "capitals", ["--processes", "2"]), ("argument", "folded", ["--processes", "2"])],
)  # fmt: skip
def test_both_spellings_over_a_row_an_earlier_fetcher_keyed_with_capitals_are_one_row_and_file(
    tmp_path, given, first, extra
):
    """t4 1: the URL typed in capitals took the older row's key (Job.key) for its row and the
    claim of its file, but its file's owner was worked out again (the folded key), and the URL
    typed folded had a key of its own: with --skip-fresh, one was kept as fresh and the other
    was fetched to a ~<hash> file and a second row. Both spellings now are the older row's
    request: fresh, one file, one row. Read in one batch (arguments, either order), and one
    at a time (a pipe, the capitals first: a folded line read before them has gone already)."""
    state, out = tmp_path / "state.db", tmp_path / "out"
    typed, folded = "http://EXAMPLE.com/echo", "http://example.com/echo"
    urls = [typed, folded] if first == "capitals" else [folded, typed]
    result, seen = typed_over_an_older_row(
        state, out, typed, given, ["--skip-fresh", "1h", *extra], urls
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["skipped"] for record in records] == [True, True], (records, result.stderr)
    assert seen == [None]  # the first run's request only
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "example.com",
        "example.com/echo",
    ]
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT url FROM urls").fetchall() == [(typed,)]


# -- The case of a scheme: RFC 3986 3.1 ignores it too --------------------------------------------


@pytest.mark.parametrize("unique", [True, False], ids=["unique", "each"])
def test_a_scheme_typed_in_capitals_is_one_state_row_unique_url_and_file(tmp_path, unique):
    """s27 r2 7: HTTP://, Http:// and http:// kept their case in the job's target, so one URL
    was three --state rows, three --unique URLs and three files (y, y~<hash>, y~<hash>). The
    record's url stays as typed."""
    state, out = tmp_path / "state.db", tmp_path / "out"
    urls = ["HTTP://example.com/echo", "Http://EXAMPLE.com/echo", "http://example.com/echo"]
    with serving(ProxyHost(route)) as hosts:
        records = through(hosts, *(["--unique"] if unique else []), "--state", str(state),
                          "-o", str(out), *urls)  # fmt: skip
        sent = len(hosts.paths)
    assert len(records) == sent == (1 if unique else len(urls))
    assert {record["url"] for record in records} <= set(urls)
    assert records[0]["url"] == urls[0]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert files == ["example.com", "example.com/echo"]
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT url FROM urls").fetchall() == [("http://example.com/echo",)]


@pytest.mark.parametrize("typed", ["HTTP://example.com/echo", "Http://EXAMPLE.com/echo"])
@pytest.mark.parametrize("given", ["argument", "pipe"])
def test_a_row_an_earlier_fetcher_keyed_with_a_capital_scheme_is_still_the_url_s_row(
    tmp_path, typed, given
):
    """A state from before the scheme's case was folded holds the row under the scheme as
    typed (and, before b7821a4, the host too): the URL typed so finds it again (its ETag goes
    out) and updates it, with no second row nor second file."""
    state, out = tmp_path / "state.db", tmp_path / "out"
    result, seen = typed_over_an_older_row(state, out, typed, given, [])
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["ok"] and record["url"] == typed, (record, result.stderr)
    assert seen == [None, '"v1"']
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert files == ["example.com", "example.com/echo"]
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT url FROM urls").fetchall() == [(typed,)]


@pytest.mark.parametrize(
    ("typed", "fetched"),
    [
        ("http://example.com/Y?", "http://example.com/Y?"),  # as it is: nothing to fold
        ("HTTPS://USER:PW@Example.COM:8443/Y?", "https://USER:PW@example.com:8443/Y?"),
        ("hTtP://[::FFFF:127.0.0.1]:81/Y#F", "http://[::ffff:127.0.0.1]:81/Y"),
        ("Http://example.com/Y", "http://example.com/Y"),
        ("http://[::1]:0080/Y#F", "http://[::1]/Y"),
        ("HTTP://U@EXAMPLE.COM:08443/Y?#", "http://U@example.com:8443/Y?"),
    ],
)
def test_only_the_scheme_and_host_are_folded(typed, fetched):
    """The scheme and the host, and the port as sent (s36 t1 1), nothing else: not the
    userinfo, the path or an empty '?' (urlunsplit dropped the '?'). The fragment, never
    sent, goes (s36 t1 1)."""
    from fetcher.input.jobs import check

    assert check(typed) == (None, check(fetched)[1], fetched)


def test_fragments_and_port_spellings_of_one_resource_are_one_state_row(tmp_path):
    """s36 t1 1: the key kept the fragment (never sent) and the port as typed: `#intro`,
    `#usage`, `:80` and `:080` were four rows of one resource, each fetched whole and
    `changed` at every run, never a 304."""
    state, out = tmp_path / "state.db", tmp_path / "out"
    urls = [f"http://example.com{port}/echo{fragment}" for port, fragment in
            [("", "#intro"), ("", "#usage"), (":80", ""), (":080", "#x")]]  # fmt: skip
    with serving(ProxyHost(route)) as hosts:
        records = through(hosts, "--state", str(state), "-o", str(out), *urls)
    assert [record["url"] for record in records] == urls  # as typed, in the records
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "example.com",
        "example.com/echo",
    ]
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT url FROM urls").fetchall() == [("http://example.com/echo",)]


def test_an_empty_path_and_a_slash_are_one_state_row(tmp_path):
    """s37 t5 1: `http://h` is sent as `GET /`, as `http://h/` is, yet the two were two rows,
    two --unique URLs and two files (index.html and index.html~<hash>): a list that spells a
    home page both ways (or changes its spelling) got no 304 and `changed` each time."""
    state, out = tmp_path / "state.db", tmp_path / "out"
    urls = ["http://example.com", "http://example.com/", "http://example.com#top"]
    with serving(ProxyHost(route)) as hosts:
        records = through(hosts, "--state", str(state), "-o", str(out), "--unique", *urls)
    assert [record["url"] for record in records] == urls[:1], records  # repeats skipped
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "example.com",
        "example.com/index.html",
    ]
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT url FROM urls").fetchall() == [("http://example.com/",)]


@pytest.mark.parametrize(
    "typed", ["HTTP://example.com", "http://EXAMPLE.com", "http://example.com#x",
              "http://example.com:80", "http://Example.com?q=1"],
)  # fmt: skip
def test_a_row_the_last_fetcher_keyed_without_the_root_s_slash_is_still_found(tmp_path, typed):
    """s37 r3 2: an earlier fetcher keyed such a URL with its spelling mapped and no '/'
    (`http://example.com`); d47323a added the '/', and the lookup tried the URL as typed alone:
    the row was lost, no conditional request, `changed`, a second row."""
    state, out = tmp_path / "state.db", tmp_path / "out"
    sent = typed.lower().split("#")[0].replace(":80", "").replace("?", "/?")
    sent = sent if "/?" in sent else sent + "/"
    older = sent.replace("/?", "?").removesuffix("/")  # as the last fetcher keyed it
    with serving(ProxyHost(route)) as hosts:
        through(hosts, "--state", str(state), "-o", str(out), sent)
        with sqlite3.connect(state) as db:
            db.execute("UPDATE urls SET url = ?, etag = '\"v1\"'", (older,))
        through(hosts, "--state", str(state), "-o", str(out), typed)
        with hosts.lock:
            seen = [headers.get("If-None-Match") for headers in hosts.headers_seen]
    assert seen == [None, '"v1"'], seen
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT url FROM urls").fetchall() == [(older,)]


def test_a_row_an_earlier_fetcher_keyed_with_a_fragment_is_still_the_url_s_row(tmp_path):
    """A state from before s36 t1 1 holds a URL's row under its fragment: the URL typed so
    again finds it (its validators go out), as the capitals' older rows are found."""
    state, out = tmp_path / "state.db", tmp_path / "out"
    typed = "http://example.com/echo#intro"
    result, seen = typed_over_an_older_row(state, out, typed, "argument", [])
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["ok"], (record, result.stderr)
    assert seen == [None, '"v1"']
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT url FROM urls").fetchall() == [(typed,)]
