"""--state (spec section 3): conditional re-fetch, changed, --skip-fresh, --retry-failed, the
lock, the schema; against a real local origin that honours validators (tests/resources.py)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import invoke
from tests.resources import Origin, resource
from tests.servers import records


def fetch(*args: str) -> list[dict]:
    result = invoke(["--format", "jsonl", "-q", *args])
    assert result.exit_code in (0, 1, 3), result.output
    return records(result.stdout)


def by_url(found: list[dict]) -> dict[str, dict]:
    return {record["url"]: record for record in found}


@pytest.mark.parametrize(
    ("etag", "dated", "sent"),
    [(True, False, {"if-none-match"}), (False, True, {"if-modified-since"}),
     (True, True, {"if-none-match", "if-modified-since"})],
    ids=["etag-only", "last-modified-only", "both"],
)  # fmt: skip
def test_a_second_run_sends_the_validators_it_was_given_and_a_304_is_ok_and_unchanged(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, etag: bool, dated: bool, sent: set[str]
) -> None:
    origin.resources["/a"] = resource(b"alpha\n", etag=etag, dated=dated)
    url, state = httpserver.url_for("/a"), str(tmp_path / "state.db")
    [first] = fetch("--state", state, url)
    assert first["ok"] and first["status"] == 200 and first["changed"] is True
    assert first["not_modified"] is False and first["skipped"] is False
    assert not {"if-none-match", "if-modified-since"} & set(origin.requests_for("/a")[0])
    [second] = fetch("--state", state, url)
    headers = origin.requests_for("/a")[1]
    unsent = {"if-none-match", "if-modified-since"} - sent
    assert sent <= set(headers) and not unsent & set(headers)
    assert second["status"] == 304 and second["ok"] is True and second["not_modified"] is True
    assert second["changed"] is False
    assert second["sha256"] == first["sha256"]  # the unchanged body's, from the state


def test_a_changed_resource_is_fetched_whole_and_changed_says_so(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    origin.resources["/a"] = resource(b"one\n", version=1)
    origin.resources["/b"] = resource(b"same\n", version=1)
    state, out = str(tmp_path / "state.db"), tmp_path / "out"
    urls = [httpserver.url_for("/a"), httpserver.url_for("/b")]
    fetch("--state", state, "-o", str(out), *urls)
    origin.resources["/a"] = resource(b"two, longer\n", version=2)
    new_url = httpserver.url_for("/c")
    origin.resources["/c"] = resource(b"new\n")
    found = by_url(fetch("--state", state, "-o", str(out), *urls, new_url))
    assert found[urls[0]]["status"] == 200 and found[urls[0]]["changed"] is True
    assert Path(found[urls[0]]["path"]).read_bytes() == b"two, longer\n"
    assert found[urls[1]]["status"] == 304 and found[urls[1]]["changed"] is False
    assert found[new_url]["changed"] is True  # new to the state
    assert json.loads(json.dumps([r for r in found.values() if r["changed"]]))  # jq's select


def test_a_304_keeps_the_saved_file_bytes_mtime_and_inode(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    origin.resources["/keep"] = resource(b"keep me\n")
    state, out, url = str(tmp_path / "s.db"), tmp_path / "out", httpserver.url_for("/keep")
    [first] = fetch("--state", state, "-o", str(out), url)
    saved = Path(first["path"])
    os.utime(saved, (1_000_000, 1_000_000))
    before = saved.stat()
    [second] = fetch("--state", state, "-o", str(out), url)
    after = saved.stat()
    assert second["status"] == 304 and second["path"] == first["path"]
    assert saved.read_bytes() == b"keep me\n"
    assert (after.st_ino, after.st_mtime, after.st_size) == (before.st_ino, 1_000_000, 8)


def test_a_saved_file_that_is_gone_is_fetched_again_unconditionally(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    origin.resources["/gone"] = resource(b"again\n")
    state, out, url = str(tmp_path / "s.db"), tmp_path / "out", httpserver.url_for("/gone")
    [first] = fetch("--state", state, "-o", str(out), url)
    Path(first["path"]).unlink()
    [second] = fetch("--state", state, "-o", str(out), url)
    assert "if-none-match" not in origin.requests_for("/gone")[1]
    assert second["status"] == 200 and Path(second["path"]).read_bytes() == b"again\n"
    assert second["changed"] is False  # the same bytes as the state's


def test_skip_fresh_skips_what_was_fetched_ok_recently_and_records_it(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    origin.resources["/ok"] = resource(b"ok\n")
    state = str(tmp_path / "s.db")
    ok, missing = httpserver.url_for("/ok"), httpserver.url_for("/missing")
    fetch("--state", state, ok, missing)
    result = invoke(["--format", "jsonl", "-q", "--state", state, "--skip-fresh", "1h", ok,
                     missing])  # fmt: skip
    found = by_url(records(result.stdout))
    assert found[ok]["skipped"] is True and found[ok]["ok"] is True
    assert found[ok]["sha256"] is not None and found[ok]["changed"] is False
    assert found[missing]["skipped"] is False and found[missing]["status"] == 404
    assert len(origin.requests_for("/ok")) == 1  # not asked again
    assert result.exit_code == 1  # the 404 still failed


def test_retry_failed_fetches_only_the_last_failures_with_their_input_lines(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    origin.resources["/fine"] = resource(b"fine\n")
    state, listing = str(tmp_path / "s.db"), tmp_path / "in.jsonl"
    fine, broken = httpserver.url_for("/fine"), httpserver.url_for("/broken")
    lines = [json.dumps({"url": fine, "tag": "f"}), json.dumps({"url": broken, "tag": "b"})]
    listing.write_text("\n".join(lines) + "\n")
    first = fetch("--state", state, "--input-format", "jsonl", "-i", str(listing))
    assert {r["url"]: r["ok"] for r in first} == {fine: True, broken: False}
    origin.resources["/broken"] = resource(b"mended\n")
    [retried] = fetch("--state", state, "--retry-failed")
    assert retried["url"] == broken and retried["ok"] is True and retried["meta"] == {"tag": "b"}
    assert fetch("--state", state, "--retry-failed") == []  # nothing failed any more
    assert len(origin.requests_for("/fine")) == 1


@pytest.mark.parametrize("input_format", ["lines", "jsonl", "csv"])
def test_retry_failed_fetches_the_url_that_failed_whatever_default_scheme_it_runs_with(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, input_format: str
) -> None:
    """A line without a scheme got --default-scheme http when it failed; --retry-failed (the
    cron line has no --default-scheme) read it again with https, fetched another URL, and the
    failed row stayed failed for good."""
    origin.resources["/flaky"] = flaky = resource(b"fine\n")
    flaky.fail_next = 1
    bare = httpserver.url_for("/flaky").removeprefix("http://")
    text = {"lines": bare, "jsonl": json.dumps({"url": bare}), "csv": f"url\n{bare}"}
    listing = tmp_path / "in.txt"
    listing.write_text(text[input_format] + "\n")
    state = str(tmp_path / "s.db")
    options = ["--state", state, "--retries", "0", "--input-format", input_format]
    [first] = fetch(*options, "--default-scheme", "http", "-i", str(listing))
    assert first["status"] == 503
    [retried] = fetch("--state", state, "--retry-failed")
    assert retried["ok"] and retried["final_url"] == "http://" + bare
    assert fetch("--state", state, "--retry-failed") == []


def test_retry_failed_with_urls_or_without_state_is_a_usage_error(tmp_path: Path) -> None:
    state = str(tmp_path / "s.db")
    given = invoke(["--state", state, "--retry-failed", "http://127.0.0.1:9/x"])
    assert given.exit_code == 2 and "--retry-failed takes its URLs from --state" in given.output
    for option in (["--retry-failed"], ["--skip-fresh", "1h"], ["--continue", "-o", str(tmp_path)]):
        alone = invoke([*option, "http://127.0.0.1:9/x"])
        assert alone.exit_code == 2 and "needs --state FILE" in alone.output
    for option in (["--body"], ["--include-body", "--format", "jsonl"]):
        both = invoke(["--state", state, "--continue", "-o", str(tmp_path), *option, "x.test"])
        assert both.exit_code == 2 and "--continue resumes files under -o" in both.output
    bare = invoke(["--state", state, "--continue", "x.test"])
    assert bare.exit_code == 2 and "--continue needs -o DIR" in bare.output


def test_a_run_refused_after_the_state_was_made_leaves_no_new_state(tmp_path: Path) -> None:
    """The state is opened (and locked) first; a refusal that comes after it, such as an input
    file that cannot be read, removes a state this run made, and never one made before."""
    state = tmp_path / "s.db"
    result = invoke(["--state", str(state), "-i", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2 and "cannot read input file" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    kept = invoke(["--state", str(state), "http://127.0.0.1:9/x"])  # a state with one row
    assert kept.exit_code == 3
    before = state.read_bytes()
    result = invoke(["--state", str(state), "-i", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2
    assert state.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]


def test_a_state_in_use_is_refused_at_once_without_a_request(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    from fetcher.state.store import State

    state = str(tmp_path / "s.db")
    holder = State(state)  # another run holds it
    try:
        started = time.monotonic()
        result = invoke(["--state", state, httpserver.url_for("/a")])
        took = time.monotonic() - started
    finally:
        holder.close()
    assert result.exit_code == 2 and took < 1.0
    assert "in use by another fetcher run" in result.output
    assert origin.seen == []


def test_a_file_that_is_not_a_state_is_a_usage_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes, not a database\n" * 10)
    result = invoke(["--state", str(text), "http://127.0.0.1:9/x"])
    assert result.exit_code == 2 and "not a fetcher state" in result.output
    assert text.read_text().startswith("these are my notes")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE mine (x)")
    result = invoke(["--state", str(other), "http://127.0.0.1:9/x"])
    assert result.exit_code == 2 and "not a fetcher state" in result.output


def test_the_schema_is_versioned_and_readable_with_sqlite(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    from fetcher.state.database import SCHEMA_VERSION

    origin.resources["/a"] = resource(b"alpha\n")
    state = tmp_path / "s.db"
    url, missing = httpserver.url_for("/a"), httpserver.url_for("/no")
    record = by_url(fetch("--state", str(state), url, missing))[url]
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = dict(db.execute("SELECT url, lower(hex(sha256)) FROM urls WHERE ok").fetchall())
        failed = db.execute("SELECT url, status, error_kind FROM urls WHERE NOT ok").fetchall()
    assert rows == {httpserver.url_for("/a"): record["sha256"]}
    assert failed == [(httpserver.url_for("/no"), 404, "http")]


def test_a_state_written_by_a_newer_fetcher_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    from fetcher.state.database import SCHEMA_VERSION

    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute("CREATE TABLE urls (url TEXT PRIMARY KEY)")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    result = invoke(["--state", str(newer), "http://127.0.0.1:9/x"])
    assert result.exit_code == 2 and "written by a newer fetcher" in result.output
    with sqlite3.connect(newer) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_an_older_state_is_migrated_step_by_step(tmp_path: Path, monkeypatch) -> None:
    """A file of the current version read by a fetcher whose schema has one more step gets that
    step, in place, and keeps its rows."""
    from fetcher.state import database
    from fetcher.state.store import State

    path = tmp_path / "old.db"
    State(str(path)).close()  # the current version
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO urls (url, ok, fetched_at) VALUES ('http://a/', 1, 0)")
    step = "ALTER TABLE urls ADD COLUMN note TEXT"
    monkeypatch.setattr(database, "MIGRATIONS", (*database.MIGRATIONS, step))
    monkeypatch.setattr(database, "SCHEMA_VERSION", len(database.MIGRATIONS))
    State(str(path)).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(database.MIGRATIONS)
        assert db.execute("SELECT url, note FROM urls").fetchall() == [("http://a/", None)]


def test_a_state_file_made_readable_by_others_is_made_private(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """The state keeps input lines verbatim (an Authorization header of a jsonl line, a
    password in a URL) for --retry-failed: like --failed, only its owner may read it, even
    when the file was made beforehand with another mode (`touch s.db`, a umask of 022)."""
    origin.resources["/f"] = resource(b"fine\n")
    state = tmp_path / "s.db"
    state.touch(mode=0o644)
    state.chmod(0o644)
    for suffix in ("-wal", "-shm"):  # left by an earlier run that was killed
        Path(f"{state}{suffix}").touch()
        Path(f"{state}{suffix}").chmod(0o644)
    fetch("--state", str(state), httpserver.url_for("/f"))
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.glob("s.db*")}
    assert modes["s.db"] == 0o600  # -wal and -shm are removed as the run ends, if all went well
    assert set(modes.values()) == {0o600}


def test_a_state_named_like_sqlites_own_names_is_a_file_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite3.connect(':memory:') opens no file: the run was refused (no WAL) and left an empty
    ':memory:' file, the lock's. The name is a file's like any other (found on review)."""
    monkeypatch.chdir(tmp_path)
    result = invoke(["--state", ":memory:", "http://127.0.0.1:9/x"])
    assert result.exit_code == 3, result.output  # ran: the one URL failed
    with sqlite3.connect(tmp_path / ":memory:") as db:
        assert db.execute("SELECT count(*) FROM urls").fetchone() == (1,)


