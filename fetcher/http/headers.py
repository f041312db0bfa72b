"""What a response's headers say about the file it carries, for -R and -J: Last-Modified as a
time, and Content-Disposition's file name reduced to one safe name (RFC 6266)."""

from __future__ import annotations

import datetime
import email.message
import email.utils
from collections.abc import Mapping


def remote_time(headers: Mapping[str, str]) -> float | None:
    """Last-Modified as a POSIX time; None when it is missing or not an HTTP date."""
    value = headers.get("Last-Modified")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # asctime's form or "-0000": HTTP dates are GMT (RFC 9110 5.6.7)
            when = when.replace(tzinfo=datetime.UTC)
        return when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def disposition_name(headers: Mapping[str, str]) -> str | None:
    """The file name Content-Disposition suggests, as one name: ``filename*`` (RFC 6266 section
    4.3, RFC 8187's charset'lang'%XX form) before ``filename``; only the part after the last
    ``/`` or ``\\``; blanks around it dropped. None when there is none, or it is empty, ``.`` or
    ``..``. What a name must not hold (controls, ``%``) is encoded later, by fetcher.output.paths,
    as for every other name."""
    value = headers.get("Content-Disposition")
    if not value:
        return None
    message = email.message.Message()
    message["Content-Disposition"] = value
    params = message.get_params([], header="Content-Disposition")[1:]
    names = [v for key, v in params if key.lower() == "filename"]
    # email decodes filename* into a (charset, language, text) tuple, listed after filename
    extended = [v for v in names if isinstance(v, tuple)]
    if not names:
        return None
    text = email.utils.collapse_rfc2231_value((extended or names)[-1])
    name = text.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return None if name in ("", ".", "..") else name
