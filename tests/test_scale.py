"""The README's GNU parallel recipe, run for real (§5, issue 15): 4 shards over ssh to 4 "machines"
whose records concatenate into exactly one run's.

The machines are one throw-away sshd (its own host key, config and client key in a temporary
folder) listening on 127.0.0.1 to 127.0.0.4; fetcher is "installed" on them by the PATH the sshd
gives its sessions. The recipe is read from README.md, so the test runs what the README says;
the only options added are where the remote work folder is (not root's home), a job log (to see
which machine ran which shard) and how to reach the sshd (PARALLEL_SSH). The HTTP server listens
on 127.0.0.1 only: the shards split by host, so the URLs name it by several spellings of
127.0.0.1 (``127.0.00.1`` ...), each checked to resolve to it.

Needs root, sshd, GNU parallel and rsync: ``make scale`` installs them and sets FETCHER_SCALE=1.
Not part of ``make test`` or CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fetcher.input.shards import shard_of
from tests.conftest import ROOT, clean_env
from tests.servers import CountingServer, counting_server, wait_for

pytestmark = pytest.mark.skipif(
    os.environ.get("FETCHER_SCALE") != "1", reason="needs root, sshd, parallel: `make scale`"
)

SHARDS = 4
MACHINES = [f"127.0.0.{n}" for n in range(1, SHARDS + 1)]
SSHD = "/usr/sbin/sshd"
PARALLEL_TIMEOUT = 180  # seconds for the whole recipe: a few hundred small URLs


def loopback_spellings(count: int) -> list[str]:
    """count host names for 127.0.0.1 that differ as text (leading zeros, which inet_aton reads
    as octal: 0, 00, 01 are still 0 and 1), so that they fall in different shards."""
    names = ["127.0.0.1", "localhost"]
    for zeros in range(1, 6):
        for octet in range(3):
            parts = ["127", "0", "0", "1"]
            parts[octet + 1] = "0" * zeros + parts[octet + 1]
            names.append(".".join(parts))
    return names[:count]


def resolves_to_loopback(host: str) -> bool:
    infos = socket.getaddrinfo(host, 80, socket.AF_INET, socket.SOCK_STREAM)
    return {info[4][0] for info in infos} == {"127.0.0.1"}


def readme_recipe() -> str:
    """The GNU parallel recipe of README.md, its continuation lines joined."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"\*\*GNU parallel[^\n]*(?:\n[^\n]+)*\n\n((?:    .*\n)+)", readme)
    assert match, "README.md has no GNU parallel recipe"
    lines = [line.strip() for line in match[1].splitlines()]
    return " ".join(line.removesuffix("\\").strip() for line in lines)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, timeout=30)  # fmt: skip


def listening(port: int) -> bool:
    for address in MACHINES:
        try:
            socket.create_connection((address, port), timeout=1).close()
        except OSError:
            return False
    return True


@contextlib.contextmanager
def sshd(folder: Path, fetcher_bin: Path) -> Iterator[str]:
    """A throw-away sshd for root on MACHINES, key login only; yields the ssh command that
    reaches it (for PARALLEL_SSH). Stopped when the block ends."""
    folder.mkdir()
    keygen(folder / "host_key")
    keygen(folder / "client_key")
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = free_port()
    path = f"{fetcher_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    config = [f"Port {port}", *(f"ListenAddress {address}" for address in MACHINES),
              f"HostKey {folder / 'host_key'}", f"PidFile {folder / 'sshd.pid'}",
              f"AuthorizedKeysFile {folder / 'authorized_keys'}",
              "PermitRootLogin prohibit-password", "PasswordAuthentication no",
              "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
              f"SetEnv PATH={path}", "LogLevel ERROR"]  # fmt: skip
    (folder / "sshd_config").write_text("\n".join(config) + "\n")
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder
    with (folder / "sshd.log").open("wb") as log:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
                                   stdout=log, stderr=log)  # fmt: skip
    try:
        wait_for(lambda: listening(port) or process.poll() is not None, "sshd to listen")
        assert process.poll() is None, (folder / "sshd.log").read_text()
        yield (f"ssh -F /dev/null -p {port} -i {folder / 'client_key'} -o IdentitiesOnly=yes "
               "-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
               "-o LogLevel=ERROR -o ConnectTimeout=10")  # fmt: skip
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def make_list(server: CountingServer, folder: Path) -> list[str]:
    """urls.txt in folder: 8 URLs on each spelling of the server's host, one of them a 404 on
    every third host; each URL's path is its own, so the server's log tells who asked for what."""
    hosts = loopback_spellings(14)
    assert all(map(resolves_to_loopback, hosts)), "a spelling that is not 127.0.0.1"
    urls = []
    for h, host in enumerate(hosts):
        for n in range(8):
            path = f"/status/404/h{h}" if n == 0 and h % 3 == 0 else f"/h{h}/{n}"
            urls.append(f"http://{host}:{server.port}{path}")
    (folder / "urls.txt").write_text("\n".join(urls) + "\n")
    return urls


