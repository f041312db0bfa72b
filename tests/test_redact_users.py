"""A credential given as the user name alone is masked (SPEC §2.4; s22 h2 3).

``https://$GITHUB_TOKEN@host/`` and Stripe's ``https://sk_live_KEY:@host/`` put the secret in
the user name, and requests sends it as Basic credentials (``TOKEN:``). The rule, as git's: when
the password is empty or absent, the user name is the credential and the whole user info is
shown as ``***`` (``https://***@host/``); with a password, ``user:***@`` as before. A free
text's scheme-less ``word@host`` is an e-mail address far more often, and is left as it is,
but in a usage error, where it is an option's value, it is masked too.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from fetcher.output.progress import short_name
from fetcher.redact import MASK, redact_log_text, redact_text, redact_url
from tests.conftest import invoke, run_process
from tests.servers import counting_server
from tests.test_secrets import MARK, NOT_FETCHED, secret

TOKEN = secret("ghp_TOKEN")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"http://{TOKEN}@h/x", f"http://{MASK}@h/x"),
        (f"http://{TOKEN}:@h/x", f"http://{MASK}@h/x"),  # an empty password
        ("https://me@mail.test@h:8443/", f"https://{MASK}@h:8443/"),  # a user with an @
        (f"{TOKEN}@h/x", f"{MASK}@h/x"),  # a line without a scheme gets the default one
        (f"http://{TOKEN}@h/a:b@c", f"http://{MASK}@h/a:b@c"),  # the path is not user info
        ("http://user:PW@h/", f"http://user:{MASK}@h/"),  # a password: the user name shown
        (":PW@h/", f":{MASK}@h/"),
        ("http://@h/", "http://@h/"),  # nothing sent, nothing to hide
        ("http://h/a@b", "http://h/a@b"),
        ("mailto:a@b", f"mailto:{MASK}@b"),  # known and accepted: read as user:password@host
    ],
)
def test_redact_url_masks_a_user_name_without_a_password(url, expected):
    assert redact_url(url) == expected
    assert redact_url(expected) == expected  # a mask is masked as itself


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"retrying http://{TOKEN}@h/x", f"retrying http://{MASK}@h/x"),
        (f"see http://{TOKEN}:@h/ and https:/k@g/", f"see http://{MASK}@h/ and https:/{MASK}@g/"),
        (f"cannot fetch {TOKEN}:@h/x", f"cannot fetch {MASK}@h/x"),  # a colon: a URL's form
        ("From: bob@example.com", "From: bob@example.com"),  # an e-mail address in a text
        ("ssh user@host:22 refused", "ssh user@host:22 refused"),
    ],
)
def test_redact_text_masks_a_url_user_name_without_a_password(text, expected):
    assert redact_text(text) == expected
    assert MARK not in redact_log_text(text)


def test_a_usage_error_masks_a_schemeless_user_name_too():
    for value in (f"{TOKEN}@127.0.0.1/site/", f"'{TOKEN}@127.0.0.1/site/'"):
        assert MARK not in redact_text(value, bare_words=True)
    assert redact_text(f"not a size: '{TOKEN}@h/'", bare_words=True) == f"not a size: '{MASK}@h/'"


def test_the_progress_name_masks_it():
    assert short_name(f"http://{TOKEN}@127.0.0.1:9/file.iso") == f"{MASK}@127.0.0.1:9/file.iso"


@pytest.mark.parametrize("format_name", ["text", "jsonl", "csv"])
@pytest.mark.parametrize("form", ["{}@", "{}:@"], ids=["user-only", "empty-password"])
def test_a_user_name_credential_is_sent_and_never_printed(tmp_path: Path, format_name, form):
    summary, results = tmp_path / "s.json", tmp_path / "r.txt"
    with counting_server() as server:
        url = server.url("/status/404").replace("//", "//" + form.format(TOKEN))
        done = invoke(["-v", "--retries", "1", "--backoff", "0", "--format", format_name,
                       "--summary", str(summary), "--results", str(results), url])  # fmt: skip
        sent = server.headers_seen[0].get("Authorization")
    assert done.exit_code == 3, done.output
    assert sent == "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()  # a credential
    shown = done.stdout + done.stderr + summary.read_text() + results.read_text()
    assert MARK not in shown
    assert f"{MASK}@127.0.0.1" in shown
    assert json.loads(summary.read_text())  # --summary's examples are in what was checked


def test_worker_processes_mask_it_in_their_logs():
    with counting_server() as server:
        urls = [server.url(f"/status/503/{n}").replace("//", f"//{TOKEN}@") for n in range(2)]
        done = run_process(["-v", "--processes", "2", "--retries", "1", "--backoff", "0", *urls])
    assert done.returncode == 3, done.stderr
    assert b"retrying" in done.stderr or b"503" in done.stderr
    assert MARK.encode() not in done.stdout + done.stderr
    assert f"{MASK}@127.0.0.1".encode() in done.stdout


@pytest.mark.parametrize("option", ["-m", "--results", "--processes"])
def test_a_usage_error_never_shows_it(tmp_path, monkeypatch, option):
    monkeypatch.chdir(tmp_path)
    for value in (f"https://{TOKEN}@127.0.0.1:18443/site/", f"{TOKEN}@127.0.0.1:18443/site/"):
        result = invoke([option, value, NOT_FETCHED])
        assert result.exit_code == 2, result.output
        assert MARK not in result.output
        assert option in result.output
