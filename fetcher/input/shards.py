"""``--shard K/N``: which input lines this copy of fetcher processes when N copies split one list.

A line belongs to a shard by a hash of its URL's lower-cased host, so that all of a host's URLs go
to one copy (per-host limits and connection reuse stay meaningful). The hash is SHA-256, not
Python's ``hash()``, which is salted per process: every machine and Python version must agree.
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

from fetcher.input.hosts import server_name

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``K/N``. Raises ValueError with a message for the user."""
        match = _SHARD.match(text)
        if not match:
            raise ValueError(f"not a shard: {text!r} (expected K/N, e.g. 0/4)")
        index, count = int(match[1]), int(match[2])
        if not 0 <= index < count:
            raise ValueError(f"not a shard: {text!r} (K/N needs 0 <= K < N)")
        return cls(index, count)

    def holds(self, key: bytes) -> bool:
        """Whether the line with this shard key (see ``shard_key``) belongs to this shard."""
        return shard_of(key, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(key: bytes, count: int) -> int:
    """The shard, out of count, of a key: the first 8 bytes of its SHA-256, modulo count."""
    import hashlib  # only --shard hashes: loading OpenSSL is a start-up cost for every run

    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % count


def shard_key(target: str, raw: bytes) -> bytes:
    """What decides a line's shard: the lower-cased host of target (the URL with its default
    scheme), a Unicode name IDNA-encoded as requests connects to it (``bücher.test`` is
    ``xn--bcher-kva.test``'s server: one shard, as one host for the limits), or, for a line
    without one (``http://``, bad JSON), the line's raw bytes, so that every line lands in
    exactly one shard."""
    try:
        host = urlsplit(target).hostname
    except ValueError:
        host = None
    if not host:
        return raw
    if not host.isascii():  # requests' own encoding, as it connects (host_of's too)
        from requests.models import PreparedRequest

        with suppress(UnicodeError):  # requests refuses that URL: its record says so
            host = PreparedRequest._get_idna_encoded_host(host)  # type: ignore[attr-defined]
    return server_name(host.lower()).encode("utf-8", "surrogatepass")
