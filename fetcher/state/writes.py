"""The state's pending writes: rows kept in order and written, at each commit, as multi-row
statements. sqlite3 lets go of the GIL at every statement step; one step per row made each row
a hand-off to a worker thread and back, which cost a --state run a fifth more CPU per URL."""

from __future__ import annotations

import functools
import sqlite3
import time
from dataclasses import dataclass

ROWS_PER_STATEMENT = 64  # 15 columns x 64 rows: far below SQLite's limit on parameters


@dataclass(frozen=True)
class Statement:
    """An INSERT whose VALUES may list many rows: head, one row of ``width`` parameters, tail."""

    head: str
    width: int
    tail: str

    @functools.lru_cache(maxsize=2 * ROWS_PER_STATEMENT)  # noqa: B019 - a few module constants
    def text(self, rows: int) -> str:
        row = "(" + ", ".join("?" * self.width) + ")"
        return f"{self.head} VALUES {', '.join([row] * rows)} {self.tail}"


class PendingWrites:
    """Rows waiting for the next commit, in the order they came, each with its statement."""

    def __init__(self) -> None:
        self.rows: list[tuple[Statement, tuple[object, ...]]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, statement: Statement, row: tuple[object, ...]) -> None:
        self.rows.append((statement, row))

    def write(self, connection: sqlite3.Connection, patience: float = 0.0) -> None:
        """Execute every pending row in one transaction, consecutive rows of one statement
        together, ROWS_PER_STATEMENT at a time; the rows are gone after, written or not. While
        another process holds the database locked, the transaction is tried again for up to
        patience seconds, each try bounded by the connection's own short busy timeout: in
        SQLite's busy handler (C code) Python runs no signal handler, and a long one lost a
        second signal (SPEC 2.5: it ends the run within a second)."""
        rows, self.rows = self.rows, []
        deadline = time.monotonic() + patience
        while True:
            try:
                return self._write(connection, rows)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise

    @staticmethod
    def _write(
        connection: sqlite3.Connection, rows: list[tuple[Statement, tuple[object, ...]]]
    ) -> None:
        connection.execute("BEGIN")
        try:
            start = 0
            while start < len(rows):
                statement = rows[start][0]
                end = start
                while end < len(rows) and end - start < ROWS_PER_STATEMENT:
                    if rows[end][0] is not statement:
                        break
                    end += 1
                values = [value for _, row in rows[start:end] for value in row]
                connection.execute(statement.text(end - start), values)
                start = end
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
