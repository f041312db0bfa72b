"""Cookies from hostile servers and odd -c files (SPEC §2.2, §2.4): what fetcher stores it can
read back and send; a jar line it cannot read or send is skipped (never the whole file, never
shown); the file is bytes both ways (Latin-1, whatever the locale); what fetcher saves it reads
next time; and nothing a server sends prints a traceback.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetcher.http import cookies
from tests.conftest import FETCHER, ROOT, clean_env, invoke, run_process
from tests.servers import FaultServer, read_request

HEADER = b"# Netscape HTTP Cookie File\n"
FOUR_HUNDRED_DAYS = 400 * 24 * 3600


class RawServer(FaultServer):
    """Answers every request 200 with the header lines head (bytes, each ending in CRLF) and
    keeps each request's head, for the Cookie header fetcher sent."""

    def __init__(self, head: bytes) -> None:
        self.requests: list[bytes] = []
        super().__init__(self._answer)
        self.head = head

    def _answer(self, conn: socket.socket) -> None:
        self.requests.append(read_request(conn))
        end = b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + self.head + end)

    def cookie_sent(self, number: int = -1) -> bytes | None:
        """The Cookie header's value in request number (bytes as sent), or None."""
        for line in self.requests[number].split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"cookie":
                return value.strip(b" ")
        return None


@contextlib.contextmanager
def answering(head: bytes) -> Iterator[RawServer]:
    server = RawServer(head)
    with server:
        yield server


def cookie_lines(jar: Path) -> list[bytes]:
    return [line for line in jar.read_bytes().split(b"\n") if line and not line.startswith(b"#")]


def run(*args: str) -> tuple[int, str, str]:
    result = invoke(["--retries", "0", *args])
    return result.exit_code, result.stdout, result.stderr


# -- 1: a control character in a server's cookie: not stored, not sent --------------------------

CONTROLLED = [
    b"Set-Cookie: a=x\ty\r\n",  # a tab: an eighth field in the file
    b"Set-Cookie: a\tb=1\r\n",
    b"Set-Cookie: b=x\x0by\r\n",
    b"Set-Cookie: c=x\x7fy\r\n",
]


@pytest.mark.parametrize("bad", CONTROLLED, ids=lambda b: repr(b)[14:30])
def test_a_cookie_with_a_control_character_is_never_stored_or_sent(tmp_path, bad):
    jar = tmp_path / "jar.txt"
    with answering(bad + b"Set-Cookie: ok=1\r\n") as server:
        assert run("-q", "-c", str(jar), server.url("/set"))[0] == 0
        assert cookie_lines(jar) == [b"127.0.0.1\tFALSE\t/\tFALSE\t0\tok\t1"]
        status, _, stderr = run("-c", str(jar), server.url("/again"))
        assert status == 0, stderr
        assert server.cookie_sent() == b"ok=1"


def test_a_bare_cr_in_a_set_cookie_is_a_space_and_injects_no_field(tmp_path):
    """`a=x\\r X-Injected: yes`: a bare CR in a header block is read as a space (RFC 9112 2.2,
    s24 h2 4), so this is the one cookie a, its value `x  X-Injected: yes`: no CR in the jar or
    the Cookie header, no field or jar line of its own."""
    jar = tmp_path / "jar.txt"
    with answering(b"Set-Cookie: a=x\r X-Injected: yes\r\nSet-Cookie: ok=1\r\n") as server:
        assert run("-q", "-c", str(jar), server.url("/set"))[0] == 0
        lines = cookie_lines(jar)
        assert b"\r" not in jar.read_bytes() and len(lines) == 2, lines
        assert b"127.0.0.1\tFALSE\t/\tFALSE\t0\tok\t1" in lines
        status, _, stderr = run("-c", str(jar), server.url("/again"))
        assert status == 0, stderr
        sent = server.cookie_sent()
        assert b"\r" not in sent and b"ok=1" in sent, sent


# -- 2 and 16: a jar line that cannot be read or sent is skipped, never shown -------------------


