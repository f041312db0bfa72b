"""Passwords that the authority's end hides from a plain reading (s22 h2 2 and the planners'
list): one holding "/", "?" or "#" typed raw, which ends the host part there, and a URL with a
password inside another URL's query, %-encoded."""

from __future__ import annotations

import pytest

from fetcher.redact import MASK, redact_text, redact_url
from tests.conftest import invoke
from tests.servers import records

MARK = "Qz7Kw"


@pytest.mark.parametrize("cut", ["/", "?", "#", "/a/b?c#"])
def test_a_password_cut_by_a_slash_question_mark_or_hash_is_masked(cut):
    url = f"http://u:pa{cut}{MARK}@127.0.0.1:8000/x?q=1"
    assert redact_url(url) == f"http://u:{MASK}@127.0.0.1:8000/x?q=1"
    assert redact_url(url.removeprefix("http://")) == f"u:{MASK}@127.0.0.1:8000/x?q=1"
    assert MARK not in redact_text(f"cannot fetch {url}: refused")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"http://me@corp.test:pa#{MARK}@127.0.0.1:8000/x", f"http://{MASK}@127.0.0.1:8000/x"),
        (f"https://deploy:Tr0ub4dor@#{MARK}@127.0.0.1/x", f"https://deploy:{MASK}@127.0.0.1/x"),
        (f"http://me@corp.test:p/a?{MARK}@127.0.0.1/", f"http://{MASK}@127.0.0.1/"),
        (f"https://{MARK}@:443/a@b", f"https://{MASK}@b"),
        (f"https://{MARK}@:8443/owner/repo.git@main", f"https://{MASK}@main"),
        (f"https://{MARK}@:/a@b", f"https://{MASK}@b"),
        (f"https://{MARK}@:443?x=a@b", f"https://{MASK}@b"),
        (f"https://{MARK}@:443#a@b", f"https://{MASK}@b"),
        (f"https://{MARK}@h:x/a@b", f"https://{MASK}@b"),
        (f"http://{MARK}:@a.test:x/x:y@z", f"http://{MASK}@z"),
        (f"http://%40{MARK}:@a.test:x?q=1@x", f"http://{MASK}@x"),
    ],
    ids=["email-user", "at-in-password", "email-user-slash", "token-port", "token-git",
         "token-colon", "token-query", "token-fragment", "token-host-bad-port",
         "token-empty-password", "token-empty-password-query"],
)  # fmt: skip
def test_a_cut_password_after_an_at_of_the_user_info_is_masked(url, shown):
    """s30 t3 2: an '@' in the user info (an e-mail address as user name, or in the password)
    before the raw '#', '?' or '/' turned the rule above off: the rest of the password showed.
    The host part before the cut is no host there (empty, or a port that is no number). The
    user name a URL's reader sees there ends at the first '@', and is all masked: a token
    before a port alone showed whole (s31 r1 1), and so did one with an empty password (as
    `TOKEN:@host`, Basic TOKEN:), read on past its cut (s32 r1 2)."""
    assert redact_url(url) == shown
    assert MARK not in redact_text(f"cannot fetch {url}: refused")


@pytest.mark.parametrize(
    "url", [f"http://u:p@:12/{MARK}@127.0.0.1/", f"http://:12/{MARK}@127.0.0.1/x"]
)
def test_a_cut_password_before_an_empty_host_with_a_port_is_masked(url):
    """s30 r2 3: ':12' (a port, no host) passed for a host: no request can go there either."""
    shown = redact_url(url)
    assert MARK not in shown and shown.endswith("@127.0.0.1/" + url.rpartition("/")[2]), shown
    assert MARK not in redact_text(f"cannot fetch {url}: refused")


def test_a_cut_password_is_masked_up_to_the_last_at_before_a_blank():
    text = f"see http://u:p/{MARK}@x@h/x other@y"
    assert redact_text(text) == f"see http://u:{MASK}@h/x other@y"


