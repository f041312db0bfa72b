"""Masking reads a long line in linear time (s23 r1 4): a server decides how long a Location is,
and every pattern of fetcher/redact.py that backtracked through each start of a long run, or
re-read the rest of a line for each authority, made one record cost seconds to minutes of CPU
under the GIL. Each input is 200,000 characters: linear, well under 0.1 s; quadratic, minutes."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from werkzeug import Response

from fetcher.redact import redact_cut, redact_log_text, redact_text, redact_url
from tests.conftest import invoke
from tests.servers import records

SIZE = 200_000
BOUND = 2.0  # seconds of this process's CPU: linear takes milliseconds, quadratic minutes


def long(unit: str, prefix: str = "", suffix: str = "") -> str:
    return prefix + unit * (SIZE // len(unit)) + suffix


LINES = {
    "encoded at after a run": long("a", "http://h/?q=", "%40"),  # the reviewer's
    "encoded scheme then a run": long("b", "%40 a%3A%2F%2F"),
    "encoded schemes": long("http%3A%2F%2F", suffix="%40"),
    "a run": long("a"),
    "a:": long("a:"),
    "a@": long("a@"),
    "%40": long("%40"),
    "http://": long("http://"),
    "http://h:x/ after an at": long("http://h:x/", "@ "),  # a cut password's search, each time
    "http://h:x/ after a bare at": long("http://h:x/", "@"),
    "quoted and bare http://h:x/": long('"http://h:x/=http://h:x/', "@ "),
    "quotes of every kind": long("\"http://h:x/'http://h:x/<http://h:x/{http://h:x/", "@ "),
    "x:/": long("x:/", suffix="@"),
    "words a:b/x": long(" a:b/x", "@ "),
    "blanks and an at": long("a ", suffix="@"),
    "quoted words": long("'a@ "),
    "cookie:": long("cookie:"),
    "cookie and blanks": long(" ", "cookie", "x"),
}
MASKERS: dict[str, Callable[[str], str]] = {
    "redact_url": redact_url,
    "redact_text": redact_text,
    "redact_log_text": redact_log_text,
    "redact_cut": lambda text: redact_cut(text, SIZE),  # a pattern of its own was quadratic
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("masker", MASKERS)
@pytest.mark.parametrize("line", LINES)
def test_a_long_line_is_masked_in_linear_time(line, masker):
    started = time.process_time()
    MASKERS[masker](LINES[line])
    assert time.process_time() - started < BOUND


@pytest.mark.timeout(60)
def test_a_long_location_costs_the_record_writer_no_time(httpserver):
    """End to end: a redirect to a 65,000-character Location (http.client's limit for a
    header line) with a %40 at its end took seconds in the records writer's redact_url."""
    target = "/landed?q=" + "a" * 65_000 + "%40"
    httpserver.expect_request("/moved").respond_with_response(
        Response("", 302, {"Location": target})
    )
    httpserver.expect_request("/landed").respond_with_data("landed")
    started = time.process_time()
    result = invoke(["--format", "jsonl", httpserver.url_for("/moved")])
    assert time.process_time() - started < BOUND
    [record] = records(result.stdout)
    assert record["final_url"] == httpserver.url_for(target)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # A scheme read from its run's first letter, as the unanchored search read it...
        ("http://h/?n=a%3Dhttp%3A%2F%2Fu%3APW%40o", "http://h/?n=a%3Dhttp%3A%2F%2Fu%3A***%40o"),
        ("http://h/?n=1http%3A%2F%2Fu%3APW%40o", "http://h/?n=1http%3A%2F%2Fu%3A***%40o"),
        ("http://h/?n=1%3A%2F%2Fu%3APW%40o", "http://h/?n=1%3A%2F%2Fu%3APW%40o"),  # no letter
        # ...and one that starts right after the "%40" that ended the one before.
        (
            "http://h/?n=x%3A%2F%2Fu%3APW%40x%3A%2F%2FTOKEN%40o",
            "http://h/?n=x%3A%2F%2Fu%3A***%40x%3A%2F%2F***%40o",
        ),
        (
            "http://h/?n=x%3A%2F%2F%40y%3A%2F%2FTOKEN%40o",
            "http://h/?n=x%3A%2F%2F%40y%3A%2F%2F***%40o",
        ),
    ],
)
def test_an_encoded_password_is_masked_wherever_the_search_found_it(url, shown):
    assert redact_url(url) == shown
    assert redact_text(f"at {url} now") == f"at {shown} now"


