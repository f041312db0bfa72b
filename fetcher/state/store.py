"""A run's --state: per-URL lookups as the input is read, results written as records are.

Lookups stream with the input on the dispatcher's connection (by primary key, alone or a batch
in one statement), so memory does not grow with the state. Writes go through one connection on
the thread that writes the records, kept in order and committed after the records are flushed,
every COMMIT_ROWS rows and whenever the writer is idle (at least every tenth of a second while
results come), as multi-row statements: a crash loses at most that much. A commit made before
the records were out would leave, after a SIGKILL, changes in the state never reported.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from fetcher.errors import ErrorKind
from fetcher.input.jobs import Job, row_key
from fetcher.output.atomic import has_generation
from fetcher.output.bodies import partial_inode
from fetcher.results import Partial, Result
from fetcher.state import database
from fetcher.state.prior import Prior, Reach, moment, opaque
from fetcher.state.writes import PendingWrites, Statement

COMMIT_ROWS = 2000
# The writer's wait in SQLite's busy handler, per try (see PendingWrites.write): short enough
# for the signal handlers that run between tries.
WRITE_BUSY_MS = 50
FORMS = {"lines": 0, "jsonl": 1, "csv": 2}  # the `form` column: how `line` is read back
FORM_NAMES = {code: name for name, code in FORMS.items()}

# A Prior's columns, in its fields' order, the hash as lowercase hex: for one URL and for many.
_PRIOR = (
    "ok, fetched_at, etag, last_modified, lower(hex(sha256)), path, saved_mark, partial, "
    "partial_from, partial_bytes, partial_changed, partial_total, final_url, partial_url"
)
# A row whose columns are of the types fetcher writes. One edited by hand into another (a BLOB
# path, a fetched_at of text) stopped the run before any request, as JSON cannot hold a BLOB
# and a date of text is no number (s21 h2 7): it is not found, unknown, and its URL is fetched
# whole and its row written anew. A test of each column of the row found, by its key.
_READABLE = " AND ".join(
    ["typeof(ok) = 'integer'", "typeof(fetched_at) = 'integer'",
     "(sha256 IS NULL OR (typeof(sha256) = 'blob' AND length(sha256) = 32))"]
    + [f"typeof({name}) IN ('text', 'null')"
       for name in ("etag", "last_modified", "path", "partial", "partial_from", "final_url",
                    "partial_url")]
    + [f"typeof({name}) IN ('integer', 'null')"
       for name in ("saved_mark", "partial_bytes", "partial_changed", "partial_total")]
)  # fmt: skip
_LOOKUP = f"SELECT {_PRIOR} FROM urls WHERE url = ? AND {_READABLE}"
# The failed rows after a URL, in the order of their key: --retry-failed's input, a page at a time.
# The line and header as bytes, whatever a hand edit made them (text stopped the run), and no row
# under a key that is no text, which no URL can be read from (s21 h2 7).
_FAILED = (
    "SELECT url, form, CAST(line AS BLOB), CAST(header AS BLOB) FROM urls "
    "WHERE ok = 0 AND url > ? AND typeof(url) = 'text' ORDER BY url LIMIT ?"
)
FAILED_PAGE = 100  # rows read in one statement: their lines may be 128 KiB each
_COLUMNS = (
    "url, ok, status, error_kind, etag, last_modified, sha256, path, saved_mark, final_url, "
    "fetched_at, form, line, header, partial, partial_from, partial_bytes, partial_changed, "
    "partial_total, partial_url"
)
_UPSERT = Statement(
    f"INSERT INTO urls ({_COLUMNS})",
    20,
    """
