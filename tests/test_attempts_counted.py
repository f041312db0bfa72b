"""What `attempts` counts, as usage.md says (s28 t2 5): the tries made at a URL, a connection
that never opened included, not the requests the server saw (the docs said so, and a connect
timed out three times was `attempts` 3 with nothing sent). The count is unchanged; its
documentation is what was wrong."""

from __future__ import annotations

from tests.conftest import ROOT, invoke
from tests.servers import full_backlog, records

USAGE = ROOT / "docs" / "usage.md"


def test_a_connection_that_never_opened_is_an_attempt() -> None:
    with full_backlog() as url:
        result = invoke(
            ["--format", "jsonl", "--connect-timeout", "0.2", "--retries", "2", "--backoff", "0",
             url],
        )  # fmt: skip
    [record] = records(result.stdout)
    assert (record["error"]["kind"], record["attempts"]) == ("connect_timeout", 3), record


def test_usage_says_what_attempts_counts() -> None:
    text = " ".join(USAGE.read_text(encoding="utf-8").split())
    assert "the number of requests the server saw (" not in text
    assert "the number of tries fetcher made at the URL" in text
    assert "a connection that never opened (" in text
    assert "the resend on a dead kept-alive connection (below) is not another" in text
    row = text.split("| `attempts` |")[1]  # the records table's
    assert row.startswith(" tries made at this URL, a connection that never opened counted"), row