def test_an_unsendable_jar_line_is_skipped_and_never_shown(tmp_path):
    jar = tmp_path / "jar.txt"
    jar.write_bytes(
        HEADER
        + b"127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tTOPSECRET123\n"
        + b"127.0.0.1\tFALSE\t/\tFALSE\t0\tbad\tx\rSECRETCR\n"
        + b"127.0.0.1\tFALSE\t/\tFALSE\t0\tnul\tx\x00SECRETNUL\n"
    )
    with answering(b"") as server:
        status, stdout, stderr = run("--format", "jsonl", "-c", str(jar), server.url("/r"))
        assert server.cookie_sent() == b"session=TOPSECRET123"
    assert status == 0, stderr
    assert json.loads(stdout)["ok"] is True
    assert "SECRET" not in stdout + stderr
    assert "2 lines" in stderr and "line 3 has" in stderr and "line 4 has" in stderr, stderr


LINES_CURL_SKIPS = [
    b"127.0.0.1\tFALSE\t/\tFALSE\tsess=S3CRET\tname\tx\n",  # an expiry that is no number
    b"127.0.0.1\tFALSE\t/\tFALSE\t" + b"9" * 5000 + b"\tlong\tS3CRET\n",  # int() refuses it
    b"Set-Cookie: hdr=S3CRET; domain=127.0.0.1; path=/\n",
    b"127.0.0.1\tFALSE\t/\tFALSE\t0\ta\tb\tS3CRET\n",  # eight fields
]


@pytest.mark.parametrize("bad", LINES_CURL_SKIPS, ids=range(len(LINES_CURL_SKIPS)))
def test_a_line_curl_skips_is_skipped_not_the_whole_file(tmp_path, bad):
    jar = tmp_path / "jar.txt"
    jar.write_bytes(HEADER + bad + b"127.0.0.1\tFALSE\t/\tFALSE\t0\tgood\t1\n")
    with answering(b"") as server:
        status, stdout, stderr = run("-c", str(jar), server.url("/"))
        assert server.cookie_sent() == b"good=1"
    assert status == 0, stderr
    assert "S3CRET" not in stdout + stderr and "Exceeds" not in stderr
    assert "line 2" in stderr, stderr


def test_a_byte_order_mark_and_a_line_without_value_are_read_as_curl_reads_them(tmp_path):
    jar = tmp_path / "jar.txt"
    jar.write_bytes(b"\xef\xbb\xbf" + HEADER + b"127.0.0.1\tFALSE\t/\tFALSE\t0\tempty\n")
    with answering(b"") as server:
        status, _, stderr = run("-c", str(jar), server.url("/"))
        assert server.cookie_sent() == b"empty="
    assert status == 0 and "skipped" not in stderr, stderr


def test_a_file_that_is_no_cookie_file_is_refused_and_kept(tmp_path):
    """Not skipped line by line: the save would overwrite a file named by mistake."""
    jar = tmp_path / "urls.txt"
    before = b"http://example.test/a\nhttp://example.test/b\n"
    jar.write_bytes(before)
    status, _, stderr = run("-c", str(jar), "http://127.0.0.1:9/")
    assert status == 2 and "not a cookie file" in stderr, stderr
    assert jar.read_bytes() == before


# -- 3: an absurd Max-Age ---------------------------------------------------------------------


def test_an_absurd_max_age_is_clamped_with_no_traceback(tmp_path):
    jar = tmp_path / "jar.txt"
    huge = b"9" * 400
    head = b"Set-Cookie: s=1; Max-Age=" + huge + b"\r\nSet-Cookie: other=2\r\n"
    with answering(head) as server:
        done = run_process(["-q", "-c", str(jar), server.url("/ov")])
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    fields = {line.split(b"\t")[5]: line.split(b"\t") for line in cookie_lines(jar)}
    assert set(fields) == {b"s", b"other"}
    assert int(fields[b"s"][4]) <= time.time() + FOUR_HUNDRED_DAYS + 60