ON CONFLICT (url) DO UPDATE SET
    ok = excluded.ok, status = excluded.status, error_kind = excluded.error_kind,
    etag = iif(excluded.ok, excluded.etag, etag),
    last_modified = iif(excluded.ok, excluded.last_modified, last_modified),
    sha256 = iif(excluded.ok, excluded.sha256, sha256),
    path = iif(excluded.ok, excluded.path, path),
    saved_mark = iif(excluded.ok, excluded.saved_mark, saved_mark),
    final_url = iif(excluded.ok, excluded.final_url, final_url),
    fetched_at = excluded.fetched_at, form = excluded.form, line = excluded.line,
    header = excluded.header,
    partial = iif(excluded.ok AND excluded.partial IS NULL, NULL,
        coalesce(excluded.partial, partial)),
    partial_from = iif(excluded.ok AND excluded.partial IS NULL, NULL,
        coalesce(excluded.partial_from, partial_from)),
    partial_bytes = iif(excluded.ok AND excluded.partial IS NULL, NULL,
        coalesce(excluded.partial_bytes, partial_bytes)),
    partial_changed = iif(excluded.ok AND excluded.partial IS NULL, NULL,
        iif(excluded.partial IS NULL, partial_changed, excluded.partial_changed)),
    partial_total = iif(excluded.ok AND excluded.partial IS NULL, NULL,
        iif(excluded.partial IS NULL, partial_total, excluded.partial_total)),
    partial_url = iif(excluded.ok AND excluded.partial IS NULL, NULL,
        iif(excluded.partial IS NULL, partial_url, excluded.partial_url))
""",
    ok_at=1,  # a failure's row is kept when unread records' rows are dropped (writes._failed)
)
# A body saved under a name a row from before schema 3 names (no mark to tell its file by):
# the file is this body's now. Rows of (the path as this run spells it, absolute, url): such a
# row keeps the path as the run that wrote it spelled it.
_DISOWN_UNMARKED = Statement(
    "WITH saved (spelled, path, url) AS (",
    3,
    """)
UPDATE urls SET path = NULL
WHERE saved_mark IS NULL AND path IS NOT NULL
    AND path IN (SELECT spelled FROM saved UNION ALL SELECT path FROM saved)
    AND url NOT IN (SELECT url FROM saved WHERE urls.path IN (saved.spelled, saved.path))
""",
)
# A body that is not the row's (a part of the user's Range) saved over the very file the URL's
# own row names: the row no longer vouches for that file, marked or not (a row from before
# schema 3 has no mark to tell the part by: it was told 304 and kept the part as the whole
# body, s22 r1 1). The next run fetches the body whole, without conditions. Rows as above.
_DISOWN_OWN = Statement(
    "WITH saved (spelled, path, url) AS (",
    3,
    """)
UPDATE urls SET path = NULL, saved_mark = NULL
WHERE url IN (SELECT url FROM saved)
    AND EXISTS (SELECT 1 FROM saved WHERE saved.url = urls.url
        AND urls.path IN (saved.spelled, saved.path))
""",
)
# A download under --continue has begun: where its partial file is, before it can be cut off.
_PARTIAL = Statement(
    "INSERT INTO urls (url, ok, fetched_at, form, line, header, partial, partial_from, "
    "partial_total, partial_url)",
    10,
    """
ON CONFLICT (url) DO UPDATE SET
    partial = excluded.partial, partial_from = excluded.partial_from, partial_bytes = NULL,
    partial_changed = NULL, partial_total = excluded.partial_total,
    partial_url = excluded.partial_url
