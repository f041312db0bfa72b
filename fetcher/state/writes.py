"""The state's pending writes: rows kept in order and written, at each commit, as multi-row
statements. sqlite3 lets go of the GIL at every statement step; one step per row made each row
a hand-off to a worker thread and back, which cost a --state run a fifth more CPU per URL.
On a pipe, each record's rows are marked with where it ends in the pipe's bytes, so that a
commit takes only those of the records its reader has read."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections import deque
from dataclasses import dataclass

ROWS_PER_STATEMENT = 64  # 15 columns x 64 rows: far below SQLite's limit on parameters


@dataclass(frozen=True)
class Statement:
    """An INSERT whose VALUES may list many rows: head, one row of ``width`` parameters, tail.
    of_record: its rows are a record's, which on a pipe wait for its reader to read it."""

    head: str
    width: int
    tail: str
    of_record: bool = True
    # Which parameter says the row's result was ok: a failure's row hides no change, so it is
    # never dropped with the records a reader did not read (drop). None: none says.
    ok_at: int | None = None

    @functools.lru_cache(maxsize=2 * ROWS_PER_STATEMENT)  # noqa: B019 - a few module constants
    def text(self, rows: int) -> str:
        row = "(" + ", ".join("?" * self.width) + ")"
        return f"{self.head} VALUES {', '.join([row] * rows)} {self.tail}"


Row = tuple[Statement, tuple[object, ...]]


class PendingWrites:
    """Rows waiting for the next commit, in the order they came, each with its statement; on a
    pipe, with marks: (where a record ends in the pipe's bytes, the records' rows added up to
    it, counted from the first ever added). Marks only grow, so the rows of the records a
    reader has read are the first records' rows; a row of no record (a partial file begun)
    waits for none, and goes ahead of those still waiting."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.marks: deque[tuple[int, int]] = deque()
        self.added = 0  # records' rows added so far
        self.done = 0  # of them, written or dropped
        self.held = 0  # rows the last write left pending: their records not read yet

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, statement: Statement, row: tuple[object, ...]) -> None:
        self.rows.append((statement, row))
        self.added += statement.of_record

    def take_back(self, since: int) -> None:
        """Drop the rows added after the first since: a record that could not be built takes
        back its result's rows (no mark covers them yet: a record is marked once written)."""
        gone, self.rows = self.rows[since:], self.rows[:since]
        self.added -= sum(statement.of_record for statement, _ in gone)

    def mark(self, end: int) -> None:
        """The rows added so far are of records that end at byte end of their pipe, or before.
        A record that added no row (a URL skipped as fresh) needs no mark: the last one says
        as much, and one kept per record grew with the run (s24 r3 1)."""
        if self.added > (self.marks[-1][1] if self.marks else self.done):
            self.marks.append((end, self.added))

    def drop(self, statement: Statement, upto: int | None) -> int:
        """Drop statement's rows but those of records wholly in the first upto bytes (None:
        none stay); no mark is left: no record is written after. Returns how many went, for
        the run to say that their records' results are not in the state."""
        ready, waiting = self._split(0 if upto is None else self._taken(upto), statement)
        dropped = len(self.rows) - len(ready) - len(waiting)
        self.rows = ready + waiting
        self.marks.clear()
        self.done = self.added - sum(entry[0].of_record for entry in self.rows)
        self.held = 0  # none waits for a reader any more: every row left counts to the batch
        return dropped

    def _taken(self, upto: int) -> int:
        """How many of the records' rows pending are of records wholly in the first upto
        bytes of their pipe; their marks are spent."""
        count = self.done
        while self.marks and self.marks[0][0] <= upto:
            count = self.marks.popleft()[1]
        return count - self.done

    def _split(self, taken: int, dropped: Statement | None = None) -> tuple[list[Row], list[Row]]:
        """(the rows of no record and of the first taken records' rows; the records' rows
        after them), each in the order they came; those of dropped after them left out."""
        ready: list[Row] = []
        waiting: list[Row] = []
        for entry in self.rows:
            if entry[0].of_record and taken <= 0:
                if entry[0] is not dropped or _failed(entry):
                    waiting.append(entry)
                continue
            taken -= entry[0].of_record
            ready.append(entry)
        return ready, waiting

    def write(
        self, connection: sqlite3.Connection, patience: float = 0.0, upto: int | None = None
    ) -> None:
        """Execute the pending rows in one transaction (with upto, of the records wholly in the
        first upto bytes of their pipe, and of no record), consecutive rows of one statement
        together, ROWS_PER_STATEMENT at a time; the rows are gone after, written or not. While
        another process holds the database locked, the transaction is tried again for up to
        patience seconds, each try bounded by the connection's own short busy timeout: in
        SQLite's busy handler (C code) Python runs no signal handler, and a long one lost a
        second signal (SPEC 2.5: it ends the run within a second)."""
        if upto is None:
            self.marks.clear()
            rows, self.rows = self.rows, []
        else:
            rows, self.rows = self._split(self._taken(upto))
        self.done, self.held = self.added - len(self.rows), len(self.rows)
        if not rows:
            return
        deadline = time.monotonic() + patience
        while True:
            try:
                return self._write(connection, rows)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise

    @staticmethod
    def _write(connection: sqlite3.Connection, rows: list[Row]) -> None:
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


def _failed(entry: Row) -> bool:
    """Whether entry is the row of a failure (Statement.ok_at): it is kept when the rows of
    records a reader did not read are dropped. Dropped, a failure read late (`| (sleep 2;
    cat)`) was forgotten: --retry-failed never saw it, --skip-fresh took the row before it as
    fresh (s24 h6 1). It hides no change: a failure's row keeps the body's columns as they were."""
    statement, row = entry
    return statement.ok_at is not None and not row[statement.ok_at]
