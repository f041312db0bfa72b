"""URLs and text in the forms people actually write them (SPEC §2.4, §2.1).

- A URL password is masked whatever the slashes after its scheme: ``http:/u:pw@h``,
  ``http:///u:pw@h``, ``https:\\\\u:pw@h`` (path normalisation turns ``//`` into ``/``), in
  every record format, --results, --summary, the -v log and the terminal's display.
- ``-x HOST:PORT`` and ``-x USER:PASSWORD@HOST:PORT`` are curl's usual proxy forms: the proxy
  is used as ``http://`` (a password it cannot send is a usage error, not shown).
- Invisible characters (Unicode format characters: zero-width space, word joiner, BOM, soft
  hyphen, bidi marks) are made visible in what humans read, kept exact in jsonl and csv.
"""

from __future__ import annotations

import csv
import io
import json
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.redact import MASK, redact_text, redact_url, visible
from tests.conftest import invoke, run_process
from tests.servers import counting_server
from tests.test_secrets import MARK, password_text, secret, user_text
from tests.test_terminal import run_on_terminal
from tests.tls_proxy_servers import forward_proxy

NEVER = "127.0.0.1:9"  # the discard port: these URLs are refused before any request

# The slashes after "scheme:" that people and path normalisation produce.
SLASH_FORMS = ["http:/", "https:/", "HTTP:/", "http:///", "https:////", "http:\\/", "http:/\\",
               "http:\\\\", "//", "/"]  # fmt: skip


# -- redact_url and redact_text on the forms ---------------------------------------------------


@pytest.mark.parametrize("start", SLASH_FORMS)
def test_redact_url_masks_the_password_whatever_the_slashes(start):
    url = f"{start}user:{secret('pw')}@{NEVER}/a?q=1"
    shown = redact_url(url)
    assert MARK not in shown
    assert shown == f"{start}user:{MASK}@{NEVER}/a?q=1" or shown.endswith(f"{MASK}@{NEVER}/a?q=1")
    if ":" in start:  # a free text's URL has a scheme; "//u:pw@h" is only a URL on its own
        assert MARK not in redact_text(f"cannot fetch {url}: refused")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http:/user:PW@h/a", f"http:/user:{MASK}@h/a"),
        ("http:///user:PW@h/a", f"http:///user:{MASK}@h/a"),
        ("HTTP:/\\user:PW@h/a", f"HTTP:/\\user:{MASK}@h/a"),
        (
            "see https:/u:PW@h/x and http://v:PW@g/",
            f"see https:/u:{MASK}@h/x and http://v:{MASK}@g/",
        ),
        ("http:\\\\u:\\a:PW@h/", f"http:\\\\u:{MASK}@h/"),  # one mask, even with ":\" inside
    ],
)
def test_redact_text_table(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "url",
    ["http://h/a:b@c", "http://h/p?email=a:b@c", "http://h/x#u:p@y", "http://h/p@x:1",
     "http://h:8080/a:b@c"],
)  # fmt: skip
def test_an_at_after_the_authority_is_not_user_info(url):
    assert redact_url(url) == url
    assert redact_text(f"fetching {url}") == f"fetching {url}"


def test_an_at_after_the_authority_is_not_user_info_beside_a_user_name():
    """The user name alone is the credential (s22 h2 3: test_redact_users.py) and is masked;
    the path's "a:b@c" stays as it was."""
    url = "http://user@h/a:b@c"
    assert redact_url(url) == f"http://{MASK}@h/a:b@c"
    assert redact_text(f"fetching {url}") == f"fetching http://{MASK}@h/a:b@c"


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "hTtPs", "ftp", "x+y"]),
    slashes=st.text(alphabet="/\\", max_size=4),
    user=user_text,
    middle=password_text,
)
def test_no_form_of_slashes_leaves_the_password(scheme, slashes, user, middle):
    url = f"{scheme}:{slashes}{user}:{secret(middle)}@example.test:8443/p?q=a:b@c"
    shown = redact_url(url)
    assert MARK not in shown
    assert MASK in shown
    if slashes:  # in a free text, "http::pw@h" is not known to be a URL
        assert MARK not in redact_text(f"cannot fetch {' '.join(url.split())}: refused")