""",
    of_record=False,  # written at the next commit, whether or not a pipe's reader is slow
)
# Many lookups in one statement step: the rows found, as one JSON text.
_LOOKUP_MANY = f"""
SELECT json_group_array(json_array(url, {_PRIOR}))
FROM urls WHERE url IN (SELECT value FROM json_each(?)) AND {_READABLE}
"""


class State:
    """The open --state file of one run: locked, migrated, with a connection for lookups and
    one for writes. ``close`` commits what is pending and releases the lock."""

    def __init__(self, path: str) -> None:
        self.path = database.check_folders(path)  # as checked: every connection opens it
        self.given = path  # as the user named it, for messages
        self._lock, self._writer = database.open_locked(self.path)
        try:
            self._writer.execute(f"PRAGMA busy_timeout = {WRITE_BUSY_MS}")  # see commit
            self._reader = database.connect(self.path)
        except BaseException:
            self._writer.close()
            os.close(self._lock)
            raise
        self._pending = PendingWrites()
        self._lookups = self._reader.cursor()
        self._failed: sqlite3.Connection | None = None
        self.log_files = _files_beside(self.path, LOG_SUFFIXES)  # this run's, as SQLite made them

    # -- lookups (the dispatcher's thread) ------------------------------------------------------

    def lookup(self, url: str) -> Prior | None:
        """The state's row for url; None when it has none, or one fetcher cannot read. A read
        of its own, over when this returns (the statement run to its end): a pipe's lookups
        shared one, renewed at once when it ended, so one was always held, between the lines
        and while the pipe was waited for; no checkpoint could start the log again, and it grew
        by some 3 KB a URL for the whole run (s23 h2 1). It costs some 6 us more a lookup
        (16 against 10)."""
        rows = self._lookups.execute(_LOOKUP, (url,)).fetchall()
        return _prior(rows[0]) if rows else None  # None too for a path no file has

    def lookup_many(self, urls: list[str]) -> dict[str, Prior]:
        """The rows of urls that the state has, in one statement step: a transaction of its
        own, which pays for itself over the batch. A read transaction held from one batch to
        the next pinned the log: no checkpoint could start it again, and it grew by some 300
        bytes a URL for the whole run (s15 h4 2)."""
        text = self._lookups.execute(_LOOKUP_MANY, (json.dumps(urls),)).fetchone()[0]
        priors = ((url, _prior(row)) for url, *row in json.loads(text))
        return {url: prior for url, prior in priors if prior is not None}

    def failed_lines(self) -> Iterator[tuple[str, bytes, bytes, str, str]]:
        """(input format, line, csv header or b"", URL fetched, the row's key) of every request
        whose last result failed, as they were read: --retry-failed's input (its result goes
        to the row it came from, one an older fetcher wrote too). A page of rows at a time, in
        the order of their keys, each page a read of its own: one snapshot held for the whole
        stream kept every checkpoint from copying the log back, which grew for the whole run
        (s15 h4 2). The rows this run writes do not come back: --retry-failed takes no other
        input, so each is the row of a URL read already, at or before the last page's last."""
        self._failed = database.connect(self.path)
        after = ""
        while True:
            page = self._failed.execute(_FAILED, (after, FAILED_PAGE)).fetchall()
            for key, form, line, header in page:
                name, url = FORM_NAMES.get(form, "lines"), _one_lined(url_of_key(key))
                text = line if _one_line(name, line) else url.encode()
                yield name, text, header or b"", url, key
            if len(page) < FAILED_PAGE:
                return
            after = page[-1][0]

    # -- writes (the records' thread) -----------------------------------------------------------

    def record(self, result: Result) -> None:
        """Write result's row (a skipped URL and an invalid line have none) and fill in what the
        state knows for its record: ``changed``, and a 304's hash."""
        job, prior = result.job, result.job.prior
        if result.skipped or result.error_kind is ErrorKind.INVALID_URL:
            return
        key, bodiless = row_key(job), result.bodiless
        # Nothing says the state's body is current: an ok row stays its last body's, its age
        # too (s19 t2 D8, s22 r1 3). Asked before _known_body gives the record the row's tags.
        kept = result.ok and prior is not None and prior.ok and _silent(result, prior, bodiless)
        if result.ok:  # by the answer's own validators: _known_body gives a 304 the row's
            result.changed = _changed(result, prior, bodiless)
        known = _known_body(result, prior, bodiless)
        if not kept:
            self._pending.add(_UPSERT, (key, result.ok, result.status,
                              None if result.error_kind is None else str(result.error_kind),
                              *_body_columns(result, known), int(time.time()),
                              *_line_of(job, result.ok),
                              *_partial_kept(result, prior, bodiless)))  # fmt: skip
        if result.ok and (result.part or not bodiless) and result.path is not None:
            spelled, path = _stored(result.path), _stored(_absolute(result.path))
            self._pending.add(_DISOWN_UNMARKED, (spelled, path, key))
            if result.part:  # not the row's body, over the file the row names (s22 r1 1)
                self._pending.add(_DISOWN_OWN, (spelled, path, key))

    @property
    def pending_rows(self) -> int:
        """How many rows wait for the next commit: where ``take_back`` takes back to."""
        return len(self._pending)

    def take_back(self, since: int) -> None:
        """Forget the rows taken after the first since, before any commit or mark: those of
        a result whose record could not be built, which its failure's row replaces."""
        self._pending.take_back(since)

    def mark(self, end: int) -> None:
        """The rows taken so far are of records that end at byte end of their pipe, or before
        (a pipe's records count as reported once their reader has read them: commit's upto)."""
        self._pending.mark(end)

    @property
    def batch_full(self) -> bool:
        """COMMIT_ROWS rows pending, for the records' writer to commit after their records;
        those of records still in a pipe, left by the last commit, do not count: a reader
        slow to read them would make every record a commit."""
        return len(self._pending) - self._pending.held >= COMMIT_ROWS

    def partial_begun(self, job: Job, partial: Partial) -> None:
        """--continue: a download of job is being written to partial's file, resumable with
        its validator."""
        row = (row_key(job), 0, int(time.time()), *_line_of(job),
               _stored(partial.path), partial.validator, partial.total,
               partial.url)  # fmt: skip
        self._pending.add(_PARTIAL, row)

    def commit(self, upto: int | None = None) -> None:
        """Write what is pending; with upto, only the rows of records that end in the first upto
        bytes of their pipe (those its reader has read: ``mark``), the others stay pending.
        Raises OSError (a full disk, a database gone bad), which the records' writer reports
        as it reports its own. Called with nothing pending too: the marks of the records read
        are let go (``PendingWrites.write`` touches the database only with rows to write)."""
        try:
            self._pending.write(self._writer, database.BUSY_SECONDS, upto)
        except sqlite3.Error as exc:
            raise OSError(f"SQLite: {exc}") from exc

    def forget_results(self, upto: int | None = None) -> int:
        """Drop the results not committed yet, whose records were lost with a failed write, or
        never read by a pipe's reader gone: committed, a changed body's retry would say
        unchanged, its change reported never. With upto, those of records in the first upto
        bytes of the pipe stay: its reader read them. The partial files begun stay known
        (--continue may still take them). Returns how many results were dropped."""
        return self._pending.drop(_UPSERT, upto)

    def close(self) -> None:
        """Commit, close the connections (close_connections), release the lock. Idempotent."""
        if self._lock < 0:
            return
        try:
            self.commit()
        finally:
            try:
                close_connections([self._failed, self._reader], self._writer, moved(self))
            finally:  # closed, whatever failed: a second close (the exit stack's) does nothing
                database.drop_journal(self.path)
                os.close(self._lock)
                self._lock = -1


