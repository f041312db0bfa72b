"""A gzip body's later members (RFC 1952 2.2), against a server that lies in one of them: a
member whose header zlib accepted is begun, and must end as one, with its CRC and length right;
only bytes that cannot begin a member are trailing garbage (s28 t1 1)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import invoke
from tests.servers import FaultServer, respond

FIRST = gzip.compress(b"first member\n" * 1000, mtime=0)
SECOND = gzip.compress(os.urandom(300_000), mtime=0)


def spoilt(member: bytes, at: int, count: int = 1) -> bytes:
    """member with count bytes from index at (negative: from its end) flipped."""
    spoiled = bytearray(member)
    start = at % len(member)
    for i in range(start, start + count):
        spoiled[i] ^= 0xFF
    return bytes(spoiled)


def chunked(body: bytes, size: int = 16384) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def answer(body: bytes, coding: str = "gzip", in_chunks: bool = True) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\n"
    if in_chunks:
        return head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body)
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def fetched(tmp_path: Path, sent: bytes) -> dict[str, object]:
    with FaultServer(respond(sent)) as server:
        out = invoke(["--format", "jsonl", "--retries", "0", "-o", str(tmp_path), server.url("/x")])
    [line] = out.stdout.splitlines()
    record: dict[str, object] = json.loads(line)
    return record


SMALL_SECOND = spoilt(gzip.compress(b"second member\n" * 100, mtime=0), -8)  # its CRC32
LIES = {
    "bad-crc": answer(FIRST + spoilt(SECOND, -8)),
    "bad-isize": answer(FIRST + spoilt(SECOND, -4)),
    "flipped-data": answer(FIRST + spoilt(SECOND, len(SECOND) // 2, 64)),
    "in-one-read": answer(FIRST + SMALL_SECOND, in_chunks=False),
    "inside-gzip-gzip": answer(gzip.compress(FIRST + spoilt(SECOND, -8), mtime=0), "gzip, gzip"),
    "bad-header-crc": answer(FIRST + b"\x1f\x8b\x08\x02\0\0\0\0\0\xff\0\0" + SECOND[10:]),
}


@pytest.mark.parametrize("sent", LIES.values(), ids=LIES.keys())
def test_a_later_gzip_member_that_fails_inside_is_protocol_and_saves_nothing(
    tmp_path: Path, sent: bytes
):
    """urllib3 swallowed any zlib error after the first member as trailing garbage: a bad CRC
    or length gave a truncated file, flipped bytes a wrong one, and a member in the same read
    as the first was dropped whole, each ok under its final name (gzip -d: "crc error")."""
    record = fetched(tmp_path, sent)
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


JUNK = {
    "junk": b"trailing junk " * 100,
    "zeros": b"\0" * 1024,
    "not-deflate": b"\x1f\x8b\x07" + b"x" * 40,  # gzip's magic, a method that is not deflate
}


@pytest.mark.parametrize("in_chunks", [True, False], ids=["chunked", "one-read"])
@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
def test_bytes_that_cannot_begin_a_member_after_whole_members_are_ignored(
    tmp_path: Path, junk: bytes, in_chunks: bool
):
    """As gzip -d: what cannot begin a member (no gzip magic, or a method zlib does not know)
    after whole members is trailing garbage, and the body is the members' (choices.md)."""
    good = gzip.compress(b"second\n" * 10, mtime=0)
    record = fetched(tmp_path, answer(FIRST + good + junk, in_chunks=in_chunks))
    data = gzip.decompress(FIRST + good)
    assert record["ok"] is True and record["sha256"] == hashlib.sha256(data).hexdigest(), record