@settings(max_examples=200, deadline=None)
@given(rest=st.text(alphabet=string.ascii_letters + "@:.%?#=&-_~", max_size=20))
def test_a_path_query_or_fragment_is_never_masked(rest):
    url = f"http://example.test/{rest}"
    assert redact_url(url) == url


# -- through the command: every output -----------------------------------------------------------


def every_output(args: list[str], tmp_path: Path) -> tuple[int, str]:
    """Run in process with -v, --results and --summary: the exit code and all it printed or wrote
    (--failed excepted: mode 0600, kept verbatim)."""
    summary, results = tmp_path / "summary.json", tmp_path / "results.txt"
    result = invoke(["-v", "--retries", "0", "--summary", str(summary), *args])
    with_results = invoke(["--retries", "0", "--results", str(results), *args])
    shown = result.stdout + result.stderr + summary.read_text()
    return result.exit_code, shown + with_results.stdout + with_results.stderr + results.read_text()


@pytest.mark.parametrize("format_name", ["text", "jsonl", "csv"])
@pytest.mark.parametrize("start", ["http:/", "https:/", "HTTP:/", "http:///", "http:/\\"])
def test_a_url_with_odd_slashes_is_masked_in_every_output(tmp_path, start, format_name):
    url = f"{start}user:{secret('PW')}@{NEVER}/a"
    code, shown = every_output(["--format", format_name, url], tmp_path)
    assert code == 3, shown  # not a URL that can be fetched: invalid_url
    assert MARK not in shown
    assert f"user:{MASK}@" in shown


def test_a_url_with_odd_slashes_is_masked_on_a_terminal(tmp_path):
    url = f"http:/user:{secret('PW')}@{NEVER}/a"
    run = run_on_terminal(["-v", "--retries", "0", url], tmp_path,
                          stdout_on_terminal=True, stderr_on_terminal=True)  # fmt: skip
    assert run.status == 3, run.terminal
    assert MARK not in run.terminal
    assert MASK in run.terminal


# -- -x in curl's forms --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_proxy_without_a_scheme_is_http(host):
    with counting_server() as target, forward_proxy() as proxy:
        url = target.url("/via-proxy")
        result = invoke(["--format", "jsonl", "--retries", "0", "-x", f"{host}:{proxy.port}", url])
        assert result.exit_code == 0, (result.stdout, result.stderr)
        (record,) = [json.loads(line) for line in result.stdout.splitlines()]
        assert record["ok"] is True and record["status"] == 200, record
        assert proxy.request_lines == [f"GET {url} HTTP/1.1"]
        assert target.paths == ["/via-proxy"]


def test_a_proxy_with_credentials_and_no_scheme_gets_them():
    with counting_server() as target, forward_proxy(("puser", secret("p"))) as proxy:
        spec = f"puser:{secret('p')}@localhost:{proxy.port}"
        result = invoke(["-v", "--format", "jsonl", "--retries", "0", "-x", spec, target.url("/")])
        assert result.exit_code == 0, (result.stdout, result.stderr)
        assert proxy.proxy_authorizations == [proxy.required_authorization]
        assert MARK not in result.stdout + result.stderr


def test_a_proxy_password_beyond_latin1_is_sent_and_never_printed():
    """It was a usage error (requests could send only Latin-1); it goes out as typed now
    (cf2fb1a), here to a proxy that is not there: the failure never shows it."""
    args = ["-x", f"http://puser:{secret('é€')}@127.0.0.1:1", "--retries", "0", f"http://{NEVER}/"]
    result = invoke(args)
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "proxy" in result.stdout
    assert MARK not in result.stdout + result.stderr


# -- invisible characters ------------------------------------------------------------------------