@pytest.mark.parametrize(
    "url",
    [
        "https://medium.com/@user",
        "http://h:8080/a@b",
        "http://[::1]:80/a@b",
        "http://[::1]/a:b@c",
        "http://h/a:b@c",
        "http://h/?next=https%3A%2F%2Fexample.com%2Fa%40b",
        "http://h/?to=mailto%3Abob%40example.com",
        "http://h/?next=user:pw@other/x",  # no scheme: not a clear URL, left (as curl)
    ],
)
def test_legitimate_urls_are_left_as_they_are(url):
    assert redact_url(url) == url
    assert redact_text(f"at {url} now") == f"at {url} now"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "http://h/?next=http%3A%2F%2Fu%3APW%40o%2Fx",
            f"http://h/?next=http%3A%2F%2Fu%3A{MASK}%40o%2Fx",
        ),
        (
            "http://h/?n=HTTPS%3a%2f%2fu%3aPW%40o&b=1",
            f"http://h/?n=HTTPS%3a%2f%2fu%3a{MASK}%40o&b=1",
        ),
        ("http://h/?n=http%3A%2F%2FTOKEN%40o%2F", f"http://h/?n=http%3A%2F%2F{MASK}%40o%2F"),
        ("http://h/?next=http://u:PW@o/x", f"http://h/?next=http://u:{MASK}@o/x"),
        # a network-path reference as a query's value (s35 t6 1: shown in records and -vv)
        ("http://h/p?next=//u:PW@o/", f"http://h/p?next=//u:{MASK}@o/"),
        ("http://h/p?a=1&next=//TOKEN@o/", f"http://h/p?a=1&next=//{MASK}@o/"),
        ("http://h/p?next=%2F%2Fu%3APW%40o%2F", f"http://h/p?next=%2F%2Fu%3A{MASK}%40o%2F"),
        ("/loc?to=%2f%2fu%3aPW%40o", f"/loc?to=%2f%2fu%3a{MASK}%40o"),
        ("http://h/a//b:c@d", "http://h/a//b:c@d"),  # a path's '//' is no reference
        # as urllib.parse.quote() writes them, '/' kept (s35 r3 6), and mixed forms
        ("http://h/?n=https%3A//u%3APW%40o/x", f"http://h/?n=https%3A//u%3A{MASK}%40o/x"),
        ("http://h/?n=//u%3APW%40o/x", f"http://h/?n=//u%3A{MASK}%40o/x"),
        ("http://h/?n=%2f%2fu:PW@o", f"http://h/?n=%2f%2fu:{MASK}@o"),
        ("http://h/?n=%2F%2Fu%3APW@o", f"http://h/?n=%2F%2Fu%3A{MASK}@o"),
        ("http://h/?n=//u:PW%40o", f"http://h/?n=//u:{MASK}%40o"),
    ],
)
def test_a_url_with_a_password_in_a_query_is_masked_encoded_or_not(url, shown):
    assert redact_url(url) == shown
    assert redact_text(f"cannot fetch {url}: x") == f"cannot fetch {shown}: x"


def test_an_invalid_url_line_shows_no_part_of_its_password():
    line = f"http://u:pa/{MARK}@127.0.0.1:9/x"
    result = invoke(["--format", "jsonl", line])
    assert MARK not in result.stdout + result.stderr, result.stdout + result.stderr
    [record] = records(result.stdout)
    assert record["url"] == f"http://u:{MASK}@127.0.0.1:9/x"
    assert record["error"]["kind"] == "invalid_url"
    assert "%2F" in record["error"]["message"]  # how to write it


# -- a port typo is not a password (s23 r1 7) ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://[::1]:8a/x@y", f"http://[::1]:{MASK}@y"),  # split after the "]", not inside
        (f"http://[::1]:pa/{MARK}@h/x", f"http://[::1]:{MASK}@h/x"),
        (f"http://u:pa/{MARK}@[::1]:80/x", f"http://u:{MASK}@[::1]:80/x"),
    ],
)
def test_an_ipv6_literal_is_never_split(url, shown):
    assert redact_url(url) == shown
    assert redact_text(f"at {url} now") == f"at {shown} now"


# What opens a URL in a free text, and what closes it: a quote, a bracket, a backtick.
QUOTES = [('"', '"'), ("'", "'"), ("`", "`"), ("<", ">"), ("{", "}"), ("|", "|")]
# What a generated password often holds, and so may hold after a raw "/", "?" or "#".
NOT_IN_A_URL = ['"', "'", "<", ">", "`", "{", "}", "|", "\\", "^"]


@pytest.mark.parametrize(("opener", "closer"), QUOTES)
def test_in_a_text_a_quoted_url_ends_at_its_closing_quote(opener, closer):
    text = f"[{opener}http://h:x/y{closer},{opener}mail@ex.com{closer}]"
    assert redact_text(text) == text
    text = f"[{opener}http://u:pa/{MARK}@h/x{closer},{opener}mail@ex.com{closer}]"
    assert redact_text(text) == f"[{opener}http://u:{MASK}@h/x{closer},{opener}mail@ex.com{closer}]"


@pytest.mark.parametrize("char", NOT_IN_A_URL)
@pytest.mark.parametrize("quote", ["", "'", '"'])
def test_in_a_text_a_cut_password_may_hold_what_did_not_open_its_url(char, quote):
    if char == quote:
        quote = "<" if char == "'" else "'"
    text = f"bad value {quote}http://u:pa/{char}{MARK}@h/x{quote}: not a number"
    assert MARK not in redact_text(text)
    assert MARK not in redact_text(f"bad {quote}http://u:pa/\\{quote}{MARK}@h/x{quote}")  # repr


