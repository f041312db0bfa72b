"""Standard error that can no longer be written (a terminal closed under the run, a full disk
behind `2>file`, a pipe whose reader left): what goes there is lost, but nothing else may be.
The progress display's last frame failing took --failed, --summary and --metrics with it, and
the summary's failing print turned the exit status into 1 (s15 h3 8, 7)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import FETCHER, clean_env
from tests.servers import closed_port


@pytest.mark.parametrize("display", ["--progress", "--no-progress"])
def test_a_stderr_that_cannot_be_written_loses_no_file_and_no_status(
    tmp_path: Path, display: str
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/x"
    with open("/dev/full", "wb") as full:
        process = subprocess.run(
            [*FETCHER, display, "--failed", "f.txt", "--summary", "s.json",
             "--metrics", "m.prom", url],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=full, env=clean_env(),
            cwd=tmp_path, timeout=60,
        )  # fmt: skip
    assert process.returncode == 3  # all failed: what --summary and --metrics say too
    assert (tmp_path / "f.txt").read_text() == url + "\n"
    assert json.loads((tmp_path / "s.json").read_text())["exit_status"] == 3
    assert "fetcher_exit_status 3" in (tmp_path / "m.prom").read_text()
    assert url.encode() in process.stdout  # the record
