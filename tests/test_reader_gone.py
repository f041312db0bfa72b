"""``fetcher ... | head -1``: the requests the run abandons itself once its reader has gone are
"not finished" in the summary, never "failed"; and a closed standard output exits 141, whether
it is noticed mid-run or at the last flush (spec 2.4, 2.5; docs/choices.md)."""

import json
import shlex
import subprocess

from tests.conftest import FETCHER, clean_env
from tests.servers import counting_server

NOISE = ("Traceback", "BrokenPipeError", "Exception ignored")


def pipeline(command: list[str], reader: str) -> subprocess.CompletedProcess[str]:
    """`command | reader` under bash with pipefail: the status is fetcher's unless reader fails."""
    line = f"set -o pipefail; {shlex.join(command)} | {reader}"
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60,
                          env=clean_env(), check=False)  # fmt: skip


def test_requests_abandoned_after_head_exits_are_not_finished_not_failed(tmp_path):
    """The first record reaches head, which exits; the run finds the pipe closed (at the
    next record, or by the writer's idle check, whichever comes first: the medium request may
    end either way) while three slow requests are in flight, stops at once and abandons them."""
    summary = tmp_path / "summary.json"
    with counting_server() as server:
        urls = [server.url("/fast"), server.url("/slow/0.5/medium")]
        urls += [server.url(f"/slow/8/{n}") for n in range(3)]
        command = [*FETCHER, "-j", "8", "--summary", str(summary), *urls]
        result = pipeline(command, "head -1")
    assert result.returncode == 141, result.stderr
    assert result.stdout.startswith("200\t")
    data = json.loads(summary.read_text())
    ok, not_finished = data["ok"], data["not_finished"]
    assert data["failed"] == 0 and ok in (1, 2) and ok + not_finished == 5, data
    assert data["total"] == 5 and data["by_kind"] == {} and data["by_host"] == {}
    assert data["interrupted_by"] == "a closed standard output"
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"fetcher: {ok} ok, 0 failed"), result.stderr
    assert f"  not finished: {not_finished}" in lines
    assert not any(noise in result.stderr for noise in NOISE), result.stderr


def test_a_reader_gone_before_the_last_flush_exits_141(tmp_path):
    """Every URL fetched, but the records met a closed pipe at the end: 141, as `cat FILE`
    killed by SIGPIPE, not 0 (the records were lost)."""
    with counting_server() as server:
        result = pipeline([*FETCHER, "-q", server.url("/a")], "(exec 0<&-; sleep 1)")
    assert result.returncode == 141, result.stderr
    assert not any(noise in result.stderr for noise in NOISE), result.stderr
