"""The --state file: an SQLite database in WAL mode, its schema, its migrations and its lock.

WAL lets the dispatcher read while the record writer writes, and with ``synchronous=NORMAL`` a
commit is one append to the log: a process killed at any moment loses at most the transaction
it was in, never the file. One run at a time: the file is locked with ``flock`` for the whole
run, and a second run is refused at once instead of waiting on SQLite's busy lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import re
import sqlite3
import stat
import struct

from fetcher.owners import resolve

# The schema, version by version: MIGRATIONS[n] takes a database from user_version n to n + 1.
# Never edit a step once released; add one. docs/state.md documents the latest.
MIGRATIONS = (
    """
    CREATE TABLE urls (
        url TEXT PRIMARY KEY NOT NULL,
        ok INTEGER NOT NULL,
        status INTEGER,
        error_kind TEXT,
        etag TEXT,
        last_modified TEXT,
        sha256 BLOB,
        path TEXT,
        fetched_at INTEGER NOT NULL,
        form INTEGER NOT NULL DEFAULT 0,
        line BLOB,
        header BLOB,
        partial TEXT,
        partial_from TEXT,
        partial_bytes INTEGER
    ) WITHOUT ROWID;
    """,
    # 2: the partial file's ctime (st_ctime_ns) when it was cut: --continue resumes that very
    # file, not one recreated under its name that got its freed inode number
    "ALTER TABLE urls ADD COLUMN partial_changed INTEGER",
    # 3: the saved file's mark (inode and size: atomic.file_mark): across runs
    # two URLs may map to one -o name, and a file another URL's body replaced is not this one's
    "ALTER TABLE urls ADD COLUMN saved_mark INTEGER",
    # 4: the rows written before 3, which name a file but have no mark, found by that name: a
    # body saved there takes the file from them (an index of rows with marks would cost some
    # 100 bytes a URL; rows leave this one as their next body or 304 marks them)
    "CREATE INDEX urls_unmarked ON urls (path) WHERE saved_mark IS NULL AND path IS NOT NULL",
    # 5: the length of the resource the partial file began as (its 200's Content-Length, or a
    # 206's total): a 206 of the same ETag saying another length is no rest of it
    "ALTER TABLE urls ADD COLUMN partial_total INTEGER",
    # 6: the URL the saved body came from, after its redirects (its answer's): its validators
    # are that resource's (RFC 9110 8.8), and go to that URL only; NULL in a row from before,
    # whose validators go only to a URL that answers without a redirect
    "ALTER TABLE urls ADD COLUMN final_url TEXT",
    # 7: the URL the partial file's body came from, which alone is asked for the rest of it
    "ALTER TABLE urls ADD COLUMN partial_url TEXT",
    # 8: no change of the table: saved_mark below 0 now holds the file's generation too
    # (atomic.file_mark), which a fetcher of schema 7 took for another file's mark and fetched
    # every file whole; a version of its own makes such a fetcher refuse the state (s27 t7 8)
    "SELECT 8",
)
SCHEMA_VERSION = len(MIGRATIONS)
PAGE_CACHE_KIB = 8 * 1024  # per connection: memory stays flat whatever the size of the state


class StateError(Exception):
    """The state file cannot be used: in use by another run, not a database, too new."""


# How long a statement waits for another process's lock on the database before it fails.
BUSY_SECONDS = 5.0


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are begun explicitly), usable from the
    thread that is handed it (``check_same_thread`` off: one thread at a time uses it), that
    waits BUSY_SECONDS for a lock another process holds."""
    # A path with a folder in it: SQLite reads ':memory:' (and '') as no file at all.
    where = path if os.path.dirname(path) else os.path.join(os.curdir, path)
    connection = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
    try:  # cache_size reads the file: the first statement to find it is no database
        connection.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")
        # What the schema holds may call no function with side effects (_schema_version
        # refuses a trigger or view already: this is the second lock on that door).
        connection.execute("PRAGMA trusted_schema = OFF")
    except BaseException:
        connection.close()
        raise
    return connection