# -- 4 and 5: the file is bytes, both ways ------------------------------------------------------


def test_cookie_bytes_round_trip_through_the_file(tmp_path):
    """A server's UTF-8 and Latin-1 bytes are saved as sent and sent back as saved; a file curl
    wrote with UTF-8 bytes is sent as those bytes."""
    jar = tmp_path / "jar.txt"
    head = b"Set-Cookie: u=caf\xc3\xa9\r\nSet-Cookie: l=caf\xe9\r\n"
    with answering(head) as server:
        assert run("-q", "-c", str(jar), server.url("/set"))[0] == 0
        assert sorted(cookie_lines(jar)) == [
            b"127.0.0.1\tFALSE\t/\tFALSE\t0\tl\tcaf\xe9",
            b"127.0.0.1\tFALSE\t/\tFALSE\t0\tu\tcaf\xc3\xa9",
        ]
        with jar.open("ab") as file:
            file.write(b"127.0.0.1\tFALSE\t/\tFALSE\t0\te\t\xe2\x82\xac\n")  # as curl saves it
        status, _, stderr = run("-c", str(jar), server.url("/again"))
        assert status == 0, stderr
        sent = sorted((server.cookie_sent() or b"").split(b"; "))
    assert sent == [b"e=\xe2\x82\xac", b"l=caf\xe9", b"u=caf\xc3\xa9"]


