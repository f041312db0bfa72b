"""-o DIR against a local user who can write in DIR (issue 12): symbolic links planted in DIR
are never followed, a temporary swapped for a link mid-download changes nothing outside, and no
byte is ever written outside DIR.

Every test keeps a snapshot of a folder outside DIR (names, contents, modes, link targets) and
compares it after the run; the links all point there.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import FETCHER_NAMED_TEMPORARIES, invoke, run_background, run_process
from tests.servers import (
    CountingServer,
    FaultServer,
    counting_server,
    read_request,
    records,
    wait_for,
)

Snapshot = dict[str, tuple[str, int, bytes | str]]


def snapshot(root: Path, skip: Path | None = None) -> Snapshot:
    """Every entry under root, links not followed: kind, mode and content or link target."""
    entries: Snapshot = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if skip is None or Path(folder, d) != skip]
        for name in dirs + names:
            path = Path(folder, name)
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                entries[key] = ("link", mode, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[key] = ("dir", mode, b"")
            else:
                entries[key] = ("file", mode, path.read_bytes())
    return entries


def make_outside(base: Path) -> Path:
    """A folder outside DIR with files worth protecting, one of them private (0600)."""
    outside = base / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "file").write_bytes(b"precious\n")
    (outside / "file").chmod(0o600)
    (outside / "dir" / "index.html").write_bytes(b"outside index\n")
    (outside / "dir" / "a").write_bytes(b"outside a\n")
    (outside / "dir" / "named.txt").write_bytes(b"outside named\n")
    return outside


def body_route(path: str) -> tuple[int, dict[str, str], bytes, float]:
    return 200, {}, f"body of {path}\n".encode(), 0.0


@pytest.fixture(scope="module")
def server() -> Iterator[CountingServer]:
    with counting_server(body_route) as running:
        yield running


@pytest.fixture(scope="module")
def other_server() -> Iterator[CountingServer]:
    """A second host folder (another port): its URLs have nothing planted in their way."""
    with counting_server(body_route) as running:
        yield running


# -- explicit cases (issue 12.1) ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["threads", "processes"])
def test_a_linked_host_folder_is_never_written_through(server, other_server, tmp_path, how):
    outside = make_outside(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    host = out / f"127.0.0.1_{server.port}"
    host.symlink_to(outside / "dir")
    before = snapshot(tmp_path, skip=out)
    urls = [server.url("/a"), server.url("/"), server.url("/new/b"), other_server.url("/a")]
    args = ["--format", "jsonl", "-o", str(out), *urls]
    if how == "threads":
        stdout = invoke(args).stdout
    else:
        done = run_process(["--processes", "2", "-j", "2", *args])
        stdout = done.stdout.decode()
    by_url = {r["url"]: r for r in records(stdout)}
    assert snapshot(tmp_path, skip=out) == before  # nothing outside DIR changed or appeared
    for url in urls[:3]:
        assert by_url[url]["error"]["kind"] == "io" and by_url[url]["path"] is None, url
        assert "symbolic link" in by_url[url]["error"]["message"]
    control = by_url[other_server.url("/a")]
    assert control["ok"] is True
    assert Path(control["path"]).read_bytes() == b"body of /a\n"
    assert host.is_symlink()  # left as it was


def test_a_linked_folder_in_an_output_name_is_never_written_through(server, tmp_path):
    outside = make_outside(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(outside / "dir")
    before = snapshot(tmp_path, skip=out)
    lines = [
        {"url": server.url("/n1"), "output": "sub/named.txt"},
        {"url": server.url("/n2"), "output": "sub/deeper/new.txt"},
        {"url": server.url("/n3"), "output": "fine/named.txt"},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    result = invoke(["--input-format", "jsonl", "--format", "jsonl", "-o", str(out), "-"], text)
    by_url = {r["url"]: r for r in records(result.stdout)}
    assert snapshot(tmp_path, skip=out) == before
    assert by_url[server.url("/n1")]["error"]["kind"] == "io"
    assert by_url[server.url("/n2")]["error"]["kind"] == "io"
    assert (out / "fine" / "named.txt").read_bytes() == b"body of /n3\n"


def test_a_link_under_the_final_name_is_replaced_not_followed(server, tmp_path):
    """The rename replaces the link itself; its target is untouched."""
    outside = make_outside(tmp_path)
    out = tmp_path / "out"
    host = out / f"127.0.0.1_{server.port}"
    host.mkdir(parents=True)
    (host / "f").symlink_to(outside / "file")
    (host / "d").symlink_to(outside / "dir")
    before = snapshot(tmp_path, skip=out)
    result = invoke(["--format", "jsonl", "-o", str(out), server.url("/f"), server.url("/d")])
    assert result.exit_code == 0, result.stderr
    assert snapshot(tmp_path, skip=out) == before
    for name in ("f", "d"):
        assert not (host / name).is_symlink()
        assert (host / name).read_bytes() == f"body of /{name}\n".encode()


def test_a_304_does_not_report_a_file_through_a_link(tmp_path):
    """The path of a 304 is looked up without following links, and without creating a thing."""
    outside = make_outside(tmp_path)
    out = tmp_path / "out"
    out.mkdir()

    def not_modified(path: str) -> tuple[int, dict[str, str], bytes, float]:
        return 304, {}, b"", 0.0

    with counting_server(not_modified) as server:
        host = out / f"127.0.0.1_{server.port}"
        host.symlink_to(outside / "dir")
        result = invoke(["--format", "jsonl", "-o", str(out), server.url("/a")])
    (record,) = records(result.stdout)
    assert record["status"] == 304 and record["path"] is None


# -- the temporary file swapped mid-download (issue 12.2) ---------------------------------------


def test_a_temporary_swapped_for_a_link_mid_download(tmp_path):
    outside = make_outside(tmp_path)
    victim = outside / "file"
    out = tmp_path / "out"
    swapped = threading.Event()

    def drip(conn) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 1000)
        swapped.wait(20)
        conn.sendall(b"y" * 1000)

    before = snapshot(tmp_path, skip=out)
    with FaultServer(drip) as fault:
        host = out / f"127.0.0.1_{fault.port}"
        # A body has no name until its commit where the file system has unnamed files: there
        # is nothing to swap then. Named from the start, as on one without them:
        args = ["--format", "jsonl", "-o", str(out), fault.url("/slow.bin")]
        process = run_background(args, command=FETCHER_NAMED_TEMPORARIES)
        try:
            wait_for(lambda: host.is_dir() and any(host.glob(".fetcher-*.part")), "a temporary", 20)
            (temporary,) = host.glob(".fetcher-*.part")
            temporary.unlink()
            temporary.symlink_to(victim)
            swapped.set()
            stdout, stderr = process.communicate(timeout=30)
        finally:
            swapped.set()
            if process.poll() is None:
                process.kill()
                process.communicate()
    (record,) = records(stdout.decode())
    assert snapshot(tmp_path, skip=out) == before  # the victim's content and 0600 mode kept
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not (host / "slow.bin").is_symlink()
    assert not (host / "slow.bin").exists()
    assert record["error"]["kind"] == "io", record
    assert "replaced" in record["error"]["message"]


# -- fuzz: links planted anywhere (issue 12, Done when 1) ---------------------------------------

# (URL path, output name or None) -> the file it is saved to, relative to DIR; H is the host.
JOBS = [
    ("/", None, "H/index.html"),
    ("/a/b/c.txt", None, "H/a/b/c.txt"),
    ("/a/d", None, "H/a/d"),
    ("/e?x=1", None, "H/e@x=1"),
    ("/f/", None, "H/f/index.html"),
    ("/f/g", None, "H/f/g"),
    ("/n", "sub/named.txt", "sub/named.txt"),
]
PLANT_POINTS = sorted(
    {"/".join(target.split("/")[: n + 1]) for *_, target in JOBS for n in range(3)}
    | {"H/a/b/c.txt~", "H/.fetcher-x.part", "sub/other"}
)
KINDS = ["dir", "file", "dangling", "link-to-dir", "link-to-file", "loop"]


def plant(base: Path, out: Path, host: str, plants: list[tuple[str, str]]) -> set[str]:
    """Create the links asked for, through real folders only; return the points planted."""
    links = base / "links"
    links.mkdir(exist_ok=True)
    if not (links / "to-dir").is_symlink():
        (links / "to-dir").symlink_to(base / "outside" / "dir")
        (links / "to-file").symlink_to(base / "outside" / "file")
    targets = {
        "dir": base / "outside" / "dir",
        "file": base / "outside" / "file",
        "dangling": base / "outside" / "missing",
        "link-to-dir": links / "to-dir",
        "link-to-file": links / "to-file",
    }
    planted: set[str] = set()
    for point, kind in sorted(plants, key=lambda p: p[0].count("/")):
        parts = point.split("/")
        if any("/".join(parts[:n]) in planted for n in range(1, len(parts))):
            continue  # below a link: planting there would write outside DIR
        path = out / point.replace("H", host, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(path if kind == "loop" else targets[kind])
        planted.add(point)
    return planted


def check_run(base: Path, out: Path, host: str, planted: set[str], stdout: str, url) -> None:
    by_url = {r["url"]: r for r in records(stdout)}
    assert len(by_url) == len(JOBS)
    real_out = os.path.realpath(out)
    for path, _, target in JOBS:
        record = by_url[url(path)]
        parts = target.split("/")
        blocked = any("/".join(parts[:n]) in planted for n in range(1, len(parts)))
        if blocked:
            assert record["error"]["kind"] == "io" and record["path"] is None, (target, record)
            continue
        assert record["ok"] is True, (target, planted, record)
        saved = out / target.replace("H", host, 1)
        assert record["path"] == str(saved)
        assert not saved.is_symlink() and saved.read_bytes() == f"body of {path}\n".encode()
        assert os.path.commonpath([real_out, os.path.realpath(saved)]) == real_out


def fuzz_once(server: CountingServer, plants: list[tuple[str, str]], extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        make_outside(base)
        out = base / "out"
        out.mkdir()
        host = f"127.0.0.1_{server.port}"
        planted = plant(base, out, host, plants)
        before = snapshot(base, skip=out)
        lines = [
            {"url": server.url(path), **({"output": name} if name else {})}
            for path, name, _ in JOBS
        ]
        text = "".join(json.dumps(line) + "\n" for line in lines)
        args = ["--input-format", "jsonl", "--format", "jsonl", "-o", str(out), *extra, "-"]
        if extra:
            done = run_process(args, input=text.encode())
            stdout = done.stdout.decode()
        else:
            stdout = invoke(args, text).stdout
        assert snapshot(base, skip=out) == before, planted
        check_run(base, out, host, planted, stdout, server.url)


PLANTS = st.lists(
    st.tuples(st.sampled_from(PLANT_POINTS), st.sampled_from(KINDS)),
    min_size=1,
    max_size=4,
    unique_by=lambda plant: plant[0],
)


@settings(max_examples=15, deadline=None)  # each example is a run of fetcher: 0.35 s
@given(PLANTS)
def test_planted_links_never_lead_outside(server, plants):
    fuzz_once(server, plants, [])


@settings(max_examples=6, deadline=None)
@given(PLANTS)
def test_planted_links_never_lead_outside_with_processes(server, plants):
    fuzz_once(server, plants, ["--processes", "2", "-j", "2"])


def test_a_swap_between_the_check_and_the_rename_is_caught(tmp_path, monkeypatch):
    """The narrowest window: the temporary is swapped for a link just before the rename (here,
    by the rename itself). What was renamed is removed and the body is an io error."""
    import fetcher.output.bodies as bodies
    from fetcher.errors import FetchError
    from fetcher.output.paths import OutputDir

    outside = make_outside(tmp_path)
    out = tmp_path / "out"
    saved = bodies.SavedFile(OutputDir(str(out)).place("http://h/f"))
    saved.write(b"body")
    real_replace = os.replace

    def swap_then_replace(src, dst, **kwargs) -> None:
        folder = kwargs["src_dir_fd"]
        os.unlink(src, dir_fd=folder)
        os.symlink(outside / "file", src, dir_fd=folder)
        real_replace(src, dst, **kwargs)

    before = snapshot(tmp_path, skip=out)
    monkeypatch.setattr(bodies.os, "replace", swap_then_replace)
    with pytest.raises(FetchError, match="replaced"):
        saved.commit()
    assert snapshot(tmp_path, skip=out) == before
    assert not os.path.lexists(out / "h" / "f")
    assert list((out / "h").iterdir()) == []
    assert bodies._live == set()