def open_locked(path: str) -> tuple[int, sqlite3.Connection]:
    """The state at path, locked (see lock: the descriptor returned holds the lock) and
    prepared, on a connection of its own. Raises StateError for a file that is not a fetcher
    state or not fetcher's to open, sqlite3.Error or OSError for one that cannot be opened now
    (a full disk, an I/O error: see not_a_database). On failure nothing is left open, and
    nothing it made is left (s25 r2 8: the empty database lock() made stayed beside a planted
    -wal). path is opened as check_folders finds it (State.path is that already)."""
    path = check_folders(path)
    fd, made = _lock(path)
    connection: sqlite3.Connection | None = None
    try:
        made += claim_companions(fd, path)
        connection = connect(path)
        prepare(connection, fd, path)
        made += claim_companions(fd, path, ("-journal",))  # SQLite removed an empty new one
    except BaseException as exc:
        if connection is not None:
            connection.close()  # before the descriptor: closing it drops SQLite's locks too
        _remove_made(made, path)  # the lock still held: no other run has them
        os.close(fd)
        if isinstance(exc, sqlite3.DatabaseError) and not_a_database(exc):
            raise StateError(f"is not a fetcher state database ({exc})") from None
        raise
    return fd, connection


def lock(path: str) -> int:
    """Open path (created empty if missing: an empty file is an empty database) and lock it
    for this process; return the descriptor, which holds the lock until it is closed. The lock
    is ``flock``'s, which SQLite's own POSIX locks do not touch, and dies with the process.
    Nothing in the file is changed: whether it is a state is not known yet (see prepare).
    Raises StateError when another run holds it or the file is not fetcher's alone (see
    check_plain; a file made for it is removed again), OSError when path cannot be opened.
    path is opened as check_folders finds it."""
    return _lock(check_folders(path))[0]


def _lock(path: str) -> tuple[int, list[str]]:
    """lock's descriptor, and [path] if it made the file. Locked before the check, so that a
    file it made and refuses is removed while no other run can have taken it."""
    fd, made = _open_state(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)  # one it made, now another run's: theirs to keep
        raise StateError("is in use by another fetcher run (one run per state file)") from None
    except OSError:
        os.close(fd)
        raise
    try:
        check_plain(fd, path)
    except BaseException:
        _remove_made(made, path)
        os.close(fd)
        raise
    return fd, made


