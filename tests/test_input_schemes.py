"""What a line or argument without "://" is: a host that gets --default-scheme, or another scheme
(SPEC §2.1: "mailto:", "javascript:", "data:" are invalid_url, never looked up as a host); and the
8 KiB limit of a line, which holds for a command-line argument as well."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fetcher.input.jobs import JobMaker
from fetcher.settings import MAX_LINE_BYTES
from tests.conftest import invoke
from tests.servers import CountingServer, records


def run(*args: str) -> list[dict[str, Any]]:
    """The records of the command run in process, JSON Lines, no retries."""
    result = invoke(["--format", "jsonl", "--retries", "0", *args])
    assert "Traceback" not in result.stderr
    return records(result.stdout)


def assert_invalid(record: dict[str, Any], *words: str) -> None:
    """record is an invalid_url that no request was made for (a DNS lookup would have made its
    kind dns, a request http or connect)."""
    assert (record["ok"], record["attempts"], record["status"]) == (False, 0, None), record
    assert record["error"]["kind"] == "invalid_url", record
    for word in words:
        assert word in record["error"]["message"], record


# -- a scheme with nothing after its colon -------------------------------------------------------

BARE_SCHEMES = ["javascript:", "data:", "mailto:", "JavaScript:", "javascript:/x", "data:?x"]


@pytest.mark.parametrize("argument", [*BARE_SCHEMES, "javascript:  ", "  data:\t"])
def test_a_bare_scheme_argument_is_an_invalid_url(argument: str) -> None:
    [record] = run(argument)
    scheme = argument.strip().split(":")[0]
    assert_invalid(record, f"unsupported scheme {scheme!r}")
    assert record["url"] == argument.strip()


def test_a_bare_scheme_line_is_an_invalid_url_with_its_line_number(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    lines = [*BARE_SCHEMES, "javascript:   \t", "data:\r"]
    urls.write_bytes("\n".join(lines).encode() + b"\n")
    found = run("--ordered", "-i", str(urls))
    assert [record["line"] for record in found] == list(range(1, len(lines) + 1))
    for record, line in zip(found, lines, strict=True):
        assert_invalid(record, f"unsupported scheme {line.strip().split(':')[0]!r}")


def test_http_without_its_slashes_is_not_called_an_unsupported_scheme() -> None:
    for record in run("http:", "https:example.org", "HTTP:/x"):
        assert_invalid(record, "no '//'")
        assert "unsupported" not in record["error"]["message"]


@pytest.mark.parametrize("text", ["//127.0.0.1:18431/rel", "//example.org", "//user:pw@a.test/x"])
def test_a_protocol_relative_url_says_what_it_is(text: str) -> None:
    """`//host/path`, as copied from a page's HTML, was "no host in URL" though it has one
    (s17 h3). curl ("bad/illegal format") and wget ("Scheme missing") refuse it too; the
    record now says what it is and what to write, and no request is made for it."""
    [record] = run(text)
    assert_invalid(record, "protocol-relative", "scheme")
    assert "no host" not in record["error"]["message"]
    assert "pw" not in record["error"]["message"]


def test_an_aria2_option_line_is_no_host_to_look_up(tmp_path: Path) -> None:
    """aria2's lists put options under a URL on indented lines ('  out=name.json'): each was
    looked up in DNS as the host 'out=name.json', its file name sent to the resolver, and then
    retried by every --failed loop (s20 h3 5). '=' is in no host name."""
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/a\n  out=renamed.json\n  dir=/srv/x\n")
    found = run("--ordered", "-i", str(urls))
    for record in found[1:]:
        assert_invalid(record, "aria2")


@pytest.mark.parametrize(
    "line", ["'http://127.0.0.1:9/x'", "(http://127.0.0.1:9/x)", "'127.0.0.1:9/x'", "a'b.test/x"]
)
def test_a_url_in_quotes_or_parentheses_is_no_host_to_look_up(line: str) -> None:
    """A list pasted from Python, SQL or Markdown: the line has no scheme at its start, so it
    became https://'http://..., its host `'http` sent to the resolver, the record 'dns: Name or
    service not known' (s24 h3 1). No host name holds a quote or a parenthesis."""
    [record] = run(line)
    assert_invalid(record, "no host name holds")


