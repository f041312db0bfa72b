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
