"""Keep secrets out of everything printed: passwords in URLs and credential header values."""

from __future__ import annotations

import logging
import re

MASK = "***"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

# scheme://user:password@ -- the password is everything up to the last @ before the path.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:\s]*):[^/?#\s]*@")


def redact_url(url: str) -> str:
    """Return url with the password of its user-info, if any, replaced by ``***``."""
    if "@" not in url:
        return url
    if not _SCHEME.match(url):  # a line without scheme, shown as read: user:password@host/...
        return redact_url("x://" + url)[len("x://") :]
    return _AUTHORITY.sub(_mask_userinfo, url)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# scheme:// and the authority after it: up to the path, query or fragment, or a line end.
_AUTHORITY = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#\r\n]*)")


def _mask_userinfo(match: re.Match[str]) -> str:
    """user:password@host -> user:***@host; the user info ends at the authority's last '@'
    (a user name may be an e-mail address), the password starts at its first ':'."""
    userinfo, at, host = match["authority"].rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return match[0]
    return f"{match['scheme']}{user}:{MASK}@{host}"


def redact_text(text: str) -> str:
    """Mask every URL password found anywhere in a free text such as an error message."""
    return _AUTHORITY.sub(_mask_userinfo, text)


LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class RedactingFormatter(logging.Formatter):
    """A log formatter that masks URL passwords and credential headers in every message.

    urllib3's debug log (-vv) prints request lines, so the mask is applied to the final text.
    """

    def format(self, record: logging.LogRecord) -> str:
        return redact_log_text(super().format(record))


_HEADER_LINE = re.compile(
    r"(?i)\b(" + "|".join(sorted(SECRET_HEADERS, key=len, reverse=True)) + r")"
    r"(['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]*"
)


def redact_log_text(text: str) -> str:
    return _HEADER_LINE.sub(lambda m: f"{m[1]}{m[2]}{MASK}", redact_text(text))
