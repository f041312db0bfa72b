"""A small HTTP origin for the --state tests: resources with an ETag and a Last-Modified date,
answering conditional requests (304) and Range requests validated by If-Range (206), as a
careful server does (RFC 9110 13.1 and 14), and recording every request's headers."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response


@dataclass
class Resource:
    body: bytes
    etag: str | None = None  # as sent, quotes included
    last_modified: str | None = None
    chunk_delay: float = 0.0  # seconds between 64 KiB chunks: a slow download
    fail_next: int = 0  # answer this many requests with a 503 first
    disposition: str | None = None  # a Content-Disposition header to send (-J)
    cut_at: int | None = None  # end the connection after this many bytes of the next body
    cut_every: int | None = None  # ... of every body, while set
    # How a lying server answers a Range: "ignore-if-range" (the range whatever If-Range says),
    # "range-from-0" (the rest, labelled as from byte 0), "short-range" (less than the rest),
    # "always-206" (a 206 of a few bytes, asked for a range or not); and "always-304" (a 304
    # whatever the request's conditions, or without any).
    lie: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def resource(body: bytes, version: int = 1, etag: bool = True, dated: bool = True) -> Resource:
    """A resource whose validators say which version it is."""
    return Resource(
        body,
        etag=f'"v{version}-{hashlib.sha256(body).hexdigest()[:8]}"' if etag else None,
        last_modified=formatdate(1_700_000_000 + version * 3600, usegmt=True) if dated else None,
    )


@dataclass
class Origin:
    """Serves resources by path on a pytest-httpserver; ``seen`` holds each request's path and
    headers, in order."""

    resources: dict[str, Resource] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests_for(self, path: str) -> list[dict[str, str]]:
        with self.lock:
            return [headers for seen_path, headers in self.seen if seen_path == path]

    def __call__(self, request: Request) -> Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self.lock:
            self.seen.append((request.path, headers))
            item = self.resources.get(request.path)
        if item is None:
            return Response(b"not here\n", status=404)
        if item.fail_next > 0:
            item.fail_next -= 1
            return Response(b"try again\n", status=503)
        validators = {}
        if item.etag:
            validators["ETag"] = item.etag
        if item.last_modified:
            validators["Last-Modified"] = item.last_modified
        if item.disposition:
            validators["Content-Disposition"] = item.disposition
        if item.lie == "always-304" or _not_modified(item, headers):
            return Response(status=304, headers=validators)
        start = _range_start(item, headers)
        if start is not None and start >= len(item.body):
            return Response(status=416, headers={"Content-Range": f"bytes */{len(item.body)}"})
        first, end = start, len(item.body) - 1
        if item.lie == "always-206":
            start, first, end = 5, 5, 9
        elif start is not None and item.lie == "short-range":
            end = start + (end - start) // 2
        elif start is not None and item.lie == "range-from-0":
            first = 0
        body = item.body if start is None else item.body[start : end + 1]
        response = Response(_chunks(body, item), headers=validators,
                            direct_passthrough=True)  # fmt: skip
        response.headers["Content-Length"] = str(len(body))
        response.headers["Accept-Ranges"] = "bytes"
        if start is not None:
            response.status_code = 206
            response.headers["Content-Range"] = f"bytes {first}-{end}/{len(item.body)}"
        return response


def _not_modified(item: Resource, headers: dict[str, str]) -> bool:
    """If-None-Match decides when present, by the weak comparison RFC 9110 13.1.2 asks (W/
    aside, as nginx and Apache compare); else If-Modified-Since (exact date compare)."""
    if "if-none-match" in headers:
        tags = [tag.strip().removeprefix("W/") for tag in headers["if-none-match"].split(",")]
        return item.etag is not None and item.etag.removeprefix("W/") in tags
    since = headers.get("if-modified-since")
    return since is not None and item.last_modified is not None and since == item.last_modified


def _range_start(item: Resource, headers: dict[str, str]) -> int | None:
    """The first byte asked for, if a Range is to be honoured: If-Range must match."""
    wanted = headers.get("range", "")
    if not wanted.startswith("bytes=") or not wanted.endswith("-"):
        return None
    if_range = headers.get("if-range")
    honest = item.lie is None
    if honest and if_range is not None and if_range not in (item.etag, item.last_modified):
        return None  # the resource changed: the whole of it, with a 200
    return int(wanted[len("bytes=") : -1])


def _chunks(body: bytes, item: Resource) -> Any:
    """The body in 64 KiB chunks, item.chunk_delay apart (read at each chunk: a test may make
    a download that is under way fast again)."""
    cut, item.cut_at = item.cut_at, None
    cut = item.cut_every if cut is None else cut
    for start in range(0, len(body), 65536):
        if cut is not None and start + 65536 > cut:
            yield body[start:cut]
            raise ConnectionAbortedError("cut short, as asked")  # the server drops the connection
        yield body[start : start + 65536]
        if item.chunk_delay:
            time.sleep(item.chunk_delay)


@contextmanager
def origin_server() -> Iterator[tuple[HTTPServer, Origin]]:
    """A threaded pytest-httpserver on 127.0.0.1 serving an Origin: a slow download does not
    hold up the next request."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    origin = Origin()
    server.expect_request("").respond_with_handler(origin)
    server.start()
    try:
        yield server, origin
    finally:
        server.clear()
        server.stop()


def state_fetch(url: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    """The one record of a `--state tmp_path/s.db -o tmp_path/out` run over url, no retry."""
    from tests.conftest import invoke  # noqa: PLC0415 - conftest imports this module's users
    from tests.servers import records  # noqa: PLC0415

    args = ["--state", str(tmp_path / "s.db"), "-o", str(tmp_path / "out"), "--retries", "0"]
    [record] = records(invoke(["--format", "jsonl", "-q", *args, *extra, url]).stdout)
    return record
