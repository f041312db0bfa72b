"""fetcher.http.secrets: what a request sent that is secret, and masking it in a server's text."""

from __future__ import annotations

import base64

from fetcher.http.secrets import MIN_SECRET, mask_secrets, sent_secrets

MARK = "Qz7Kw"
COOKIE = f"CK{MARK}"
TOKEN = f"tok{MARK}en"


def leaked(text: str) -> list[str]:
    return [s for s in (COOKIE, TOKEN) if s in text]


def test_short_values_are_masked_only_inside_what_was_sent():
    secrets = sent_secrets({"Authorization": "Basic " + base64.b64encode(b"al:ab").decode()})
    assert "ab" not in secrets and MIN_SECRET == 4
    assert mask_secrets("Welcome back, al:ab", secrets) == "Welcome back, ***"


def test_no_credential_header_means_no_secret():
    assert sent_secrets({"Accept": "*/*", "User-Agent": "fetcher"}) == frozenset()
    assert mask_secrets("Denied", frozenset()) == "Denied"


def test_cookie_and_bearer_parts_are_secrets():
    secrets = sent_secrets({"Cookie": f"a=1; c={COOKIE}", "Authorization": f"Bearer {TOKEN}"})
    text = f"saw {COOKIE} and {TOKEN} and a=1; c={COOKIE} and Bearer {TOKEN}"
    assert leaked(mask_secrets(text, secrets)) == []
    assert "a=1" in mask_secrets("a=1 alone", secrets)  # 3 characters: not masked on its own
