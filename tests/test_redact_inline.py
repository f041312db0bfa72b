"""A scheme-less ``user:password@host`` anywhere in a line or a text (SPEC §2.4: "passwords in URLs
are shown as ``***``"): after a blank, a tab, a NUL or another control character, as the second
column of a list ("mirror-a  user:pw@mirror-b/") or a NUL-separated one, it is masked as it is
alone on its line, in records, the summary, --summary and -v logs. Ordinary text is not masked
more than before: a path, a query, an e-mail address, a time of day stay as they are.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.redact import MASK, redact_log_text, redact_text, redact_url
from tests.test_redact_forms import NEVER, every_output
from tests.test_secrets import MARK, password_text, secret, user_text

PW = secret("pw")
SEPARATORS = [" ", "  ", "\t", "\x00", "\r", "\n", "\x0b", "\x1f", "\x7f", "\u00a0", "\u3000"]


@pytest.mark.parametrize("separator", SEPARATORS, ids=repr)
def test_a_schemeless_password_after_a_separator_is_masked_in_a_url(separator):
    url = f"http://{NEVER}/a{separator}u:{PW}@{NEVER}/b"
    assert redact_url(url) == f"http://{NEVER}/a{separator}u:{MASK}@{NEVER}/b"


@pytest.mark.parametrize("separator", SEPARATORS, ids=repr)
def test_a_schemeless_password_after_a_separator_is_masked_in_a_text(separator):
    text = f"fetching{separator}u:{PW}@{NEVER}/b failed"
    assert redact_text(text) == f"fetching{separator}u:{MASK}@{NEVER}/b failed"
    assert MARK not in redact_log_text(text)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"mirror-a  user:{PW}@mirror-b/", f"mirror-a  user:{MASK}@mirror-b/"),  # as before
        (f"http://a/ u:{PW}@h/ v:{PW}@k/", f"http://a/ u:{MASK}@h/ v:{MASK}@k/"),
        (f"http://a/\x00u:{PW}@k/\x00", f"http://a/\x00u:{MASK}@k/\x00"),
        (f"http://a/x me@mail:{PW}@h/", f"http://a/x me@mail:{MASK}@h/"),  # a user with an @
        (f"http://a/x //u:{PW}@h/", f"http://a/x //u:{MASK}@h/"),  # as "//u:pw@h/" alone
        (f"http://a/x u:{PW}@h", f"http://a/x u:{MASK}@h"),
        (f"http://a/x u:p w{PW}@h/", f"http://a/x u:{MASK}@h/"),  # as "u:p w@h/" alone
        (f"http://a/ http://u:{PW}@k/", f"http://a/ http://u:{MASK}@k/"),  # as before
    ],
)
def test_redact_url_masks_each_word_as_if_alone(url, expected):
    assert redact_url(url) == expected
    assert redact_url(url.split(" ", 1)[-1].lstrip()) == expected.split(" ", 1)[-1].lstrip()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"//u:{PW}@h/x", f"//u:{MASK}@h/x"),
        (f"redirected to //u:{PW}@h/x now", f"redirected to //u:{MASK}@h/x now"),
        (f"bad location '//u:{PW}@h'", f"bad location '//u:{MASK}@h'"),
        (f"to\t//u:{PW}@h?q", f"to\t//u:{MASK}@h?q"),
    ],
)
def test_a_network_path_reference_in_a_text_is_masked_as_redact_url_masks_it(text, expected):
    """t4 7: a word starting with exactly '//' carries an authority (RFC 3986 4.2: requests
    follows such a Location with its credentials). redact_url masked it, redact_text left it:
    its words were never read from a '/'. A single '/' starts a path still."""
    assert redact_text(text) == expected
    assert MARK not in redact_log_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "at 10:30 bob@example.com said",
        "From: bob@example.com",
        "ssh user@host:22 refused",
        '"GET /a:b@c HTTP/1.1" 200 2',
        "fetching http://h/p?email=a:b@c",
        "fetching http://h/a:b@c and http://h/x:y@z",  # (http://user@h is a credential now)
        "http:\\\\u:\\a:PW@h/ stays for the scheme rule",
        "a path /x:y@z and a query ?q=a:b@c",
        "mail@example.com: refused",
        "no at sign: a:b c:d",
    ],
)
def test_ordinary_text_is_not_masked(text):
    if "PW" in text:
        assert redact_text(text) == f"http:\\\\u:{MASK}@h/ stays for the scheme rule"
    else:
        assert redact_text(text) == text


@pytest.mark.parametrize(
    "url",
    ["http://h/a:b@c", "http://h/p?email=a:b@c", "http://h/x#u:p@y", "http://h/p@x:1",
     "http://h/a,u:p@k/", "http://h/a;u:p@k", "https://h/users/me:x@y"],
)  # fmt: skip
def test_a_url_without_a_blank_is_not_masked_more(url):
    assert redact_url(url) == url


@settings(max_examples=300, deadline=None)
@given(
    before=st.text(max_size=12),
    separator=st.sampled_from(SEPARATORS),
    user=user_text,
    middle=password_text,
)
def test_no_line_leaves_a_password_after_a_separator(before, separator, user, middle):
    line = f"{before}{separator}{user}:{secret(middle)}@{NEVER}/p?q=a:b@c"
    assert MARK not in redact_url(line)


@settings(max_examples=300, deadline=None)
@given(
    before=st.text(max_size=12),
    separator=st.sampled_from(SEPARATORS),
    user=user_text,
    middle=st.text(alphabet="abc:@%.-_~!$&'()*+,;=[]é", max_size=8),
)
def test_no_text_leaves_a_password_in_a_word(before, separator, user, middle):
    text = f"{before}{separator}{user}:{secret(middle)}@{NEVER}/p failed"
    assert MARK not in redact_text(text)


def test_a_long_line_of_words_is_masked_in_linear_time():
    """Each word is read once: 100,000 words (a quadratic reading took minutes) in well under
    the bound. CPU time, this process's: a shared machine's load stretched the wall time of
    its 0.3 s past 5 s in one CI run (s30)."""
    line = "http://h/ " + "a " * 100_000 + f"u:{PW}@h/"
    started = time.process_time()
    assert MARK not in redact_url(line) and MARK not in redact_text(line)
    assert time.process_time() - started < 5


# -- through the command: records (text, jsonl, csv), the summary, --summary, -v -------------------


@pytest.mark.parametrize("format_name", ["text", "jsonl", "csv"])
@pytest.mark.parametrize("separator", [" ", "\t", "\x00"], ids=repr)
def test_a_second_column_password_is_masked_in_every_output(tmp_path, separator, format_name):
    listing = tmp_path / "list.txt"
    listing.write_bytes(f"http://{NEVER}/a{separator}u:{PW}@{NEVER}/\n".encode())
    code, shown = every_output(["--format", format_name, "-i", str(listing)], tmp_path)
    assert code == 3, shown  # whitespace or a control inside the URL: invalid_url
    assert MARK not in shown
    assert f"u:{MASK}@" in shown


def test_a_nul_separated_list_is_masked_in_every_output(tmp_path):
    listing = tmp_path / "nul.txt"
    listing.write_bytes(f"http://{NEVER}/x\x00u:{PW}@{NEVER}/\x00".encode())
    code, shown = every_output(["--format", "jsonl", "-i", str(listing)], tmp_path)
    assert code == 3, shown
    assert MARK not in shown
    assert f"u:{MASK}@" in shown


def test_a_tab_in_an_argument_is_masked_in_every_output(tmp_path):
    code, shown = every_output(["--format", "csv", f"http://{NEVER}/a\tu:{PW}@{NEVER}/"], tmp_path)
    assert code == 3, shown
    assert MARK not in shown
    assert f"u:{MASK}@" in shown