# -- a state file someone else planted (s14: an attacker who can write beside it) -------------


def outside(tmp_path: Path) -> Path:
    """A file elsewhere, 0644, that no --state may open, change or chmod."""
    (tmp_path / "elsewhere").mkdir()
    victim = tmp_path / "elsewhere" / "victim"
    victim.write_bytes(b"")
    victim.chmod(0o644)
    return victim


@pytest.mark.parametrize("plant", ["symlink", "dangling-symlink", "hard-link", "shm-hard-link"])
def test_a_planted_link_at_the_state_or_its_shm_is_refused_and_nothing_is_touched(
    tmp_path: Path, plant: str
) -> None:
    victim = outside(tmp_path)
    state = tmp_path / "s.db"
    if plant == "symlink":
        state.symlink_to(victim)
    elif plant == "dangling-symlink":
        victim.unlink()
        state.symlink_to(victim)
    elif plant == "hard-link":
        os.link(victim, state)
    else:
        os.link(victim, f"{state}-shm")
    result = invoke(["--state", str(state), "http://127.0.0.1:9/x"])
    assert result.exit_code == 2, result.output
    assert "--state" in result.output and "not fetcher's" in result.output
    if plant == "dangling-symlink":
        assert not victim.exists(), "a file was created through the link"
    else:
        assert victim.read_bytes() == b"" and stat.S_IMODE(victim.stat().st_mode) == 0o644


