"""How --state FILE is opened (s21 f2): a file refused as a state is left as it was found, and a
state that cannot be opened (a full disk) is never called "not a fetcher state database"."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fetcher.state.database import SCHEMA_VERSION
from tests.conftest import clean_env, invoke
from tests.servers import counting_server

# -- a file refused is left as it was (finding B) -----------------------------------------------


def foreign_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")


def versioned_database(version: int):
    """Another program's database that sets a user_version of its own, one fetcher's schema has
    had too (s21 r1 3: made 0600 and WAL, and at fetcher's own version adopted, its run ended
    with 'no such table: urls')."""

    def make(path: Path) -> None:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            db.execute(f"PRAGMA user_version = {version}")

    make.__name__ = f"database_of_version_{version}"
    return make


def urls_of_another_program(path: Path) -> None:
    """A table named urls is no state's: its columns decide (s21 r2 3: migrated and adopted)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE urls (id INTEGER PRIMARY KEY, address TEXT, visits INTEGER)")
        db.execute("PRAGMA user_version = 1")


def newer_state(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE urls (url TEXT PRIMARY KEY)")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 4}")


def text_file(path: Path) -> None:
    path.write_text("http://127.0.0.1:9/a\nhttp://127.0.0.1:9/b\n" * 20)


def one_byte(path: Path) -> None:
    """s37 t2 9: SQLite takes a file shorter than its header for an empty database: a one-byte
    file was made a state without a word, where two bytes were refused."""
    path.write_bytes(b"\n")


@pytest.mark.parametrize(
    ("make", "said"),
    [(foreign_database, "is an SQLite database, but not a fetcher state"),
     (newer_state, "written by a newer fetcher"),
     (text_file, "not a fetcher state database"),
     (one_byte, "not a fetcher state database"),
     (versioned_database(1), "is an SQLite database, but not a fetcher state"),
     (versioned_database(SCHEMA_VERSION), "is an SQLite database, but not a fetcher state"),
     (urls_of_another_program, "is an SQLite database, but not a fetcher state")],
    ids=["another-program-s-database", "a-newer-fetcher-s-state", "a-list-of-urls", "one-byte",
         "another-program-s-database-of-version-1", "another-program-s-of-our-version",
         "another-program-s-urls-table"],
)  # fmt: skip
def test_a_file_refused_as_a_state_keeps_its_mode_its_journal_and_its_bytes(
    tmp_path: Path, make, said: str
) -> None:
    """The lock made the file 0600 and SQLite put it in WAL mode, with a -wal and -shm beside it,
    before it was found not to be fetcher's: a run changed a file it then refused."""
    path = tmp_path / "x.db"
    make(path)
    path.chmod(0o664)
    before = path.read_bytes()
    with counting_server() as server:
        result = invoke(["-q", "--state", str(path), server.url("/a")])
        assert server.requests == 0
    assert result.exit_code == 2 and said in result.output, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]  # no -wal, no -shm


# -- a state that cannot be opened says why (finding A) -----------------------------------------

# A file-size limit smaller than the state: a full disk for SQLite, which cannot make its -shm
# and -wal (EFBIG: "disk I/O error"), without a file system of its own or root.
LIMITED = (
    "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
    "sys.argv[0] = 'fetcher'; runpy.run_module('fetcher', run_name='__main__')"
)


def run_limited(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", LIMITED, "-q", *args], stdin=subprocess.DEVNULL,
        capture_output=True, timeout=60, env=clean_env(), cwd=tmp_path, check=False,
    )  # fmt: skip


