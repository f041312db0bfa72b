"""-c FILE (SPEC §2.2): the saved jar is the loaded one with what the run's servers set or
deleted applied in the order it happened, whatever the number of workers and processes.

Each worker's session starts from the loaded file; one that never hears of a change must not
bring the loaded value back. And the file's own cookies come back as they were, however many
(the bounds are for what servers make fetcher hold), except what a server changed.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from http.cookiejar import Cookie
from pathlib import Path
from typing import Any

import pytest

from fetcher.http.cookies import MAX_COOKIES, MAX_COOKIES_PER_DOMAIN, CookieChanges
from tests.conftest import FETCHER, clean_env, invoke, run_process
from tests.servers import FaultServer, counting_server, read_request, wait_for

HEADER = "# Netscape HTTP Cookie File\n"
OLD_SID = "127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tsid\tOLD\n"
EARLY, LATE, OTHERS = 0.05, 0.6, 0.3  # seconds before each kind of answer
WAIT = 30.0  # seconds at most a held answer or a run waits


def route(path: str) -> tuple[int, dict[str, str], bytes, float]:
    """/login and /logout set and delete sid at once, /late-login and /late-logout after LATE;
    /set/NAME sets NAME; anything else sets nothing and answers after the early ones."""
    name = path.strip("/")
    setting = {"login": "sid=NEW; Max-Age=99999; Path=/", "logout": "sid=; Max-Age=0; Path=/"}
    if name in setting:
        return 200, {"Set-Cookie": setting[name]}, b"", EARLY
    if name.startswith("late-") and name[5:] in setting:
        changed = setting[name[5:]].replace("NEW", "LATE")
        return 200, {"Set-Cookie": changed}, b"", LATE
    if name.startswith("set/"):
        return 200, {"Set-Cookie": f"{name[4:]}=received; Path=/"}, b"", 0.0
    if name == "delete-elsewhere":  # another site's cookie, "deleted" by an expired Set-Cookie
        gone = "SID=x; Domain=bank.test; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        return 200, {"Set-Cookie": gone}, b"", 0.0
    return 200, {}, b"", OTHERS


def saved(path: Path) -> dict[tuple[str, str], str]:
    """The saved jar: (domain, name) -> value."""
    cookies = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            fields = line.split("\t")
            cookies[fields[0], fields[5]] = fields[6]
    return cookies


def fetch(jar: Path, urls: list[str], *options: str) -> None:
    """Run fetcher over urls with -c jar: in this process, or as a real one for --processes."""
    args = ["-q", *options, "-c", str(jar), *urls]
    if "--processes" in options:
        process = run_process(args)
        assert process.returncode == 0, process.stderr
    else:
        result = invoke(args)
        assert result.exit_code == 0, result.output


WORKERS = [("-j", "1"), ("-j", "4"), ("-j", "4", "--processes", "2")]


@pytest.mark.parametrize("options", WORKERS, ids=" ".join)
@pytest.mark.parametrize(("change", "expected"), [("login", "NEW"), ("logout", None)])
def test_what_a_server_changed_is_saved_not_the_loaded_value(tmp_path, options, change, expected):
    jar = tmp_path / "jar.txt"
    jar.write_text(HEADER + OLD_SID)
    with counting_server(route) as server:
        # All four at once: the other three sessions hold the loaded sid=OLD to the end.
        fetch(jar, [server.url(f"/{change}"), *(server.url(f"/{p}") for p in "abc")], *options)
    assert saved(jar).get(("127.0.0.1", "sid")) == expected


CHANGES = [("login", "late-logout", None), ("logout", "late-login", "LATE")]


@pytest.mark.parametrize("options", WORKERS[1:], ids=" ".join)
@pytest.mark.parametrize(("first", "last", "expected"), CHANGES)
def test_the_last_change_of_a_cookie_wins_whichever_worker_made_it(
    tmp_path, options, first, last, expected
):
    jar = tmp_path / "jar.txt"
    jar.write_text(HEADER + OLD_SID)
    with counting_server(route) as server:
        fetch(jar, [server.url(f"/{p}") for p in (first, last, "a", "b")], *options)
    assert saved(jar).get(("127.0.0.1", "sid")) == expected


def big_jar(path: Path) -> None:
    """60 cookies of .example.org, a 5000-byte one for 127.0.0.1, 3100 of other hosts."""
    lines = [f".example.org\tTRUE\t/\tFALSE\t0\tc{n}\tv{n}\n" for n in range(60)]
    lines.append(f"127.0.0.1\tFALSE\t/\tFALSE\t0\tbig\t{'x' * 5000}\n")
    lines += [f"h{n}.test\tFALSE\t/\tFALSE\t0\tc\tv\n" for n in range(3100)]
    path.write_text(HEADER + "".join(lines))


@pytest.mark.parametrize("options", WORKERS[:2], ids=" ".join)
def test_the_loaded_cookies_come_back_however_many(tmp_path, options):
    jar = tmp_path / "jar.txt"
    big_jar(jar)
    before = saved(jar)
    with counting_server(route) as server:
        fetch(jar, [server.url("/a")], *options)
        sent = server.headers_seen[0].get("Cookie", "")
    assert saved(jar) == before
    assert "big=" not in sent  # over 4 KiB: not sent, as curl and browsers ignore it


def test_received_cookies_stay_bounded_beside_the_loaded_ones(tmp_path):
    jar = tmp_path / "jar.txt"
    big_jar(jar)
    before = saved(jar)
    count = MAX_COOKIES_PER_DOMAIN + 20
    with counting_server(route) as server:
        fetch(jar, [server.url(f"/set/r{n}") for n in range(count)], "-j", "1")
    after = saved(jar)
    received = {key for key in after if key[1].startswith("r")}
    assert len(received) == MAX_COOKIES_PER_DOMAIN  # the most recently set of the 70
    assert ("127.0.0.1", f"r{count - 1}") in received
    assert {key: after[key] for key in before} == before  # and none of the file's lost
    assert len(before) > MAX_COOKIES  # more than a jar of received cookies may hold


@pytest.mark.parametrize("options", WORKERS[1:], ids=" ".join)
def test_every_deletion_sticks_even_past_the_per_domain_bound(tmp_path, options):
    jar = tmp_path / "jar.txt"
    count = MAX_COOKIES_PER_DOMAIN + 10
    lines = [f"127.0.0.1\tFALSE\t/\tFALSE\t0\td{n}\tv\n" for n in range(count)]
    jar.write_text(HEADER + "".join(lines))

    def deleting(path: str) -> tuple[int, dict[str, str], bytes, float]:
        return 200, {"Set-Cookie": f"{path.strip('/')}=; Max-Age=0; Path=/"}, b"", 0.0

    with counting_server(deleting) as server:
        fetch(jar, [server.url(f"/d{n}") for n in range(count)], *options)
    assert saved(jar) == {}


@pytest.mark.parametrize("options", WORKERS, ids=" ".join)
def test_a_server_cannot_delete_another_sites_cookie(tmp_path, options):
    """http.cookiejar carries out an expired Set-Cookie's deletion before it checks that the
    server may set cookies for that domain at all: 127.0.0.1 "deleted" bank.test's login, and
    since the jar is saved with what servers deleted, it was gone from the file."""
    jar = tmp_path / "jar.txt"
    jar.write_text(HEADER + ".bank.test\tTRUE\t/\tFALSE\t4102444800\tSID\tkeep\n")
    with counting_server(route) as server:
        fetch(jar, [server.url("/delete-elsewhere"), server.url("/a")], *options)
    assert saved(jar).get((".bank.test", "SID")) == "keep"


def test_a_cookie_jar_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    """-c reads the file and writes it back: a FIFO can be neither, and reading one with no
    writer blocked for ever before a request was made."""
    import os

    fifo = tmp_path / "jar"
    os.mkfifo(fifo)
    done = run_process(["-q", "-c", str(fifo), "http://127.0.0.1:9/"], timeout=20)
    assert done.returncode == 2, done.stderr
    assert b"FIFO" in done.stderr and b"Traceback" not in done.stderr


def flooding(conn: socket.socket) -> None:
    """A FaultServer behaviour: /logout deletes sid; /flood?start=N deletes 90 cookies nobody
    holds, junkN... (another host's flood, each answer many Set-Cookie lines)."""
    request = read_request(conn).decode("latin-1")
    target = request.split(" ", 2)[1]
    if target.startswith("/flood"):
        start = int(target.partition("start=")[2])
        lines = "".join(f"Set-Cookie: junk{n}=; Max-Age=0\r\n" for n in range(start, start + 90))
    else:
        lines = "Set-Cookie: sid=; Max-Age=0; Path=/\r\n"
    end = "Content-Length: 0\r\nConnection: close\r\n\r\n"
    conn.sendall(f"HTTP/1.1 200 OK\r\n{lines}{end}".encode())


def test_a_flood_of_another_hosts_deletions_does_not_undo_a_logout(tmp_path):
    """More deletions than any bound, of cookies nobody held, from localhost: the logout of
    127.0.0.1's sid (a cookie of the file) stays (found by the s15 hostile test)."""
    jar = tmp_path / "jar.txt"
    jar.write_text(HEADER + OLD_SID)
    floods = MAX_COOKIES // 90 + 4
    with FaultServer(flooding) as server:
        flood = [f"http://localhost:{server.port}/flood?start={n * 90}" for n in range(floods)]
        fetch(jar, [server.url("/logout"), *flood], "-j", "1")
    assert saved(jar) == {}


def test_a_change_to_a_file_cookie_outlives_any_flood_of_others():
    """Sets too: 60 hosts that each set 50 cookies evicted an older change of the file's."""
    changes = CookieChanges()
    changes.note(("127.0.0.1", "/", "sid"), None, held=True)
    changes.note(("127.0.0.1", "/", "token"), Cookie(0, "token", "NEW", **COOKIE_REST), held=True)
    for host in range(MAX_COOKIES // MAX_COOKIES_PER_DOMAIN + 10):
        for n in range(MAX_COOKIES_PER_DOMAIN):
            changes.note((f"h{host}.test", "/", f"c{n}"), None)
            changes.note((f"h{host}.test", "/", f"s{n}"), Cookie(0, f"s{n}", "v", **COOKIE_REST))
    kept = {change.key for change in changes.entries()}
    assert {("127.0.0.1", "/", "sid"), ("127.0.0.1", "/", "token")} <= kept
    assert len(kept) <= 2 * MAX_COOKIES + 2


COOKIE_REST: dict[str, Any] = dict(
    port=None, port_specified=False, domain="h.test", domain_specified=False,
    domain_initial_dot=False, path="/", path_specified=True, secure=False, expires=None,
    discard=True, comment=None, comment_url=None, rest={},
)  # fmt: skip


# -- two runs sharing one jar at once (s25 h4 3) ----------------------------------------------

SHARED = HEADER + OLD_SID + "127.0.0.1\tFALSE\t/\tFALSE\t0\tkept\tK\n"
OTHER_RUN = {  # what the other run's one URL sets, and the file it leaves
    "rotate": ("token=NEW; Path=/", {"sid": "OLD", "kept": "K", "token": "NEW"}),
    "logout": ("sid=; Max-Age=0; Path=/", {"kept": "K"}),
    "take-over": ("slow=OTHER; Path=/", {"sid": "OLD", "kept": "K", "slow": "OTHER"}),
}


@pytest.mark.parametrize("other", sorted(OTHER_RUN))
def test_a_run_saving_after_another_keeps_what_the_other_saved(tmp_path, other):
    """A slow run loads the jar; a quick one rotates or deletes a cookie and saves; the slow
    one, saving last, applies only its own change (slow=S) to the file as the quick one left
    it: it brought back the values it had loaded and lost the quick one's new cookies. Where
    both changed a cookie (take-over), the run that saves last wins."""
    jar = tmp_path / "jar.txt"
    jar.write_text(SHARED)
    released = threading.Event()
    setting, expected = OTHER_RUN[other]

    def both(path: str) -> tuple[int, dict[str, str], bytes, float]:
        if path == "/slow":
            released.wait(WAIT)
            return 200, {"Set-Cookie": "slow=S; Path=/"}, b"", 0.0
        return 200, {"Set-Cookie": setting}, b"", 0.0

    with counting_server(both) as server:
        slow = subprocess.Popen([*FETCHER, "-q", "-c", str(jar), server.url("/slow")],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                env=clean_env())  # fmt: skip
        try:
            wait_for(lambda: "/slow" in server.paths, "the slow run's request")  # jar loaded
            fetch(jar, [server.url("/other")], "-j", "1")
            assert {name: value for (_, name), value in saved(jar).items()} == expected
        finally:
            released.set()
            assert slow.wait(WAIT) == 0
    expected = {**expected, "slow": "S"}
    assert {name: value for (_, name), value in saved(jar).items()} == expected