def _open_state(path: str) -> tuple[int, list[str]]:
    """path opened to read and write, never through a link: made (exclusively, 0600, and
    then [path]) if missing, so that a refusal knows what is its to remove."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), [path]
        except FileExistsError:  # a link, even one leading nowhere, is one too
            return os.open(path, flags), []
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError(f"is a symbolic link: {NOT_OURS}") from None
        raise


def _remove_made(names: list[str], path: str) -> None:
    """Remove the files a refused open made: still empty (nothing was written in them), or
    all of them when the database at path is one of them (a new state a full disk refused left
    60 KiB of its pages: s38 t1 2). A -wal made beside an older database is kept if written:
    it may hold what a checkpoint was copying into it."""
    new = path in names
    for name in names:
        with contextlib.suppress(OSError):
            if new or os.lstat(name).st_size == 0:
                os.unlink(name)


COMPANIONS = ("-wal", "-shm", "-journal")


def claim_companions(fd: int, path: str, suffixes: tuple[str, ...] = COMPANIONS) -> list[str]:
    """Make the state's -wal, -shm and -journal, where missing, empty and this user's, before
    SQLite opens them by name: it makes -wal and -shm without O_EXCL, so in a sticky folder
    (/tmp) another user could make them first, world-writable, and the state's pages (URLs,
    passwords in them) went into their file (s24 r10 4); and it plays a hot -journal back
    into the database as a connection first reads it, WAL mode or not, so one of theirs made
    after check_plain put their rows in the state (s25 r2). Made exclusively, they are ours or
    the check says whose they are; SQLite takes empty ones as none (and removes an empty
    -journal of a new database: claimed again once it is prepared; drop_journal removes it at
    the close). Returns the names made (removed again when the file is refused)."""
    made = []
    for suffix in suffixes:
        try:
            os.close(os.open(path + suffix, _EXCLUSIVE, 0o600))
        except FileExistsError:
            continue
        made.append(path + suffix)
    check_plain(fd, path)  # one made by another meanwhile
    return made


def drop_journal(path: str) -> None:
    """Remove the -journal claim_companions made, at the close (the lock still held): a state
    in WAL mode leaves none, and an empty one of this user's is no one else's."""
    with contextlib.suppress(OSError):
        info = os.lstat(path + "-journal")
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not info.st_size:
            os.unlink(path + "-journal")


_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


NOT_OURS = "not fetcher's to open (name the state file itself, in a folder only you write to)"
# A file of another user's at the name: in a sticky folder (/tmp) only they or root remove it.
PLANTED = (
    "not fetcher's to open: give the state another name, in a folder only you write to (in "
    "a sticky folder such as /tmp, only they or root can remove their file)"
)


def check_folders(path: str) -> str:
    """path as the system finds it (fetcher.owners.resolve: no link nor '..' left in it), the
    name every connection is to open: the one checked, not another a second reading of links
    and '..' could find (s25 r2 1). Raise StateError when another user could put a database
    of theirs under it during the run: the lock holds the first descriptor, but every SQLite
    connection opens the file again by name, so one renamed in for a moment was read
    (--retry-failed fetched their URLs with -u's password) and written (s24 h4 1)."""
    found = resolve(path)
    if found.why is not None:
        raise StateError(
            f"{found.why}: they could put a database of theirs in its place while the run reads "
            "it (give the state a folder only you can write to: `chmod go-w` it, or another)"
        )
    return found.path


def check_plain(fd: int, path: str) -> None:
    """Raise StateError unless the state (open as fd) and its -wal, -shm and -journal, if there,
    are regular files of this user's with one name each, no link among them. SQLite opens them
    by name and writes them; one planted by whoever can write in the folder (a link to a file
    elsewhere, a hard link to one) had that file turned into a database, its mode changed, or
    32 KiB of -shm written over it."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        raise StateError(f"is not a plain file, or has other names (hard links): {NOT_OURS}")
    _check_owner(info, "")
    # A -journal too: SQLite plays a hot one back into the database as it opens it (before
    # WAL mode is asked for), and a fetcher state, in WAL mode, never leaves one of its own.
    for suffix in ("-wal", "-shm", "-journal"):
        try:
            other = os.lstat(path + suffix)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(other.st_mode) or other.st_nlink != 1:
            raise StateError(f"has a {suffix} file that is a link or not a plain file: {NOT_OURS}")
        _check_owner(other, suffix)
        if other.st_size and not _sqlites(path + suffix, suffix):
            raise StateError(
                f"has a {suffix} file that is not SQLite's (a file of yours so named?): SQLite "
                "would write in it and remove it; move it, or give the state another name"
            )


# How each companion SQLite writes begins (its file formats' magic numbers): a WAL header, the
# wal-index's version (3007000, in the machine's byte order), a rollback journal's header.
_COMPANION_STARTS = {
    "-wal": (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83"),
    "-shm": (struct.pack("<I", 3007000), struct.pack(">I", 3007000)),
    "-journal": (b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7",),
}


def _sqlites(path: str, suffix: str) -> bool:
    """Whether the file at path begins as SQLite's suffix file does, or with zeros (a journal
    SQLite zeroed to end it, a header torn by a crash): a URL list, a body or another state so
    named had SQLite's log written into it, or was read as an empty journal, and was then
    removed (s38 t5 2). Unreadable: taken as SQLite's, for SQLite to say what is wrong."""
    starts = _COMPANION_STARTS[suffix]
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        first = os.read(descriptor, len(starts[0]))
    finally:
        os.close(descriptor)
    return first.startswith(starts) or not first.strip(b"\0")


def _check_owner(info: os.stat_result, suffix: str) -> None:
    """A state file (or its -wal, -shm) of another user's, made first where all may write
    (/tmp), would have the input lines kept for --retry-failed, passwords included, in a file
    they own: to read and to rewrite. Root is no exception: that user could still."""
    if info.st_uid != os.geteuid():
        whose = f"(its {suffix} file) belongs" if suffix else "belongs"
        raise StateError(
            f"{whose} to another user (uid {info.st_uid}), who could read and change what it "
            f"keeps, passwords in URLs included: {PLANTED}"
        )


def keep_private(fd: int, path: str) -> None:
    """Make the state file (open as fd) and its -wal and -shm, if any, readable by their owner
    only, as --failed is: the state keeps input lines verbatim for --retry-failed, headers and
    passwords in URLs included, and a file made earlier with another mode would show them to
    every user (SQLite gives -wal and -shm the database's mode). Only files of this user."""
    _owner_only(fd)
    for suffix in ("-wal", "-shm"):
        try:
            other = os.open(path + suffix, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # none yet (or a link: not followed, not ours to change)
        try:
            _owner_only(other)
        finally:
            os.close(other)


def _owner_only(fd: int) -> None:
    """The regular file open as fd, if this user's, made readable and writable by it only."""
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
        os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o700)


