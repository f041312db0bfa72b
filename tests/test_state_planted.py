"""A --state file written to by hand, or a copy put back (s27 t7 2, 4, 5, 7, 8): what fetcher
never makes in it is refused before the first request, a version that its columns contradict
is refused with the version they are, the state's companion files are no run file's name, and a
failed row's line never makes a record that names another URL than the one fetched."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from fetcher.state import database
from tests.conftest import invoke
from tests.servers import counting_server, records

# -- objects fetcher never makes (t7 2) ---------------------------------------------------------

PLANTED = {
    "spin": "CREATE TRIGGER spin AFTER UPDATE ON urls BEGIN SELECT count(*) FROM (WITH "
    "RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c); END",
    "exfil": "CREATE TRIGGER exfil AFTER INSERT ON urls WHEN new.ok=0 BEGIN INSERT OR REPLACE "
    "INTO urls(url,ok,status,error_kind,fetched_at,form) VALUES "
    "('http://127.0.0.1:9/x?u='||hex(new.url),0,500,'http',0,0); END",
    "forget": "CREATE TRIGGER forget BEFORE INSERT ON urls WHEN new.ok=0 BEGIN "
    "SELECT RAISE(IGNORE); END",
    "failures": "CREATE VIEW failures AS SELECT url FROM urls WHERE NOT ok",
    "by_status": "CREATE INDEX by_status ON urls (status)",
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_a_state_holding_what_fetcher_never_makes_is_refused(tmp_path: Path, name: str) -> None:
    """A trigger planted in the state ran on fetcher's own writes: one that never ends hung the
    run inside SQLite, where no signal handler runs; another sent every failed URL to a host of
    theirs at --retry-failed; another dropped every failure. Refused before the first request,
    exit 2, saying what to drop; the file is left as it was."""
    state = tmp_path / "s.db"
    with counting_server() as server:
        assert invoke(["-q", "--state", str(state), server.url("/status/404")]).exit_code == 3
        with sqlite3.connect(state) as db:
            db.execute(PLANTED[name])
        db.close()
        before = state.read_bytes()
        result = invoke(["-q", "--state", str(state), server.url("/a")])
        assert server.requests == 1, result.output  # the first run's only
    assert result.exit_code == 2, result.output
    assert f"'{name}'" in result.output and "fetcher never makes" in result.output, result.output
    assert state.read_bytes() == before


@pytest.mark.parametrize("kind", ["trigger", "view"])
def test_a_trigger_or_view_under_sqlite_s_own_prefix_is_refused_too(
    tmp_path: Path, kind: str
) -> None:
    """s27 r8 1: objects named sqlite_... were taken for SQLite's own, whatever their type; a
    trigger so named (written with writable_schema, which integrity_check passes) deleted every
    failed row on fetcher's own writes. SQLite makes tables and indexes under that prefix only."""
    state = tmp_path / "s.db"
    with counting_server() as server:
        assert invoke(["-q", "--state", str(state), server.url("/status/404")]).exit_code == 3
        body = (
            "CREATE TRIGGER sqlite_evil AFTER INSERT ON urls BEGIN DELETE FROM urls WHERE ok=0; END"
            if kind == "trigger"
            else "CREATE VIEW sqlite_evil AS SELECT url FROM urls"
        )
        db = sqlite3.connect(state)
        db.execute("PRAGMA writable_schema=ON")
        db.execute(
            "INSERT INTO sqlite_master(type, name, tbl_name, rootpage, sql) VALUES (?, ?, ?, 0, ?)",
            (kind, "sqlite_evil", "urls" if kind == "trigger" else "sqlite_evil", body),
        )
        db.commit()
        db.close()
        result = invoke(["-q", "--state", str(state), server.url("/a")])
        assert server.requests == 1, result.output
    assert result.exit_code == 2, result.output
    assert "'sqlite_evil'" in result.output and "fetcher never makes" in result.output


