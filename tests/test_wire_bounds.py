"""A coded body whose bytes decode to nothing, for ever: junk after a gzip member, endless empty
gzip members, endless zstd skippable frames (s28 t1 2). --max-size counted decoded bytes only,
and urllib3 reads on while a read decodes to nothing: the run never ended without -m."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import struct

import pytest

from tests.conftest import invoke
from tests.servers import FaultServer, read_request

FIRST = gzip.compress(b"first member\n" * 1000, mtime=0)
SKIPPABLE = struct.pack("<II", 0x184D2A50, 65536 - 8) + bytes(65536 - 8)  # a zstd frame, skipped
LIMIT = 1 << 30  # what the server sends at most: a test that fails ends


def endless(coding: str, first: bytes, piece: bytes, sent: list[int]) -> FaultServer:
    """A server answering with first, then piece after piece until the client hangs up (or
    LIMIT): the bytes it sent go to sent."""

    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\nTransfer-Encoding: chunked\r\n"
        conn.sendall(head.encode() + b"\r\n" + b"%x\r\n%s\r\n" % (len(first), first))
        framed, total = b"%x\r\n%s\r\n" % (len(piece), piece), len(first)
        try:
            while total < LIMIT:
                conn.sendall(framed)
                total += len(piece)
        finally:
            sent.append(total)

    return FaultServer(behaviour)


def zstd_frame(data: bytes) -> bytes:
    return pytest.importorskip("backports.zstd").compress(data)  # type: ignore[no-any-return]


STREAMS = {
    "junk-after-a-member": ("gzip", FIRST, b"J" * 65536),
    "empty-members": ("gzip", FIRST, gzip.compress(b"", mtime=0) * 3000),
    "zstd-skippable-frames": ("zstd", b"", SKIPPABLE),
}


def record_of(server: FaultServer, *args: str) -> dict[str, object]:
    # -m: a run that reads for ever ends all the same, its kind max_time.
    got = invoke(["--format", "jsonl", "--retries", "0", "-m", "30", *args, server.url("/x")])
    [line] = got.stdout.splitlines()
    parsed: dict[str, object] = json.loads(line)
    return parsed


@pytest.mark.parametrize("stream", STREAMS.values(), ids=STREAMS.keys())
def test_max_size_bounds_the_bytes_sent_of_a_body_that_decodes_to_nothing(stream):
    """curl --max-filesize gives up at once; fetcher's bound is 32 times --max-size of the
    bytes sent and 1 MiB (3 MiB here, before the 4 MiB that decode to nothing), too_large."""
    coding, first, piece = stream
    sent: list[int] = []
    first = zstd_frame(b"x") if coding == "zstd" else first
    with endless(coding, first, piece, sent) as server:
        record = record_of(server, "--max-size", "64K")
    assert record["ok"] is False and record["error"]["kind"] == "too_large", record  # type: ignore[index]
    assert "--max-size" in record["error"]["message"], record  # type: ignore[index]


@pytest.mark.parametrize("stream", STREAMS.values(), ids=STREAMS.keys())
def test_a_body_whose_bytes_decode_to_nothing_for_4_mib_is_protocol(stream):
    """Without --max-size the run ends too (guarantees.md): 4 MiB in a row that decode to
    nothing are no body fetcher will ever see, and no real coding sends them."""
    coding, first, piece = stream
    sent: list[int] = []
    first = zstd_frame(b"x") if coding == "zstd" else first
    with endless(coding, first, piece, sent) as server:
        record = record_of(server)
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record  # type: ignore[index]
    assert "decode to nothing" in record["error"]["message"], record  # type: ignore[index]


def test_an_incompressible_body_at_max_size_is_ok_though_its_coding_is_larger():
    """gzip makes random bytes a little larger: the bound of the bytes sent never refuses a
    body that --max-size allows."""
    data = os.urandom(100_000)
    body = gzip.compress(data, compresslevel=9, mtime=0)
    assert len(body) > len(data)
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)

    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(answer + body)

    with FaultServer(behaviour) as server:
        record = record_of(server, "--max-size", str(len(data)))
    assert record["ok"] is True and record["sha256"] == hashlib.sha256(data).hexdigest(), record


def test_a_body_of_many_small_members_within_max_size_is_ok():
    """A log flushed one gzip member a line: 50,000 members of 2 bytes are 1.1 MB sent for
    100,000 decoded, and a bound of twice --max-size sent refused it at --max-size 200000 (s28
    r3 3). A member costs at least 20 bytes of header and trailer: the bound is 32 times."""
    data = b"x\n" * 50_000
    body = b"".join(gzip.compress(b"x\n", mtime=0) for _ in range(50_000))
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)

    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(answer + body)

    with FaultServer(behaviour) as server:
        record = record_of(server, "--max-size", "200000")
    assert record["ok"] is True and record["sha256"] == hashlib.sha256(data).hexdigest(), record
