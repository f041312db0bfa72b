import json

from tests.conftest import invoke


def test_one_url_jsonl(server):
    result = invoke(["--format", "jsonl", server.url("/a")])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["ok"] is True
    assert record["status"] == 200
