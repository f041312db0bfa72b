"""One spelling for each server a URL can name: the unit of the per-host limits, the
Retry-After pause, the summary's hosts and the shards (SPEC 2.3; usage.md, "Sharding")."""

from __future__ import annotations

import ast
import ipaddress
import re
import socket
from contextlib import suppress
from functools import lru_cache

# What inet_aton may read as an IPv4 address: 127.1, 2130706433, 0x7f.1, 0177.0.0.1. A name
# made of other letters (1e100.net) is a name; one of these letters that inet_aton refuses
# (12.bad) stays as written.
_IPV4_LIKE = re.compile(r"[0-9][0-9a-fx.]*", re.IGNORECASE)
# A label as the IDNA codec's messages quote it, with repr().
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


@lru_cache(maxsize=1024)
def idna_spelling(host: str) -> str:
    """host (urlsplit's hostname) as UTS #46 maps it, the spelling the URL goes on with (the
    request, --state, --unique, -o's folder; --shard and the per-host limits go on to
    server_name's one spelling of the server, in which 127.1 is 127.0.0.1): full-width letters,
    ligatures (U+FB01) and upper case to the forms IDNA encodes, as requests' own IDNA and
    curl's libidn2 map them; urllib3's strict IDNA 2008 refused them (s26 h5 6). A real
    Unicode name stays Unicode (café.example). ASCII as it is. Raises ValueError, saying why,
    for a name IDNA refuses (a bidi control, a joiner) or one holding a character the mapping
    would drop (a zero-width space, a soft hyphen): its server is not the one it shows."""
    if host.isascii():
        return host
    import idna  # requests' dependency; loaded only for a non-ASCII name

    for char in host:
        if not char.isascii() and _dropped(char):
            raise ValueError(f"invalid host name: U+{ord(char):04X}, an invisible character")
    try:
        idna.encode(host, uts46=True, std3_rules=True)
    except idna.IDNAError as exc:
        raise ValueError(f"invalid host name: {_unquoted(str(exc))}") from None
    mapped: str = idna.uts46_remap(host, std3_rules=True, transitional=False)
    return mapped


def _dropped(char: str) -> bool:
    """Whether UTS #46 maps char to nothing (ignored: U+200B, U+00AD, U+2060, variation
    selectors). A disallowed one is left to idna.encode, which names it."""
    import idna

    try:
        mapped: str = idna.uts46_remap(char, std3_rules=True, transitional=False)
        return mapped == ""
    except idna.IDNAError:
        return False


def _unquoted(message: str) -> str:
    """The IDNA codec's message with the label it quotes as itself, not repr()'s escapes:
    each output escapes a record's text once, as it does the URL's ('a\\u202eb' was shown
    with its backslash escaped again)."""

    def label(match: re.Match[str]) -> str:
        try:
            return f"'{ast.literal_eval(match.group(0))}'"
        except (ValueError, SyntaxError):
            return match.group(0)

    return _QUOTED.sub(label, message)


@lru_cache(maxsize=4096)
def server_name(host: str) -> str:
    """host (urlsplit's hostname: lower-cased, without brackets), as one server is named
    however it is spelled: an IPv4 address in its dotted form (the resolver reads 127.1 and
    2130706433 as 127.0.0.1), an IPv6 one compressed (an IPv4-mapped one as its IPv4), a
    name without its trailing dot (example.org. is example.org's server). Each spelling was a
    host of its own for --per-host, the pause and the shards: five requests in flight to one
    server under --per-host 1 (s25 h2 3). An address or localhost with a trailing dot, which
    the resolver refuses, stays as written. A non-ASCII name is left to the callers' IDNA."""
    if ":" in host:
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:  # a zone (fe80::1%25eth0), or not an address: as written
            return host
        mapped = address.ipv4_mapped
        return str(mapped) if mapped is not None else str(address)
    if host.endswith(".") and (_address(host[:-1]) is not None or host == "localhost."):
        return host  # the resolver refuses 127.0.0.1. and localhost.: not that server (h6 2)
    if (dotted := _address(host)) is not None:
        return dotted
    return host[:-1] if host.endswith(".") and len(host) > 1 else host


def _address(host: str) -> str | None:
    """host's IPv4 address in its dotted form, when inet_aton reads host as one; else None (a
    name of hex letters, 1e100.de or 3d.be, is a name)."""
    if _IPV4_LIKE.fullmatch(host):
        with suppress(OSError):
            return socket.inet_ntoa(socket.inet_aton(host))
    return None