def prepare(connection: sqlite3.Connection, fd: int, path: str) -> None:
    """Check that the file at path (open as fd too) is a fetcher state of a schema this fetcher
    knows, or an empty database, and only then make it private (keep_private), put it in WAL
    mode and bring it to the latest schema: a new database is created, an older one migrated
    step by step, each step in its own transaction. A file refused is left as it was found:
    its mode and journal mode, nothing beside it (s21 f2 B: a list of URLs named by mistake
    became mode 0600; another program's database, or a newer fetcher's, was put in WAL mode,
    with a -wal and -shm). Raises StateError for an SQLite database that is not a fetcher state
    or that a newer fetcher wrote, sqlite3.Error for the rest (see not_a_database)."""
    _check_header(fd)
    version = _schema_version(connection)
    keep_private(fd, path)
    if connection.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
        raise StateError("cannot be put in WAL mode (is it on a network file system?)")
    connection.execute("PRAGMA synchronous = NORMAL")
    for step in range(version, SCHEMA_VERSION):
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(MIGRATIONS[step])
        connection.execute(f"PRAGMA user_version = {step + 1}")
        connection.execute("COMMIT")


# SQLite's result code for a file that holds no database (a list of URLs named by mistake).
SQLITE_NOTADB = 26
# What every SQLite database file begins with (its file format's header string).
SQLITE_HEADER = b"SQLite format 3\x00"


def _check_header(fd: int) -> None:
    """StateError for a file of some bytes that does not begin as an SQLite database does.
    SQLite takes a file shorter than its header for an empty database, so a one-byte file a
    user named by mistake became a state without a word (s37 t2 9). An empty file is a new
    state (a new database in WAL mode stays empty until its first checkpoint)."""
    head = os.pread(fd, len(SQLITE_HEADER), 0)
    if head and head != SQLITE_HEADER:
        raise StateError("is not a fetcher state database (not an SQLite file)")


def not_a_database(exc: sqlite3.Error) -> bool:
    """Whether exc says the file is no SQLite database. Any other error (a full disk, an I/O
    error, a lock another program holds, a read-only file; a damaged page, of what may well be
    a state) is no verdict on the file: called "not a fetcher state database", a good state
    on a full disk invited its deletion, every failure and validator with it (s21 f2 A)."""
    return getattr(exc, "sqlite_errorcode", None) == SQLITE_NOTADB


def _schema_version(connection: sqlite3.Connection) -> int:
    """The state's schema version, read without a write: StateError for a database that a newer
    fetcher wrote, whose tables are not a state's (another program's, whatever version it
    sets), that holds what fetcher never makes, or whose columns are not its version's."""
    version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StateError(
            f"was written by a newer fetcher (schema {version}; this one knows {SCHEMA_VERSION})"
        )
    objects = _objects(connection)
    tables = {name for kind, name in objects if kind == "table"}
    if not (tables == {"urls"} and _STATE_COLUMNS <= _columns(connection)):
        if objects or version:  # only a new, empty database has neither
            raise StateError("is an SQLite database, but not a fetcher state")
        return version
    _refuse_foreign(objects, version)
    shape = (_columns(connection), objects)
    if not version or shape != _shapes(MIGRATIONS)[version - 1]:
        raise StateError(_misversioned(version, shape))
    _refuse_redefined(_definitions(connection), _defined(MIGRATIONS)[version - 1])
    return version


def _refuse_foreign(objects: frozenset[tuple[str, str]], version: int) -> None:
    """Refuse a state holding a trigger, a view or an index fetcher never makes: a trigger ran
    on fetcher's own writes (one that never ends hung the run inside SQLite, where no signal
    handler runs, the lock held for good; one sent failed URLs to another host at
    --retry-failed; one dropped every failure: s27 t7 2). Refused, not dropped: the user
    may have made it, and decides."""
    foreign = sorted(objects - _OURS)
    if foreign == [_SHORT_LIVED] and version == 3:
        raise StateError(
            "is a state of schema 3 as commit 199f06c made it, for minutes of fetcher's history "
            "(with the index 'urls_by_path'): it is one of schema 2 then, and opens as such "
            "once `sqlite3 FILE 'DROP INDEX urls_by_path; PRAGMA user_version = 2'`"
        )
    if foreign:
        kind, name = foreign[0]
        raise StateError(
            f"holds the {kind} {name!r}, which fetcher never makes (in a state, a trigger "
            "runs on fetcher's own writes): if you made it, drop it with `sqlite3 FILE "
            f"'DROP {kind.upper()} \"{name}\"'`, else the file is not one to trust"
        )


