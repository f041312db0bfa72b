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


def test_a_connected_socket_keeps_the_whole_connect_timeout_for_what_follows(
    server: CountingServer,
) -> None:
    """The phase's deadline is for the lookup and the addresses; the socket it gives keeps
    --connect-timeout whole, as urllib3's did, for what follows under it (a TLS handshake, a
    proxy's CONNECT, the request's body: an upload after a slow lookup was cut by what the
    lookup had left, a full-suite run at a load of 22 showed). Here the lookup takes 0.4 s."""
    import threading

    from fetcher.http.addresses import create_connection

    port = int(server.url("/").rsplit(":", 1)[1].split("/")[0])
    resolver = HostsResolver({NAME: ["127.0.0.1"]}, slow=frozenset({NAME}))
    with resolver:
        threading.Timer(0.4, resolver.held.set).start()  # the resolver answers 0.4 s late
        sock = create_connection((NAME, port), 2.0)
    try:
        assert sock.gettimeout() == 2.0
    finally:
        sock.close()


def test_an_address_that_hangs_leaves_time_for_the_next(server: CountingServer) -> None:
    """The first address of two hanging took all of the connect timeout, every attempt, and
    the second, which answers, was never tried: a dual-stack host with a dead IPv6 route was
    lost where it was reached before (s28 t6 1). As curl, an address with more after it gets
    half of what is left."""
    import socket

    from tests.servers import _fill

    port = server.port
    hanging = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hanging.bind(("127.0.0.2", port))
    hanging.listen(0)
    fillers = _fill(hanging)
    try:
        with HostsResolver({NAME: ["127.0.0.2", "127.0.0.1"]}):
            record = fetch("--connect-timeout", "2", f"http://{NAME}:{port}/x")
    finally:
        for sock in [*fillers, hanging]:
            sock.close()
    assert record["ok"] is True and record["attempts"] == 1, record
    assert 0.9 < record["elapsed"] < 1.8, record
