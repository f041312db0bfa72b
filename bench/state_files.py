"""Scenario F's state files: a synthetic --state of fresh rows written straight with sqlite3 (a
real first run over 1,000,000 URLs would take the bench ten minutes), and a state's size.

The synthetic state is made by fetcher's own schema code (``fetcher.state.database.open_locked``:
WAL, the migrations, ``user_version``), so it is the file a run would find, and its rows are
what a first run with ``-o`` would have written for each URL: ok, status 200, an nginx-style
ETag and a Last-Modified date, a 32-byte sha256, the saved path, ``fetched_at`` now; the line
is the URL itself, so ``line`` and ``header`` are NULL as fetcher leaves them. Rows go in input
order, as a run writes them, in transactions of ROWS_PER_COMMIT. Run as a script (the bench does)
so that the bench's own process stays small: a child's ru_maxrss counts its parent's RSS at fork.

    python bench/state_files.py STATE LISTING COUNT URL_PREFIX PATH_PREFIX
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from fetcher.state import database

ROWS_PER_COMMIT = 50_000
ETAG = '"6745f1a2-400"'  # nginx's form: mtime and length in hex
LAST_MODIFIED = "Tue, 26 Nov 2024 12:00:02 GMT"
_INSERT = (
    "INSERT INTO urls (url, ok, status, etag, last_modified, sha256, path, fetched_at, form) "
    "VALUES (?, 1, 200, ?, ?, ?, ?, ?, 0)"
)


def synthetic_state(state: Path, listing: Path, urls: Iterable[tuple[str, str]]) -> int:
    """Write state (a new file) with one fresh ok row per (url, saved path), and listing with
    the URLs one a line, in the same order; return the row count."""
    for stale in (state, Path(f"{state}-wal"), Path(f"{state}-shm")):
        stale.unlink(missing_ok=True)
    fd, connection = database.open_locked(str(state))
    now = int(time.time())
    count = 0
    batch: list[tuple[str, str, str, bytes, str, int]] = []
    with open(listing, "w") as file:
        for url, path in urls:
            file.write(url + "\n")
            batch.append((url, ETAG, LAST_MODIFIED, os.urandom(32), path, now))
            if len(batch) == ROWS_PER_COMMIT:
                count += _insert(connection, batch)
        count += _insert(connection, batch)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    os.close(fd)  # after the connection: closing it drops SQLite's locks too
    return count


def _insert(
    connection: sqlite3.Connection, batch: list[tuple[str, str, str, bytes, str, int]]
) -> int:
    connection.execute("BEGIN")
    connection.executemany(_INSERT, batch)
    connection.execute("COMMIT")
    written = len(batch)
    batch.clear()
    return written


def state_size(state: Path) -> tuple[int, int]:
    """(bytes, rows) of a state no run holds: the database file after a checkpoint that empties
    the write-ahead log into it, plus what is left of the log (nothing, normally)."""
    connection = sqlite3.connect(state)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = int(connection.execute("SELECT count(*) FROM urls").fetchone()[0])
    finally:
        connection.close()
    wal = Path(f"{state}-wal")
    return state.stat().st_size + (wal.stat().st_size if wal.exists() else 0), rows


def statuses(state: Path) -> dict[int | None, int]:
    """How many rows have each status: after a second run, 304s show the conditional path."""
    connection = sqlite3.connect(state)
    try:
        found = connection.execute("SELECT status, count(*) FROM urls GROUP BY status")
        return {status: int(count) for status, count in found}
    finally:
        connection.close()


def main(argv: list[str]) -> None:
    state, listing, count, url_prefix, path_prefix = argv
    pairs = ((f"{url_prefix}{n}", f"{path_prefix}{n}") for n in range(int(count)))
    print(synthetic_state(Path(state), Path(listing), pairs))


if __name__ == "__main__":
    main(sys.argv[1:])