def test_a_state_on_a_full_disk_is_one_that_cannot_be_opened_not_one_that_is_not_a_state(
    tmp_path: Path,
) -> None:
    """A good state whose -wal and -shm could not be made was reported as "not a fetcher state
    database (disk I/O error)": a cron mail that invites deleting it, every failure and
    validator with it. It is a state that cannot be opened now, exit 2, and it keeps its rows."""
    state = tmp_path / "ex.db"
    with counting_server() as server:
        first = invoke(["-q", "--state", str(state), server.url("/status/404")])
        assert first.exit_code == 3, first.output
        assert state.stat().st_size > 4096
        result = run_limited(tmp_path, "--state", "ex.db", server.url("/a"))
        assert server.requests == 1  # the first run's only
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "cannot open --state file 'ex.db': disk I/O error" in stderr, stderr
    assert "not a fetcher state" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "ex.db"
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT count(*) FROM urls WHERE NOT ok").fetchone() == (1,)


def test_a_new_state_on_a_full_disk_cannot_be_opened_and_leaves_nothing(tmp_path: Path) -> None:
    """s38 t1 2: the refused new state left its half-made database, -wal and -shm (60 KiB on a
    disk already full): a file this open made, and the lock held, is all its own."""
    with counting_server() as server:
        result = run_limited(tmp_path, "--state", "new.db", server.url("/a"))
        assert server.requests == 0
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "cannot open --state file 'new.db': " in stderr, stderr
    assert "not a fetcher state" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_state_sqlite_analyzed_is_still_a_state(tmp_path: Path) -> None:
    """ANALYZE (or PRAGMA optimize, a GUI tool) adds SQLite's own sqlite_stat1 table: the
    state was refused as "not a fetcher state" (s21 r2 2)."""
    state = tmp_path / "s.db"
    with counting_server() as server:
        assert invoke(["-q", "--state", str(state), server.url("/a")]).exit_code == 0
        with sqlite3.connect(state) as db:
            db.execute("ANALYZE")
        result = invoke(["-q", "--state", str(state), server.url("/b")])
    assert result.exit_code == 0, result.output


def test_a_state_that_lost_its_version_says_how_to_give_it_back(tmp_path: Path) -> None:
    """A copy made with sqlite3's .dump has no user_version: it was called "not a fetcher
    state", though its table is one (s21 r3 7). The message says what it is, and how."""
    state, copy = tmp_path / "s.db", tmp_path / "copy.db"
    with counting_server() as server:
        assert invoke(["-q", "--state", str(state), server.url("/a")]).exit_code == 0
        with sqlite3.connect(state) as db, sqlite3.connect(copy) as dumped:
            dumped.executescript("\n".join(db.iterdump()))
        result = invoke(["-q", "--state", str(copy), server.url("/b")])
        assert result.exit_code == 2 and "no schema version" in result.output, result.output
        with sqlite3.connect(copy) as dumped:
            dumped.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        assert invoke(["-q", "--state", str(copy), server.url("/b")]).exit_code == 0


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
@pytest.mark.parametrize("given", ["-i", "--state"])
def test_a_file_of_the_user_s_named_as_the_state_s_companion_is_refused_and_kept(
    tmp_path: Path, suffix: str, given: str
) -> None:
    """s38 t5 2: SQLite takes a file at the state's -wal, -shm or -journal name for its own:
    a URL list given as `-i urls.txt-wal` beside `--state urls.txt` had SQLite's log written
    into it (131 invalid_url records of the state's pages), or was read as an empty journal
    (exit 0, nothing fetched), and was removed at the close; a second state so named was
    removed by the next run on the first. A companion that is not SQLite's is refused."""
    state = tmp_path / "urls.txt"
    companion = tmp_path / f"urls.txt{suffix}"
    with counting_server() as server:
        if given == "-i":
            companion.write_text(server.url("/a") + "\n")
            args = ["-i", str(companion)]
        else:
            other = invoke(["-q", "--state", str(companion), server.url("/b")])
            assert other.exit_code == 0, other.output
            args = [server.url("/a")]
        before = companion.read_bytes()
        result = invoke(["-q", "--state", str(state), *args])
        assert server.requests == (0 if given == "-i" else 1)
    assert result.exit_code == 2, result.output
    assert f"{suffix} file" in result.stderr and "not SQLite's" in result.stderr, result.stderr
    assert companion.read_bytes() == before