# Unicode format characters (category Cf) that show as nothing at all.
INVISIBLE = {"\u200b": "\\u200b", "\u200c": "\\u200c", "\u200d": "\\u200d",
             "\u2060": "\\u2060", "\ufeff": "\\ufeff", "\u00ad": "\\xad", "\u061c": "\\u061c",
             "\u180e": "\\u180e", "\U000e0041": "\\udb40\\udc41"}  # fmt: skip


@pytest.mark.parametrize("char", sorted(INVISIBLE))
def test_visible_escapes_format_characters(char):
    assert visible(f"/ad{char}min") == f"/ad{INVISIBLE[char]}min"


@pytest.mark.parametrize(
    "char",
    ["\u034f", "\u115f", "\u3164", "\u2800", "\ufe0f", "\uffa0"],
    ids=lambda char: f"U+{ord(char):04X}",  # a test id must be text xdist can send
)
def test_visible_escapes_blank_marks_and_fillers(char):
    """Printable to Python, but nothing on screen (a combining grapheme joiner, Hangul
    fillers, the braille blank, a variation selector): found on review."""
    escaped = char.encode("unicode_escape").decode()
    assert visible(f"/ad{char}min") == f"/ad{escaped}min"


@pytest.mark.parametrize(
    "char",
    ["\u2065", "\ufff0", "\U000e0000", "\U000e0002", "\U000e0080", "\U000e01f0", "\U000e0fff"],
    ids=lambda char: f"U+{ord(char):04X}",
)
def test_visible_escapes_unassigned_code_points(char):
    """s36 t4 2: unassigned default-ignorable code points, drawn as nothing (U+2065,
    U+FFF0..FFF8, U+E0000...), went to the terminal and into saved names raw:
    `/ad<U+2065>min` read as /admin. A file's name %-encodes them as it does U+200B."""
    from fetcher.output.paths import url_parts

    assert visible(f"/ad{char}min") == f"/ad{_escaped(char)}min"
    assert not [part for part in url_parts(f"http://h.test/ad{char}min") if char in part]


def test_an_emoji_newer_than_this_python_shows_and_is_saved_as_itself():
    """s36 r2 4: 4d941f3 escaped every unassigned code point, and an emoji newer than the
    interpreter's Unicode (U+1FAE8, 2022, Python 3.11's is 14.0) is one: its saved name
    changed to %F0%9F%AB%A8, and would change again with the next Python."""
    from fetcher.output.paths import url_parts

    assert visible("/\U0001fae8-news") == "/\U0001fae8-news"
    assert "\U0001fae8-news" in url_parts("http://h.test/%F0%9F%AB%A8-news")


def _escaped(char: str) -> str:
    beyond = ord(char) - 0x10000
    if beyond < 0:
        return char.encode("unicode_escape").decode()
    return f"\\u{0xD800 + (beyond >> 10):04x}\\u{0xDC00 + (beyond & 0x3FF):04x}"


def test_visible_keeps_what_shows_as_itself():
    text = "café ✓ 日本 \u00a0 a\\b \U0001f600 ﷺ"
    assert visible(text) == text


def test_a_url_with_a_zero_width_space_is_shown_with_it_escaped_and_kept_exact_in_data():
    with counting_server() as server:
        url = server.url("/ad\u200bmin")
        text = run_process(["-v", "--retries", "0", url])
        jsonl = run_process(["--format", "jsonl", "--retries", "0", url])
        rows = run_process(["--format", "csv", "--retries", "0", url])
    assert text.returncode == 0, text.stderr
    stdout, stderr = text.stdout.decode(), text.stderr.decode()
    assert "/ad\\u200bmin" in stdout and "\u200b" not in stdout
    assert "\u200b" not in stderr
    assert json.loads(jsonl.stdout)["url"] == url
    (row,) = csv.DictReader(io.StringIO(rows.stdout.decode(), newline=""))
    assert row["url"] == url


def test_the_summary_shows_a_soft_hyphen_in_a_host():
    result = invoke(["--retries", "0", "http://a\u00adb.invalid/"])
    assert result.exit_code == 3, result.stderr
    assert "\u00ad" not in result.stdout + result.stderr
    assert "a\\xadb" in result.stderr