ANOTHER_USER = 65534  # nobody


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
@pytest.mark.parametrize("whose", ["state", "wal", "shm", "journal"])
def test_a_state_of_another_user_s_is_refused(tmp_path: Path, whose: str) -> None:
    """A state file another user made first (in a folder all may write to, /tmp) was used
    without a word: the input lines it keeps, passwords included, went into a file they own, to
    read and rewrite (s20 h2 1). Its -wal and -shm alike, and a -journal, which SQLite plays
    back into the state as it opens it (s20 r1 3: rows of theirs to --retry-failed)."""
    state = tmp_path / "s.db"
    secret = "http://alice:HUNTER2@127.0.0.1:9/x"
    if whose == "state":
        state.write_bytes(b"")
        os.chown(state, ANOTHER_USER, ANOTHER_USER)
    else:
        Path(f"{state}-{whose}").write_bytes(b"")
        os.chown(f"{state}-{whose}", ANOTHER_USER, ANOTHER_USER)
    result = invoke(["--state", str(state), secret])
    assert result.exit_code == 2, result.output
    assert "another user" in result.output and "HUNTER2" not in result.output
    for name in (state, Path(f"{state}-wal"), Path(f"{state}-shm")):
        assert not name.exists() or b"HUNTER2" not in name.read_bytes()


# -- conditions go with GET and HEAD only, and never over the user's own -----------------------


@pytest.mark.parametrize("args", [["-d", "action=rebuild"], ["-X", "PUT"], ["-X", "DELETE"]])
def test_a_request_that_acts_is_never_made_conditional(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, args: list[str]
) -> None:
    """RFC 9110 13.1.2: for a method other than GET or HEAD, a false If-None-Match makes the
    server refuse to act (412); a webhook POSTed from cron ran once, then was refused."""
    origin.resources["/hook"] = resource(b"done\n", etag=True, dated=True)
    url, state = httpserver.url_for("/hook"), str(tmp_path / "state.db")
    for _ in range(2):
        fetch("--state", state, *args, url)
    second = origin.requests_for("/hook")[1]
    assert not {"if-none-match", "if-modified-since"} & set(second), second


