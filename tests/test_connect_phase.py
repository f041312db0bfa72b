"""--connect-timeout and --max-time bound the whole connect phase of a host name with several
addresses (s28 t2 2): urllib3's create_connection gave the full timeout to each address in turn,
so -m 1 took 2 s at a dual-stack host neither of whose addresses answered, and a connect
timeout of 1 s took 2 s. curl's --connect-timeout covers every address.

The name is this process's own (tests.servers.HostsResolver), its addresses real listeners on
127.0.0.1 and [::1] whose accept queues are full.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import invoke
from tests.servers import CountingServer, HostsResolver, full_backlogs, records

NAME = "twoaddr.test"
BOTH = {NAME: ["127.0.0.1", "::1"]}


def fetch(*args: str) -> dict[str, Any]:
    result = invoke(["--format", "jsonl", "--retries", "0", *args])
    [record] = records(result.stdout)
    return record


def test_max_time_covers_every_address_of_the_name() -> None:
    with full_backlogs() as port, HostsResolver(BOTH):
        record = fetch("-m", "1", "--connect-timeout", "5", f"http://{NAME}:{port}/x")
    assert record["error"]["kind"] == "max_time", record
    assert record["error"]["message"] == "--max-time of 1 s reached", record
    assert record["elapsed"] < 1.6, record  # 2 s when each address had its own second


def test_the_connect_timeout_covers_every_address_of_the_name() -> None:
    with full_backlogs() as port, HostsResolver(BOTH):
        record = fetch("--connect-timeout", "1", f"http://{NAME}:{port}/x")
    assert record["error"]["kind"] == "connect_timeout", record
    assert 0.9 < record["elapsed"] < 1.6, record  # 2 s when each address had its own second


def test_an_address_that_refuses_is_passed_over_for_the_next(server: CountingServer) -> None:
    """The addresses are still tried in turn: [::1] refuses (nothing listens on the port there),
    and 127.0.0.1 answers."""
    names = {NAME: ["::1", "127.0.0.1"]}
    with HostsResolver(names) as resolver:
        record = fetch("--connect-timeout", "5", f"http://{NAME}:{server.port}/x")
    assert record["ok"] is True and record["attempts"] == 1, record
    assert resolver.asked == {NAME: 1}