@pytest.mark.parametrize(
    "line",
    ["$home!", "bob;bob@corp.test;https://x.test/",
     "http://a&b.test/", "http://a+b.test/", "http://a=b.test/", "http://a*b.test/"],
)  # fmt: skip
def test_a_host_holding_a_sub_delimiter_is_no_host_to_look_up(line: str) -> None:
    """s32 t3 2: a spreadsheet's rows given as a list of lines sent their header and cells
    (names, e-mail domains) to the resolver as hosts: `url,campaign,notes`, `corp.test;https`.
    No DNS name holds , ; $ ! & + = or * (curl: bad hostname), as none holds a quote."""
    [record] = run(line)
    assert_invalid(record, "no host name holds")


@pytest.mark.parametrize(
    ("line", "form"),
    [('{"url":"http://127.0.0.1:9/j1"}', "jsonl"), ('{"url": "http://127.0.0.1:9/j", "id": 3}',
     "jsonl"), ("url,campaign,notes", "csv"), ("name;url;x", "csv"), ('"URL",id', "csv")],
)  # fmt: skip
def test_a_jsonl_or_csv_line_read_as_a_url_says_which_option_reads_it(line: str, form: str) -> None:
    """s36 t3 2: a JSON Lines or csv file given without --input-format had its lines called
    malformed URLs ("the port is not a number", "whitespace inside the URL"), none naming the
    option that reads them."""
    [record] = run(line)
    assert_invalid(record, f"--input-format {form}")


@pytest.mark.parametrize(
    "text", ["a.test/items?fields=id,url,title", "a.test/a;url", "http://a.test/,url", "a.test/url"]
)
def test_a_url_holding_url_between_commas_is_still_a_url(text: str) -> None:
    """s36 r2 2: c7c30bd took any line with a cell `url` between ',' or ';' for a csv header:
    these real URLs, fetched before, were refused. A header row is names alone."""
    job = JobMaker("https").url_job(text, None, text.encode())
    assert job.invalid is None


# -- a host without a scheme still gets the default one ------------------------------------------


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("example.org/x", "https://example.org/x"),
        ("example.org:8443", "https://example.org:8443/"),  # the path as sent: '/' (s37 t5 1)
        ("example.org:", "https://example.org/"),  # an empty port: the default one, as in curl
        ("example.org:/x", "https://example.org/x"),
        ("127.0.0.1:", "https://127.0.0.1/"),
        ("localhost:8080/x", "https://localhost:8080/x"),
        ("localhost:8080", "https://localhost:8080/"),
        ("javascript:80", "https://javascript:80/"),  # digits after the colon: a port
    ],
)
def test_a_host_without_a_scheme_gets_the_default_scheme(text: str, target: str) -> None:
    job = JobMaker("https").url_job(text, None, text.encode())
    assert (job.target, job.invalid) == (target, None)


@pytest.mark.parametrize("scheme", ["http", "HTTP"])
def test_localhost_with_a_port_is_fetched_with_the_default_scheme(
    server: CountingServer, scheme: str
) -> None:
    """The scheme in either case, as in a URL (HTTP:// is folded: s27 r5 4)."""
    [record] = run("--default-scheme", scheme, f"localhost:{server.port}/x")
    assert record["ok"], record
    assert server.paths == ["/x"]


# -- the 8 KiB limit ----------------------------------------------------------------------------


def test_an_argument_longer_than_8_kib_is_an_invalid_url_like_such_a_line(
    server: CountingServer, tmp_path: Path
) -> None:
    long_url = server.url("/") + "a" * 9000
    urls = tmp_path / "urls.txt"
    urls.write_bytes(long_url.encode() + b"\n")
    by_argument, by_line = run("--ordered", long_url, "-i", str(urls))
    assert server.requests == 0
    assert_invalid(by_argument, f"longer than {MAX_LINE_BYTES} bytes")
    assert by_argument["line"] is None and by_line["line"] == 1
    assert by_argument["error"] == by_line["error"]
    assert by_argument["url"] == by_line["url"]  # the first 8 KiB, as for the line


def test_an_argument_of_exactly_8_kib_is_fetched(server: CountingServer) -> None:
    base = server.url("/")
    [record] = run(base + "a" * (MAX_LINE_BYTES - len(base)))
    assert record["ok"], record
    assert server.requests == 1


def test_a_long_argument_cut_inside_a_character_is_too_long_not_bad_utf8(
    server: CountingServer,
) -> None:
    base = server.url("/")
    # "é" is two bytes: the 8 KiB end falls between them.
    [record] = run(base + "a" * (MAX_LINE_BYTES - len(base) - 1) + "é" * 10)
    assert_invalid(record, f"longer than {MAX_LINE_BYTES} bytes")
    assert server.requests == 0