def test_the_user_s_own_condition_is_sent_as_given(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    origin.resources["/a"] = resource(b"alpha\n", etag=True, dated=True)
    url, state = httpserver.url_for("/a"), str(tmp_path / "state.db")
    fetch("--state", state, url)
    fetch("--state", state, "-H", 'If-None-Match: "mine"', url)
    second = origin.requests_for("/a")[1]
    assert second["if-none-match"] == '"mine"' and "if-modified-since" not in second, second


@pytest.mark.parametrize("option", ["--body", "--include-body"])
def test_a_body_asked_for_on_standard_output_is_never_made_conditional(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, option: str
) -> None:
    """`fetcher --body URL --state s.db > page.html` (what fetcher suggests for curl's -o FILE)
    got a 304 the second time and wrote nothing: page.html emptied, exit 0."""
    origin.resources["/page"] = resource(b"hello\n", etag=True, dated=True)
    url, state = httpserver.url_for("/page"), str(tmp_path / "state.db")
    for _ in range(2):
        # --format only beside --include-body: beside --body alone it would change nothing.
        shown = ["--format", "jsonl"] if option == "--include-body" else []
        result = invoke(["-q", *shown, option, "--state", state, url])
        assert result.exit_code == 0 and "hello" in result.stdout, result.output
    second = origin.requests_for("/page")[1]
    assert not {"if-none-match", "if-modified-since"} & set(second), second


@pytest.mark.parametrize("before", ["deleted", "another-dir", "head"])
def test_skip_fresh_fetches_again_what_this_run_s_folder_does_not_hold(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, before: str
) -> None:
    """A fresh URL was skipped, ok, its record naming a file that was not there, and nothing
    saved (s14 state tester, 1): skipping keeps a file only where there is one to keep."""
    origin.resources["/k"] = resource(b"kept\n", etag=True)
    url, state, out = httpserver.url_for("/k"), str(tmp_path / "s.db"), tmp_path / "out"
    first = (
        ["-I"]
        if before == "head"
        else ["-o", str(tmp_path / "first" if before == "another-dir" else out)]
    )
    fetch("--state", state, *first, url)
    if before == "deleted":
        (out / f"127.0.0.1_{httpserver.port}" / "k").unlink()
    [record] = fetch("--state", state, "--skip-fresh", "1h", "-o", str(out), url)
    assert record["skipped"] is False and record["status"] == 200, record
    assert Path(record["path"]).read_bytes() == b"kept\n"


@pytest.mark.parametrize("spelling", ["absolute", "link"])
def test_skip_fresh_skips_a_file_under_dir_spelled_another_way(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    spelling: str,
) -> None:  # fmt: skip
    """A cron job's `-o /srv/out` after a first run by hand with `-o out` (or through a link
    to it): the same folder, so the fresh file is kept, and the record names it as this run
    spells DIR (s17: every URL was fetched again)."""
    origin.resources["/k"] = resource(b"kept\n", etag=True)
    url, state = httpserver.url_for("/k"), str(tmp_path / "s.db")
    monkeypatch.chdir(tmp_path)
    [first] = fetch("--state", state, "-o", "out", url)
    (tmp_path / "link").symlink_to("out")
    out = str(tmp_path / "out") if spelling == "absolute" else "link"
    [second] = fetch("--state", state, "--skip-fresh", "1h", "-o", out, url)
    assert second["skipped"] is True, second
    assert second["path"] == os.path.join(out, os.path.relpath(first["path"], "out"))
    assert Path(second["path"]).read_bytes() == b"kept\n"
    assert len(origin.requests_for("/k")) == 1


def test_a_304_in_a_run_without_o_names_no_file(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """SPEC 2.4: a 304's path names the file already there; this run saves nowhere."""
    origin.resources["/a"] = resource(b"alpha\n", etag=True)
    url, state = httpserver.url_for("/a"), str(tmp_path / "s.db")
    fetch("--state", state, "-o", str(tmp_path / "out"), url)
    [second] = fetch("--state", state, url)
    assert second["status"] == 304 and second["path"] is None, second
    [third] = fetch("--state", state, "-o", str(tmp_path / "out"), url)
    assert third["status"] == 304 and third["path"], third  # the state still knows the file


@pytest.mark.parametrize("option", ["--body", "--include-body"])
def test_skip_fresh_never_skips_a_body_asked_for_on_standard_output(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, option: str
) -> None:
    """`--body --skip-fresh > page.html` emptied page.html the second time (s14 review, 2)."""
    origin.resources["/page"] = resource(b"hello\n", etag=True)
    url, state = httpserver.url_for("/page"), str(tmp_path / "s.db")
    for _ in range(2):
        shown = ["--format", "jsonl"] if option == "--include-body" else []
        result = invoke(["-q", *shown, option, "--state", state, "--skip-fresh",
                         "1h", url])  # fmt: skip
        assert result.exit_code == 0 and "hello" in result.stdout, result.output
    assert len(origin.requests_for("/page")) == 2


def test_skip_fresh_skips_a_file_named_by_the_server(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """With -J the saved name is the server's: it was compared with the URL's and never skipped
    (s14 review, 10)."""
    origin.resources["/dl"] = resource(b"data\n", etag=True)
    origin.resources["/dl"].disposition = 'attachment; filename="report.txt"'
    url, state, out = httpserver.url_for("/dl"), str(tmp_path / "s.db"), str(tmp_path / "out")
    [first] = fetch("--state", state, "-o", out, "-J", url)
    assert first["path"].endswith("report.txt"), first
    [second] = fetch("--state", state, "-o", out, "-J", "--skip-fresh", "1h", url)
    assert second["skipped"] is True and second["path"] == first["path"], second
    assert len(origin.requests_for("/dl")) == 1


def test_conditions_are_sent_whatever_spelling_of_the_same_output_dir(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-o out, then -o /abs/path/out: the saved path was compared as text, so the second run
    never sent conditions and fetched everything again (s14 state tester, 10c)."""
    monkeypatch.chdir(tmp_path)
    origin.resources["/a"] = resource(b"alpha\n", etag=True)
    url, state = httpserver.url_for("/a"), str(tmp_path / "s.db")
    fetch("--state", state, "-o", "out", url)
    [second] = fetch("--state", state, "-o", str(tmp_path / "out"), url)
    assert "if-none-match" in origin.requests_for("/a")[1]
    assert second["status"] == 304, second


def test_the_log_does_not_grow_with_the_run(tmp_path: Path) -> None:
    """Lookups in batches between the writes, as a run makes them: the -wal file stays near
    SQLite's checkpoint size (4 MB) instead of growing by some 300 bytes a URL (s15 h4 2)."""
    from fetcher.input.jobs import Job
    from fetcher.results import Result
    from fetcher.state.store import State

    path = str(tmp_path / "s.db")
    state = State(path)
    try:
        for n in range(100_000):
            url = f"http://h.test/{n}"
            if n % 100 == 0:
                state.lookup_many([f"http://h.test/{m}" for m in range(n, n + 100)])
            job = Job(seq=n, url=url, target=url, line=n + 1, raw=url.encode())
            state.record(Result(job=job, ok=True, status=200, sha256="ab" * 32, bytes=10))
            if state.batch_full:  # as the records' writer commits (Collector.on_result)
                state.commit()
        state.commit()
        log = os.path.getsize(path + "-wal")
    finally:
        state.close()
    assert log < 6_000_000, f"the log holds {log} bytes"


def test_one_at_a_time_lookups_do_not_pin_the_log(tmp_path: Path) -> None:
    """A pipe's URLs are looked up one at a time, as read, between the writer's commits (at
    each idle moment, some ten a second). Lookups that shared a read transaction, renewed at
    once as it ended, always held a snapshot inside the log: no checkpoint could start it
    again, and it grew by some 3 KB a URL for the whole run, 97 MB for 30,000 (s23 h2 1)."""
    from fetcher.input.jobs import Job
    from fetcher.results import Result
    from fetcher.state.store import State

    path = str(tmp_path / "s.db")
    state = State(path)
    try:
        for n in range(20_000):
            url = f"http://h.test/{n}"
            job = Job(seq=n, url=url, target=url, line=n + 1, raw=url.encode())
            job.prior = state.lookup(url)  # the dispatcher's thread, as the line is read
            state.record(Result(job=job, ok=True, status=200, sha256="ab" * 32, bytes=10))
            if n % 20 == 19:  # the records' writer, idle for a moment
                state.commit()
        state.commit()
        log = os.path.getsize(path + "-wal")
    finally:
        state.close()
    assert log < 6_000_000, f"the log holds {log} bytes"


def test_retry_failed_does_not_pin_the_log(tmp_path: Path) -> None:
    """--retry-failed reads the failed rows while the run writes the new results. Read from one
    snapshot held for the whole stream, no checkpoint could copy the log back past it, and the
    log grew for the whole run (s15 h4 2). Each URL still comes once, the rows this run writes
    never again."""
    from fetcher.errors import ErrorKind
    from fetcher.input.jobs import Job
    from fetcher.results import Result
    from fetcher.state.store import State

    def failed(n: int, status: int) -> Result:
        url = f"http://h.test/{n:06d}"
        job = Job(seq=n, url=url, target=url, line=n + 1, raw=url.encode())
        return Result(job=job, ok=False, status=status, error_kind=ErrorKind.HTTP)

    path, count = str(tmp_path / "s.db"), 5_000
    state = State(path)
    try:
        for n in range(count):
            state.record(failed(n, 500))
        state.commit()
    finally:
        state.close()
    state, seen, checkpoints = State(path), [], []
    try:
        for _, _, _, url, _ in state.failed_lines():  # the run: each URL fetched, failing again
            seen.append(url)
            state.record(failed(int(url.rsplit("/", 1)[1]), 502))  # a row that changes
            if len(seen) % 1000 == 0:
                state.commit()
                with sqlite3.connect(path) as other:  # SQLite's own, as a commit makes it
                    checkpoints.append(other.execute("PRAGMA wal_checkpoint").fetchone())
    finally:
        state.close()
    assert seen == [f"http://h.test/{n:06d}" for n in range(count)]
    # (busy, frames in the log, frames copied back): all of them, each time
    assert all(copied == frames for _, frames, copied in checkpoints), checkpoints


def test_only_failed_rows_keep_their_input_line(httpserver: HTTPServer, tmp_path: Path) -> None:
    """--retry-failed reads the lines of failed rows only: an ok row kept its csv line and
    header too, some 500 bytes a URL for a wide csv against the 300 SPEC 3 allows (s15 h4 5)."""
    httpserver.expect_request("/ok").respond_with_data("ok")
    httpserver.expect_request("/gone").respond_with_data("no", status=404)
    listing = tmp_path / "in.csv"
    wide = ",".join(f"c{n}" for n in range(10))
    listing.write_text(f"url,{wide}\n" + "".join(
        f"{httpserver.url_for(p)},{wide}\n" for p in ("/ok", "/gone")))  # fmt: skip
    state = tmp_path / "s.db"
    invoke(["-q", "--state", str(state), "--input-format", "csv", "-i", str(listing)])
    with sqlite3.connect(state) as db:
        rows = dict(db.execute("SELECT url, line IS NOT NULL AND header IS NOT NULL FROM urls"))
    assert rows == {httpserver.url_for("/ok"): 0, httpserver.url_for("/gone"): 1}


def test_a_folder_whose_name_is_not_utf_8_is_kept_in_the_state_and_found_again(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """-o DIR named in bytes that are not UTF-8 (argv holds them as lone surrogates): SQLite
    refused to bind the saved path, a traceback, and --failed was never written (s17 h1 D9)."""
    origin.resources["/a"] = resource(b"alpha\n", etag=True)
    url, state = httpserver.url_for("/a"), str(tmp_path / "s.db")
    out, failed = os.fsdecode(bytes(tmp_path) + b"/out\xff"), tmp_path / "failed.txt"
    missing = httpserver.url_for("/missing")
    args = ["--state", state, "-o", out, "--failed", str(failed), url, missing]
    first = invoke(["--format", "jsonl", "-q", *args])
    assert first.exit_code == 1 and not isinstance(first.exception, Exception), first.exception
    assert failed.read_text() == f"{missing}\n"
    saved = by_url(records(first.stdout))[url]["path"]
    assert Path(saved).read_bytes() == b"alpha\n"
    [second] = fetch("--state", state, "-o", out, url)  # the file the state knows is found
    assert second["status"] == 304 and second["path"] == saved
    assert Path(saved).read_bytes() == b"alpha\n"


def test_a_post_s_answer_is_neither_fresh_nor_the_resource_s_state(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """A POST's answer stood for the GET in --state: a --skip-fresh GET after it was skipped
    with the POST answer's hash, sent no GET, and a plain GET then said 'changed' (s17 h3 1).
    Each distinct request has its own row: the GET's is the resource's."""
    import hashlib

    from werkzeug import Request, Response

    seen: list[tuple[str, str | None]] = []

    def handle(request: Request) -> Response:
        seen.append((request.method, request.headers.get("If-None-Match")))
        if request.method == "POST":
            return Response(b"posted\n", headers={"ETag": '"p1"'})
        if request.headers.get("If-None-Match") == '"v1"':
            return Response(status=304, headers={"ETag": '"v1"'})
        return Response(b"the resource\n", headers={"ETag": '"v1"'})

    httpserver.expect_request("/r").respond_with_handler(handle)
    url, state = httpserver.url_for("/r"), str(tmp_path / "s.db")
    fetch("--state", state, "-d", "x=1", url)
    [get] = fetch("--state", state, "--skip-fresh", "1h", url)
    assert get["skipped"] is False and get["status"] == 200, get  # the POST is not the GET
    assert seen[-1] == ("GET", None)  # and gave no validator
    fetch("--state", state, "-d", "x=1", url)
    [again] = fetch("--state", state, "--skip-fresh", "1h", url)
    assert again["skipped"] is True, again  # fresh from the GET, whatever the POST since
    assert again["sha256"] == hashlib.sha256(b"the resource\n").hexdigest()
    [post] = fetch("--state", state, "--skip-fresh", "1h", "-d", "x=2", url)
    assert post["skipped"] is False and seen[-1][0] == "POST"  # another body: another request
    [same] = fetch("--state", state, "--skip-fresh", "1h", "-d", "x=2", url)
    assert same["skipped"] is True  # that one went through: a resumed run does not resend it


def test_lines_posting_different_bodies_to_one_url_are_each_retried_on_their_own(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """One URL, a request body a line (GraphQL, JSON-RPC): the lines shared one row, so a
    failed line was 'fresh' once another succeeded, and --retry-failed had nothing left to
    retry: the failure was lost for good (s17 h3 1)."""
    from werkzeug import Request, Response

    bodies: list[bytes] = []

    def handle(request: Request) -> Response:
        bodies.append(request.get_data())
        return Response(b"no\n", status=500) if b"fail" in request.get_data() else Response(b"ok\n")

    httpserver.expect_request("/graphql").respond_with_handler(handle)
    url, state = httpserver.url_for("/graphql"), str(tmp_path / "s.db")
    lines = tmp_path / "q.jsonl"
    lines.write_text(
        json.dumps({"url": url, "data": "q=fail-one", "id": 1}) + "\n"
        + json.dumps({"url": url, "data": "q=two", "id": 2}) + "\n"
    )  # fmt: skip
    common = ["--state", state, "--input-format", "jsonl", "-j", "1", "--retries", "0", "--ordered"]
    fetch(*common, "-i", str(lines))
    skipped = fetch(*common, "--skip-fresh", "1h", "-i", str(lines))
    assert [r["skipped"] for r in skipped] == [False, True], skipped  # the failed one is sent
    bodies.clear()
    [retried] = fetch("--state", state, "--retry-failed", "--retries", "0")
    assert bodies == [b"q=fail-one"] and retried["meta"] == {"id": 1}, retried["error"]


def test_retry_failed_sends_no_body_to_a_row_under_a_bare_url(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """A row under its bare URL is a GET's (or a POST an older fetcher wrote so): a retry with
    -d would send a body to it, and its answer stand for the request that failed (s21 h2 1).
    It is refused, and stays failed. (Before, the retry's success went to a new row, the old
    one retried again at every --retry-failed: s17 r1 2; nothing is sent now.)"""
    from werkzeug import Request, Response

    posts: list[bytes] = []

    def handle(request: Request) -> Response:
        posts.append(request.get_data())
        return Response(b"ok\n")

    httpserver.expect_request("/hook").respond_with_handler(handle)
    url, state = httpserver.url_for("/hook"), tmp_path / "s.db"
    httpserver.expect_request("/init").respond_with_data("init")
    fetch("--state", str(state), httpserver.url_for("/init"))  # a state of today's schema
    with sqlite3.connect(state) as db:  # a failed GET's row, or an older fetcher's POST's
        db.execute(
            "INSERT INTO urls (url, ok, status, error_kind, fetched_at) VALUES (?, 0, NULL, "
            "'protocol', 1)",
            (url,),
        )
    [refused] = fetch("--state", str(state), "--retry-failed", "-d", "payload=1")
    assert refused["ok"] is False and posts == [], refused
    assert refused["error"]["kind"] == "invalid_url"
    assert "a GET or HEAD, this run would send a POST with a body" in refused["error"]["message"]
    assert [r["url"] for r in fetch("--state", str(state), "--retry-failed", "-d", "x")] == [url]


def test_retry_failed_sends_a_post_s_row_no_get(httpserver: HTTPServer, tmp_path: Path) -> None:
    """A POST that failed was retried as a GET when --retry-failed was not given its -d: the
    GET's 200 marked the POST's row ok, the POST never made, the failure lost (s21 h2 1). The
    request must be the row's: given the same -d, it is retried; else refused, still failed."""
    from werkzeug import Request, Response

    seen: list[tuple[str, bytes]] = []
    failing = [True]

    def handle(request: Request) -> Response:
        seen.append((request.method, request.get_data()))
        if request.method == "POST" and failing[0]:
            return Response(b"no\n", status=501)
        return Response(b"ok\n")

    httpserver.expect_request("/order").respond_with_handler(handle)
    url, state = httpserver.url_for("/order"), str(tmp_path / "s.db")
    fetch("--state", state, "--retries", "0", "-d", "order=42", url)
    seen.clear()
    for args in ([], ["-d", "order=43"], ["-X", "PUT", "-d", "order=42"]):
        [refused] = fetch("--state", state, "--retry-failed", *args)
        assert refused["ok"] is False and refused["error"]["kind"] == "invalid_url", refused
        assert "not retried: the state's row is of a POST with a body" in refused["error"][
            "message"]  # fmt: skip
        assert "order=4" not in refused["error"]["message"]  # the body is not shown
    assert seen == []  # nothing sent: neither a GET nor another body
    failing[0] = False
    [retried] = fetch("--state", state, "--retry-failed", "-d", "order=42")
    assert retried["ok"] is True and seen == [("POST", b"order=42")], retried
    assert fetch("--state", state, "--retry-failed", "-d", "order=42") == []


def test_the_body_of_d_is_hashed_once_for_a_run_s_state_keys() -> None:
    """state_key hashed the whole -d body again for every URL, on the one thread that hands
    out the work: 1,000 URLs skipped as fresh took 11.9 s with a 20 MiB -d (s17 r1 6)."""
    from fetcher.http import request
    from fetcher.input.jobs import Job
    from fetcher.settings import Settings

    settings = Settings(data=b"x" * (1 << 20))
    request._body_digest.cache_clear()
    keys = {request.state_key(Job(n, f"http://h/{n}", f"http://h/{n}", n, b""), settings)
            for n in range(100)}  # fmt: skip
    assert len(keys) == 100 and all(key.startswith("POST http://h/") for key in keys)
    assert request._body_digest.cache_info().misses == 1


def test_retry_failed_with_no_state_file_is_a_usage_error(tmp_path: Path) -> None:
    """A typo in the retry job's --state made an empty state and exited 0, every turn, for
    ever (s19 t2 D9): there is nothing to retry only in a state that exists."""
    state = tmp_path / "typo.db"
    result = invoke(["-q", "--retry-failed", "--state", str(state)])
    assert result.exit_code == 2, result.output
    assert "no such --state file" in result.stderr and str(state) in result.stderr
    assert not state.exists()


def test_a_result_dated_in_the_future_is_not_fresh(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """A row written under a clock set ahead (a wrong date, fixed since) stayed "fresh" until the
    clock caught up, whatever DURATION said (s19 t2 L6): freshness is an age from 0 on."""
    origin.resources["/a"] = resource(b"alpha\n", etag=True)
    url, state = httpserver.url_for("/a"), tmp_path / "s.db"
    fetch("--state", str(state), url)
    with sqlite3.connect(state) as db:
        db.execute("UPDATE urls SET fetched_at = fetched_at + 86400")
    db.close()
    [record] = fetch("--state", str(state), "--skip-fresh", "1h", url)
    assert record["skipped"] is False and record["status"] == 304, record


def test_a_file_another_url_saved_over_in_a_later_run_is_no_longer_the_first_url_s(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """`/x/` and `/x/index.html` are saved under one name: in one run the second gets ~hash,
    but across runs (two cron lists, one state) the second replaced the first's file, and the
    first's next 304 and --skip-fresh named that file with the first's hash (s19 t2 D1). The
    state forgets a file another URL's body replaced: the first is fetched again whole."""
    origin.resources["/x/"] = resource(b"listing\n", etag=True)
    origin.resources["/x/index.html"] = resource(b"index\n", etag=True)
    state, out = str(tmp_path / "s.db"), str(tmp_path / "out")
    folder, index = httpserver.url_for("/x/"), httpserver.url_for("/x/index.html")
    [first] = fetch("--state", state, "-o", out, folder)
    [second] = fetch("--state", state, "-o", out, index)
    assert first["path"] == second["path"]  # the same name, in two runs
    [fresh] = fetch("--state", state, "-o", out, "--skip-fresh", "1h", folder)
    assert fresh["skipped"] is False and fresh["status"] == 200, fresh
    assert "if-none-match" not in origin.requests_for("/x/")[-1]
    assert fresh["sha256"] == hashlib.sha256(b"listing\n").hexdigest()
    assert Path(fresh["path"]).read_bytes() == b"listing\n"
    [again] = fetch("--state", state, "-o", out, folder)  # its file again: a 304 keeps it
    assert again["status"] == 304 and again["sha256"] == fresh["sha256"], again
    [back] = fetch("--state", state, "-o", out, index)  # and the other way round
    assert back["status"] == 200 and Path(back["path"]).read_bytes() == b"index\n", back
    assert "if-none-match" not in origin.requests_for("/x/index.html")[-1]


def test_a_304_to_the_user_s_own_condition_names_no_hash_of_an_empty_body(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """A 304 reads no body: its record's sha256 was that of b"" beside a path naming the saved,
    non-empty file (s19 t2 D3). It is the state's hash when the state's own condition was
    answered, else null, as a HEAD's."""
    item = origin.resources["/n"] = resource(b"hello\n", etag=True)
    url, out = httpserver.url_for("/n"), str(tmp_path / "out")
    [saved] = fetch("-o", out, url)
    [own] = fetch("-o", out, "-H", f"If-None-Match: {item.etag}", url)
    assert own["status"] == 304 and own["ok"] and own["path"] == saved["path"], own
    assert own["sha256"] is None
    item.lie = "always-304"
    [new] = fetch("--state", str(tmp_path / "s.db"), "-o", out, url)
    assert new["status"] == 304 and new["sha256"] is None, new


def test_a_304_that_is_not_ok_names_no_file(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """--ok-status 200-299 makes a 304 to the user's own condition a failure (SPEC 2.4): a
    failure saved nothing, and named the file there as its path (s19 t2 D2)."""
    item = origin.resources["/n"] = resource(b"hello\n", etag=True)
    url, out = httpserver.url_for("/n"), str(tmp_path / "out")
    fetch("-o", out, url)
    result = invoke(["--format", "jsonl", "-q", "-o", out, "--ok-status", "200-299", "-H",
                     f"If-None-Match: {item.etag}", url])  # fmt: skip
    [record] = records(result.stdout)
    assert result.exit_code == 3 and not record["ok"] and record["status"] == 304, record
    assert record["path"] is None


def test_a_head_neither_makes_a_body_fresh_nor_is_the_last_result_of_a_known_url(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """A HEAD job beside a mirror job on one state set the row ok and fetched now: the mirror's
    --skip-fresh then kept the old file for as long as the HEADs came more often than DURATION
    (s19 t2 D8). A HEAD reads no body: a known URL's row stays its last body's. A new URL's
    HEAD is `changed` (SPEC 3: new to the state), as a GET's is (s19 t2 D4)."""
    origin.resources["/m"] = resource(b"v1\n", version=1)
    url, state, out = httpserver.url_for("/m"), tmp_path / "s.db", str(tmp_path / "out")
    [head] = fetch("--state", str(state), "-I", url)
    assert head["ok"] and head["changed"] is True, head
    fetch("--state", str(state), "-o", out, url)
    with sqlite3.connect(state) as db:
        db.execute("UPDATE urls SET fetched_at = fetched_at - 7200")  # two hours ago
    db.close()
    origin.resources["/m"] = resource(b"v2\n", version=2)
    [head] = fetch("--state", str(state), "-I", url)
    assert head["ok"] and head["changed"] is True, head  # its validators are not the state's
    [mirror] = fetch("--state", str(state), "-o", out, "--skip-fresh", "1h", url)
    assert mirror["skipped"] is False and mirror["changed"] is True, mirror
    assert Path(mirror["path"]).read_bytes() == b"v2\n"


def test_a_state_of_schema_2_keeps_its_files_conditional(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """Schema 3 adds each saved file's mark; a row written before has none, and its file is
    taken as the state's, as before: a 304, not a fetch of everything again after an upgrade."""
    from fetcher.state import database

    origin.resources["/old"] = resource(b"old\n", etag=True)
    state, out, url = tmp_path / "s.db", str(tmp_path / "out"), httpserver.url_for("/old")
    [first] = fetch("--state", str(state), "-o", out, url)
    as_schema_2(state)
    [second] = fetch("--state", str(state), "-o", out, url)
    assert second["status"] == 304 and second["path"] == first["path"], second
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(database.MIGRATIONS)
    db.close()


def test_an_ok_head_after_a_failure_is_the_row_s_last_result(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """An ok HEAD left every known row as it was, a failed one too: a HEAD-only link checker's
    --retry-failed retried a URL that had come back, at every turn (s19 r4 2)."""
    url, state = httpserver.url_for("/back"), str(tmp_path / "s.db")
    [failed] = fetch("--state", state, "-I", url)  # nothing there yet: 404
    assert not failed["ok"]
    origin.resources["/back"] = resource(b"here\n")
    [ok] = fetch("--state", state, "-I", url)
    assert ok["ok"], ok
    assert fetch("--state", state, "-I", "--retry-failed") == []


def test_a_304_to_the_user_s_own_condition_does_not_make_the_state_s_body_fresh(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """A 304 answers the condition sent: with -H's own If-None-Match, that the resource is
    still the user's version, not the state's. It set the row fetched now, so that the mirror's
    --skip-fresh kept an old file (s19, left). Like an ok HEAD, it leaves an ok row alone."""
    origin.resources["/c"] = resource(b"v1\n", version=1)
    url, state, out = httpserver.url_for("/c"), str(tmp_path / "s.db"), str(tmp_path / "out")
    fetch("--state", state, "-o", out, url)
    with sqlite3.connect(state) as db:
        db.execute("UPDATE urls SET fetched_at = fetched_at - 7200")  # two hours ago
    db.close()
    item = origin.resources["/c"] = resource(b"v2\n", version=2)
    [own] = fetch("--state", state, "-H", f"If-None-Match: {item.etag}", url)
    assert own["ok"] and own["status"] == 304 and own["changed"] is False, own
    [mirror] = fetch("--state", state, "-o", out, "--skip-fresh", "1h", url)
    assert mirror["skipped"] is False and mirror["changed"] is True, mirror
    assert Path(mirror["path"]).read_bytes() == b"v2\n"


@pytest.mark.parametrize("answer", ["head", "own-304"])
def test_an_answer_without_the_state_s_body_after_a_failure_makes_nothing_fresh(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, answer: str
) -> None:
    """After a failure, an ok HEAD or a 304 to -H's own condition is the row's last result: it
    set the row ok and fetched now with the old body's hash, and the mirror's --skip-fresh kept
    the old file (s20 r1 6). The state vouches for no body then: nothing is fresh, and the next
    GET fetches the body whole."""
    origin.resources["/f"] = resource(b"v1\n", version=1)
    url, state, out = httpserver.url_for("/f"), str(tmp_path / "s.db"), str(tmp_path / "out")
    fetch("--state", state, "-o", out, url)
    origin.resources.pop("/f")  # 404: the row fails
    [failed] = fetch("--state", state, "-o", out, url)
    assert not failed["ok"], failed
    item = origin.resources["/f"] = resource(b"v2\n", version=2)
    how = ["-I"] if answer == "head" else ["-H", f"If-None-Match: {item.etag}"]
    [ok] = fetch("--state", state, *how, url)
    assert ok["ok"], ok
    [mirror] = fetch("--state", state, "-o", out, "--skip-fresh", "1h", url)
    assert mirror["skipped"] is False and mirror["status"] == 200, mirror
    assert Path(mirror["path"]).read_bytes() == b"v2\n"


def test_a_head_does_not_make_a_body_fresh_for_a_get_without_o(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """A new URL's HEAD made its row fresh: a GET with --skip-fresh then skipped a body it never
    read, its record's sha256 null (s19 r4 7). Fresh is a body fetched ok within DURATION."""
    origin.resources["/h"] = resource(b"body\n")
    url, state = httpserver.url_for("/h"), str(tmp_path / "s.db")
    fetch("--state", state, "-I", url)
    [get] = fetch("--state", state, "--skip-fresh", "1h", url)
    assert get["skipped"] is False and get["sha256"] == hashlib.sha256(b"body\n").hexdigest()


def as_schema_2(state: Path) -> None:
    """state as a fetcher of schema 2 left it: no saved_mark (nor what came after)."""
    with sqlite3.connect(state) as db:
        db.execute("ALTER TABLE urls DROP COLUMN partial_url")
        db.execute("ALTER TABLE urls DROP COLUMN final_url")
        db.execute("ALTER TABLE urls DROP COLUMN partial_total")
        db.execute("DROP INDEX urls_unmarked")
        db.execute("ALTER TABLE urls DROP COLUMN saved_mark")
        db.execute("PRAGMA user_version = 2")
    db.close()


def test_a_row_from_before_schema_3_loses_its_file_to_another_url_saved_over_it(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """A row written before the saved files' marks has none, and a 304 kept it so: the /x/ and
    /x/index.html clash went on naming the other URL's file on every upgraded state (s19 r4 1).
    A body saved over such a row's file takes the file from it; its 304 gives it a mark."""
    origin.resources["/x/"] = resource(b"listing\n", etag=True)
    origin.resources["/x/index.html"] = resource(b"index\n", etag=True)
    origin.resources["/y"] = resource(b"why\n", etag=True)
    state, out = tmp_path / "s.db", str(tmp_path / "out")
    folder, index = httpserver.url_for("/x/"), httpserver.url_for("/x/index.html")
    fetch("--state", str(state), "-o", out, folder, httpserver.url_for("/y"))
    as_schema_2(state)
    fetch("--state", str(state), "-o", out, index)
    [again] = fetch("--state", str(state), "-o", out, folder)
    assert again["status"] == 200 and Path(again["path"]).read_bytes() == b"listing\n", again
    [kept] = fetch("--state", str(state), "-o", out, httpserver.url_for("/y"))
    assert kept["status"] == 304, kept
    with sqlite3.connect(state) as db:
        [(mark,)] = db.execute("SELECT saved_mark FROM urls WHERE url LIKE '%/y'").fetchall()
    db.close()
    assert mark is not None  # marked by its 304: one of the rows that need no more care


def test_a_relative_dir_from_another_folder_keeps_its_files(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run by hand from the project folder (-o out), a cron job from another (-o
    ../out): the state kept the path as spelled, read from the second folder, and every URL
    was fetched whole (s19 r4 4). It keeps it absolute, its folder's links resolved."""
    origin.resources["/b"] = resource(b"bee\n", etag=True)
    url, state = httpserver.url_for("/b"), str(tmp_path / "s.db")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    [first] = fetch("--state", state, "-o", "out", url)
    monkeypatch.chdir(tmp_path / "sub")
    [fresh] = fetch("--state", state, "-o", "../out", "--skip-fresh", "1h", url)
    assert fresh["skipped"] is True, fresh
    assert fresh["path"] == os.path.join("../out", os.path.relpath(first["path"], "out"))
    [again] = fetch("--state", state, "-o", "../out", url)
    assert again["status"] == 304, again


# -- a HEAD's changed: what its validators say of the state's body (s21 h2 3) ------------------


def test_a_head_whose_validators_are_not_the_state_s_says_changed(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """A conditional HEAD answered 200 (the condition failed: the resource changed) said
    `changed: false`, so `fetcher -I --state S | jq 'select(.changed)'` never reported a thing
    (s21 h2 3). A HEAD reads no body: its validators, against the state's, say whether it is
    still the body the state knows. The row stays the last body's, so the next HEAD and the
    next GET say changed too; a 304 says unchanged."""
    origin.resources["/p"] = resource(b"one\n", version=1)
    url, state = httpserver.url_for("/p"), str(tmp_path / "s.db")
    fetch("--state", state, url)
    [same] = fetch("--state", state, "-I", url)
    assert same["status"] == 304 and same["changed"] is False, same
    origin.resources["/p"] = resource(b"two\n", version=2)
    for _ in range(2):
        [head] = fetch("--state", state, "-I", url)
        assert "if-none-match" in origin.requests_for("/p")[-1]
        assert head["status"] == 200 and head["changed"] is True, head
        assert head["not_modified"] is False and head["sha256"] is None, head
    [get] = fetch("--state", state, url)
    assert get["status"] == 200 and get["changed"] is True, get


@pytest.mark.parametrize(
    ("etag", "dated"), [(True, False), (False, True)], ids=["etag", "last-modified"]
)
def test_a_head_answered_200_with_the_state_s_validators_is_unchanged(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, etag: bool, dated: bool
) -> None:
    """A 200 to a HEAD without the state's conditions (here -H's own; or a server that ignores
    them) that carries the state's ETag (else Last-Modified) is the body the state knows."""
    item = origin.resources["/s"] = resource(b"same\n", etag=etag, dated=dated)
    url, state = httpserver.url_for("/s"), str(tmp_path / "s.db")
    fetch("--state", state, url)
    [head] = fetch("--state", state, "-I", "-H", 'If-None-Match: "another"', url)
    assert head["status"] == 200 and head["changed"] is False, (head, item)


def test_a_head_that_cannot_tell_says_changed_null(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """No validator the state and the answer both have (a server that sends none, or a state
    that only ever saw HEADs, which keeps none): whether the body changed is not known, and
    the record says so, null, rather than false."""
    origin.resources["/n"] = resource(b"plain\n", etag=False, dated=False)
    url, state = httpserver.url_for("/n"), str(tmp_path / "s.db")
    fetch("--state", state, url)
    [head] = fetch("--state", state, "-I", url)
    assert head["ok"] and head["status"] == 200 and head["changed"] is None, head
    origin.resources["/h"] = resource(b"head only\n")
    only = httpserver.url_for("/h")
    [first] = fetch("--state", state, "-I", only)
    assert first["changed"] is True  # new to the state
    [again] = fetch("--state", state, "-I", only)
    assert again["changed"] is None, again


# -- a row edited by hand into what fetcher never writes: unknown, not the run's end -------------

HAND_EDITS = {
    "blob-path": "path = x'2f746d70'",
    "text-fetched-at": "fetched_at = 'x'",
    "blob-etag": "etag = x'22ff22'",
    "short-sha256": "sha256 = x'0102'",
    "text-saved-mark": "saved_mark = 'x'",
    "text-ok": "ok = 'yes'",
    # The mark of a path that is not UTF-8, then no hex: "reading the input failed", each
    # run; a NUL in a path: a traceback, "embedded null byte" (s27 t7 3).
    "mark-not-hex-path": "path = char(0) || 'zz'",
    "mark-not-hex-partial": "partial = char(0) || 'zz', partial_from = etag",
    "nul-in-path": "path = path || char(0) || 'x'",
    "nul-in-hex-path": "path = char(0) || hex(path) || '00'",
}


@pytest.mark.parametrize("edit", list(HAND_EDITS), ids=list(HAND_EDITS))
@pytest.mark.parametrize("lookup", ["batch", "single"])
def test_a_row_of_the_wrong_type_is_unknown_and_fetched_again(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, edit: str, lookup: str
) -> None:
    """state.md invites sqlite3 on the state; one row set to what fetcher never writes (a BLOB
    path, a fetched_at of text) stopped the run before any request: "JSON cannot hold BLOB
    values", "unsupported operand type(s)", exit 1, every line not attempted (s21 h2 7). Such
    a row is unknown: its URL is fetched whole, as a new one, and its row written anew."""
    urls = []
    for n in range(7 if lookup == "batch" else 1):
        origin.resources[f"/r{n}"] = resource(f"r{n}\n".encode())
        urls.append(httpserver.url_for(f"/r{n}"))
    source, state, out = tmp_path / "in.txt", str(tmp_path / "s.db"), str(tmp_path / "out")
    source.write_text("\n".join(urls) + "\n")
    args = ["--state", state, "-o", out, "--skip-fresh", "1h", "-i", str(source)]
    fetch(*args)
    with sqlite3.connect(state) as db:
        db.execute(f"UPDATE urls SET {HAND_EDITS[edit]} WHERE url = ?", (urls[0],))
    db.close()
    result = invoke(["--format", "jsonl", "-q", *args])
    assert result.exit_code == 0, result.output
    found = by_url(records(result.stdout))
    assert found[urls[0]]["status"] == 200 and found[urls[0]]["changed"] is True, found
    assert found[urls[0]]["sha256"] == hashlib.sha256(b"r0\n").hexdigest()
    assert all(found[url]["skipped"] for url in urls[1:]), found
    [again] = [r for r in records(invoke(["--format", "jsonl", "-q", *args]).stdout)
               if r["url"] == urls[0]]  # fmt: skip
    assert again["skipped"] is True, again  # its row is fetcher's again


@pytest.mark.parametrize("spelling", ["../outside/x", "{host}/../../outside/x"])
def test_a_row_whose_path_climbs_out_of_dir_is_no_row_s_file(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path, spelling: str
) -> None:
    """A row's path spelt DIR/../outside/x passed the text check for "under DIR": the URL was
    skipped as fresh with a record naming a file outside DIR, and that file was opened (a
    FIFO's writer released; as root, a device): s27 t7 6. A path with '..' is no row's file."""
    origin.resources["/a"] = resource(b"alpha\n")
    url, state, out = httpserver.url_for("/a"), str(tmp_path / "s.db"), tmp_path / "out"
    args = ["--state", state, "-o", str(out), "--skip-fresh", "1h", url]
    [first] = fetch(*args)
    outside = tmp_path / "outside" / "x"
    outside.parent.mkdir()
    outside.write_bytes(b"not the mirror's\n")
    host = Path(first["path"]).parent.name
    climbing = os.path.join(str(out), spelling.format(host=host))
    with sqlite3.connect(state) as db:
        db.execute("UPDATE urls SET path = ?, saved_mark = NULL", (climbing,))
    db.close()
    [again] = fetch(*args)
    assert again["ok"] and not again["skipped"], again
    assert Path(again["path"]).resolve().is_relative_to(out.resolve()), again
    assert Path(again["path"]).read_bytes() == b"alpha\n"
    assert outside.read_bytes() == b"not the mirror's\n"


def test_retry_failed_reads_a_failed_row_whose_line_was_edited_into_text(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """A failed row's line set by hand in sqlite3 is text, not the bytes fetcher keeps: the
    --retry-failed run stopped at it, "reading the input failed", nothing retried (s21 h2 7).
    The line is read as its bytes; a row under a key that is no text is no URL to retry."""
    url, other, state = httpserver.url_for("/t"), httpserver.url_for("/u"), str(tmp_path / "s.db")
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"url": url}) + "\n" + json.dumps({"url": other}) + "\n")
    fetch("--state", state, "--input-format", "jsonl", "-i", str(source))  # 404s
    with sqlite3.connect(state) as db:
        db.execute("UPDATE urls SET line = ? WHERE url = ?", (json.dumps({"url": url}), url))
        db.execute("UPDATE urls SET url = CAST(url AS BLOB) WHERE url = ?", (other,))
    db.close()
    origin.resources["/t"] = resource(b"back\n")
    result = invoke(["--format", "jsonl", "-q", "--state", state, "--retry-failed"])
    assert result.exit_code == 0, result.output
    [retried] = records(result.stdout)
    assert retried["url"] == url and retried["status"] == 200, retried


def test_a_run_that_skipped_every_url_as_fresh_made_no_request_a_second(
    httpserver: HTTPServer, origin: Origin, tmp_path: Path
) -> None:
    """`2 ok, 0 failed, 0 B, 0.00 s, 422.8 req/s` for a run that sent nothing (s23 h1 3)."""
    origin.resources["/a"] = resource(b"a\n")
    origin.resources["/b"] = resource(b"b\n")
    state, summary = str(tmp_path / "s.db"), tmp_path / "summary.json"
    urls = [httpserver.url_for("/a"), httpserver.url_for("/b")]
    fetch("--state", state, *urls)
    result = invoke(["--format", "jsonl", "--summary", str(summary), "--state", state,
                     "--skip-fresh", "1h", *urls])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [r["skipped"] for r in records(result.stdout)] == [True, True]
    assert len(origin.requests_for("/a")) == 1
    assert json.loads(summary.read_text())["requests_per_second"] == 0.0
    assert ", 0.0 req/s" in result.stderr.splitlines()[0], result.stderr


@pytest.mark.parametrize(
    "edited",
    ["{url}\r\nX-Injected: 1", "{url}\nb", "GET {url} notahash", "{url} 1 2"],
)
def test_a_failed_row_whose_key_was_edited_to_hold_a_blank_names_no_other_url(
    tmp_path: Path, edited: str
) -> None:
    """s33 t4 1: a key holding a blank was read as 'METHOD URL HASH' whatever it held, so a
    row set by hand to 'URL\\r\\nX-Injected: 1' was retried as the URL '1' (its --failed line
    '1', https://1 to the next run), under a message about another body. Only a key of that
    shape is a request's; any other is the row's URL as written (a line end a blank), an
    invalid one here, its record naming it and its --failed line one line."""
    url, state = "http://127.0.0.1:9/fail/z", str(tmp_path / "s.db")
    fetch("--state", state, "--retries", "0", "--connect-timeout", "1", url)
    with sqlite3.connect(state) as db:
        db.execute("UPDATE urls SET url = ?, line = NULL", (edited.format(url=url),))
    db.close()
    failed = tmp_path / "again.txt"
    result = invoke(["--format", "jsonl", "-q", "--state", state, "--retry-failed",
                     "--failed", str(failed)])  # fmt: skip
    assert result.exit_code == 3, result.output
    [retried] = records(result.stdout)
    key = edited.format(url=url).replace("\r", " ").replace("\n", " ")
    assert retried["url"] == key, retried
    assert retried["error"]["kind"] == "invalid_url", retried
    assert "another body" not in retried["error"]["message"], retried
    assert failed.read_text() == key + "\n"