def test_sqlite_s_own_tables_are_still_a_state_s(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    with counting_server() as server:
        assert invoke(["-q", "--state", str(state), server.url("/a")]).exit_code == 0
        with sqlite3.connect(state) as db:
            db.execute("ANALYZE")
            db.execute("PRAGMA optimize")
        db.close()
        assert invoke(["-q", "--state", str(state), server.url("/b")]).exit_code == 0


def test_the_schema_is_not_trusted(tmp_path: Path) -> None:
    """trusted_schema off: what the schema holds may call no function with side effects."""
    connection = database.connect(str(tmp_path / "s.db"))
    try:
        assert connection.execute("PRAGMA trusted_schema").fetchone() == (0,)
    finally:
        connection.close()


# -- a version its columns contradict (t7 4) ----------------------------------------------------


def state_of_version(path: Path, version: int, told: int | None = None) -> None:
    """A state made by the first version steps, its user_version told (None: version)."""
    with sqlite3.connect(path) as db:
        for step in database.MIGRATIONS[:version]:
            db.execute(step)
        db.execute(f"PRAGMA user_version = {version if told is None else told}")
    db.close()


@pytest.mark.parametrize("version", [1, 3, 4, 5, 6])
def test_a_dump_of_an_older_state_is_told_its_own_version(tmp_path: Path, version: int) -> None:
    """The advice named the newest version whatever the copy's columns: followed on a dump of
    a schema-5 state, every run failed ("no such column: final_url")."""
    state = tmp_path / "s.db"
    state_of_version(state, version, told=0)
    with counting_server() as server:
        result = invoke(["-q", "--state", str(state), server.url("/a")])
        assert result.exit_code == 2 and f"PRAGMA user_version = {version}`" in result.output, (
            result.output
        )
        with sqlite3.connect(state) as db:
            db.execute(f"PRAGMA user_version = {version}")
        db.close()
        assert invoke(["-q", "--state", str(state), server.url("/a")]).exit_code == 0
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (database.SCHEMA_VERSION,)
    db.close()


def test_a_state_whose_columns_are_not_its_version_s_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    state_of_version(state, 5, told=database.SCHEMA_VERSION)
    before = state.read_bytes()
    with counting_server() as server:
        result = invoke(["-q", "--state", str(state), server.url("/a")])
        assert server.requests == 0
    assert result.exit_code == 2, result.output
    assert "schema 5" in result.output and "PRAGMA user_version = 5`" in result.output
    assert state.read_bytes() == before


# -- the state's companion files (t7 5) ---------------------------------------------------------


@pytest.mark.parametrize("option", ["--failed", "--results"])
@pytest.mark.parametrize("suffix", database.COMPANIONS)
def test_a_run_file_named_as_the_state_s_companion_is_refused(
    tmp_path: Path, option: str, suffix: str
) -> None:
    """SQLite removes its -wal and -shm at the close, and the next run's a -journal: the list
    renamed there was lost without a word."""
    state = tmp_path / "s.db"
    with counting_server() as server:
        result = invoke(["-q", "--state", str(state), option, f"{state}{suffix}",
                         server.url("/a")])  # fmt: skip
        assert server.requests == 0
    assert result.exit_code == 2, result.output
    assert f"{suffix} file" in result.output, result.output


# -- a failed row's line that lies (t7 7) -------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "line", "header"),
    [(1, b'{"url": "http://127.0.0.1:9/steal"}', None),
     (2, b"x", b"url"),
     (0, b"http://127.0.0.1:9/other", None),
     (0, b"http://127.0.0.1:9/one\nhttp://127.0.0.1:9/two", None),
     (0, b"not a url at all", None),
     (0, b"mailto:x@y", None),
     (0, b"   ", None),
     (0, b"# a comment", None),
     (0, b"\0" * 9000, None),
     (1, b'{"url": "http://127.0.0.1:9/x", "headers": 5}', None),
     (2, b"", b"url")],
    ids=["jsonl", "csv", "lines", "lines-with-a-line-end", "text", "mailto", "blank",
         "comment", "nul-bytes", "jsonl-invalid", "csv-empty"],
)  # fmt: skip
def test_a_failed_row_whose_line_names_another_url_retries_its_key_s(
    tmp_path: Path, form: int, line: bytes, header: bytes | None
) -> None:
    """--retry-failed fetched the key's URL, but the record named the line's: a record that
    lies. The row is retried as its key's URL alone, and its record and --failed say that. A
    line that is no URL's at all (blank, a comment, text, an invalid jsonl line) was never
    fetched: an invalid record of the line, or none at all, and the row failed for good (s32
    t1 1)."""
    state, failed = tmp_path / "s.db", tmp_path / "failed.txt"
    with counting_server() as server:
        url = server.url("/a")
        assert invoke(["-q", "--state", str(state), url]).exit_code == 0
        with sqlite3.connect(state) as db:
            db.execute("UPDATE urls SET ok = 0, form = ?, line = ?, header = ?",
                       (form, line, header))  # fmt: skip
        db.close()
        result = invoke(["-q", "--format", "jsonl", "--state", str(state), "--retry-failed",
                         "--failed", str(failed), "-H", "X-Test: 1"])  # fmt: skip
        assert server.paths == ["/a", "/a"]
    assert [record["url"] for record in records(result.stdout)] == [url], result.output
    assert not failed.exists() or failed.read_text() == ""