def _misversioned(version: int, shape: Shape) -> str:
    """Why a state's table is not that of its user_version, and which version it is, told by
    its columns: advising the newest version whatever the columns, a dump of an older state
    given that version failed every run ("no such column": s27 t7 4)."""
    matching = [n for n, known in enumerate(_shapes(MIGRATIONS), 1) if known == shape]
    if version == 0:  # a copy that lost its version (sqlite3 .dump writes none)
        said = "has a fetcher state's table but no schema version (a copy made with sqlite3's "
        said += ".dump?)"
    else:
        said = f"says schema {version} (its user_version), but its table is not of that schema"
    if not matching:
        return f"{said}, and its columns are of no schema fetcher ever made: not a state to use"
    return (
        f"{said}: its columns are those of schema {matching[-1]}; if it is one of this "
        f"fetcher's, `PRAGMA user_version = {matching[-1]}`"
    )


def _refuse_redefined(found: dict[str, str], known: dict[str, str]) -> None:
    """Refuse a state whose table or index has the names of its version's but not its
    definition (a collation, a key, a constraint of its own): url COLLATE NOCASE took /A for
    /a, one row for two URLs; with no primary key, or a CHECK, every run failed at its first
    write, after all its requests, exit 1 (s28 r1 4). Compared as SQLite keeps the CREATE
    statements, normalised (_normalised): a dump keeps that text, ALTER TABLE rewrote it."""
    for name in sorted(known):
        if found.get(name) != known[name]:
            raise StateError(
                f"holds {name!r} with its version's columns, but {name!r} is not defined as "
                "fetcher defines it (a collation, key or constraint of its own: fetcher's "
                "lookups and writes would not do what they say): not a state to use"
            )


Shape = tuple[frozenset[str], frozenset[tuple[str, str]]]  # columns; (type, name) of objects


@functools.cache
def _shapes(migrations: tuple[str, ...]) -> tuple[Shape, ...]:
    """The columns and schema objects of each version, by running the steps in memory: what
    a state of that version holds exactly (a column of another's, and its steps fail)."""
    memory = sqlite3.connect(":memory:")
    try:
        shapes = []
        for step in migrations:
            memory.execute(step)
            shapes.append((_columns(memory), _objects(memory)))
        return tuple(shapes)
    finally:
        memory.close()


@functools.cache
def _defined(migrations: tuple[str, ...]) -> tuple[dict[str, str], ...]:
    """Each version's CREATE statements by name (_definitions), by running the steps in
    memory, as _shapes does."""
    memory = sqlite3.connect(":memory:")
    try:
        defined = []
        for step in migrations:
            memory.execute(step)
            defined.append(_definitions(memory))
        return tuple(defined)
    finally:
        memory.close()


def _definitions(connection: sqlite3.Connection) -> dict[str, str]:
    """The CREATE statement of each schema object (_SCHEMA_OBJECTS) by name, normalised."""
    return {name: _normalised(sql or "") for _, name, sql in connection.execute(_SCHEMA_OBJECTS)}


def _normalised(sql: str) -> str:
    """sql as words and marks, lower case, one space apart: what a dump or another SQLite's
    ALTER TABLE may change (blanks, line ends, a keyword's case) does not count; a collation,
    a constraint or a clause does."""
    return " ".join(_TOKEN.findall(sql.lower()))


_TOKEN = re.compile(r"\w+|[^\w\s]")


def _columns(connection: sqlite3.Connection) -> frozenset[str]:
    """The urls table's columns, hidden (generated) ones too."""
    return frozenset(row[1] for row in connection.execute("PRAGMA table_xinfo(urls)"))


def _objects(connection: sqlite3.Connection) -> frozenset[tuple[str, str]]:
    return frozenset((kind, name) for kind, name, _ in connection.execute(_SCHEMA_OBJECTS))


# The schema objects of a database but SQLite's own (sqlite_stat1, which ANALYZE and PRAGMA
# optimize make; a primary key's index), which are tables and indexes only: a trigger or view
# under that prefix (writable_schema writes one) is its planter's (s27 r8 1). A state has the
# table urls and nothing else at every version but urls_unmarked from 4 (another program's
# database may set a user_version of its own, 1 to SCHEMA_VERSION included, and have a urls
# table), with the columns of the first version at least; a new database has none.
_SCHEMA_OBJECTS = (
    "SELECT type, name, sql FROM sqlite_master WHERE type NOT IN ('table', 'index') "
    "OR name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
)
_OURS = frozenset({("table", "urls"), ("index", "urls_unmarked")})
_SHORT_LIVED = ("index", "urls_by_path")  # schema 3 at 199f06c, before b650d62 rewrote step 3
_STATE_COLUMNS = frozenset(
    "url ok status error_kind etag last_modified sha256 path fetched_at form line header "
    "partial partial_from partial_bytes".split()
)
