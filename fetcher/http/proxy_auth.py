"""A proxy's credentials (-x user:password@host, *_PROXY) as the Proxy-Authorization header:
the bytes typed, %-escapes decoded to the bytes they name, as curl sends them and as -u and a
URL's own credentials are sent. requests decodes the escapes as UTF-8 (others replaced) and
sends Latin-1, so that 'café' went out as caf\\xe9 and a name beyond Latin-1 could not be sent.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit


def auth_from_url(url: str) -> tuple[str, str]:
    """requests' get_auth_from_url (a user name and a password, or two empty strings without
    user information), %-escapes that are not UTF-8 kept as the bytes they name. A user name
    without a ':' has an empty password, as curl reads it: requests sent nothing for
    ``http://TOKEN@proxy``, a proxy's API key given as the user name, where curl sends
    ``TOKEN:`` (and fetcher does for an origin URL's ``TOKEN@``). No user name sends nothing."""
    parts = urlsplit(url)
    if parts.username is None:
        return "", ""
    return (unquote(parts.username, errors="surrogateescape"),
            unquote(parts.password or "", errors="surrogateescape"))  # fmt: skip


def basic_auth(username: str, password: str) -> str:
    """requests' _basic_auth_str for auth_from_url's text: its UTF-8 bytes, those it kept as
    they were."""
    pair = f"{username}:{password}".encode("utf-8", "surrogateescape")
    return "Basic " + base64.b64encode(pair).decode("ascii")