def test_a_failed_row_whose_line_is_the_url_without_its_scheme_keeps_its_line(
    tmp_path: Path,
) -> None:
    """A line typed without a scheme names its key's URL (the run's default scheme applied)."""
    state = tmp_path / "s.db"
    with counting_server() as server:
        url = server.url("/status/404")
        bare = url.removeprefix("http://")
        scheme = ["--default-scheme", "http"]
        assert invoke(["-q", *scheme, "--state", str(state), bare]).exit_code == 3
        result = invoke(["-q", *scheme, "--format", "jsonl", "--state", str(state),
                         "--retry-failed"])  # fmt: skip
        assert server.paths == ["/status/404", "/status/404"]
    assert [record["url"] for record in records(result.stdout)] == [bare]


def test_a_failed_jsonl_row_that_names_its_key_keeps_its_options(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    with counting_server() as server:
        url = server.url("/status/404")
        line = json.dumps({"url": url, "n": 1})
        first = invoke(["-q", "--input-format", "jsonl", "--state", str(state), "-i", "-"],
                       input=line + "\n")  # fmt: skip
        assert first.exit_code == 3, first.output
        result = invoke(["-q", "--format", "jsonl", "--state", str(state), "--retry-failed"])
    [record] = records(result.stdout)
    assert record["url"] == url and record.get("meta") == {"n": 1}, record


# -- schema 8: saved_mark's generation (t7 8) ---------------------------------------------------


def test_a_state_of_schema_7_is_upgraded_and_an_older_fetcher_refuses_it(tmp_path: Path) -> None:
    """saved_mark took a new meaning (below 0: with the file's generation) in schema 7: the
    fetcher before took such a state and fetched every file whole. A version of its own makes
    it refuse the state, as docs/state.md says an older fetcher does."""
    assert database.SCHEMA_VERSION == 8
    state = tmp_path / "s.db"
    state_of_version(state, 7)
    with counting_server() as server:
        assert invoke(["-q", "--state", str(state), server.url("/a")]).exit_code == 0
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (8,)
    db.close()


# -- a table of the right columns defined otherwise (s28 r1 4, 5) --------------------------------


def genuine_sql(version: int) -> dict[str, str]:
    """The CREATE statements of a genuine state of version, by name (SQLite's own text)."""
    with sqlite3.connect(":memory:") as memory:
        for step in database.MIGRATIONS[:version]:
            memory.execute(step)
        found = dict(memory.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"))
    memory.close()
    return found


REDEFINED = {
    "nocase-url": ("urls", {"url TEXT PRIMARY KEY": "url TEXT COLLATE NOCASE PRIMARY KEY"}),
    "no-primary-key": ("urls", {"url TEXT PRIMARY KEY NOT NULL": "url TEXT NOT NULL",
                                ") WITHOUT ROWID": ")"}),
    "check": ("urls", {"status INTEGER,": "status INTEGER CHECK (status <> 200),"}),
    "nocase-path": ("urls", {"path TEXT,": "path TEXT COLLATE NOCASE,"}),
    "rowid": ("urls", {") WITHOUT ROWID": ")"}),
    "strict": ("urls", {") WITHOUT ROWID": ") WITHOUT ROWID, STRICT"}),
    "unique-index": ("urls_unmarked", {"CREATE INDEX": "CREATE UNIQUE INDEX"}),
    "index-unfiltered": ("urls_unmarked",
                         {" WHERE saved_mark IS NULL AND path IS NOT NULL": ""}),
}  # fmt: skip


@pytest.mark.parametrize("change", list(REDEFINED), ids=list(REDEFINED))
def test_a_state_whose_table_is_defined_otherwise_is_refused(tmp_path: Path, change: str) -> None:
    """Only column and object names were compared: a urls table with url COLLATE NOCASE took
    /A for /a (one row for two URLs, the skip vouching for the other's file); one without its
    primary key or with a CHECK failed at its first write on every run, exit 1, after every
    request. Refused before any request, exit 2, the file left as it was."""
    name, changes = REDEFINED[change]
    sql = genuine_sql(database.SCHEMA_VERSION)
    for old, new in changes.items():
        assert old in sql[name]
        sql[name] = sql[name].replace(old, new)
    state = tmp_path / "s.db"
    with sqlite3.connect(state) as db:
        db.execute(sql["urls"])
        db.execute(sql["urls_unmarked"])
        db.execute(f"PRAGMA user_version = {database.SCHEMA_VERSION}")
    db.close()
    before = state.read_bytes()
    with counting_server() as server:
        result = invoke(["-q", "--state", str(state), server.url("/a")])
        assert server.requests == 0, result.output
    assert result.exit_code == 2, result.output
    assert f"{name!r} is not defined as fetcher defines it" in result.output, result.output
    assert state.read_bytes() == before


@pytest.mark.parametrize("version", range(1, database.SCHEMA_VERSION + 1))
@pytest.mark.parametrize("how", ["made", "dumped"])
def test_a_genuine_state_of_every_version_still_opens(
    tmp_path: Path, version: int, how: str
) -> None:
    """As fetcher made it, step by step, or copied by a dump (sqlite3's .dump writes SQLite's
    own text of each CREATE, which ALTER TABLE rewrote), ANALYZE-d: each is upgraded."""
    state = tmp_path / "s.db"
    state_of_version(state, version)
    if how == "dumped":
        copy = tmp_path / "copy.db"
        with sqlite3.connect(state) as db, sqlite3.connect(copy) as dumped:
            dumped.executescript("\n".join(db.iterdump()))
            dumped.execute(f"PRAGMA user_version = {version}")
            dumped.execute("ANALYZE")
        db.close()
        dumped.close()
        state = copy
    with counting_server() as server:
        result = invoke(["-q", "--state", str(state), server.url("/a")])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (database.SCHEMA_VERSION,)
    db.close()


def test_a_state_of_the_short_lived_schema_3_is_told_how_to_open_it(tmp_path: Path) -> None:
    """Commit 199f06c's schema 3 made the index urls_by_path, for minutes of history: it was
    told the index is one fetcher never makes, then, dropped, that its version is wrong. One
    message says both steps, and they open it."""
    state = tmp_path / "s.db"
    state_of_version(state, 2, told=3)
    with sqlite3.connect(state) as db:
        db.execute("CREATE INDEX urls_by_path ON urls (path)")
    db.close()
    with counting_server() as server:
        result = invoke(["-q", "--state", str(state), server.url("/a")])
        assert result.exit_code == 2 and server.requests == 0, result.output
        assert "fetcher never makes" not in result.output, result.output
        assert "DROP INDEX urls_by_path; PRAGMA user_version = 2" in result.output, result.output
        with sqlite3.connect(state) as db:
            db.executescript("DROP INDEX urls_by_path; PRAGMA user_version = 2")
        db.close()
        assert invoke(["-q", "--state", str(state), server.url("/a")]).exit_code == 0


# -- --failed of a --retry-failed run over rows of several input formats (s32 t1 2) -------------


def test_retry_failed_over_rows_of_several_formats_writes_a_failed_file_of_one(
    tmp_path: Path,
) -> None:
    """Two jobs sharing a state (a URL list's, a jsonl job's, a csv job's) and then
    `--retry-failed --failed FILE`: FILE held a bare URL, a jsonl line and a csv header and
    row, which no --input-format reads back (the csv reader took the URL for the header, the
    plain one looked the csv row up as a host). FILE is in the form of its first line; a
    line of another form is written as its URL alone, and stderr says how to read it back."""
    state, failed = str(tmp_path / "s.db"), tmp_path / "failed.txt"
    with counting_server() as server:
        plain, jsonl, csv = (server.url(f"/status/404/{n}") for n in ("a", "b", "c"))
        invoke(["-q", "--state", state, plain])
        invoke(["-q", "--state", state, "--input-format", "jsonl", "-i", "-"],
               input=json.dumps({"url": jsonl, "k": 1}) + "\n")  # fmt: skip
        invoke(["-q", "--state", state, "--input-format", "csv", "-i", "-"],
               input=f"note,url\nx,{csv}\n")  # fmt: skip
        result = invoke(["--state", state, "--retry-failed", "--failed", str(failed)])
        assert result.exit_code == 3, result.output
        said = [line for line in result.stderr.splitlines() if "--failed:" in line]
        assert len(said) == 1 and "2 lines" in said[0], result.stderr
        form = said[0].split("--input-format ")[1].split()[0].strip(")")
        again = invoke(["-q", "--format", "jsonl", "--input-format", form, "-i", str(failed)])
    assert {record["url"] for record in records(again.stdout)} == {plain, jsonl, csv}
    assert all(record["error"]["kind"] == "http" for record in records(again.stdout))
