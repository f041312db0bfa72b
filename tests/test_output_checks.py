"""What is refused before the first request about the run's output files (§2.4): a refusal
truncates nothing, a name that can only be a folder is refused, and two options that name one
file are refused where one would destroy the other's data. Real servers on 127.0.0.1."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import FETCHER, clean_env, invoke

TEXT_OUTPUTS = ["--results", "--failed", "--summary", "--metrics", "-c"]
ALL_OUTPUTS = [*TEXT_OUTPUTS, "--state"]


def make_state(server, path) -> bytes:
    """A real --state database with one URL in it; its bytes, to tell that it was left alone."""
    result = invoke(["-q", "--state", str(path), server.url("/first")])
    assert result.exit_code == 0, result.output
    server.requests = 0
    return path.read_bytes()


# -- 1. a refusal truncates nothing ------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_a_refused_output_dir_leaves_the_results_file_alone(server, tmp_path, where):
    results, plain = tmp_path / "res.txt", tmp_path / "plain"
    results.write_text("precious\n")
    plain.write_text("x")
    folder = plain if where == "file" else plain / "sub"
    args = ["-q", "--results", str(results), "-o", str(folder), server.url("/a")]
    result = invoke(args)
    assert result.exit_code == 2, result.output
    assert "--output-dir" in result.output
    assert results.read_text() == "precious\n"
    assert server.requests == 0


# -- 2. a name that can only be a folder, or no name at all -------------------------------------


@pytest.mark.parametrize("name", ["", "nofile/", "nofile/.", "nofile/.."])
@pytest.mark.parametrize("option", ALL_OUTPUTS)
def test_an_output_name_that_is_no_file_is_a_usage_error(server, tmp_path, monkeypatch, option,
                                                         name):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    result = invoke([option, name, server.url("/status/404")])
    assert result.exit_code == 2, result.output
    assert f"cannot write {option} file {name!r}" in result.output
    assert server.requests == 0
    assert os.listdir(tmp_path) == []


# What a '-' is told to use instead: /dev/stdout only where fetcher then writes it (s23 h1 4).
# --state /dev/stdout is a symbolic link fetcher refuses to open; -c /dev/stdout on a pipe is a
# FIFO, which a jar read back and replaced cannot be.
DASH_ADVICE = {option: "for standard output, name /dev/stdout" for option in TEXT_OUTPUTS}
DASH_ADVICE["-c"] = "the cookie jar cannot be standard output"
DASH_ADVICE["--state"] = "name the state's database file"


@pytest.mark.parametrize("option", ALL_OUTPUTS)
def test_a_dash_is_no_file_name_and_the_message_says_what_to_use(server, tmp_path, monkeypatch,
                                                                 option):  # fmt: skip
    """A curl user's '-' for standard output made a file named '-' (found by a hostile
    tester). It is refused, as -o - is, naming /dev/stdout where that works, and only there:
    --state /dev/stdout and -c /dev/stdout on a pipe were refused next (s23 h1 4)."""
    monkeypatch.chdir(tmp_path)
    result = invoke([option, "-", server.url("/status/404")])
    assert result.exit_code == 2, result.output
    assert DASH_ADVICE[option] in result.output
    assert ("/dev/stdout" in result.output) == (option not in ("-c", "--state")), result.output
    assert server.requests == 0
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("option", ALL_OUTPUTS)
def test_an_existing_folder_with_a_trailing_slash_is_a_usage_error(server, tmp_path, option):
    result = invoke([option, f"{tmp_path}/", server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "is a directory" in result.output
    assert server.requests == 0


# -- 3. two options naming one file -------------------------------------------------------------


@pytest.mark.parametrize("option", TEXT_OUTPUTS)
def test_an_output_over_the_state_file_is_refused_and_the_state_kept(server, tmp_path, option):
    state = tmp_path / "s.db"
    before = make_state(server, state)
    result = invoke(["--state", str(state), option, str(state), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert state.read_bytes() == before
    assert server.requests == 0


@pytest.mark.parametrize("option", TEXT_OUTPUTS)
def test_an_output_over_a_new_state_file_is_refused(server, tmp_path, option):
    state = tmp_path / "new.db"
    spelt = tmp_path / "sub" / ".." / "new.db"
    (tmp_path / "sub").mkdir()
    result = invoke(["--state", str(state), option, str(spelt), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "--state" in result.output and "same file" in result.output
    assert not state.exists()
    assert server.requests == 0


@pytest.mark.parametrize("first,second", list(itertools.combinations(TEXT_OUTPUTS, 2)))
@pytest.mark.parametrize("exists", [True, False], ids=["existing", "new"])
def test_two_outputs_naming_one_file_are_refused(server, tmp_path, first, second, exists):
    path, other = tmp_path / "out.txt", tmp_path / "sub" / ".." / "out.txt"
    (tmp_path / "sub").mkdir()
    if exists:
        path.write_text("")
        other = tmp_path / "link.txt"
        os.link(path, other)
    result = invoke([first, str(path), second, str(other), server.url("/a")])
    assert result.exit_code == 2, result.output
    named = {f"{first} and {second} name", f"{second} and {first} name"}
    assert any(f"{pair} the same file" in result.output for pair in named), result.output
    assert server.requests == 0


@pytest.mark.parametrize("spelling", ["same", "relative", "hard-link"])
def test_results_over_an_input_file_is_refused_and_the_list_kept(server, tmp_path, monkeypatch,
                                                                 spelling):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    urls = tmp_path / "urls.txt"
    urls.write_text(server.url("/a") + "\n")
    results = {"same": str(urls), "relative": "./urls.txt", "hard-link": "other.txt"}[spelling]
    if spelling == "hard-link":
        os.link(urls, tmp_path / "other.txt")
    result = invoke(["-i", str(urls), "--results", results])
    assert result.exit_code == 2, result.output
    assert "--results and --input name the same file" in result.output
    assert urls.read_text() == server.url("/a") + "\n"
    assert server.requests == 0


@pytest.mark.parametrize("option", ["--summary", "--metrics"])
def test_a_summary_over_an_input_file_is_refused_and_the_list_kept(server, tmp_path, option):
    """--summary and --metrics could name an input, "written at the end, after it was read":
    but an interrupted run has not read it to its end, and its unread lines were replaced by
    the summary, in no --failed (s21 h1 3). A summary is no list of URLs: refused."""
    urls = tmp_path / "urls.txt"
    urls.write_text(server.url("/a") + "\n")
    result = invoke(["-i", str(urls), option, str(urls)])
    assert result.exit_code == 2, result.output
    assert f"{option} and --input name the same file" in result.output
    assert urls.read_text() == server.url("/a") + "\n"
    assert server.requests == 0


def test_results_over_a_redirected_standard_input_is_refused(server, tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text(server.url("/a") + "\n")
    with open(urls, "rb") as stdin:
        result = subprocess.run(
            [*FETCHER, "--results", str(urls)],
            stdin=stdin, capture_output=True, env=clean_env(), timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert b"same file" in result.stderr
    assert urls.read_text() == server.url("/a") + "\n"
    assert server.requests == 0


# -- 4. what stays allowed ----------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--failed"])
def test_a_file_written_at_the_end_may_replace_its_input(server, tmp_path, option):
    """`-i retry.txt --failed retry.txt` is the documented retry loop: the input was read
    before the file replaces it, or its unread rest is in it. (--summary and --metrics may
    not: above.)"""
    urls = tmp_path / "urls.txt"
    urls.write_text(server.url("/status/404") + "\n")
    result = invoke(["-q", "-i", str(urls), option, str(urls)])
    assert result.exit_code == 3, result.output
    assert server.requests == 1
    assert urls.read_text() != ""


@pytest.mark.parametrize("spelling", ["same", "relative", "hard-link"])
def test_an_input_read_twice_that_failed_replaces_is_refused(server, tmp_path, monkeypatch,
                                                             spelling):  # fmt: skip
    """`-i F -i F --failed F` wrote each failed line once per reading: F doubled every round,
    and each URL was fetched 2**k times on round k (s25 h3 5). Refused, by the file, not its
    spelling: nothing sent, F kept."""
    monkeypatch.chdir(tmp_path)
    urls = tmp_path / "urls.txt"
    urls.write_text(server.url("/status/404") + "\n")
    second = {"same": str(urls), "relative": "./urls.txt", "hard-link": "other.txt"}[spelling]
    if spelling == "hard-link":
        os.link(urls, tmp_path / "other.txt")
    result = invoke(["-i", str(urls), "-i", second, "--failed", str(urls)])
    assert result.exit_code == 2, result.output
    assert "is read twice" in result.output and "--unique" in result.output
    assert urls.read_text() == server.url("/status/404") + "\n"
    assert server.requests == 0


@pytest.mark.parametrize("chain", ["here", "from-another-folder"])
def test_an_input_read_twice_through_a_chain_of_links_that_failed_replaces_is_refused(
    server, tmp_path, monkeypatch, chain
):
    """`-i l2 -i l2 --failed l1`, l2 -> l1 -> urls.txt: --failed replaces l1, a link met on
    the way from l2 to the list, and each failed line went into it twice (s25 r7 3: only the
    input's own name and its target were compared). Relative links from another folder
    (`top -> d/sl`, `d/sl -> ../urls.txt`) are followed from where each one is."""
    monkeypatch.chdir(tmp_path)
    urls = tmp_path / "urls.txt"
    urls.write_text(server.url("/status/404") + "\n")
    if chain == "here":
        (tmp_path / "l1").symlink_to("urls.txt")
        (tmp_path / "l2").symlink_to("l1")
        source, replaced = "l2", "l1"
    else:
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "sl").symlink_to("../urls.txt")
        (tmp_path / "top").symlink_to("d/sl")
        source, replaced = "top", "d/sl"
    result = invoke(["-i", source, "-i", source, "--failed", replaced])
    assert result.exit_code == 2, result.output
    assert "is read twice" in result.output
    assert urls.read_text() == server.url("/status/404") + "\n"
    assert os.path.islink(replaced) and server.requests == 0


@pytest.mark.parametrize("spelled", ["-", "/dev/stdin", "/dev/fd/0", "link"])
def test_an_input_also_on_standard_input_that_failed_replaces_is_refused(server, tmp_path, spelled):
    """Standard input spelled as a path (/dev/stdin, /dev/fd/0) had no identity, and a link
    --failed replaces, read through twice, was matched neither (s25 r6 1, 2): both doubled the
    list as `-i F -i F --failed F` did."""
    urls = tmp_path / "urls.txt"
    urls.write_text(server.url("/status/404") + "\n")
    second = spelled
    if spelled == "link":
        (tmp_path / "sl").symlink_to(urls)
        urls = second = tmp_path / "sl"
    with open(urls, "rb") as stdin:
        result = subprocess.run(
            [*FETCHER, "-i", str(urls), "-i", str(second), "--failed", str(urls)],
            stdin=stdin, capture_output=True, env=clean_env(), timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert b"is read twice" in result.stderr
    assert urls.read_text() == server.url("/status/404") + "\n"
    assert server.requests == 0


def test_an_input_read_twice_with_unique_or_into_another_failed_file_runs(server, tmp_path):
    """--unique reads the second copy as repeats (no line twice in --failed); a --failed of
    its own is not read back by this loop: neither grows a list round after round."""
    urls, other = tmp_path / "urls.txt", tmp_path / "failed.txt"
    urls.write_text(server.url("/status/404") + "\n")
    for _ in range(2):
        result = invoke(["-q", "--unique", "-i", str(urls), "-i", str(urls), "--failed", str(urls)])
        assert result.exit_code == 3, result.output
    assert urls.read_text() == server.url("/status/404") + "\n"
    result = invoke(["-q", "-i", str(urls), "-i", str(urls), "--failed", str(other)])
    assert result.exit_code == 3 and len(other.read_text().splitlines()) == 2


def test_streams_may_take_several_outputs(server):
    args = ["-q", "--results", "/dev/null", "--failed", "/dev/null", "--summary", "/dev/null"]
    result = invoke([*args, "--metrics", "/dev/null", server.url("/a")])
    assert result.exit_code == 0, result.output
    assert server.requests == 1


def test_the_state_over_an_input_file_is_refused(server, tmp_path):
    """The run would read the SQLite database as its list of URLs (a line of garbage each),
    while writing it."""
    state = tmp_path / "s.db"
    invoke(["-q", "--state", str(state), server.url("/a")])  # a real state, kept
    before = state.read_bytes()
    result = invoke(["-q", "--state", str(state), "-i", str(state)])
    assert result.exit_code == 2
    assert "--input and --state name the same file" in result.output
    assert "read as a list of URLs" in result.output
    assert state.read_bytes() == before


@pytest.mark.parametrize("option", ["--failed", "--summary", "--metrics"])
def test_an_output_over_the_file_standard_output_goes_to_is_refused(server, tmp_path, option):
    """`fetcher --failed out.txt URL > out.txt`: the file written at the end was renamed over
    the records. With the records in --results, standard output is nobody's."""
    out = tmp_path / "out.txt"
    with open(out, "wb") as sink:
        done = subprocess.run(
            [*FETCHER, option, str(out), server.url("/a")], stdin=subprocess.DEVNULL,
            stdout=sink, stderr=subprocess.PIPE, env=clean_env(), timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"{option} and standard output name the same file".encode() in done.stderr
    assert server.requests == 0
    with open(out, "wb") as sink:
        done = subprocess.run(
            [*FETCHER, option, str(out), "--results", str(tmp_path / "r.txt"), server.url("/a")],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.PIPE, env=clean_env(),
            timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_results_to_this_process_s_stdout_on_a_file_counts_as_that_file(server, tmp_path):
    """`--results /dev/stdout --failed out.txt > out.txt`: the same clash, through a name."""
    out, to_stdout = tmp_path / "out.txt", tmp_path / "1"
    to_stdout.symlink_to("/proc/self/fd/1")  # as /dev/stdout, without touching the system's
    with open(out, "wb") as sink:
        done = subprocess.run(
            [*FETCHER, "--results", str(to_stdout), "--failed", str(out), server.url("/a")],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.PIPE, env=clean_env(),
            timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert b"name the same file" in done.stderr


# -- 4. a stream named by its path ---------------------------------------------------------------


def as_nobody() -> list[str]:
    """The words before a command that run it as nobody (65534, with setpriv), for what only a
    user who cannot write in /dev meets; none for a user who is not root. Skipped where this
    interpreter cannot be run so: a check that cannot run says so."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run as another user")
    nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*nobody, *FETCHER, "--version"], capture_output=True, cwd="/",
                           env=clean_env(), check=False)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"this interpreter cannot run as nobody: {probe.stderr[-200:]!r}")
    return nobody


@pytest.mark.parametrize("option", ["--summary", "--metrics", "--failed"])
def test_a_summary_to_dev_stdout_on_a_file_is_written_for_any_user(server, tmp_path, option):
    """usage.md: `--summary /dev/stdout` adds the summary after the records when standard
    output is a file. For a user who cannot write in /dev it was refused at the start (exit 2,
    "cannot write in its folder '/dev'"), as if it were to be replaced by a rename: a stream
    named by its path is written in place (s24 r10 9)."""
    out = tmp_path / "out.txt"
    with out.open("wb") as stdout:
        result = subprocess.run(
            [*as_nobody(), *FETCHER, "-q", option, "/dev/stdout", server.url("/status/404")],
            stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd="/",
            env=clean_env(), timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 3, result.stderr  # its one URL failed
    url = server.url("/status/404")
    lines = out.read_text().splitlines()
    records = [line for line in lines if line.startswith("404\t")]
    assert len(records) == 1 and url in records[0], lines
    written = {
        "--summary": '  "exit_status": 3',
        "--metrics": 'fetcher_urls_total{outcome="failed"} 1',
        "--failed": url,
    }
    assert written[option] in lines, lines
    assert server.requests == 1


@pytest.mark.parametrize("option", ["--summary", "--failed"])
def test_a_stream_name_for_a_closed_or_unopened_descriptor_is_refused_at_the_start(
    server, tmp_path, option
):
    """`--summary /dev/stdout >&-` wrote to the /dev/null fetcher puts on a closed descriptor,
    exit 0, nothing said; `--summary /dev/fd/5` with no `5>` passed the start's check (5 was
    one of fetcher's own files then) and failed after the run (s25 r4 3, 4). Both are refused
    before the first request, as a closed stdout is for the records."""
    for name, extra in (("/dev/stdout", {"stdout": subprocess.DEVNULL}), ("/dev/fd/5", {})):
        command = [*FETCHER, "-q", "--results", str(tmp_path / "r.txt"), "--state",
                   str(tmp_path / "s.db"), option, name, server.url("/a")]  # fmt: skip
        if name == "/dev/stdout":
            command = ["sh", "-c", '"$@" >&-', "sh", *command]
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=clean_env(), timeout=60, check=False, **extra)  # fmt: skip
        assert done.returncode == 2, (name, done.stderr)
        assert name.encode() in done.stderr, done.stderr
    assert server.requests == 0


# -- 5. the folder of a path the owners walk resolves --------------------------------------------


@pytest.mark.parametrize("option", ["--state", "-c"])
def test_a_dot_dot_after_a_link_is_checked_in_the_folder_it_leads_to(
    server, tmp_path, monkeypatch, option
):
    """--state and -c are opened where fetcher.owners.resolve's walk leads, links followed
    before a '..' is taken, as the kernel does. The start's check read '..' by text: a harmless
    `/proc/self/cwd/../f.db` was refused ("cannot write in its folder '/proc/self'"), and a
    link to a folder nobody may write in, then '..', passed it and failed later (s25 r5 2)."""
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    result = invoke(["-q", option, "/proc/self/cwd/../f.db", server.url("/a")])
    assert result.exit_code == 0, result.output
    if option == "--state":
        assert (tmp_path / "f.db").is_file()
    (tmp_path / "l").symlink_to("/proc/self/fd")  # its '..' is /proc/PID: nobody writes there
    result = invoke(["-q", option, str(tmp_path / "l" / ".." / "g.db"), server.url("/a")])
    assert result.exit_code == 2, result.output
    assert "cannot write in its folder '/proc/" in result.output, result.output
    assert server.requests == 1


@pytest.mark.parametrize("option", ["--summary", "--metrics", "--failed"])
def test_run_files_are_written_in_a_folder_that_can_be_written_but_not_read(server, option):
    """A drop-box folder (-wx): a file with no name till its rename was made through the
    folder opened for reading, which such a folder refuses: 18e0ed7 failed --summary and
    --metrics at the run's end (s26 r6 4), as --failed's own unnamed file did."""
    prefix = as_nobody()
    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o711)
        drop = base / "drop"
        drop.mkdir(mode=0o333)
        if prefix:
            os.chown(drop, 65534, 65534)
        drop.chmod(0o333)
        target = drop / "file"
        result = subprocess.run(
            [*prefix, *FETCHER, "-q", option, str(target), server.url("/status/404")],
            capture_output=True, stdin=subprocess.DEVNULL, cwd="/", env=clean_env(),
            timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 3, result.stderr
        assert target.stat().st_size > 0
        assert [p.name for p in drop.iterdir()] == ["file"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("how", ["input", "link", "stdin"])
def test_a_fifo_read_as_input_and_written_as_failed_is_refused(server, tmp_path, how):
    """`-i q.fifo --failed q.fifo`: --failed is written into a FIFO in place, during the run,
    so every failed URL came back as input and was fetched again, without end (769 requests in
    19 s until `timeout`: s27 r6), and the run, a writer of its own input, never saw its end.
    Refused before anything is read or sent; the producer's line is still in the FIFO."""
    fifo = tmp_path / "q.fifo"
    os.mkfifo(fifo)
    failed = str(fifo)
    if how == "link":
        (tmp_path / "sl").symlink_to(fifo)
        failed = str(tmp_path / "sl")
    # Held open for reading and writing by the test, the FIFO opens at once for fetcher too.
    held = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        os.write(held, (server.url("/status/404") + "\n").encode())
        args = [*FETCHER, "-q", "--failed", failed]
        stdin = open(fifo, "rb") if how == "stdin" else subprocess.DEVNULL  # noqa: SIM115
        if how != "stdin":
            args += ["-i", str(fifo)]
        try:
            result = subprocess.run(args, stdin=stdin, capture_output=True, env=clean_env(),
                                    timeout=20, check=False)  # fmt: skip
        finally:
            if how == "stdin":
                stdin.close()
        assert result.returncode == 2, result.stderr
        assert b"FIFO" in result.stderr and b"never end" in result.stderr
        assert server.requests == 0
        assert os.read(held, 4096) == (server.url("/status/404") + "\n").encode()
    finally:
        os.close(held)


@pytest.mark.parametrize("option", ["--failed", "--results", "--summary", "--metrics"])
def test_a_missing_folder_named_like_user_info_shows_no_password(tmp_path, monkeypatch, option):
    """s37 r3 4: the message masked the name given ('u:***@example.org/f') but not its folder,
    written absolute: "its folder '/…/u:hunter2@example.org' does not exist"."""
    monkeypatch.chdir(tmp_path)
    for name in ("u:hunter2@example.org/f", "sub/u:hunter2@example.org/f"):  # r4 3: not first
        result = invoke([option, name, "http://127.0.0.1:9/"])
        assert result.exit_code == 2 and "does not exist" in result.stderr, result.stderr
        assert "hunter2" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [["-i", "sub/u:hunter2@h/nolist"], ["--cacert", "sub/u:hunter2@example.org/f"],
     ["--results", "u:hunter2/@h/f"], ["-d", "token:31337/hunter2?next=http://x"]],
)  # fmt: skip
def test_a_usage_error_shows_no_password_in_a_path_or_a_value(tmp_path, monkeypatch, args):
    """s37 r5 1-3: user info not first in a path (-i, --cacert), a password holding a '/', and
    a body with '://' later in it were printed in clear."""
    monkeypatch.chdir(tmp_path)
    result = invoke([*args, "http://127.0.0.1:9/"] if args[0] != "-d" else args, input=b"")
    assert result.exit_code == 2, result.stderr
    assert "hunter2" not in result.stderr, result.stderr
