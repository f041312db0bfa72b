"""--connect-timeout and --max-time bound name resolution too (s28 t2 1): getaddrinfo blocks with
no timeout, and a resolver that did not answer held each URL 10 to 20 s past -m 2, its record
saying "--max-time of 2 s reached". As curl's threaded resolver does, a name is looked up on a
thread of its own, waited for at most what is left of the connect phase, and abandoned then;
an IP literal costs no lookup thread.

The slow names are this process's own (tests.servers.HostsResolver: the system's getaddrinfo
with names of the test's that answer only after the test ends); the last test has the system's
resolver itself ask a DNS server that never answers, where the machine allows it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from tests.conftest import ROOT, clean_env, invoke
from tests.servers import CountingServer, HostsResolver, records, wait_for

NAME = "slow.test"
SLOW = frozenset({NAME})
LOOKUP_THREAD = "fetcher-lookup"


def fetch(*args: str) -> list[dict[str, Any]]:
    return records(invoke(["--format", "jsonl", "--retries", "0", *args]).stdout)


def test_max_time_bounds_a_name_that_does_not_resolve(server: CountingServer) -> None:
    with HostsResolver({NAME: ["127.0.0.1"]}, SLOW):
        [record] = fetch("-m", "1", "--connect-timeout", "5", f"http://{NAME}:{server.port}/x")
    assert record["error"] == {
        "kind": "max_time",
        "message": f"--max-time of 1 s reached: {NAME} did not resolve in time",
    }, record
    assert record["elapsed"] < 1.6, record  # 10 s: the resolver's own time
    assert server.requests == 0


def test_the_connect_timeout_bounds_a_name_that_does_not_resolve(server: CountingServer) -> None:
    with HostsResolver({NAME: ["127.0.0.1"]}, SLOW):
        [record] = fetch("--connect-timeout", "0.5", f"http://{NAME}:{server.port}/x")
    assert record["error"] == {  # dns: the resolver's silence, as its own timeout was (r3 4)
        "kind": "dns",
        "message": f"{NAME} did not resolve in time (connect timeout 0.5 s)",
    }, record
    assert 0.4 < record["elapsed"] < 1.2, record


def test_the_urls_of_a_silent_name_wait_for_its_one_lookup(server: CountingServer) -> None:
    urls = "".join(f"http://{NAME}:{server.port}/{n}\n" for n in range(8))
    with HostsResolver({NAME: ["127.0.0.1"]}, SLOW) as resolver:
        result = invoke(
            ["--format", "jsonl", "-j", "8", "--retries", "1", "--backoff", "0", "-i", "-",
             "--connect-timeout", "0.3"],
            input=urls,
        )  # fmt: skip
        asked = dict(resolver.asked)
    assert {r["error"]["kind"] for r in records(result.stdout)} == {"dns"}
    assert asked == {NAME: 1}  # 16 lookups, and threads, when each did its own


def test_names_that_resolve_are_not_held_behind_names_that_hang(server: CountingServer) -> None:
    """20 names whose resolver hangs beside 20 that resolve at once: a queue served by 16 lookup
    threads held the good names behind the hung ones, and most failed (s28 r3 1: 155 of 200).
    Each lookup has a thread of its own: only the hung names fail."""
    slow = {f"s{n}.test": ["127.0.0.1"] for n in range(20)}
    good = {f"g{n}.test": ["127.0.0.1"] for n in range(20)}
    urls = "".join(f"http://{a}:{server.port}/\nhttp://{b}:{server.port}/\n"
                   for a, b in zip(slow, good, strict=True))  # fmt: skip
    with HostsResolver({**slow, **good}, frozenset(slow)):
        result = invoke(["--format", "jsonl", "-j", "40", "--retries", "0",
                         "--connect-timeout", "3", "-i", "-"], input=urls)  # fmt: skip
    found = {r["url"].split("/")[2].split(":")[0]: r for r in records(result.stdout)}
    assert all(found[name]["ok"] for name in good), [found[n]["error"] for n in good]
    assert all(found[name]["error"]["kind"] == "dns" for name in slow)


def test_past_the_lookup_threads_a_name_waits_for_one_within_its_time() -> None:
    """LOOKUP_THREADS names hanging at once: another name was looked up by its caller,
    unbounded, and -m no longer bounded its URL (s29 r1 1: 128 URLs held 12 s past -m 2). It
    waits for a lookup thread instead, within what the connect phase has left."""
    from fetcher.http.resolve import NameTimeout, Resolver  # noqa: PLC0415

    names = {"h1.test": ["127.0.0.1"], "h2.test": ["127.0.0.1"], "ok.test": ["127.0.0.1"]}
    with HostsResolver(names, frozenset({"h1.test", "h2.test"})) as resolver:
        lookups = Resolver(threads=2)
        for name in ("h1.test", "h2.test"):
            with pytest.raises(NameTimeout):
                lookups.resolve(name, 80, 0, 0.1)
        with pytest.raises(NameTimeout):
            lookups.resolve("ok.test", 80, 0, 0.2)
        assert "ok.test" not in resolver.asked  # not on the caller's thread, unbounded
        found: list[Any] = []
        resolve_ok = lambda: found.append(lookups.resolve("ok.test", 80, 0, 10))  # noqa: E731
        waiting = threading.Thread(target=resolve_ok)
        waiting.start()
        resolver.held.set()  # the hung names answer: their threads are free
        waiting.join(10)
        assert found and found[0][0][4][0] == "127.0.0.1", found
        assert resolver.threads["ok.test"] == {LOOKUP_THREAD}


def test_a_place_freed_by_joining_an_abandoned_lookup_again_wakes_a_waiter() -> None:
    """s30 r1 6: a URL of a hung name joins its abandoned lookup again (a retry), which frees a
    place of the cap; a name waiting for one was not told, and failed at its deadline."""
    from fetcher.http.resolve import NameTimeout, Resolver  # noqa: PLC0415

    names = {"h1.test": ["127.0.0.1"], "h2.test": ["127.0.0.1"], "ok.test": ["127.0.0.1"]}
    with HostsResolver(names, frozenset({"h1.test", "h2.test"})):
        lookups = Resolver(threads=2)
        for name in ("h1.test", "h2.test"):
            with pytest.raises(NameTimeout):
                lookups.resolve(name, 80, 0, 0.1)
        found: list[Any] = []
        waiting = threading.Thread(target=_look_up, args=(lookups, found), daemon=True)
        waiting.start()
        # Condition's own list of the threads waiting on it: ok.test waits for a place.
        wait_for(lambda: lookups.freed._waiters, "ok.test to wait for a place")
        freed_at = time.monotonic()
        threading.Thread(target=_rejoin, args=(lookups,), daemon=True).start()
        waiting.join(10)  # within the stub: past it, a name would go to the system's resolver
    assert found and found[0] != "timeout", found
    assert found[1] - freed_at < 2.5, found  # at once, not at its deadline (4 s)


def _look_up(lookups: Any, found: list[Any]) -> None:
    from fetcher.http.resolve import NameTimeout  # noqa: PLC0415

    try:
        found += [lookups.resolve("ok.test", 80, 0, 4), time.monotonic()]
    except NameTimeout:
        found += ["timeout", time.monotonic()]


def _rejoin(lookups: Any) -> None:
    """h1.test again: it joins the abandoned lookup (its place freed), and times out."""
    from fetcher.http.resolve import NameTimeout  # noqa: PLC0415

    with contextlib.suppress(NameTimeout):
        lookups.resolve("h1.test", 80, 0, 8)


def test_names_that_resolve_slowly_are_not_failed_by_the_cap(monkeypatch) -> None:
    """Every running lookup held one of the LOOKUP_THREADS places, so past 64 at once names
    that resolve in a second failed, queued (s29 r2 2: 137 of 256). Only lookups that nobody
    waits for any more count: ten names of 0.3 s at once, two places, all found."""
    from fetcher.http.resolve import Resolver  # noqa: PLC0415

    real = socket.getaddrinfo

    def slow(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host.endswith(".test"):
            if len(args) > 3 and args[3] & socket.AI_NUMERICHOST:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            time.sleep(0.3)  # the resolver's own slowness, not a wait for anything
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    lookups, found = Resolver(threads=2), []
    threads = [threading.Thread(target=lambda n=n: found.append(
        lookups.resolve(f"n{n}.test", 80, 0, 0.8))) for n in range(10)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(found) == 10, found


def test_names_past_the_lookup_threads_are_bounded_by_the_connect_timeout(
    server: CountingServer,
) -> None:
    from fetcher.http.resolve import LOOKUP_THREADS  # noqa: PLC0415

    slow = {f"s{n}.test": ["127.0.0.1"] for n in range(LOOKUP_THREADS + 8)}
    urls = "".join(f"http://{name}:{server.port}/\n" for name in slow)
    with HostsResolver(slow, frozenset(slow)):
        result = invoke(["--format", "jsonl", "-j", str(len(slow)), "--retries", "0",
                         "--connect-timeout", "0.5", "-i", "-"], input=urls)  # fmt: skip
    found = records(result.stdout)
    assert len(found) == len(slow)
    assert {r["error"]["kind"] for r in found} == {"dns"}, found
    assert max(r["elapsed"] for r in found) < 2, sorted(r["elapsed"] for r in found)[-8:]


def test_an_ip_literal_takes_no_lookup_thread_and_a_name_does(server: CountingServer) -> None:
    with HostsResolver({}) as resolver:
        ok = fetch(server.url("/a"), f"http://localhost:{server.port}/b")
    assert [r["ok"] for r in ok] == [True, True], ok
    assert not any(t.startswith(LOOKUP_THREAD) for t in resolver.threads.get("127.0.0.1", ()))
    assert resolver.threads["localhost"], resolver.threads
    assert all(t.startswith(LOOKUP_THREAD) for t in resolver.threads["localhost"])


def test_a_name_not_known_is_still_dns(server: CountingServer) -> None:
    with HostsResolver({"gone.test": []}):
        [record] = fetch(f"http://gone.test:{server.port}/x")
    assert record["error"]["kind"] == "dns", record
    assert "Name or service not known" in record["error"]["message"], record


# Inside a mount and network namespace of its own: /etc/resolv.conf is a file of the test's,
# naming a DNS server on the namespace's own loopback that reads queries and never answers.
SILENT_DNS = textwrap.dedent(
    """
    import socket, subprocess, sys, time
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 53))
    started = time.monotonic()
    run = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=60)
    print(round(time.monotonic() - started, 3))
    print(run.stdout, end="")
    """
)


def test_the_systems_own_resolver_that_never_answers(tmp_path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root and unshare, for a resolv.conf of the test's own")
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
    script = tmp_path / "silent_dns.py"
    script.write_text(SILENT_DNS)
    fetcher = [sys.executable, "-m", "fetcher", "--format", "jsonl", "--retries", "0"]
    inner = (
        f"ip link set lo up && mount --bind {conf} /etc/resolv.conf && "
        f"exec {sys.executable} {script} " + " ".join(fetcher) + " -m 1 http://slow.example:9/"
    )
    try:
        run = subprocess.run(
            ["unshare", "-mn", "sh", "-c", inner],
            capture_output=True, text=True, timeout=90, env=clean_env(), cwd=ROOT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("fetcher did not end")
    if run.returncode != 0 and not run.stdout:
        pytest.skip(f"no namespace of the test's own here: {run.stderr.strip()[-200:]}")
    took, line = run.stdout.splitlines()
    [record] = records(line)
    assert record["error"]["kind"] == "max_time", record
    assert "did not resolve in time" in record["error"]["message"], record
    assert record["elapsed"] < 1.6, record  # 10 s: the resolver's own timeout
    assert float(took) < 4, took  # the abandoned lookup holds no process's exit
