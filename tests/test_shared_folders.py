"""The run's files in a folder another user can write in (s24 h4): the --state swapped by a
rename during the run, the cookie jar, --summary and --metrics written through a temporary
swapped for a link, --results through a link or into a file someone else planted, the mode of a
planted file taken, and a planted cookie jar loaded. A second user is stood in for by a folder
anyone may write in (mode 0777, no sticky bit), by what the test plants itself, or, where a file
must belong to another user, by chown (root only: those tests skip otherwise)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import FETCHER, clean_env, invoke
from tests.servers import CountingServer, counting_server, wait_for

ANOTHER_USER = 65534  # nobody
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
JAR_HEADER = "# Netscape HTTP Cookie File\n"
JAR_LINE = "127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tsession\t{value}\n"


def shared_folder(tmp_path: Path, mode: int = 0o777) -> Path:
    """A folder of this user's that others may write in (chmod ignores the umask). Writable by
    its group, it is given a group that is not this user's own private one (whose other members
    could write in it), as root can; a user who cannot skips the test."""
    folder = tmp_path / "shared"
    folder.mkdir()
    if mode & 0o020:
        others = [gid for gid in os.getgroups() if gid != os.getegid()]
        gid = 65534 if os.geteuid() == 0 else (others[0] if others else None)
        if gid is None:
            pytest.skip("no group but this user's own to give the folder")
        os.chown(folder, -1, gid)
    folder.chmod(mode)
    return folder


def test_a_state_in_a_folder_its_user_s_own_group_may_write_in_is_refused_with_advice(
    server: CountingServer, tmp_path: Path
) -> None:
    """umask 002 with a group of one's own makes folders 0775. Taking them as the user's alone
    let in another user whose primary group it is, and an ACL, whose mask the group bits show
    (s24 r10 1, 2): refused, and the message says what to do."""
    folder = tmp_path / "mine"
    folder.mkdir()
    os.chown(folder, -1, os.getegid())
    folder.chmod(0o775)
    result = invoke(["-q", "--state", str(folder / "s.db"), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "chmod go-w" in result.output, result.output
    assert server.requests == 0


def test_a_state_reached_through_another_user_s_link_is_refused(
    server: CountingServer, tmp_path: Path
) -> None:
    """Their link in a sticky folder is still theirs to point elsewhere during the run: the
    folder check looked through it (s24 r10 3)."""
    if os.geteuid() != 0:
        pytest.skip("only root can give a link to another user")
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    link = sticky / "proj"
    link.symlink_to(mine)
    os.lchown(link, 65534, 65534)
    result = invoke(["-q", "--state", str(link / "s.db"), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "symbolic link of another user's" in result.output, result.output
    assert server.requests == 0


# -- 1. --state in a folder others can write in: refused at the start (ssh's StrictModes) ----


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o2775])
def test_a_state_in_a_folder_others_can_write_in_is_refused(
    server: CountingServer, tmp_path: Path, mode: int
) -> None:
    """Another user who can write in the state's folder renamed their own database in for a
    moment: every SQLite connection opens the file again by name, past the lock's descriptor,
    so --retry-failed fetched their URLs with the user's -u password (s24 h4 1)."""
    state = shared_folder(tmp_path, mode) / "s.db"
    result = invoke(["-q", "--state", str(state), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert str(state.parent) in result.output and "another user" in result.output
    assert server.requests == 0 and not state.exists()


def test_a_state_below_a_folder_others_can_write_in_is_refused(
    server: CountingServer, tmp_path: Path
) -> None:
    """A folder above it counts as much: whoever can rename the folder holding the state can
    put one of theirs, with a state in it, under its name."""
    inner = shared_folder(tmp_path) / "mine"
    inner.mkdir(mode=0o700)
    result = invoke(["-q", "--state", str(inner / "s.db"), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert repr(str(inner.parent)) in result.output or str(inner.parent) in result.output
    assert server.requests == 0


def test_a_state_in_a_sticky_folder_is_used(server: CountingServer, tmp_path: Path) -> None:
    """A folder with the sticky bit (/tmp): others cannot rename or remove what they do not
    own there, so the state is the user's for the run."""
    state = shared_folder(tmp_path, 0o1777) / "s.db"
    result = invoke(["-q", "--state", str(state), server.url("/a")])
    assert result.exit_code == 0, result.output
    assert server.requests == 1


@AS_ROOT
def test_a_state_in_a_folder_of_another_user_s_is_refused(
    server: CountingServer, tmp_path: Path
) -> None:
    """Its owner may write in it whatever its mode says, and change the mode."""
    folder = shared_folder(tmp_path, 0o755)
    os.chown(folder, ANOTHER_USER, ANOTHER_USER)
    result = invoke(["-q", "--state", str(folder / "s.db"), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert f"uid {ANOTHER_USER}" in result.output and server.requests == 0


# -- 2. -c, --summary, --metrics: written through their descriptor, renamed only if still ours -


@contextmanager
def swapped_at_creation(folder: Path, loot: Path) -> Iterator[list[str]]:
    """The moment a temporary ``.fetcher-*.part`` gets its name in folder (the os.open that
    made it returns, or the os.link that names a file written with no name), rename it aside
    and put a link to loot in its place: what a racer with inotify does (s24 h4 2), at exactly
    that moment. Yields the names swapped."""
    swapped: list[str] = []

    def at_return(frame: object, event: str, arg: object) -> None:
        if event != "c_return" or (arg is not os.open and arg is not os.link):
            return
        for name in os.listdir(folder):
            if name.startswith(".fetcher-") and name.endswith(".part") and name not in swapped:
                swapped.append(name)
                os.rename(folder / name, folder / f"{name}.moved")
                os.symlink(loot, folder / name)

    sys.setprofile(at_return)
    try:
        yield swapped
    finally:
        sys.setprofile(None)


def test_a_swapped_temporary_is_never_written_through_nor_renamed_into_place(
    tmp_path: Path,
) -> None:
    from fetcher.output.atomic import write_atomically

    target, loot = tmp_path / "sum.json", tmp_path / "loot"
    target.write_text("old\n")
    loot.write_text("")
    with swapped_at_creation(tmp_path, loot) as swapped, pytest.raises(OSError):
        write_atomically(str(target), b"SECRET\n", 0o600)
    assert swapped, "no temporary was created"
    assert loot.read_text() == "", "written through the link put in the temporary's place"
    assert not target.is_symlink() and target.read_text() == "old\n"


def test_a_swapped_cookie_jar_temporary_is_refused(tmp_path: Path) -> None:
    from http.cookiejar import CookieJar

    from fetcher.http.cookies import load_jar, save_jar

    target, loot = tmp_path / "jar.txt", tmp_path / "loot"
    target.write_text("# Netscape HTTP Cookie File\n" + JAR_LINE.format(value="SECRETSESSION"))
    loot.write_text("")
    jar: CookieJar = load_jar(str(target))
    with swapped_at_creation(tmp_path, loot), pytest.raises(OSError):
        save_jar(str(target), jar, [])
    assert "SECRETSESSION" not in loot.read_text()
    assert not target.is_symlink() and "SECRETSESSION" in target.read_text()


@pytest.mark.parametrize("option", ["-c", "--summary", "--metrics"])
def test_a_run_whose_file_was_swapped_says_so_and_keeps_the_old_one(
    server: CountingServer, tmp_path: Path, option: str
) -> None:
    # A jar is refused in a folder others may rename in (s24 r10 5): a sticky one for it.
    folder = shared_folder(tmp_path, 0o1777 if option == "-c" else 0o777)
    loot = tmp_path / "loot"
    target = folder / "file"
    target.write_text("# Netscape HTTP Cookie File\n" if option == "-c" else "old\n")
    loot.write_text("")
    old = target.read_text()
    with swapped_at_creation(folder, loot) as swapped:
        result = invoke(["-q", option, str(target), server.url("/a")])
    assert swapped, "no temporary was created"
    assert result.exit_code == 1, result.output
    assert f"cannot write {option} file" in result.output and "replaced" in result.output
    assert loot.read_text() == "" and not target.is_symlink() and target.read_text() == old


# -- 3. --results: no link nor another user's file planted in a folder others can write in ----


def test_results_through_a_link_in_a_folder_others_can_write_in_is_refused(
    server: CountingServer, tmp_path: Path
) -> None:
    """The link may be anyone's: it truncated whatever file it led to (s24 h4 3)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my precious\n")
    results = shared_folder(tmp_path) / "results.jsonl"
    results.symlink_to(notes)
    result = invoke(["-q", "--results", str(results), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "link" in result.output
    assert notes.read_text() == "my precious\n" and server.requests == 0


def test_results_through_the_user_s_own_link_to_a_planted_one_is_refused(
    server: CountingServer, tmp_path: Path
) -> None:
    """s35 r2 2: the user's own link led to one planted in a folder anyone may write in, which
    led to a file of the user's: only the first link was looked at, and the records replaced
    the file."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my precious\n")
    planted = shared_folder(tmp_path) / "x"
    planted.symlink_to(notes)
    (tmp_path / "res.jsonl").symlink_to(planted)
    result = invoke(["-q", "--results", str(tmp_path / "res.jsonl"), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "link" in result.output
    assert notes.read_text() == "my precious\n" and server.requests == 0


def test_results_through_the_user_s_own_link_in_their_folder_is_followed(
    server: CountingServer, tmp_path: Path
) -> None:
    """As the shell's `>` does: the documented behaviour, kept."""
    target = shared_folder(tmp_path, 0o700) / "target.txt"
    link = tmp_path / "results.txt"
    link.symlink_to(target)
    result = invoke(["-q", "--results", str(link), server.url("/a")])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and server.url("/a") in target.read_text()


@AS_ROOT
def test_results_into_a_file_of_another_user_s_in_a_shared_folder_is_refused(
    server: CountingServer, tmp_path: Path
) -> None:
    """The records (bodies too, with --include-body) went into a file its owner reads."""
    results = shared_folder(tmp_path) / "results.jsonl"
    results.write_text("theirs\n")
    os.chown(results, ANOTHER_USER, ANOTHER_USER)
    result = invoke(["-q", "--results", str(results), server.url("/a?token=abc")])
    assert result.exit_code == 2, result.output
    assert f"uid {ANOTHER_USER}" in result.output
    assert results.read_text() == "theirs\n" and server.requests == 0


# -- 3b. -o DIR: no link nor another user's folder planted in a folder others can write in ---


@pytest.mark.parametrize("given", ["dl", "dl/", "dl/sub"])
def test_output_dir_through_a_link_in_a_folder_others_can_write_in_is_refused(
    server: CountingServer, tmp_path: Path, given: str
) -> None:
    """`/tmp/dl -> ~/private`, planted before the run: -o /tmp/dl saved the bodies into the
    user's private folder, an "output" field's name replacing a file of theirs there (s35 t1
    2), where --results and --state refused such a link."""
    private = tmp_path / "private"
    (private / "sub").mkdir(parents=True, mode=0o700)
    (private / "report.pdf").write_text("mine\n")
    (shared_folder(tmp_path) / "dl").symlink_to(private)
    result = invoke(["-q", "-o", str(tmp_path / "shared" / given), server.url("/report.pdf")])
    assert result.exit_code == 2, result.output
    assert "symbolic link in a folder others can write in" in result.output, result.output
    assert server.requests == 0
    assert sorted(p.name for p in private.rglob("*")) == ["report.pdf", "sub"]


def test_output_dir_through_the_user_s_own_link_in_their_folder_is_followed(
    server: CountingServer, tmp_path: Path
) -> None:
    """As --results: a link of the user's in a folder of theirs is their choice."""
    target = shared_folder(tmp_path, 0o700) / "dl"
    target.mkdir()
    link = tmp_path / "dl"
    link.symlink_to(target)
    result = invoke(["-q", "-o", str(link), server.url("/a")])
    assert result.exit_code == 0, result.output
    assert len(list(target.rglob("a"))) == 1


def test_output_dir_through_the_user_s_own_link_to_a_planted_one_is_refused(
    server: CountingServer, tmp_path: Path
) -> None:
    """s35 r2 2: `~/dl -> /tmp/x`, the user's own link, and /tmp/x -> ~/private, planted:
    only the names as written were looked at, and the bodies replaced the user's files."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "report.pdf").write_text("mine\n")
    planted = shared_folder(tmp_path) / "x"
    planted.symlink_to(private)
    (tmp_path / "dl").symlink_to(planted)
    result = invoke(["-q", "-o", str(tmp_path / "dl"), server.url("/report.pdf")])
    assert result.exit_code == 2, result.output
    assert "on its way" in result.output and "symbolic link" in result.output, result.output
    assert server.requests == 0 and sorted(p.name for p in private.iterdir()) == ["report.pdf"]


@AS_ROOT
def test_output_dir_of_another_user_s_in_a_group_s_shared_folder_is_used(
    server: CountingServer, tmp_path: Path
) -> None:
    """A team's folder (group-writable, setgid) holding a colleague's: theirs to share, not a
    name anyone could have made first (s35 r2 7: refused since ef4ebe8)."""
    team = shared_folder(tmp_path, 0o2775)
    mirror = team / "mirror"
    mirror.mkdir()
    os.chown(mirror, ANOTHER_USER, -1)
    mirror.chmod(0o2775)
    result = invoke(["-q", "-o", str(mirror), server.url("/a")])
    assert result.exit_code == 0, result.output
    assert len(list(mirror.rglob("a"))) == 1


@pytest.mark.parametrize("option", ["--results", "--summary", "--failed", "--metrics"])
def test_an_output_file_below_a_planted_link_is_refused(
    server: CountingServer, tmp_path: Path, option: str
) -> None:
    """s35 r3 1: a link planted in a folder anyone may write in, on the way to the file (not
    its last name): `--results /tmp/x/r.jsonl`, /tmp/x -> ~/private, replaced the user's
    private/r.jsonl with the records, --summary, --failed and --metrics too."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "r.jsonl").write_text("SECRET-KEEP\n")
    (shared_folder(tmp_path) / "x").symlink_to(private)
    result = invoke(["-q", option, str(tmp_path / "shared" / "x" / "r.jsonl"), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "symbolic link" in result.output, result.output
    assert (private / "r.jsonl").read_text() == "SECRET-KEEP\n" and server.requests == 0


@pytest.mark.parametrize("option", ["--results", "--summary", "-o"])
def test_a_planted_link_after_a_missing_name_and_dotdot_is_refused(
    server: CountingServer, tmp_path: Path, option: str
) -> None:
    """s35 r4 1: `shr/nosuch/../L/r.jsonl`: the walk stopped at nosuch, kept the rest as text
    and normalised it to shr/L/r.jsonl, L never judged and then followed (the shell's `>`
    says "No such file or directory")."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "r.jsonl").write_text("SECRET-KEEP\n")
    (shared_folder(tmp_path) / "L").symlink_to(private)
    target = tmp_path / "shared" / "nosuch" / ".." / "L" / ("dl" if option == "-o" else "r.jsonl")
    result = invoke(["-q", option, str(target), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert sorted(p.name for p in private.iterdir()) == ["r.jsonl"]
    assert (private / "r.jsonl").read_text() == "SECRET-KEEP\n" and server.requests == 0


def test_a_summary_s_folder_swapped_for_a_link_during_the_run_is_not_followed(
    tmp_path: Path,
) -> None:
    """s35 r4 2: the start's check passed, and a folder on the way swapped for a link during
    the run led --summary, written at the end, into the user's private folder."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "s.json").write_text("SECRET-KEEP\n")
    folder = shared_folder(tmp_path) / "x"
    folder.mkdir(mode=0o777)
    with counting_server() as server:
        process = subprocess.Popen(
            [*FETCHER, "-q", "--summary", str(folder / "s.json"), server.url("/slow/1/a")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=clean_env(),
        )  # fmt: skip
        try:
            wait_for(lambda: server.requests >= 1, "the request")
            folder.rename(folder.with_name("x.old"))
            folder.symlink_to(private)
            said = process.communicate(timeout=30)[1].decode()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 1, said
    assert (private / "s.json").read_text() == "SECRET-KEEP\n"


def test_a_planted_results_link_that_reads_as_dev_stdout_by_text_is_not_followed(
    server: CountingServer, tmp_path: Path
) -> None:
    """s35 r3 5: `s -> d/../../dev/stdout`, d a link to a folder two levels down, reads as
    /dev/stdout when '..' is taken as text; the system's walk leads to the user's own
    dev/stdout file, which was emptied and given the records."""
    user = tmp_path / "u"
    (user / "a" / "b").mkdir(parents=True)
    (user / "dev").mkdir()
    (user / "dev" / "stdout").write_text("KEEP\n")
    shared = shared_folder(tmp_path)
    (shared / "d").symlink_to(user / "a" / "b")
    (shared / "s").symlink_to("d/../../dev/stdout")
    result = invoke(["-q", "--results", str(shared / "s"), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert (user / "dev" / "stdout").read_text() == "KEEP\n" and server.requests == 0


def test_output_dir_made_after_its_check_follows_no_link_planted_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s36 t6 1: -o shared/a/b/c, a missing at the check; a link `a -> private` planted
    before os.makedirs had root make private/b (51 runs of a race). The folders are made
    one by one, each opened with no link followed."""
    from fetcher.output import atomic

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    shared = shared_folder(tmp_path)
    real_walk = atomic.walk_links

    def walk_then_plant(path: str, rule: object) -> object:
        walked = real_walk(path, rule)  # type: ignore[arg-type]
        if not (shared / "a").is_symlink():
            (shared / "a").symlink_to(private)
        return walked

    monkeypatch.setattr(atomic, "walk_links", walk_then_plant)
    with pytest.raises(OSError):
        os.close(atomic.open_output_dir(str(shared / "a" / "b" / "c")))
    assert list(private.iterdir()) == []


def _private_and_shared_x(tmp_path: Path) -> tuple[Path, Path]:
    """A private folder holding s.json, and a folder x in a folder anyone may write in."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "s.json").write_text("SECRET-KEEP\n")
    folder = shared_folder(tmp_path) / "x"
    folder.mkdir(mode=0o777)
    return private, folder


def _swap_for_link(folder: Path, target: Path) -> None:
    """What an attacker does in a folder they may write in: folder aside, a link in its place."""
    folder.rename(folder.with_name("x.old"))
    folder.symlink_to(target)


def test_a_folder_swapped_for_a_link_after_the_walk_is_not_written_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s35 r5 1: AtomicFile walked its folder, then opened it and renamed in it by name: a
    folder swapped for a link between the two (1 in 1,388 tries, by a loop of renames) had
    --summary replace a private file, and left a .part of it there more often."""
    from fetcher.output import atomic

    private, folder = _private_and_shared_x(tmp_path)
    real_walk = atomic.planted_on_the_way

    def walk_then_swap(path: str) -> object:
        walked = real_walk(path)
        _swap_for_link(folder, private)
        return walked

    monkeypatch.setattr(atomic, "planted_on_the_way", walk_then_swap)
    with pytest.raises(OSError):
        atomic.write_atomically(str(folder / "s.json"), b"SUMMARY\n")
    assert sorted(p.name for p in private.iterdir()) == ["s.json"]
    assert (private / "s.json").read_text() == "SECRET-KEEP\n"


@pytest.mark.parametrize("unnamed", [True, False])
def test_a_folder_swapped_for_a_link_while_written_gets_the_file_where_it_was(
    tmp_path: Path, unnamed: bool
) -> None:
    """s35 r5 1: the commit named and renamed by the folder's name, which a link put there
    since led into the private folder (the rename refused, the .part left there). The file
    goes where its folder went, and nothing is left beside."""
    from fetcher.output.atomic import AtomicFile

    private, folder = _private_and_shared_x(tmp_path)
    file = AtomicFile(str(folder / "s.json"), unnamed=unnamed)
    os.write(file.fd, b"SUMMARY\n")
    _swap_for_link(folder, private)
    file.commit()
    assert sorted(p.name for p in private.iterdir()) == ["s.json"]
    assert (private / "s.json").read_text() == "SECRET-KEEP\n"
    moved = folder.with_name("x.old")
    assert sorted(p.name for p in moved.iterdir()) == ["s.json"]
    assert (moved / "s.json").read_text() == "SUMMARY\n"


def test_output_dir_through_the_user_s_own_links_in_their_own_group_s_folder_is_used(
    server: CountingServer, tmp_path: Path
) -> None:
    """umask 002 makes a user's folders 0775, of the user's own group: a chain of the user's
    own links through one (`dl2 -> proj/current -> data`) was refused (s35 r3 7)."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    os.chown(proj, -1, os.getegid())
    proj.chmod(0o775)
    (proj / "current").symlink_to("data")
    (tmp_path / "dl2").symlink_to(proj / "current")
    result = invoke(["-q", "-o", str(tmp_path / "dl2"), server.url("/a")])
    assert result.exit_code == 0, result.output
    assert len(list((proj / "data").rglob("a"))) == 1


@AS_ROOT
def test_output_dir_of_a_colleague_in_their_group_s_folder_is_used(
    server: CountingServer, tmp_path: Path
) -> None:
    """s35 r4 4: team (a colleague's, 2775) holding mirror (theirs, 2775), in a folder no one
    else may write in: refused since r3 2's fix, saying "in a folder anyone may write in"."""
    team = tmp_path / "team"
    (team / "mirror").mkdir(parents=True)
    for folder in (team, team / "mirror"):
        os.chown(folder, ANOTHER_USER, ANOTHER_USER)
        folder.chmod(0o2775)
    for dir_ in (team / "mirror", team / "mirror" / "new"):  # there (r5 2), and made by the run
        result = invoke(["-q", "-o", str(dir_), server.url("/a")])
        assert result.exit_code == 0, result.output


@AS_ROOT
def test_output_dir_of_another_user_s_in_a_folder_of_theirs_is_refused(
    server: CountingServer, tmp_path: Path
) -> None:
    """s35 r3 2: /tmp/build (theirs, 0755) holding out (theirs, 0777): used since 6043299
    asked only whether DIR's parent was anyone's to write in."""
    build = shared_folder(tmp_path) / "build"
    (build / "out").mkdir(parents=True)
    for folder, mode in ((build, 0o755), (build / "out", 0o777)):
        os.chown(folder, ANOTHER_USER, ANOTHER_USER)
        folder.chmod(mode)
    for dir_ in (build / "out", build / "out" / "new"):  # there, or made by the run
        result = invoke(["-q", "-o", str(dir_), server.url("/a")])
        assert result.exit_code == 2, result.output
        assert f"uid {ANOTHER_USER}" in result.output and server.requests == 0


@AS_ROOT
def test_output_dir_of_another_user_s_in_a_shared_folder_is_refused(
    server: CountingServer, tmp_path: Path
) -> None:
    """A folder another user made first at DIR's name, in a folder anyone may write in: the
    bodies went into it, theirs to read and replace (s35 t1 2)."""
    theirs = shared_folder(tmp_path) / "dl"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, ANOTHER_USER, ANOTHER_USER)
    result = invoke(["-q", "-o", str(theirs), server.url("/a?token=abc")])
    assert result.exit_code == 2, result.output
    assert f"uid {ANOTHER_USER}" in result.output, result.output
    assert list(theirs.iterdir()) == [] and server.requests == 0


# -- 4. --summary, --metrics: another user's file may only narrow the umask's mode ------------


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


@AS_ROOT
@pytest.mark.parametrize("option", ["--summary", "--metrics"])
def test_a_planted_file_s_mode_does_not_widen_the_umask(
    server: CountingServer, tmp_path: Path, option: str, umask_077: None
) -> None:
    target = shared_folder(tmp_path) / "file"
    target.write_text("")
    target.chmod(0o666)
    os.chown(target, ANOTHER_USER, ANOTHER_USER)
    result = invoke(["-q", option, str(target), server.url("/a?api_key=SECRETKEY")])
    assert result.exit_code == 0, result.output
    found = target.stat()
    assert found.st_uid == os.geteuid() and stat.S_IMODE(found.st_mode) == 0o600


def test_the_user_s_own_file_keeps_its_mode(
    server: CountingServer, tmp_path: Path, umask_077: None
) -> None:
    target = tmp_path / "sum.json"
    target.write_text("")
    target.chmod(0o644)
    result = invoke(["-q", "--summary", str(target), server.url("/a")])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


# -- 5. -c: a jar of another user's is refused, as a state of theirs is ----------------------


@AS_ROOT
def test_a_cookie_jar_of_another_user_s_is_refused(server: CountingServer, tmp_path: Path) -> None:
    """Its cookies were sent (session fixation: the user's uploads went to the planter's
    account) and the file replaced, with no trace (s24 h4 5). In a sticky folder (/tmp), which
    the folder rule lets by: one that is not is refused before the jar is opened."""
    jar = shared_folder(tmp_path, 0o1777) / "jar.txt"
    jar.write_text("# Netscape HTTP Cookie File\n" + JAR_LINE.format(value="ATTACKERSESSION"))
    os.chown(jar, ANOTHER_USER, ANOTHER_USER)
    result = invoke(["-q", "-c", str(jar), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "another user" in result.output and f"uid {ANOTHER_USER}" in result.output
    assert server.requests == 0 and jar.stat().st_uid == ANOTHER_USER


def test_the_state_s_wal_and_shm_are_made_ours_before_sqlite_opens_them(tmp_path: Path) -> None:
    """SQLite makes -wal and -shm by name without O_EXCL: in a sticky folder another user could
    make them first, world-writable, and receive the state's pages (s24 r10 4). They are made
    exclusively, 0600, before SQLite opens them; one made meanwhile by another is refused."""
    from fetcher.state import database

    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    state = str(sticky / "s.db")
    fd, connection = database.open_locked(state)
    try:
        for suffix in ("-wal", "-shm"):
            info = os.lstat(state + suffix)
            assert info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) == 0o600
    finally:
        connection.close()
        os.close(fd)
    if os.geteuid() != 0:
        return  # only root can make a file another user's
    other = str(sticky / "t.db")
    fd = database.lock(other)
    try:
        planted = os.open(other + "-wal", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.fchown(planted, 65534, 65534)
        os.close(planted)
        with pytest.raises(database.StateError, match="another user"):
            database.claim_companions(fd, other)
    finally:
        os.close(fd)


@pytest.mark.parametrize("where", ["shared-folder", "group-writable-jar"])
def test_a_jar_others_could_write_or_rename_into_place_is_refused(
    server: CountingServer, tmp_path: Path, where: str
) -> None:
    """The owner check alone let in a file of the user's own that another user wrote or renamed
    into the jar's name (a body saved with umask 002 in a shared folder), its session cookie
    sent (s24 r10 5)."""
    if where == "shared-folder":
        jar = shared_folder(tmp_path) / "jar.txt"
        jar.write_text("# Netscape HTTP Cookie File\\n")
        jar.chmod(0o600)
    else:
        jar = tmp_path / "jar.txt"
        jar.write_text("# Netscape HTTP Cookie File\\n")
        jar.chmod(0o664)
    result = invoke(["-q", "-c", str(jar), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "cannot use cookie jar" in result.output and "chmod go-w" in result.output
    assert server.requests == 0


# -- a `..` after a link: judged where the system goes, not where the text seems to (s25 r2 1) --


def links_into_another_user_s_folder(tmp_path: Path, owner: int) -> tuple[Path, Path]:
    """Another user's folder, 0777 with a folder in it, and a link to that inner folder of
    owner's in a sticky folder: (the link, the other user's folder). `link/..` is their folder
    to the system; dropped by text (os.path.abspath), `link/../x` seemed to be the sticky one's."""
    theirs = tmp_path / "theirs"
    (theirs / "sub").mkdir(parents=True)
    for folder in (theirs, theirs / "sub"):
        folder.chmod(0o777)
        os.chown(folder, ANOTHER_USER, ANOTHER_USER)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    link = sticky / "L"
    link.symlink_to(theirs / "sub")
    os.lchown(link, owner, owner)
    return link, theirs


@AS_ROOT
@pytest.mark.parametrize("option", ["--state", "-c"])
@pytest.mark.parametrize("whose", ["theirs", "mine"])
def test_a_dotdot_after_a_link_is_judged_where_the_system_goes(
    server: CountingServer, tmp_path: Path, option: str, whose: str
) -> None:
    """`--state /tmp/L/../s.db`, L another user's (or the user's own, to a folder of theirs):
    abspath took it for /tmp/s.db before any link was looked at, so neither their link nor
    their folder, where the file was made, was seen; a run with -u --retry-failed sent the
    password to a URL of theirs (s25 r2 1)."""
    link, theirs = links_into_another_user_s_folder(
        tmp_path, ANOTHER_USER if whose == "theirs" else os.geteuid()
    )
    there = sorted(os.listdir(theirs))
    if option == "-c":  # a jar of the user's there already (a missing one: the next test)
        (theirs / "file").write_text("# Netscape HTTP Cookie File\n")
        (theirs / "file").chmod(0o600)
        there = ["file", *there]
    result = invoke(["-q", option, f"{link}/../file", server.url("/a")])
    assert result.exit_code == 2, result.output
    why = "symbolic link of another user's" if whose == "theirs" else f"uid {ANOTHER_USER}"
    assert why in result.output, result.output
    assert server.requests == 0 and sorted(os.listdir(theirs)) == there


def test_the_state_and_jar_are_opened_where_they_were_checked(
    server: CountingServer, tmp_path: Path
) -> None:
    """The path checked is the path opened: its folders' links resolved, no `..` left, so
    SQLite and the jar's reader and writer cannot be led elsewhere by a second reading."""
    from fetcher.state.store import State

    inner = tmp_path / "mine" / "sub"
    inner.mkdir(parents=True)
    (tmp_path / "L").symlink_to(inner)
    given = f"{tmp_path}/L/../s.db"
    state = State(given)
    try:
        assert state.path == str(tmp_path / "mine" / "s.db")
    finally:
        state.close()
    result = invoke(["-q", "-c", f"{tmp_path}/L/../jar.txt", server.url("/a")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mine" / "jar.txt").is_file() and not (tmp_path / "jar.txt").exists()


def test_a_missing_jar_in_a_folder_the_rule_refuses_is_refused_at_the_start(
    server: CountingServer, tmp_path: Path
) -> None:
    """Checked only once found, a jar not made yet was saved, cookies and all, in a folder
    others may rename in, and refused by the next run only (s25 r2 7): SPEC 2.4 refuses it
    before the first request."""
    jar = shared_folder(tmp_path) / "jar.txt"
    result = invoke(["-q", "-c", str(jar), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "cannot use cookie jar" in result.output and "chmod go-w" in result.output
    assert server.requests == 0 and not jar.exists()


# -- a refused state leaves nothing it made; a -journal is claimed as -wal and -shm are ------


@AS_ROOT
@pytest.mark.parametrize("suffix", ["-wal", "-journal"])
def test_a_state_refused_for_a_planted_companion_leaves_nothing_and_says_what_to_do(
    server: CountingServer, tmp_path: Path, suffix: str
) -> None:
    """The refusal was right, but the empty database lock() had made stayed beside their file
    (s25 r2 8), and the advice did not say that in /tmp their file stays: another name."""
    sticky = shared_folder(tmp_path, 0o1777)
    planted = sticky / f"s.db{suffix}"
    planted.write_bytes(b"")
    os.chown(planted, ANOTHER_USER, ANOTHER_USER)
    result = invoke(["-q", "--state", str(sticky / "s.db"), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert f"uid {ANOTHER_USER}" in result.output and "another name" in result.output
    assert server.requests == 0 and os.listdir(sticky) == [planted.name]


def hot_journal(state: Path, url: str) -> bytes:
    """A rollback journal that, played back into state, makes it a copy of state with a row
    for url: built as another user could, from a copy of the state (or any of theirs)."""
    import sqlite3

    copy = state.with_name("theirs.db")
    copy.write_bytes(state.read_bytes())
    connection = sqlite3.connect(copy, isolation_level=None)
    connection.execute("PRAGMA journal_mode = DELETE")
    connection.execute("INSERT INTO urls (url, ok, fetched_at) VALUES (?, 0, 0)", (url,))
    connection.execute("PRAGMA cache_size = 2")  # spilled: the journal is written mid-way
    connection.execute("BEGIN")
    connection.execute("DELETE FROM urls")
    connection.execute("CREATE TABLE filler (x BLOB)")
    for _ in range(100):
        connection.execute("INSERT INTO filler VALUES (randomblob(1000))")
    journal = Path(f"{copy}-journal").read_bytes()
    connection.execute("ROLLBACK")
    connection.close()
    copy.unlink()
    return journal


def test_a_hot_journal_planted_after_the_check_is_not_played_back(
    server: CountingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite plays a hot -journal back into the database as its first connection first reads
    it, WAL mode or not. check_plain refused one already there, but in a sticky folder another
    user could make one between that check and the read, and their rows went into the state:
    the -journal is now made empty and the user's, 0600, as -wal and -shm are, and they can
    neither replace nor write it (s25 r2, suspected; played back before)."""
    import sqlite3

    from fetcher.state import database
    from fetcher.state.store import State

    state = shared_folder(tmp_path, 0o1777) / "s.db"
    assert invoke(["-q", "--state", str(state), server.url("/a")]).exit_code == 0
    journal = hot_journal(state, "http://attacker.example/STOLEN")
    real_connect = database.connect

    def plant_then_connect(path: str) -> sqlite3.Connection:
        """What another user in the sticky folder can do now: make the name, if free."""
        try:
            planted = os.open(f"{path}-journal", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            info = os.lstat(f"{path}-journal")
            assert info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) == 0o600
        else:
            os.write(planted, journal)
            os.close(planted)
        return real_connect(path)

    monkeypatch.setattr(database, "connect", plant_then_connect)
    State(str(state)).close()
    monkeypatch.undo()
    connection = sqlite3.connect(state)
    urls = [row[0] for row in connection.execute("SELECT url FROM urls")]
    connection.close()
    assert urls == [server.url("/a")]
    assert sorted(os.listdir(state.parent)) == ["s.db"]


@pytest.mark.parametrize("option", ["-o", "--summary"])
def test_a_link_that_changes_while_the_start_looks_at_it_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    """s36 t6 4: a link gone (or swapped for a folder) between its lstat and its readlink, a
    second user's doing, ended the start's checks with a traceback (exit 1)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")

    def vanished(path: object, *args: object, **kwargs: object) -> str:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(os, "readlink", vanished)
    target = tmp_path / "link" / ("dl" if option == "-o" else "s.json")
    result = invoke(["-q", option, str(target), "http://127.0.0.1:9/"])
    assert result.exit_code == 2, result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    ), result.exception


@AS_ROOT
def test_another_user_s_fifo_planted_at_results_with_no_reader_does_not_hang_the_run(
    tmp_path: Path,
) -> None:
    """s36 t6 2: a FIFO planted at --results after the start's check, with no reader, held the
    open for good (Ctrl-C too: the open is retried). It is opened without waiting, and
    refused; the user's own FIFO is still waited on, as the shell's `>` waits."""
    fifo = shared_folder(tmp_path) / "res.jsonl"
    os.mkfifo(fifo)
    os.chown(fifo, ANOTHER_USER, ANOTHER_USER)
    code = "from fetcher.output.atomic import open_in_place; import sys; open_in_place(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", code, str(fifo)], capture_output=True, timeout=30, env=clean_env()
    )
    assert done.returncode == 1 and b"PermissionError" in done.stderr, done.stderr


@AS_ROOT
def test_a_cookie_jar_swapped_for_a_link_after_its_check_is_not_read_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s36 t6 3: -c shared/jar.txt (new, in a sticky folder) was checked, then opened through a
    link to the user's private jar planted since: its session cookie was sent to the servers
    and saved into the shared jar (13 runs of a race)."""
    from fetcher.http import cookies

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "cookies.txt").write_text(JAR_HEADER + JAR_LINE.format(value="VICTIMSECRET"))
    jar = shared_folder(tmp_path, 0o1777) / "jar.txt"
    real_resolve = cookies.resolve

    def resolve_then_plant(path: str) -> object:
        found = real_resolve(path)
        if not jar.is_symlink():
            jar.symlink_to(private / "cookies.txt")
            os.lchown(jar, ANOTHER_USER, ANOTHER_USER)  # a second user's link
        return found

    monkeypatch.setattr(cookies, "resolve", resolve_then_plant)
    try:
        loaded = cookies.load_jar(str(jar))
    except ValueError:
        return
    assert "VICTIMSECRET" not in [cookie.value for cookie in loaded]


def test_a_cookie_jar_that_is_the_user_s_own_link_is_read_through_it(tmp_path: Path) -> None:
    """s36 r3 1: ecc86b1 opened the jar's last name with O_NOFOLLOW alone, and refused the
    user's own link (`-c jarlink`, ELOOP), which usage.md says is read through."""
    from fetcher.http import cookies

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "jar.txt").write_text(JAR_HEADER + JAR_LINE.format(value="MINE"))
    (tmp_path / "jarlink").symlink_to("real/jar.txt")
    loaded = cookies.load_jar(str(tmp_path / "jarlink"))
    assert [cookie.value for cookie in loaded] == ["MINE"]
