"""Error kinds: the stable names of what can go wrong with one URL, and FetchError.

fetcher.http.classify maps any exception to a kind. requests wraps urllib3, which wraps
http.client, ssl and socket errors, so the kind of a failure is found by walking the whole chain
rather than by looking at the outermost exception:

    requests.RequestException                 (what Session.get raises)
     +-- ConnectionError --> urllib3.MaxRetryError.reason --> NewConnectionError --> OSError
     +-- Timeout, SSLError, ProxyError, TooManyRedirects, ChunkedEncodingError, InvalidURL ...
    FetchError                                (ours: max_time, too_large, io)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    """Stable names that users match on in records, summaries and scripts."""

    INVALID_URL = "invalid_url"
    DNS = "dns"
    CONNECT = "connect"
    CONNECT_TIMEOUT = "connect_timeout"
    READ_TIMEOUT = "read_timeout"
    MAX_TIME = "max_time"
    TLS = "tls"
    PROXY = "proxy"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    TOO_LARGE = "too_large"
    PROTOCOL = "protocol"
    HTTP = "http"
    IO = "io"
    OTHER = "other"


class FetchError(Exception):
    """A failure that fetcher itself detects; it carries its kind. ``final``: the server's
    fixed answer (a redirect to a URL that cannot be fetched), which another attempt would get
    again: never retried, whatever its kind."""

    kind: ErrorKind = ErrorKind.OTHER
    final: bool = False
    abandoned: bool = False  # cut by the run's stop: neither ok nor failed (not finished)
    # This machine's own failure, met before the hop that failed was sent (a CA bundle it
    # cannot use): no host's doing, and no attempt when that hop was the first.
    local: bool = False
    response: Any = None  # the answer that failed, when one came (a redirect not followed)

    def __init__(self, message: str, kind: ErrorKind | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
