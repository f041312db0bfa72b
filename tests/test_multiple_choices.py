"""A 300 Multiple Choices with a Location is followed as curl -L and wget follow it, the method
and body kept as for a 307; one without a Location is the answer, as before. requests'
REDIRECT_STATI lacks 300, so the 300 was the record (ok, no file, no --failed line) where curl
and wget saved the file the Location named (s26 h4 4)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import invoke
from tests.servers import Route, counting_server, records


def choices(path: str) -> Route:
    """/choices: 300 to /real.txt; /bare: 300 without Location; /loop/N: 300 to /loop/N+1."""
    if path == "/choices":
        return 300, {"Location": "/real.txt"}, b"<ul><li>real.txt</li></ul>", 0.0
    if path == "/bare":
        return 300, {"Content-Type": "text/html"}, b"<ul><li>pick one</li></ul>", 0.0
    if path.startswith("/loop/"):
        return 300, {"Location": f"/loop/{int(path[6:]) + 1}"}, b"", 0.0
    return 200, {"Content-Type": "text/plain"}, b"real content\n", 0.0


def test_a_300_with_a_location_is_followed_and_its_target_saved(tmp_path):
    with counting_server(choices) as server:
        result = invoke(["--format", "jsonl", "-o", str(tmp_path / "out"), server.url("/choices")])
    [record] = records(result.stdout)
    assert result.exit_code == 0, result.output
    assert record["ok"] is True and record["status"] == 200, record
    assert record["redirects"] == 1 and record["final_url"] == server.url("/real.txt")
    assert Path(record["path"]).read_bytes() == b"real content\n"
    assert server.paths == ["/choices", "/real.txt"]


def test_a_300_without_a_location_is_the_answer():
    with counting_server(choices) as server:
        result = invoke(["--format", "jsonl", server.url("/bare")])
    [record] = records(result.stdout)
    assert record["ok"] is True and record["status"] == 300 and record["redirects"] == 0, record
    assert server.paths == ["/bare"]


def test_no_follow_reports_the_300_itself():
    with counting_server(choices) as server:
        result = invoke(["--format", "jsonl", "--no-follow", server.url("/choices")])
    [record] = records(result.stdout)
    assert record["status"] == 300 and record["redirects"] == 0, record
    assert server.paths == ["/choices"]


def test_max_redirects_counts_300s_as_redirects():
    with counting_server(choices) as server:
        result = invoke(["--format", "jsonl", "--max-redirects", "2", server.url("/loop/0")])
    [record] = records(result.stdout)
    assert record["ok"] is False and record["error"]["kind"] == "too_many_redirects", record
    assert record["status"] == 300 and record["redirects"] == 2, record
    assert server.paths == ["/loop/0", "/loop/1", "/loop/2"]