@pytest.mark.parametrize(
    "line",
    [
        "http://alice:TOPSECRET" + "x" * 8200 + "@127.0.0.1:9/p",  # the tester's
        "http://TOPSECRET" + "x" * 8200 + "@127.0.0.1:9/p",  # a token as the user name
        "http://h.test/?next=http://bob:TOPSECRET" + "x" * 8200 + "@h.test/",  # embedded
        "alice:TOPSECRET" + "x" * 8200 + "@127.0.0.1:9/p",  # no scheme: --default-scheme's
        "http://h.test/?next=http%3A%2F%2Falice%3ATOPSECRET" + "S" * 9000 + "%40b.test%2F",
        "https://straße.test/?next=http://bob:TOPSECRET" + "x" * 9000 + "@h.test/",  # s34 r3 1
        "http://h.test/ß?next=http%3A%2F%2Falice%3ATOPSECRET" + "S" * 9000 + "%40b.test%2F",
        "TOKENTOPSECRET" + "x" * 8200 + "@h.test/",  # s34 r4 2: a token --default-scheme sends
        "http://a.test/ alice:TOPSECRET" + "x" * 8200 + "@h.test/p",  # a second word
        "http:/alice:TOPSECRET" + "x" * 8200 + "@h.test/",  # one slash, as requests reads it
        "http://alice:pa/TOPSECRET" + "x" * 8200 + "@h.test/",  # s35 r1 4: '/' in a password
        "alice:pa#TOPSECRET" + "x" * 8200 + "@h.test/",
        "http://a.test/ alice:pa/TOPSECRET" + "x" * 8200 + "@h.test/",
        "//alice:TOPSECRET" + "x" * 8200 + "@h.test/",  # a word after slashes
        "http://a.test/ //bob:TOPSECRET" + "x" * 8200 + "@h.test/",
        "http://a.test/\t//bob:TOPSECRET" + "x" * 8200 + "@h.test/",
        "_://alice:TOPSECRET" + "x" * 8200 + "@h.test/",  # no scheme's character before ':'
        '"\u200b:/alice:TOPSECRET' + "x" * 8200 + "@h.test/",
        "alice:correct horse TOPSECRET staple" + "x" * 8200 + "@h.test/",  # s35 r1 5
    ],
    ids=[
        "password",
        "user",
        "embedded",
        "no-scheme",
        "encoded",
        "eszett",
        "eszett-encoded",
        "token",
        "second-word",
        "one-slash",
        "slash-in-password",
        "hash-in-password",
        "second-word-slash",
        "slashes-first",
        "second-word-slashes",
        "tab-slashes",
        "underscore-scheme",
        "quote-colon-slash",
        "passphrase",
    ],  # fmt: skip
)
@pytest.mark.parametrize("given", ["line", "argument"])
def test_a_line_longer_than_8_kib_shows_no_part_of_its_password(tmp_path, line, given):
    """s34 t3 1: a line (or argument) over 8 KiB is shown cut to its first 8 KiB, and the cut
    fell before the '@' that shows a password to the mask: the record, the summary and
    --summary showed `http://alice:TOPSECRETxxx…` whole. Now the authority a cut leaves open
    is masked."""
    urls, summary = tmp_path / "u.txt", tmp_path / "s.json"
    urls.write_text(line + "\n")
    source = ["-i", str(urls)] if given == "line" else ["--", line]
    result = invoke(["--format", "jsonl", "--summary", str(summary), *source])
    (record,) = records(result.stdout)
    assert "longer than" in record["error"]["message"], record
    shown = result.stdout + result.stderr + summary.read_text()
    assert "TOPSECRET" not in shown
    assert "***" in record["url"], record["url"][:80]


def test_a_cut_line_keeps_its_host_when_no_authority_is_left_open():
    """The mask of a cut line (redact_cut) keeps a long path's line whole, its scheme, host
    and port with it; from where a credential may begin whose end the cut hid (an open
    authority's ':', a ':' or a blank past it, a %-encoded ':'), it masks."""
    line = "http://h.test/" + "x" * 9000
    assert redact_cut(line, 8192) == line[:8192]
    assert redact_cut("h.test:8080/" + "x" * 9000, 8192).startswith("h.test:8080/xx")
    assert redact_cut("http://[::1]:80/" + "x" * 9000, 8192).startswith("http://[::1]:80/xx")
    assert redact_cut("http://h.test:8080" + "x" * 9000, 8192) == "http://h.test:***"
    assert redact_cut("http://h.test/a?t=12:30&" + "x" * 9000, 8192) == "http://h.test/a?t=12***"


@pytest.mark.parametrize("before", ["<", '"', "(", "1", "\x01", "x "])
def test_a_cut_url_after_another_character_shows_no_token(before):
    """s35 r2 3: `<http://TOKEN…` read `<http` as a host and ':' as a port, and the token after
    '//' was shown whole, where the short line masks it."""
    line = f"{before}http://" + "SECRETTOKEN" * 900 + "@h.test:9/>"
    assert "SECRETTOKEN" not in redact_cut(line[:8193], 8192)  # as a file's reader cuts it


@pytest.mark.parametrize("after", ["#", "?", "/"])
def test_a_cut_password_holding_an_at_then_an_end_shows_nothing_past_it(after):
    """s35 r2 4: `u:p@#SECRET…@h/`, its '@#' before the cut: masked as `u:***@` with an empty
    host, which passed for an authority to show, and what followed was shown."""
    line = "http://" + "u" * 8175 + f":p@{after}QZXQZXQZ" + "x" * 100 + "@h.test/"
    assert "QZXQ" not in redact_cut(line[:8193], 8192)  # as a file's reader cuts it