def test_the_reviewers_json_list_is_left_as_it_is():
    text = '["http://h:x/y","mail@ex.com"]'
    assert redact_text(text) == text
    assert redact_text(f'["http://u:pa/{MARK}@h/x","mail@ex.com"]') == (
        f'["http://u:{MASK}@h/x","mail@ex.com"]'
    )


@pytest.mark.parametrize("char", NOT_IN_A_URL)
def test_in_a_url_line_any_character_may_be_in_a_cut_password(char):
    """A URL line is one URL up to a blank: what it holds that no URL holds raw is sent
    %-encoded, so a password may hold it (a generated one often holds a ^ or a |)."""
    url = f"http://u:pa/{char}{MARK}@127.0.0.1:8000/x"
    assert redact_url(url) == f"http://u:{MASK}@127.0.0.1:8000/x"


@pytest.mark.parametrize("char", ["^", "|", "'", '"', "<", "{", "`", "\\"])
def test_a_usage_error_never_shows_a_cut_password(char):
    """Click quotes the value with repr: a password holding a quote is quoted with the other."""
    result = invoke(["--retries", f"http://u:pa/{char}{MARK}@h/x", "http://127.0.0.1:9/"])
    assert result.exit_code == 2 and "--retries" in result.stderr
    assert MARK not in result.stderr, result.stderr


def test_a_port_typo_keeps_the_host_written_and_says_the_port_first():
    line = "http://127.0.0.1:80a/path?email=bob@example.org"
    [record] = records(invoke(["--format", "jsonl", line]).stdout)
    assert record["url"] == f"http://127.0.0.1:{MASK}@example.org"
    assert record["error"]["message"] == (
        "malformed URL: the port is not a number, or a password holds a '/', '?' or '#'"
        " (written %2F, %3F or %23)"
    )


@pytest.mark.parametrize("line", ["http://127.0.0.1:80a/path", "http://u@127.0.0.1:80a/a@b"])
def test_no_password_hint_without_an_at_after_the_port(line):
    [record] = records(invoke(["--format", "jsonl", line]).stdout)
    assert record["error"]["message"] == "malformed URL: the port is not a number"


@pytest.mark.parametrize(
    "text",
    [
        f"http://u:2024 Fall/{MARK}@h/",
        f"http://u: pw/{MARK}@h/",
        f"https://deploy:4711 alpha#{MARK}@git.example.com/repo",
        f"proxy http://u:1234 abcd/{MARK}@10.0.0.1:3128 refused",
        f"http://u:12 34?{MARK}@h/",
        f"http://u:\tpass/{MARK}@h/",
        f"http://[::1]:80 x/{MARK}@h",
    ],
)
def test_a_password_with_a_blank_then_a_cut_stays_masked_in_a_text(text):
    """s37 r1 1: a fix for urllib3's -vv line (a host and port before a blank taken as a whole
    authority) showed these, a password's first word read as a port; it was taken back, and
    the -vv line is masked by its arguments instead (RedactingFormatter)."""
    assert MARK not in redact_text(text), redact_text(text)


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (("http", "127.0.0.1", 18480, "GET", f"/a?next=http://x:{MARK}@h/", "HTTP/1.1", 200, 11),
         f'http://127.0.0.1:18480 "GET /a?next=http://x:{MASK}@h/ HTTP/1.1" 200 11'),
        (("http", "127.0.0.1", 18490, "GET", f"http://h:1/r?to=http://u2:{MARK}@l/z",
          "HTTP/1.1", 302, 0),
         f'http://127.0.0.1:18490 "GET http://h:1/r?to=http://u2:{MASK}@l/z HTTP/1.1" 302 0'),
        (("http", "127.0.0.1", 80, "GET", f"http://me:{MARK}@h/x", "HTTP/1.1", 200, None),
         f'http://127.0.0.1:80 "GET http://me:{MASK}@h/x HTTP/1.1" 200 None'),
    ],
)  # fmt: skip
def test_urllib3_s_request_line_is_masked_by_its_arguments(args, shown):
    """s37 t1 3: -vv's line for a URL whose query holds scheme://user:password@ was read, as
    one text, from the pool's 'http://127.0.0.1:' on to the query's '@' as a cut password: it
    named another host and no request. Each argument is masked alone now."""
    import logging

    from fetcher.redact import LOG_FORMAT, RedactingFormatter

    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1,
                               '%s://%s:%s "%s %s %s" %s %s', args, None)  # fmt: skip
    text = RedactingFormatter(LOG_FORMAT).format(record)
    assert text.endswith(f"urllib3.connectionpool DEBUG {shown}"), text
    assert MARK not in text