def close_connections(
    readers: list[sqlite3.Connection | None], writer: sqlite3.Connection, moved: bool
) -> None:
    """Close the readers, then the writer. A file its name no longer leads to (moved: renamed,
    removed, replaced) has its log emptied into it first: SQLite does not at its close then,
    and left the -wal under the name, where a renamed file lost its rows to it and the next
    run read them into a file put in its place."""
    for connection in readers:
        if connection is not None:
            connection.close()
    try:
        if moved:  # the readers closed: no snapshot holds the log back
            writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        writer.close()


def moved(state: State) -> bool:
    """Whether the state's name no longer leads to the file the run has open."""
    try:
        named = os.stat(state.path)
    except OSError:
        return True
    ours = os.fstat(state._lock)
    return (named.st_dev, named.st_ino) != (ours.st_dev, ours.st_ino)


LOG_SUFFIXES = ("-wal", "-shm")  # SQLite's files beside a database in WAL mode


def _files_beside(path: str, suffixes: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """The device and inode of each file path+suffix there is."""
    found = {}
    for suffix in suffixes:
        try:
            info = os.stat(path + suffix)
        except OSError:
            continue
        found[suffix] = (info.st_dev, info.st_ino)
    return found


def move_log_at_hard_exit(state: State) -> None:
    """At a hard exit (no close, no checkpoint: SQLite's log stays under the name), a state
    moved during the run takes its log with it: beside the file's new name when renamed, away
    when removed or replaced, where the next run would read it into the file put in its place
    (s19 t3 3). Only files this run's connections opened; never raises, never waits. The
    -journal claimed for the run goes in any case (database.drop_journal)."""
    try:
        if state._lock < 0:
            return
        database.drop_journal(state.path)
        if not moved(state):
            return
        now = None if unlinked(state) else os.readlink(f"/proc/self/fd/{state._lock}")
        if now is not None and now.endswith(" (deleted)"):  # its name gone, a hard link left
            now = None  # whose name no one can tell: the log goes, as for a removed file
        for suffix, made in state.log_files.items():
            if _files_beside(state.path, (suffix,)).get(suffix) != made:
                continue  # not ours: another run's, or gone
            if now is None or suffix == "-shm":  # SQLite makes a -shm anew from the log
                os.unlink(state.path + suffix)
            else:
                os.replace(state.path + suffix, now + suffix)
    except OSError:
        pass


def unlinked(state: State) -> bool:
    """Whether the state's file was removed, or replaced (``mv``), during the run: no name
    leads to it any more, and the run's rows went to it without a word (SQLite goes on writing
    the file it has open). A file renamed, or its folder moved, keeps its rows: not this."""
    return os.fstat(state._lock).st_nlink == 0


def _one_line(input_format: str, line: bytes | None) -> bool:
    """Whether a failed row's line may be retried as it is: a URL (or jsonl) line holding a
    line end (a row edited by hand) wrote two lines into --failed, one never in the state
    (s27 t7 7); such a row is retried as its key's URL, as a row without a line is. A csv
    record's line ends inside quotes are its own."""
    if line is None:
        return False
    return input_format == "csv" or not (b"\n" in line or b"\r" in line)


# The key of a request other than a GET or HEAD without a body: 'POST URL HASH' (a method, a
# token; a URL, which holds no blank; 16 hex digits: fetcher.http.request.state_key).
_REQUEST_KEY = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+ (\S+) [0-9a-f]{16}")


def url_of_key(key: str) -> str:
    """The URL of a row's key: the second word of a request's (_REQUEST_KEY), else the key
    itself. Any key holding a blank was read as a request's: one set by hand to
    'URL\r\nX-Injected: 1' was retried as the URL '1' (s33 t4 1)."""
    found = _REQUEST_KEY.fullmatch(key)
    return key if found is None else found[1]


def _one_lined(url: str) -> str:
    """A row's URL as one line: a line end in it (a hand edit) is a blank, so that its
    --failed line is one (the URL, invalid either way, wrote two)."""
    return url.replace("\r", " ").replace("\n", " ")


def _prior(row: Sequence[Any]) -> Prior | None:
    """A row's Prior; None for one whose path or partial no file has (_loaded: a hand edit),
    taken as no row, as _READABLE takes one of another type: not the run's stop ("reading the
    input failed", each run) nor a traceback from the stat of a path with a NUL (s27 t7 3)."""
    ok, fetched_at, etag, last_modified, sha256, path, mark, partial, partial_from, *kept = row
    try:
        path, partial = _loaded(path), _loaded(partial)
    except ValueError:
        return None
    return Prior(bool(ok), fetched_at, etag, last_modified, sha256 or None, path, mark, partial,
                 partial_from, *kept)  # fmt: skip


# A path that is not UTF-8 (a folder named in other bytes, held as lone surrogates), which
# SQLite cannot bind as text: kept as this mark and the hex of its bytes. No path holds a NUL.
NOT_UTF8 = "\0"


def _stored(path: str | None) -> str | None:
    """path as the state keeps it (a path column's value)."""
    if path is None or path.isascii():
        return path
    try:
        path.encode()
    except UnicodeEncodeError:
        return NOT_UTF8 + os.fsencode(path).hex()
    return path


def _loaded(value: str | None) -> str | None:
    """A path column's value as the path it stands for (the reverse of _stored). Raises
    ValueError for one fetcher never writes: the mark, then what is not hex; a NUL in the
    path, which no path holds."""
    if value is None:
        return None
    if value.startswith(NOT_UTF8):
        value = os.fsdecode(bytes.fromhex(value[len(NOT_UTF8) :]))
    if "\0" in value:
        raise ValueError("a path holds no NUL")
    return value


def _changed(result: Result, prior: Prior | None, bodiless: bool) -> bool | None:
    """An ok result's ``changed`` (SPEC 3): a 304 is no change; a URL new to the state is one;
    a body is one when its hash is not the state's. A HEAD reads no body: what it says is
    whether its validators are the state's body's (a 200 to the state's conditions is the
    server saying they are not), and None, not known, when no validator is in both (s21 h2 3);
    a 304 to the state's conditions naming others too (a backend that checked only the date:
    s24 h5 2). Prior.another_version decides, as it decides whether a GET's such 304 is
    followed by the whole body (fetch.names_another_version): the two agree (s24 r11 3).
    Called before _known_body gives a 304 the row's validators and hash.
    """
    if result.status == 304:  # a HEAD's, to the state's conditions, has no hash: none was read
        if not result.not_modified or result.sha256 is not None or prior is None:
            return False
        return _another_version(result, prior) is True
    if prior is None:
        return True
    if not bodiless:
        return prior.sha256 != result.sha256
    return _another_version(result, prior)


def _another_version(result: Result, prior: Prior) -> bool | None:
    """Prior.another_version of result's validators, from the URL result's answer came from
    (_reach): from the body's path under another query only the same strong ETag is the same
    body, from any other URL nothing is, as for a GET's 304 there (s24 r11 5, s25 r2 3)."""
    return prior.another_version(result.etag, result.last_modified, _reach(result, prior))


def _reach(result: Result, prior: Prior) -> Reach:
    """Prior.came_from of result's answer (the URL asked, as a row from before schema 6
    takes it: as requests sent it, Result.asked_url, as the GET's 304 is judged; the job's
    spelling made a HEAD's 304 changed where the GET's was not: s25 r5 4)."""
    asked = result.asked_url or result.job.target
    return prior.came_from(result.final_url, result.redirects, asked)


def _known_body(result: Result, prior: Prior | None, bodiless: bool) -> Result | Prior | None:
    """The body the row is to describe: result's own, or for an answer without one the body
    known before; after a 304 to the state's condition, that one, still current, with any
    validator the 304 renewed, and its hash in the record too; None (no body known) after a
    304 that is not the stored body's (_renews), whose record still gets the row's."""
    if not (result.not_modified and prior is not None):
        # An ok answer without a body of its own (a HEAD, a 304 to a condition not the state's)
        # reaches here only after a failure or for a new URL: the state then vouches for no body
        # (the old one's hash, newly dated, made it fresh: s20 r1 6), and the next GET is whole.
        return None if bodiless and result.ok else (prior if bodiless else result)
    renews = _renews(result, prior)
    if not renews:
        result.etag, result.last_modified = prior.etag, prior.last_modified
    result.etag = result.etag or prior.etag
    result.last_modified = result.last_modified or prior.last_modified
    if result.sha256 is not None and not result.bytes:  # a HEAD's record keeps null
        result.sha256 = prior.sha256
    if not renews:  # it says nothing of the stored body: after a failure, the state vouches
        return None  # for none (an ok row is left as it was: State.record, _silent)
    # The record names the file this run kept (none without -o); the state, the file it knows.
    # The mark is the one the 304 was asked about: a file saved over it since (another copy of
    # the URL) is not the stored body's, and the next run fetches it whole (s24 h5 3). A row
    # from before schema 3 gets the kept file's; one whose mark has no generation, the mark
    # with it of the file the 304 confirmed (bodies._kept_mark: else the row's own, s27 t2 1).
    mark = prior.saved_mark
    if mark is None or (not has_generation(mark) and result.saved_mark is not None):
        mark = result.saved_mark
    # Its URL is the one the validators were sent to (FetcherSession.conditions): the row's,
    # or the request's own for a row from before schema 6, which now has it.
    return replace(prior, etag=result.etag, last_modified=result.last_modified,
                   path=result.path or prior.path, saved_mark=mark,
                   final_url=result.final_url or prior.final_url)  # fmt: skip


def _silent(result: Result, prior: Prior, bodiless: bool) -> bool:
    """Whether an ok answer says nothing of whether the state's body is current: one without
    a body of its own (a HEAD, a part, a 304 to the user's own -H condition), unless it is a
    304 to the state's conditions that is the stored body's (_renews). One naming another
    version renewed the row's fetched_at, and --skip-fresh kept the stale file as fresh for
    DURATION after each such 304 (s22 r1 3)."""
    return bodiless and not (result.not_modified and _renews(result, prior))


def _renews(result: Result, prior: Prior) -> bool:
    """Whether a 304's validators are the stored body's, and may replace them (RFC 9111
    4.3.4): its ETag, when it has one, decides, as If-None-Match does (one the state never had
    is no match: nothing says it is the stored body's); else its date. A 304
    naming another ETag or date (a backend that checked only If-Modified-Since, of a new
    version with the old date) is not: taken, the next run asked a correct server with the new
    version's ETag, was told 304, and kept the old file for good. Kept, it asks with the old
    ones, and gets the new body. One from another URL than the stored body's (a HEAD's: a
    GET's is asked again whole) is only when Prior.another_version says so, by the very strong
    ETag: a bare one, or one with a weak tag, took that URL and its validators into the row,
    with the old body's sha256, and later GETs asked there and kept the old file (s25 r2 4)."""
    where = _reach(result, prior)
    if where is not Reach.OWN:
        return prior.another_version(result.etag, result.last_modified, where) is False
    if result.etag is not None:
        return prior.etag is not None and opaque(result.etag) == opaque(prior.etag)
    if result.last_modified is not None:
        return prior.last_modified is not None and (
            moment(result.last_modified) == moment(prior.last_modified)
        )
    return True


def _body_columns(result: Result, known: Result | Prior | None) -> tuple[Any, ...]:
    """etag, last_modified, sha256, path, saved_mark and final_url: of the body the row's
    validators are for, which is known's. For an ok answer without a body of its own (a HEAD,
    a 304 to a request that had no conditions) that is the body known before, if any: its
    validators must not become those of a body never read (a later run would be told 304 and
    keep a stale file)."""
    if not result.ok or known is None:
        return None, None, None, None, None, None  # a failure's are ignored by the upsert
    sha256 = bytes.fromhex(known.sha256) if known.sha256 else None
    path = _stored(_absolute(known.path))
    return known.etag, known.last_modified, sha256, path, known.saved_mark, known.final_url


PartialColumns = tuple[str | None, str | None, int | None, int | None, int | None, str | None]


def _partial_kept(result: Result, prior: Prior | None, bodiless: bool) -> PartialColumns:
    """_partial_columns, but for an ok answer that completes no body (a HEAD, a 304): the
    partial file stays the state's, to be continued by the next GET (an ok row with no partial
    would forget it)."""
    if result.ok and bodiless and prior is not None and prior.partial and not result.partial:
        return (_stored(prior.partial), prior.partial_from, prior.partial_bytes,
                prior.partial_changed, prior.partial_total, prior.partial_url)  # fmt: skip
    return _partial_columns(result)


def _absolute(path: str | None) -> str | None:
    """path as the state keeps a saved file's: absolute, its folder's links resolved (as -o
    DIR was opened), so that a run from another folder (cron's is the home folder) or with DIR
    spelled another way finds the file a run by hand saved with a relative -o."""
    if path is None:
        return None
    folder, name = os.path.split(path)
    return os.path.join(_real_folder(os.path.join(os.getcwd(), folder)), name)


@functools.lru_cache(maxsize=1024)
def _real_folder(folder: str) -> str:
    """os.path.realpath of a saved file's folder (absolute, not yet normalised: a link's '..'
    is not the text's): a host's files share a few, resolved once a run (records' thread)."""
    return os.path.realpath(folder)


def _partial_columns(result: Result) -> PartialColumns:
    """partial, partial_from, partial_bytes, partial_changed, partial_total and partial_url: how
    far a download cut short
    got, as the worker that wrote it saw the file (its own inode under its name) once it was
    closed, and the file's ctime, if the name still holds that inode at that size. NULL when
    not known: one abandoned in flight may still be growing (its size, from an earlier
    attempt, is not the file's); the next run then takes the file at the size it finds, if
    it is still fetcher's file (fetcher.output.bodies.Bodies.reopen)."""
    partial = result.partial
    if partial is None:
        return None, None, None, None, None, None
    stored, total, url = _stored(partial.path), partial.total, partial.url
    if result.abandoned or not partial.size:
        return stored, partial.validator, None, None, total, url
    try:
        info = os.stat(partial.path, follow_symlinks=False)
    except OSError:
        return stored, partial.validator, partial.size, None, total, url
    same = (info.st_ino, info.st_size) == (partial_inode(partial.path), partial.size)
    changed = info.st_ctime_ns if same else None
    return stored, partial.validator, partial.size, changed, total, url


def _line_of(job: Job, ok: bool = False) -> tuple[int, bytes | None, bytes | None]:
    """form, line and header columns: the line as read, NULL when it is the URL itself, or
    for an ok row: only --retry-failed reads them, of failed rows (a wide csv's line and
    header in every row came to some 500 bytes a URL)."""
    raw = job.raw
    line = None if ok or raw == row_key(job).encode() else raw  # the key: a line
    return FORMS[job.input_format], line, None if ok else job.header
