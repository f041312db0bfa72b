"""No secret printed (SPEC §2.4): a URL password made of any characters, and the values of -H,
-b and -u, never reach records, logs, the summary or --summary, nor a usage error's message.

Passwords are built around a marker that appears nowhere else, so that a leak of any part of
one (its start or end, or the text around a control character) is found by looking for the
marker, whatever escaping the output applied to the rest.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.redact import MASK, redact_text, redact_url
from tests.conftest import invoke, run_process
from tests.servers import counting_server

MARK = "Qz7Kw"  # in a password only: never in a URL, a message or a number that fetcher prints
NOT_FETCHED = "http://127.0.0.1:9/never-fetched"

# Every character but the three that end the authority of a URL (RFC 3986 §3.2): a "/", "?" or
# "#" ends the host part there, so what follows is a path, not a password, for requests too.
ODD = ["\r", "\n", "\t", "\x00", "\x1b", " ", "@", ":", "%40", "%0D", "\x85", "\u2028", "é",
       "\udcff", "\udce9", "[", "]", "\\", "'", '"', "€"]  # fmt: skip
password_text = st.lists(
    st.one_of(st.sampled_from(ODD), st.text(max_size=4).filter(lambda t: not set(t) & set("/?#"))),
    max_size=6,
).map("".join)
user_text = st.text(alphabet=string.ascii_letters + string.digits + "-._~%", max_size=8)


def secret(middle: str) -> str:
    return f"{MARK}{middle}{MARK}"


# -- redact_url on any byte sequence in the user info ---------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["PASSW0RD\r", "PA\nSS", "PA\tSS", "P\r\nA", "P@SS", "P%40SS", "P\udcffSS", "\x00", "a:b@c"],
    ids=["cr", "lf", "tab", "crlf", "at", "encoded-at", "not-utf8", "nul", "colon-and-at"],
)
def test_redact_url_masks_passwords_with_any_character(password):
    url = f"http://alice:{password}@127.0.0.1:9/x?q#f"
    assert redact_url(url) == f"http://alice:{MASK}@127.0.0.1:9/x?q#f"
    assert redact_url(url.removeprefix("http://")) == f"alice:{MASK}@127.0.0.1:9/x?q#f"


def test_redact_url_masks_when_the_user_name_has_a_control_character():
    assert redact_url("http://al\rice:PASS@h/") == f"http://al\rice:{MASK}@h/"


@pytest.mark.parametrize(
    "url",
    ["ht\rtp://u:PASS@h/x", "\x01http://u:PASS@h/x", "http:/\r/u:PASS@h/x", "http:\t//u:PASS@h/x"],
    ids=["cr-in-scheme", "control-before-scheme", "cr-in-slashes", "tab-after-colon"],
)
def test_redact_url_masks_what_requests_would_still_read_as_a_password(url):
    from urllib.parse import urlsplit

    assert urlsplit(url).password == "PASS"  # urllib drops tabs and line breaks, strips controls
    assert "PASS" not in redact_url(url)
    assert redact_url(url).endswith("@h/x")


@settings(max_examples=300, deadline=None)
@given(user_text, password_text)
def test_redact_url_and_redact_text_never_leave_the_marker(user, middle):
    url = f"https://{user}:{secret(middle)}@example.test:8443/p?q=1"
    assert MARK not in redact_url(url)
    assert MARK not in redact_text(f"cannot fetch {' '.join(url.split())}: refused")


# -- a whole run ---------------------------------------------------------------------------------


def run_outputs(args: list[str], tmp_path: Path) -> tuple[int, str]:
    """Run in process with -v and --summary; return the exit code and everything it printed or
    wrote (records, log, summary, --summary), --failed excepted (mode 0600, kept verbatim)."""
    summary = tmp_path / "summary.json"
    result = invoke(["-v", "--retries", "0", "--summary", str(summary), *args])
    return result.exit_code, result.stdout + result.stderr + summary.read_text()


@pytest.mark.parametrize("format_name", ["text", "jsonl", "csv"])
def test_password_with_a_raw_cr_is_masked_in_every_output(tmp_path, format_name):
    with counting_server() as server:
        ok = server.url("/ok").replace("//", f"//alice:{secret('PASSW0RD')}\r@")
        failed = server.url("/status/404").replace("//", f"//bob:{secret('x')}\r\n@")
        code, shown = run_outputs(["--format", format_name, ok, failed], tmp_path)
    assert code == 3, shown  # whitespace inside a URL makes it invalid_url (SPEC 2.1)
    assert MARK not in shown
    assert "PASSW0RD" not in shown
    assert shown.count(f"alice:{MASK}@") >= 1 and shown.count(f"bob:{MASK}@") >= 2


def test_password_with_a_raw_cr_in_an_input_file_is_masked(tmp_path):
    with counting_server() as server:
        line = server.url("/status/404").replace("//", f"//alice:{secret('PW')}\r@")
        source = tmp_path / "urls.txt"
        source.write_bytes(line.encode() + b"\n")
        results = tmp_path / "results.jsonl"
        done = run_process(["-v", "--retries", "0", "-i", str(source), "--results", str(results),
                            "--summary", str(tmp_path / "s.json")])  # fmt: skip
    shown = done.stdout + done.stderr + results.read_bytes() + (tmp_path / "s.json").read_bytes()
    assert done.returncode == 3, done.stderr
    assert MARK.encode() not in shown
    assert f"alice:{MASK}@".encode() in done.stderr


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(user=user_text, middle=password_text, format_name=st.sampled_from(["text", "jsonl", "csv"]))
def test_no_part_of_a_random_password_is_ever_printed(tmp_path, user, middle, format_name):
    with counting_server() as server:
        urls = [
            server.url(path).replace("//", f"//{user}:{secret(middle)}@")
            for path in ("/ok", "/status/503", "/redirect-loop")
        ]
        code, shown = run_outputs(["--format", format_name, "--max-redirects", "2", *urls],
                                  tmp_path)  # fmt: skip
    assert code in (1, 3), shown
    assert MARK not in shown


# -- usage errors never repeat a value -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-H", f"Authorization Bearer {MARK}"], "-H"),
        (["-H", "X-Ok: 1", "-H", f"Authorization Bearer {MARK}"], "2nd"),
        (["-H", f"{MARK}"], "-H"),
        (["-H", f"Cookie: sid={MARK}\r\nX-Evil: 1"], "Cookie"),
        (["-H", f"Authorization: Bearer {MARK}\r"], "Authorization"),  # (€ is sent as UTF-8)
        (["-b", f"sid {MARK}"], "-b"),
        (["-b", "a=1", "-b", f"sid {MARK}"], "2nd"),
        (["-b", f"sid={MARK}\r\nX-Evil: 1"], "sid"),
        (["-u", f"me:{MARK}\r"], "password"),
    ],
    ids=["header-no-colon", "second-header", "header-value-only", "header-crlf",
         "header-cr", "cookie-no-equals", "second-cookie", "cookie-crlf", "user-cr"],
)  # fmt: skip
def test_usage_error_never_prints_a_header_cookie_or_password(args, named):
    result = invoke([*args, NOT_FETCHED])
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.output
    assert MARK not in result.output
    assert named in result.output  # which one is wrong, by its name or its position


@pytest.mark.parametrize(
    "args",
    [
        ["-H", "Authorization:", "Bearer", MARK],
        ["-H", "Authorization:Bearer", MARK],
        ["-H", "authorization:", "token", f"{MARK}.{MARK}"],  # GitHub's word; a JWT's dots
        ["-H", "Proxy-Authorization:", "Basic", MARK],
        ["-H", "Authorization:", MARK],  # a token with no scheme word
        ["-H", "Cookie:", f"sid={MARK}"],
    ],
    ids=["bearer", "no-blank", "token-jwt", "proxy-basic", "bare-token", "cookie"],
)
def test_a_credential_header_the_shell_split_is_refused_unshown(args):
    """s29 r2 4: unquoted, -H Authorization: Bearer TOKEN URL gave -H 'Authorization:' (a
    removal) and made 'Bearer' and the token URLs: the token was looked up as a host name and
    printed in its record and the summary. The split is refused, no piece of it shown."""
    result = invoke([*args, NOT_FETCHED])
    assert result.exit_code == 2, result.output
    assert MARK not in result.output
    assert "quote" in result.output


def test_a_credential_header_removed_before_urls_with_their_scheme_is_a_removal(httpserver):
    """-H 'Authorization:' removes the header (netrc's, say): with URLs written whole nothing
    can be a split value, and the run goes on."""
    httpserver.expect_request("/x").respond_with_data("ok")
    result = invoke(["-H", "Authorization:", "-H", "Cookie:", httpserver.url_for("/x")])
    assert result.exit_code == 0, result.output


def test_a_url_that_urllib_cannot_split_quotes_no_part_of_its_password():
    """Found by the property above: with "][" in a password urllib's message quoted the rest of
    it ("'Qz7Kw@127.0.0.1:1' does not appear to be an IPv4 or IPv6 address")."""
    from fetcher.input.jobs import validate

    message = validate("http://:Qz7Kw][Qz7Kw@127.0.0.1:1/")
    assert message is not None and message.startswith("malformed URL")
    assert "Qz7Kw" not in message


# -- a password inside a URL's path or query never names a saved file ----------------------------


def saved_names(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.mark.parametrize(
    "path",
    [
        "/login?next=http://bob:{pw}@example.org/",  # a return address in the query
        "/go/http://bob:{pw}@example.org/page",  # a URL pasted into the path
        "/long?next=http://bob:{pw}@example.org/" + "x" * 300,  # a name cut with a hash
    ],
    ids=["query", "path", "long-name"],
)
def test_a_password_inside_a_url_names_no_file_and_no_record_path(tmp_path, path):
    """Found in session 20 (h2 5): the URL field masked the password of a URL inside the query,
    but the file under -o was named by the raw query, so the record's path printed it. Names
    come from the URL as shown; two URLs that differ only in such a password are told apart by
    the clash suffix, as any two URLs whose names clash."""
    with counting_server() as server:
        urls = [server.url(path.format(pw=secret(word))) for word in ("one", "two")]
        records = []
        for run, url in enumerate(urls):  # alone, each in a folder of its own: the same name
            result = invoke(["--format", "jsonl", "-o", str(tmp_path / f"alone{run}"), url])
            assert result.exit_code == 0, result.output
            records.append(json.loads(result.stdout))
        both = invoke(["--format", "jsonl", "-o", str(tmp_path / "both"), *urls])
    assert both.exit_code == 0, both.output
    assert MARK not in result.stdout + both.stdout
    names = [saved_names(tmp_path / f"alone{run}") for run in range(2)]
    assert names[0] == names[1]  # the password has no part in the name, nor in its hash
    assert not any(MARK in name for name in names[0] + saved_names(tmp_path / "both"))
    paths = [json.loads(line)["path"] for line in both.stdout.splitlines()]
    assert len(set(paths)) == 2  # one file each, as for any two URLs
    assert len({Path(p).read_bytes() for p in paths}) == 2  # each its own URL's body
    assert None not in [record["path"] for record in records]
