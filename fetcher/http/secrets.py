"""The secrets one request sent (its Authorization, Cookie and Proxy-Authorization values, and
their parts), masked in what its server says back: a server may echo them in a reason phrase, a
header or a redirect's query (SPEC 2.4: such values are never printed)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote

from requests.models import PreparedRequest
from requests.utils import select_proxy

from fetcher.http.proxy_auth import auth_from_url, basic_auth
from fetcher.redact import MASK

# Shorter values are masked only as part of a longer one they were sent in (the whole header,
# the Basic token, user:password): a password "ab" masked on its own would mask the "ab" of
# every word of a reason phrase.
MIN_SECRET = 4
NO_SECRETS: frozenset[str] = frozenset()
_SENT_AS = ("Authorization", "Proxy-Authorization", "Cookie")


def with_hop_secrets(
    secrets: frozenset[str], request: PreparedRequest, proxies: Mapping[str, str] | None
) -> frozenset[str]:
    """secrets with those one hop of a fetch sends (its headers, and its proxy's credentials,
    which the adapter adds as it sends): secrets itself when it sends none."""
    proxy = select_proxy(request.url or "", proxies) if proxies else None
    found = sent_secrets(request.headers, proxy)
    return secrets | found if found else secrets


def sent_secrets(headers: Mapping[str, str | bytes], proxy: str | None = None) -> frozenset[str]:
    """The secret values of a request's headers and of its proxy's ``user:password@``: each
    whole credential value, its credentials (a Basic token, decoded to user:password and the
    password; a Bearer token), each cookie as ``name=value`` and its value, each also
    %-encoded (a query quotes what it echoes). NO_SECRETS for a request that sent none, at
    the cost of three header look-ups."""
    values = [_text(value) for name in _SENT_AS if (value := headers.get(name))]
    if proxy is not None and "@" in proxy and any(user := auth_from_url(proxy)):
        values.append(basic_auth(*user))  # what the adapter sends the proxy
    if not values:
        return NO_SECRETS
    found: set[str] = set()
    for value in values:
        found.update(_parts(value))
    return frozenset(
        form
        for secret in found
        for form in (secret, quote(secret, safe="", errors="surrogateescape"))
        if len(form) >= MIN_SECRET
    )


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _parts(value: str) -> Iterable[str]:
    """value and what a server could echo of it alone: an Authorization's credentials (after
    its scheme), a Basic token's user:password and password (its user name when there is no
    password: the credential then), a Cookie's pairs and their values."""
    yield value.strip()
    scheme, _, credentials = value.strip().partition(" ")
    if credentials:
        yield credentials.strip()
    if scheme.lower() == "basic":
        yield from _basic_parts(credentials.strip())
    for pair in value.split(";"):
        yield pair.strip()
        yield pair.partition("=")[2].strip()


def _basic_parts(token: str) -> Iterable[str]:
    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return
    for text in {raw.decode("utf-8", "surrogateescape"), raw.decode("latin-1")}:
        user, _, password = text.partition(":")
        yield text
        yield password or user


def mask_secrets(text: str, secrets: frozenset[str]) -> str:
    """text with every secret in it (the longest first: a whole header before its parts)
    replaced by ``***``; text itself when no secret was sent (the common case: no work)."""
    if not secrets or not text:
        return text
    return _pattern(secrets).sub(MASK, text)


def holds_secret(text: str, secrets: frozenset[str]) -> bool:
    """Whether text holds one of secrets, as it is or %-decoded (a name from a header)."""
    if not secrets or not text:
        return False
    return bool(_pattern(secrets).search(text) or _pattern(secrets).search(unquote(text)))


def _pattern(secrets: frozenset[str]) -> re.Pattern[str]:
    """One pattern of all of secrets, longest first; re caches the last few compiled, so one
    request's secrets are compiled once for its fields."""
    return re.compile("|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True)))