def test_the_file_is_written_the_same_under_an_ascii_locale(tmp_path):
    jar = tmp_path / "jar.txt"
    env = clean_env(LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    with answering(b"Set-Cookie: l=caf\xe9\r\n") as server:
        done = subprocess.run(
            [*FETCHER, "-q", "-c", str(jar), server.url("/")],
            capture_output=True, stdin=subprocess.DEVNULL, env=env, cwd=ROOT, timeout=60,
            check=False,
        )  # fmt: skip
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert cookie_lines(jar) == [b"127.0.0.1\tFALSE\t/\tFALSE\t0\tl\tcaf\xe9"]


# -- 6: what fetcher saves, it reads ------------------------------------------------------------


def test_a_saved_jar_is_never_larger_than_fetcher_reads(tmp_path, monkeypatch):
    """The oldest cookies go first (the file's first lines), and the run says so."""
    monkeypatch.setattr(cookies, "MAX_JAR_FILE_BYTES", 2000)
    jar = tmp_path / "jar.txt"
    line = b"127.0.0.1\tFALSE\t/\tFALSE\t0\tc%03d\t" + b"v" * 60 + b"\n"
    lines = b"".join(line % n for n in range(40))
    jar.write_bytes(HEADER + lines[: 2000 - len(HEADER)])  # exactly the limit, cut mid-line
    assert len(jar.read_bytes()) == 2000
    with answering(b"Set-Cookie: new=" + b"n" * 100 + b"\r\n") as server:
        status, _, stderr = run("-c", str(jar), server.url("/"))
        assert status == 0, stderr
        assert len(jar.read_bytes()) <= 2000
        assert "not saved" in stderr, stderr
        names = [line.split(b"\t")[5] for line in cookie_lines(jar)]
        assert names[-1] == b"new" and b"c000" not in names
        status, _, stderr = run("-c", str(jar), server.url("/again"))
    assert status == 0, stderr


def test_a_full_jar_gives_up_the_cookies_of_the_site_that_holds_the_most_first(
    tmp_path, monkeypatch
):
    """s32 t2 2: a site that sets many large cookies, run after run, filled the file, and the
    least recently set went first: the user's own login, set long ago, was dropped, said only
    as a warning that -q hid. The site whose cookies take the most room gives up its oldest
    first, and -q still says it."""
    monkeypatch.setattr(cookies, "MAX_JAR_FILE_BYTES", 2000)
    jar = tmp_path / "jar.txt"
    login = b"a.test\tFALSE\t/\tTRUE\t0\tlogin\tmine\n"
    line = b"127.0.0.1\tFALSE\t/\tFALSE\t0\tc%03d\t" + b"v" * 60 + b"\n"
    flood = b"".join(line % n for n in range(40))
    jar.write_bytes(HEADER + login + flood[: 2000 - len(HEADER) - len(login)])
    with answering(b"Set-Cookie: new=" + b"n" * 100 + b"\r\n") as server:
        status, _, stderr = run("-q", "-c", str(jar), server.url("/"))
    assert status == 0, stderr
    assert len(jar.read_bytes()) <= 2000
    assert "not saved" in stderr, stderr
    names = [line.split(b"\t")[5] for line in cookie_lines(jar)]
    assert names[0] == b"login" and names[-1] == b"new" and b"c000" not in names, names


def test_a_full_jar_weighs_each_ipv4_address_alone(tmp_path, monkeypatch):
    """s32 r4 1: weighed by /24, a device's large cookies on a home network pushed out the
    router's logins, another owner's on the same /24. Each IPv4 address is a site of its own."""
    monkeypatch.setattr(cookies, "MAX_JAR_FILE_BYTES", 2000)
    jar = tmp_path / "jar.txt"
    logins = b"".join(b"127.0.0.2\tFALSE\t/\tFALSE\t0\tlogin%d\t" % n + b"s" * 60 + b"\n"
                      for n in range(3))  # fmt: skip
    filler = b"".join(b"f%d.test\tFALSE\t/\tFALSE\t0\tt%d\t" % (n // 4, n) + b"v" * 70 + b"\n"
                      for n in range(40))  # fmt: skip # sites of 4, each larger than the logins'
    jar.write_bytes(HEADER + logins + filler[: 2000 - len(HEADER) - len(logins)])
    with answering(b"".join(b"Set-Cookie: big%d=" % n + b"n" * 300 + b"\r\n" for n in range(4))
                   ) as server:  # fmt: skip
        status, _, stderr = run("-q", "-c", str(jar), server.url("/"))  # 127.0.0.1
    assert status == 0, stderr
    names = [line.split(b"\t")[5] for line in cookie_lines(jar)]
    assert names[:3] == [b"login0", b"login1", b"login2"], names


@pytest.mark.parametrize(
    ("domain", "site"),
    [
        ("::ffff:1.2.3.4", "::ffff:102:304"),  # an IPv4 address written as IPv6: its own
        ("[::ffff:5.6.7.8]", "::ffff:506:708"),
        ("::1.2.3.4", "::102:304"),  # IPv4-compatible (::/96)
        ("64:ff9b::102:304", "64:ff9b::102:304"),  # NAT64
        ("[64:ff9b:1:102:3:400::]", "64:ff9b:1:102:3:400::"),  # NAT64, local use (RFC 8215)
        ("[::ffff:0:1.2.3.4]", "::ffff:0:102:304"),  # IPv4-translated, SIIT (s34 r1 3)
        ("::1:1.2.3.4", "::1:102:304"),  # anything else in the reserved ::/8
        ("2a00:1450::1", "2a00:1450::/64"),  # global: its /64, one holder's
        ("1.2.3.4", "1.2.3.4"),
    ],
)
def test_an_address_that_maps_an_ipv4_one_is_a_site_of_its_own(domain, site):
    """s33 r1 1: is_global answers for the IPv4 address a mapped one holds, so every
    ::ffff:a.b.c.d (and ::a.b.c.d) was weighed in one '::/64': a mapped address's large cookies
    pushed out another owner's logins."""
    assert cookies.site_of(domain) == site


@pytest.mark.parametrize("flood", ["s%d.tracker.test", "2a00:1450::%x"])
def test_a_full_jar_weighs_a_site_s_subdomains_as_one_site(tmp_path, monkeypatch, flood):
    """s32 r2 2: weighed by exact domain, a site whose cookies came from many subdomains (or
    many small sites) took less room each than the user's one site of a few logins: the
    login went first. A site is its registrable name (s1.tracker.test: tracker.test), an
    global IPv6 address's its /64, whose holder has every host (s32 r3 3)."""
    monkeypatch.setattr(cookies, "MAX_JAR_FILE_BYTES", 2000)
    jar = tmp_path / "jar.txt"
    logins = b"".join(
        b"bank.test\tFALSE\t/\tTRUE\t0\tlogin%d\t" % n + b"s" * 60 + b"\n" for n in range(3)
    )
    tracker = b"".join((flood % (n + 1)).encode() + b"\tFALSE\t/\tFALSE\t0\tt\t" + b"v" * 50
                       + b"\n" for n in range(40))  # fmt: skip
    jar.write_bytes(HEADER + logins + tracker[: 2000 - len(HEADER) - len(logins)])
    with answering(b"Set-Cookie: new=" + b"n" * 100 + b"\r\n") as server:
        status, _, stderr = run("-q", "-c", str(jar), server.url("/"))
    assert status == 0, stderr
    names = [line.split(b"\t")[5] for line in cookie_lines(jar)]
    assert names[:3] == [b"login0", b"login1", b"login2"] and names[-1] == b"new", names


# -- 18: curl's -b FILE -----------------------------------------------------------------------


def test_b_naming_a_file_points_at_c(tmp_path):
    jar = tmp_path / "jar.txt"
    jar.write_bytes(HEADER)
    status, _, stderr = run("-b", str(jar), "http://127.0.0.1:9/")
    assert status == 2
    assert "-c FILE" in stderr, stderr


def test_b_naming_a_file_not_made_yet_points_at_c(tmp_path):
    """curl's -b jar -c jar on a first run, before the jar exists (s30 t1 8): 'malformed
    cookie', not the pointer at -c that usage.md promises."""
    jar = str(tmp_path / "jar.txt")
    status, _, stderr = run("-b", jar, "-c", jar, "http://127.0.0.1:9/")
    assert status == 2
    assert "-c FILE" in stderr and jar not in stderr, stderr


def test_a_b_cookie_with_a_tab_is_still_sent_as_given():
    """The user's own: checked as -H is (no CR, LF or NUL), never saved, sent as typed."""
    with answering(b"") as server:
        status, _, stderr = run("-b", "a=x\ty", server.url("/"))
        assert status == 0, stderr
        assert server.cookie_sent() == b"a=x\ty"


# -- s16 h1 F3: a -b cookie too long for any server ---------------------------------------------


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["a=" + "v" * 9000], "cookie 'a' is 9001 bytes"),  # was sent as no Cookie at all
        ([f"{n}=" + "v" * 4000 for n in "abc"], "Cookie header of 12010 bytes"),  # was sent
    ],
    ids=["one-over-4-KiB", "three-over-8-KiB"],
)
def test_b_cookies_too_long_to_send_are_a_usage_error(given, said):
    """A -b cookie over 4 KiB (name and value) was dropped without a word, the run exiting 0;
    -b cookies over 8 KiB together went as a 12 KB header, past the bound usage.md promises
    (and past Apache's and nginx's limit for one header line). Both are refused, the value
    never shown."""
    with answering(b"") as server:
        status, _, stderr = run(*[arg for cookie in given for arg in ("-b", cookie)],
                                server.url("/"))  # fmt: skip
        assert server.requests == []  # nothing was fetched
    assert status == 2, stderr
    assert said in stderr, stderr
    assert "vvvv" not in stderr


def test_a_b_cookie_given_twice_is_refused_before_the_header_bound():
    """-b a=X -b a=Y: two 4 KB values of one name with a third cookie were refused as a header of
    8199 bytes (s16 r1 3), then sent a=Y alone; a name given twice is now refused as such,
    naming the cookie and not its value (s26 h1 2)."""
    big = "v" * 4094
    with answering(b"") as server:
        status, _, stderr = run("-b", f"a={big}", "-b", f"a={big}x", "-b", "c=1", server.url("/"))
        assert status == 2, stderr
        assert "-b 'a' given twice" in stderr and "vvvv" not in stderr