def fields(records: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter((r["url"], r["line"], r["status"], r["sha256"], r["ok"]) for r in records)


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.timeout(PARALLEL_TIMEOUT + 60)
def test_the_readme_parallel_recipe_over_four_ssh_machines(tmp_path):
    fetcher_bin = Path(sys.executable).parent
    assert (fetcher_bin / "fetcher").exists(), "run with the project's venv (make scale)"
    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir()
    with counting_server() as server, sshd(tmp_path / "sshd", fetcher_bin) as ssh:
        urls = make_list(server, local)
        shards = Counter(shard_of(url.split("/")[2].rsplit(":", 1)[0].encode(), SHARDS)
                         for url in urls)  # fmt: skip
        assert sorted(shards) == list(range(SHARDS)), f"a shard with no URL: {shards}"

        one_run = subprocess.run(
            [fetcher_bin / "fetcher", "-q", "-i", "urls.txt", "--format", "jsonl"],
            cwd=local, capture_output=True, env=clean_env(), timeout=120, check=False,
        )  # fmt: skip
        assert one_run.returncode == 1, one_run.stderr  # some 404s
        reference = [json.loads(line) for line in one_run.stdout.splitlines()]
        fetched_once = sorted(server.paths)

        recipe = readme_recipe()
        assert recipe.startswith("parallel ") and "node1,node2,node3,node4" in recipe, recipe
        logins = ",".join(f"root@{address}" for address in MACHINES)
        command = recipe.replace("node1,node2,node3,node4", logins).replace(
            "parallel ", f"parallel --workdir {remote} --joblog {tmp_path / 'jobs'} ", 1
        )
        env = clean_env(PARALLEL_SSH=ssh, HOME=str(tmp_path / "home"))  # parallel's ~/.parallel
        started = time.monotonic()
        scaled = subprocess.run(["bash", "-c", command], cwd=local, capture_output=True,
                                env=env, timeout=PARALLEL_TIMEOUT, check=False)  # fmt: skip
        seconds = time.monotonic() - started
        fetched_twice = sorted(server.paths)

    stderr = scaled.stderr.decode(errors="replace")
    with_404 = {shard_of(u.split("/")[2].rsplit(":", 1)[0].encode(), SHARDS) for u in urls
                if "/status/404/" in u}  # fmt: skip
    # parallel's exit status: the number of shards whose fetcher did not exit 0 (1: a 404).
    assert scaled.returncode == len(with_404), stderr
    # One shard on each machine, over ssh.
    jobs = [line.split("\t") for line in (tmp_path / "jobs").read_text().splitlines()[1:]]
    assert sorted(job[1] for job in jobs) == [f"root@{address}" for address in MACHINES], jobs
    records = read_records(local / "records.jsonl")
    assert len(records) == len(urls) == len(reference)
    assert fields(records) == fields(reference)
    assert {r["url"] for r in records} == set(urls)
    # Each URL was fetched once by the one run and once by the shards, never twice by shards.
    assert Counter(fetched_twice) - Counter(fetched_once) == Counter(fetched_once)

    summaries = [json.loads((local / f"summary-{k}.json").read_text()) for k in range(SHARDS)]
    assert [s["total"] for s in summaries] == [shards[k] for k in range(SHARDS)]
    assert sum(s["ok"] for s in summaries) == sum(r["ok"] for r in reference)
    assert sum(s["other_shards"] for s in summaries) == (SHARDS - 1) * len(urls)
    # --cleanup took the list and the summaries off the machines.
    assert not remote.exists() or list(remote.iterdir()) == [], list(remote.iterdir())
    print(f"\nscale: {len(urls)} URLs in {SHARDS} shards over ssh, {seconds:.1f} s, "
          f"parallel exit {scaled.returncode} (shards with a 404: {sorted(with_404)})")  # fmt: skip
