"""Input rules of §2.1: every line read becomes exactly one Job, or is skipped on purpose."""

import io
import os
import threading

import pytest

from fetcher.input.jobs import JobMaker, validate
from fetcher.input.parsing import BOM
from fetcher.input.reader import InputReader, Source
from fetcher.settings import MAX_LINE_BYTES
from tests.servers import read_with_peak


def jobs_of(data: bytes, scheme: str = "https", unique: bool = False):
    reader = InputReader([Source("test", stream=io.BytesIO(data))], scheme, unique)
    return list(reader), reader


def test_strips_whitespace_and_skips_blank_and_comment_lines():
    jobs, _ = jobs_of(b"  http://a.test/x  \n\n   \n# comment\n   # indented comment\nb.test\n")
    assert [(j.url, j.target, j.line) for j in jobs] == [
        ("http://a.test/x", "http://a.test/x", 1),
        ("b.test", "https://b.test/", 6),
    ]
    assert all(j.invalid is None for j in jobs)


def test_crlf_and_byte_order_mark():
    jobs, _ = jobs_of(b"\xef\xbb\xbfhttp://a.test/\r\nhttp://b.test/\r\n")
    assert [j.target for j in jobs] == ["http://a.test/", "http://b.test/"]
    assert jobs[0].raw == b"http://a.test/"  # verbatim, without BOM or line end


def test_default_scheme_is_applied_only_without_scheme():
    jobs, _ = jobs_of(b"a.test/p\nhttps://b.test/\n", scheme="http")
    assert [j.target for j in jobs] == ["http://a.test/p", "https://b.test/"]
    assert jobs[0].url == "a.test/p"  # records show the URL as read


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"ftp://a.test/file", "unsupported scheme"),
        (b"http:///path-only", "no host"),
        (b"http://a.test:notaport/", "malformed URL: the port is not a number"),
        # urllib3 reads port 0 as no port (80, 443), where every host key said :0 (s19 t1 D5)
        (b"http://a.test:0/", "port 0"),
        (b"https://a.test:00/x", "port 0"),
        (b"a.test:0/x", "port 0"),
        (b"http://[::1/", "malformed URL"),
        (b"http://a.test/\xff\xfe", "not valid UTF-8"),
    ],
)
def test_invalid_lines_become_jobs_with_a_reason_and_line_number(line, reason):
    jobs, _ = jobs_of(b"http://ok.test/\n" + line + b"\n")
    assert len(jobs) == 2
    assert jobs[0].invalid is None
    assert reason in (jobs[1].invalid or "")
    assert jobs[1].line == 2
    assert jobs[1].raw == line


def test_overlong_line_is_invalid_and_does_not_swallow_the_next_line():
    long_line = b"http://a.test/" + b"x" * (3 * MAX_LINE_BYTES)
    jobs, _ = jobs_of(long_line + b"\nhttp://b.test/\n")
    assert [j.line for j in jobs] == [1, 2]
    assert "longer than" in (jobs[0].invalid or "")
    assert len(jobs[0].raw) == MAX_LINE_BYTES + 1  # one byte past: still too long, read back
    assert jobs[1].target == "http://b.test/" and jobs[1].invalid is None


def test_line_of_exactly_the_limit_is_accepted():
    url = b"http://a.test/" + b"y" * (MAX_LINE_BYTES - len(b"http://a.test/"))
    jobs, _ = jobs_of(url + b"\r\n")
    assert jobs[0].invalid is None and len(jobs[0].raw) == MAX_LINE_BYTES


def test_last_line_without_newline():
    jobs, _ = jobs_of(b"http://a.test/\nhttp://b.test/")
    assert [j.target for j in jobs] == ["http://a.test/", "http://b.test/"]


def test_unique_skips_exact_repeats_and_counts_them():
    jobs, reader = jobs_of(b"a.test\nhttps://a.test\na.test\nhttp://a.test\n", unique=True)
    assert [j.target for j in jobs] == ["https://a.test/", "http://a.test/"]
    assert reader.duplicates == 2


def test_sequence_numbers_span_sources_and_arguments_have_no_line():
    reader = InputReader(
        [
            Source("arguments", arguments=("http://a.test/", "b.test")),
            Source("file", stream=io.BytesIO(b"http://c.test/\n")),
        ],
        "https",
    )
    jobs = list(reader)
    assert [j.seq for j in jobs] == [0, 1, 2]
    assert [j.line for j in jobs] == [None, None, 1]


def test_an_argument_drops_its_byte_order_marks_as_a_line_does(tmp_path):
    """s34 t3 2: `xargs fetcher < list.txt` of a file saved with a byte-order mark gave its
    first URL the mark: "a character no host name holds", where `-i list.txt` fetched it, and
    kept out of --failed (read back, the mark is dropped). The mark is dropped as a line's is."""
    from tests.conftest import invoke
    from tests.servers import records

    reader = InputReader([Source("arguments", arguments=("\ufeff\ufeffhttp://a.test/x",))], "https")
    (job,) = list(reader)
    assert (job.url, job.invalid) == ("http://a.test/x", None)
    failed = tmp_path / "retry.txt"
    result = invoke(["--format", "jsonl", "--failed", str(failed), "\ufeffftp://a.test/"])
    (record,) = records(result.stdout)
    assert "unsupported scheme" in record["error"]["message"], record
    assert failed.read_text() == "ftp://a.test/\n"


def test_reading_is_lazy():
    """The first job is available before the rest of the input exists."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as stream, os.fdopen(write_fd, "wb") as writer:
        writer.write(b"http://a.test/\n")
        writer.flush()
        reader = iter(InputReader([Source("pipe", stream=stream)], "https"))
        assert next(reader).target == "http://a.test/"  # would block if reading were eager
        writer.write(b"http://b.test/\n")
        writer.close()
        assert next(reader).target == "http://b.test/"


def test_drain_yields_the_rest_of_files_but_not_of_pipes():
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe, open(os.devnull, "rb") as _:
        sources = [
            Source("args", arguments=("http://a.test/", "http://b.test/")),
            Source("pipe", stream=pipe),
            Source("args2", arguments=("http://c.test/",)),
        ]
        reader = InputReader(sources, "https")
        first = next(iter(reader))
        rest = list(reader.drain())
    assert first.target == "http://a.test/"
    assert [j.target for j in rest] == ["http://b.test/", "http://c.test/"]


@pytest.mark.parametrize(
    "url", ["http://a.test", "https://a.test:8443/x?y=1#f", "HTTP://A.TEST/", "http://[::1]:80/"]
)
def test_validate_accepts(url):
    assert validate(url) is None


@pytest.mark.parametrize("url", ["http://[v1.localhost]/", "http://[v7.a]:80/", "http://u@[v1.x]/"])
def test_a_bracketed_host_that_is_no_ipv6_address_is_refused(url):
    """urlsplit takes RFC 3986's IPvFuture; urllib3 looked up what was inside as a name, so a
    redirect to it was followed (s29 t1 5). curl refuses it too."""
    assert validate(url) == "malformed URL: only an IPv6 address goes in brackets"


@pytest.mark.parametrize("url", ["http://[::1]8443/p", "http://[::1]x:8443/", "http://u@[::1]]/"])
def test_a_bracketed_host_followed_by_anything_but_a_port_is_refused(url):
    """urlsplit drops what follows ']' unless it starts with ':': a redirect to
    http://[::1]8443/p went to [::1]:80, recorded ok (s35 t2 1). curl refuses it."""
    assert validate(url) == "malformed URL: only ':' and a port may follow an IPv6 address's ']'"


def test_drain_never_reads_a_pipe_after_a_finite_source():
    read_fd, write_fd = os.pipe()  # kept open: reading it would block forever
    with os.fdopen(read_fd, "rb") as pipe, os.fdopen(write_fd, "wb"):
        reader = InputReader(
            [Source("args", arguments=("http://a.test/", "http://b.test/")), Source("p", pipe)],
            "https",
        )
        assert reader.next_job() is not None
        assert [j.target for j in reader.drain()] == ["http://b.test/"]


@pytest.mark.parametrize(
    "line",
    [
        b"mailto:someone@example.com",
        b"javascript:alert(1)",
        b"data:text/plain,hello",
        b"tel:+123456",
        b"http://a.test/with space",
        b"a.test/with\ttab",
        b"http://a.test/ x",
    ],
)
def test_other_schemes_without_slashes_and_inner_whitespace_are_not_urls(line):
    """Issue 11: mailto:someone@example.com was fetched as https://mailto:***@example.com."""
    jobs, _ = jobs_of(line + b"\n")
    assert len(jobs) == 1
    assert jobs[0].invalid is not None
    assert jobs[0].target == jobs[0].url  # no default scheme glued on
    assert jobs[0].raw == line


@pytest.mark.parametrize(
    ("line", "target"),
    [
        (b"localhost:8080/x", "https://localhost:8080/x"),
        (b"localhost:8080", "https://localhost:8080/"),  # the path as sent: '/' (s37 t5 1)
        (b"a.test:443?q=1", "https://a.test/?q=1"),  # the port as sent: none (s36 t1 1)
        (b"user@a.test/x", "https://user@a.test/x"),
        (b"a.test/path:with:colons", "https://a.test/path:with:colons"),
        (b"a.test/x?y=1#frag", "https://a.test/x?y=1"),  # never sent (s36 t1 1)
    ],
)
def test_a_line_that_starts_with_a_host_gets_the_default_scheme(line, target):
    jobs, _ = jobs_of(line + b"\n")
    assert [(j.target, j.invalid) for j in jobs] == [(target, None)]


def test_a_file_with_cr_only_line_ends_says_so_in_its_record():
    """A file saved with CR-only line ends (classic Mac OS) is one line, as for wget -i and
    xargs: its record must say why, not leave the user to find the CRs in a long URL."""
    jobs, _ = jobs_of(b"http://a.test/1\rhttp://a.test/2\r")
    assert len(jobs) == 1
    assert jobs[0].invalid is not None and "CR-only line ends" in jobs[0].invalid


def test_a_byte_order_mark_starting_a_later_line_is_dropped_as_the_first_lines_is():
    """`cat a.txt b.txt | fetcher`, b.txt saved with a BOM: its first URL was invalid_url
    ("unsupported scheme ''"), its first comment a URL line."""
    bom = b"\xef\xbb\xbf"
    jobs, _ = jobs_of(b"http://a.test/\n" + bom + b"http://b.test/\n" + bom + b"# note\n")
    assert [(job.line, job.target, job.invalid) for job in jobs] == [
        (1, "http://a.test/", None),
        (2, "http://b.test/", None),
    ]
    reader = InputReader(
        [Source("t", stream=io.BytesIO(b'{"url": "a.test"}\n' + bom + b'{"url": "b.test"}\n'))],
        "https",
        input_format="jsonl",
    )
    assert [(job.target, job.invalid) for job in reader] == [
        ("https://a.test/", None),
        ("https://b.test/", None),
    ]


@pytest.mark.parametrize(
    ("line", "target"),
    [
        (
            b"127.0.0.1:8080/login?next=https://example.org/x",
            "https://127.0.0.1:8080/login?next=https://example.org/x",
        ),
        (
            b"web.archive.org/web/2020/https://example.org/",
            "https://web.archive.org/web/2020/https://example.org/",
        ),
        (b"localhost:8080/r?u=http://a/", "https://localhost:8080/r?u=http://a/"),
    ],
)
def test_a_url_in_the_query_or_path_is_not_the_line_s_scheme(line, target):
    """Only a scheme at the start makes a line a URL with one: '://' further on (a redirect
    target in the query, an archived URL in the path) left the line without the default
    scheme, an invalid_url naming a scheme never written (s14 spec audit, 4)."""
    jobs, _ = jobs_of(line + b"\n")
    assert [(job.target, job.invalid) for job in jobs] == [(target, None)]


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (b"http://a.test/n1\0http://a.test/n2\0", "NUL"),
        (b"http://a.test/a\x1bb", "control character"),
        (b"http://a.test/a\x7fb", "control character"),
        (b"http://a{b/", "host"),
        (b"http://}}/", "host"),
        (b'http://a"b.test/', "host"),
        (b"http://a|b.test/", "host"),
        # A %-escape in the host was looked up as written (dns), and under -x hit http.client's
        # assertion for a zone id: kind other, message "b''" (s17 h1 D1, D5, D13).
        (b"http://%C3%BC.test/", "%-escape in the host"),
        (b"http://a%2fb.test/", "%-escape in the host"),
        (b"http://[::1%25lo]:8080/", "zone"),
    ],
)
def test_control_characters_and_characters_no_host_holds_are_invalid(line, said):
    """They were percent-encoded and fetched (a NUL-separated list was one request, exit 0),
    or looked up in DNS, or hit an assertion in http.client under -x (s14 spec audit, 7)."""
    jobs, _ = jobs_of(line + b"\n")
    assert len(jobs) == 1 and jobs[0].invalid is not None and said in jobs[0].invalid, jobs


def test_an_over_long_line_with_crs_across_the_cut_is_kept_over_long():
    """CRs where the reader cuts a long line were taken for its line end and dropped: the line
    kept was shorter than the limit, and read back from --failed, a valid URL (s16 r1 1)."""
    from fetcher.input.reader import read_lines

    line = b"http://a.test/" + b"q" * (MAX_LINE_BYTES - 16) + b"\r" * 9 + b"x" * 100
    [(number, kept, too_long)] = list(read_lines(io.BytesIO(line + b"\n")))
    assert too_long and len(kept) == MAX_LINE_BYTES + 1, len(kept)
    assert kept.startswith(line[:MAX_LINE_BYTES]) and not kept.endswith(b"\r")
    [(_, again, still_too_long)] = list(read_lines(io.BytesIO(kept + b"\n")))
    assert still_too_long and again == kept


def test_a_line_of_the_longest_length_ended_by_several_crs_is_whole():
    """8,192 bytes then CR CR LF: the read stopped inside its line end, which was taken for
    the line being cut, and the line went to --failed with a byte it did not have (found by
    test_fuzz's property in CI). CRs before the LF are the line's end, as for a shorter line."""
    from fetcher.input.reader import read_lines

    line = b"x" * (MAX_LINE_BYTES - 2) + "é".encode()
    for end in (b"\r\r\n", b"\r\r\r\r\n"):
        [(number, kept, too_long)] = list(read_lines(io.BytesIO(BOM + line + end)))
        assert (kept, too_long) == (line, False), end
    [(_, cut, still_long)] = list(read_lines(io.BytesIO(line + b"y\r\r\n")))
    assert still_long and cut.startswith(line)  # one byte more is too long, as before


# A list saved as UTF-16 (Windows PowerShell 5's `>`, Notepad's "Unicode") or UTF-32, with its
# byte-order mark: every line was invalid_url, blamed on CR-only line ends, a NUL-separated list
# or bad UTF-8, and one record more than the lines (s17 h1 D14, h3 5).
WIDE_LIST = "http://a.test/1\r\n# a comment\r\n\r\nb.test/café\r\n"
WIDE = {
    "utf-16-le": b"\xff\xfe" + WIDE_LIST.encode("utf-16-le"),
    "utf-16-be": b"\xfe\xff" + WIDE_LIST.encode("utf-16-be"),
    "utf-32-le": b"\xff\xfe\x00\x00" + WIDE_LIST.encode("utf-32-le"),
    "utf-32-be": b"\x00\x00\xfe\xff" + WIDE_LIST.encode("utf-32-be"),
}


@pytest.mark.parametrize("data", WIDE.values(), ids=WIDE.keys())
def test_a_utf16_or_utf32_list_with_its_byte_order_mark_is_read_as_its_text(data):
    jobs, reader = jobs_of(data)
    assert [(j.line, j.target, j.invalid) for j in jobs] == [
        (1, "http://a.test/1", None),
        (4, "https://b.test/café", None),
    ]
    # --failed and --state keep the lines as UTF-8: a run reading them back reads them alike.
    assert [j.raw for j in jobs] == [b"http://a.test/1", "b.test/café".encode()]
    assert reader.count == 2


@pytest.mark.parametrize(
    ("first", "second"),
    [("16-le", "16-be"), ("16-be", "16-le"), ("32-le", "32-be"), ("32-be", "32-le")],
)
def test_a_wide_list_of_the_other_byte_order_joined_with_cat_names_its_mark(first, second):
    """s32 t3 3: a UTF-16 LE list joined after a BE one, or the reverse: read in the first's
    byte order, the second's mark is U+FFFE and its lines one line of garbage, "whitespace
    inside the URL", 50 URLs in one record that never said why. Its mark is named, a UTF-32
    one's too (s32 r3 4: "not valid UTF-32")."""
    marks = {"16-le": b"\xff\xfe", "16-be": b"\xfe\xff", "32-le": b"\xff\xfe\x00\x00",
             "32-be": b"\x00\x00\xfe\xff"}  # fmt: skip
    data = marks[first] + "http://a.test/\n".encode(f"utf-{first}")
    data += marks[second] + "http://b.test/\nhttp://c.test/\n".encode(f"utf-{second}")
    many = marks[second] + "".join(f"http://b.test/{n}\n" for n in range(400)).encode(
        f"utf-{second}"
    )  # one line past 8 KiB read in the first's order (s32 r4 2)
    jobs_many, _ = jobs_of(marks[first] + "http://a.test/\n".encode(f"utf-{first}") + many)
    assert "byte-order mark of the other byte order" in (jobs_many[1].invalid or "")
    jobs, _ = jobs_of(data)
    assert jobs[0].invalid is None and len(jobs) == 2, [(j.target, j.invalid) for j in jobs]
    assert "byte-order mark of the other byte order" in (jobs[1].invalid or ""), jobs[1].invalid


@pytest.mark.parametrize(("first", "second"), [("16-le", "16-be"), ("16-be", "16-le")])
def test_a_line_of_the_other_byte_order_shows_its_url_readable_and_masked(first, second):
    """s34 r2 3: shown as read in the first's byte order, such a line's password was there,
    each character's bytes swapped (`愀氀椀挀攀㨀吀伀倀匀`): no mask sees it, and anyone swaps it
    back. Its URL is shown swapped back, masked."""
    marks = {"16-le": b"\xff\xfe", "16-be": b"\xfe\xff"}
    data = marks[first] + "http://a.test/\n".encode(f"utf-{first}")
    data += marks[second] + "http://alice:TOPSECRET@b.test/x\n".encode(f"utf-{second}")
    jobs, _ = jobs_of(data)
    assert "other byte order" in (jobs[1].invalid or ""), jobs[1].invalid
    assert jobs[1].url == "http://alice:***@b.test/x", jobs[1].url


def test_a_utf16_list_keeps_the_line_rules_bound_and_broken_characters():
    """The 8 KiB bound holds for the line as UTF-8; a character UTF-16 cannot hold (a lone
    surrogate) makes its line invalid, not the next one."""
    long_line = "http://a.test/" + "x" * MAX_LINE_BYTES
    text = f"{long_line}\nhttp://b.test/\n".encode("utf-16-le")
    lone = (
        "http://c.test/".encode("utf-16-le")
        + b"\x00\xd8"
        + "\nhttp://d.test/\n".encode("utf-16-le")
    )
    jobs, _ = jobs_of(b"\xff\xfe" + text + lone)
    assert [(j.line, j.invalid is None) for j in jobs] == [
        (1, False), (2, True), (3, False), (4, True),
    ]  # fmt: skip
    assert "longer than" in (jobs[0].invalid or "")
    assert "UTF-16" in (jobs[2].invalid or "")


def test_an_odd_last_byte_of_a_utf16_list_is_its_last_line_s_error():
    jobs, _ = jobs_of(b"\xff\xfe" + "http://a.test/\nhttp://b.test/".encode("utf-16-le") + b"x")
    assert [(j.line, j.invalid is None) for j in jobs] == [(1, True), (2, False)]
    assert "not valid UTF-16" in (jobs[1].invalid or "")


def test_a_utf16_file_is_not_counted_ahead_and_drains_as_utf8(tmp_path):
    """The count ahead reads the file's bytes, which are not lines of UTF-8 here; a hard stop's
    hand-back of the unread rest goes to --failed as UTF-8, as the lines read do."""
    path = tmp_path / "urls16.txt"
    path.write_bytes(WIDE["utf-16-le"] + "c.test/x\r\nd.test/y\r\n".encode("utf-16-le"))
    with path.open("rb") as stream:
        reader = InputReader([Source(str(path), stream=stream)], "https")
        assert reader.count_ahead() is None
        assert reader.next_job() is not None
        rest = b"\n".join(job.raw for job in reader.drain(lines_only=True))
    assert rest == "# a comment\r\n\r\nb.test/café\r\nc.test/x\r\nd.test/y\r".encode()


def test_a_utf16_pipe_is_read_lazily():
    """A line is handed on when it has come, as from a UTF-8 pipe: decoding waits for no
    more than the stream has."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as stream, os.fdopen(write_fd, "wb") as writer:
        writer.write("http://a.test/\n".encode("utf-16"))
        writer.flush()
        reader = iter(InputReader([Source("pipe", stream=stream)], "https"))
        assert next(reader).target == "http://a.test/"  # would block if decoding read ahead
        writer.write("http://b.test/\n".encode("utf-16-le"))
        writer.close()
        assert next(reader).target == "http://b.test/"


def jobs_of_a_pipe_written_in_two(data: bytes, first: int) -> list:
    """The Jobs of a pipe whose writer sends data's first bytes, then (once the reader has had
    time to look at them) the rest."""
    read_fd, write_fd = os.pipe()
    jobs: list = []
    with os.fdopen(read_fd, "rb") as stream, os.fdopen(write_fd, "wb", buffering=0) as writer:
        writer.write(data[:first])
        reading = threading.Thread(
            target=lambda: jobs.extend(InputReader([Source("pipe", stream=stream)], "https"))
        )
        reading.start()
        reading.join(timeout=0.2)  # a bound, not a hand-off: a reader that decides on what
        writer.write(data[first:])  # it has decides within it; one that waits gets the rest
        writer.close()
        reading.join(timeout=10)
        assert not reading.is_alive()
    return jobs


@pytest.mark.parametrize("first", [1, 3])
@pytest.mark.parametrize("data", WIDE.values(), ids=WIDE.keys())
def test_a_pipe_whose_mark_comes_in_pieces_is_read_as_its_text(data, first):
    """A pipe's first write may hold less than the mark (s18 hC: one peek saw one byte and
    read the list as UTF-8, every line invalid); a mark's first bytes wait for the rest."""
    jobs = jobs_of_a_pipe_written_in_two(data, first)
    assert [(j.line, j.target) for j in jobs] == [
        (1, "http://a.test/1"),
        (4, "https://b.test/café"),
    ]


@pytest.mark.parametrize("head", [b"\xff", b"\xfe", b"\x00", b"\x00\x00\xfe"])
def test_a_pipe_starting_with_part_of_a_mark_only_keeps_its_bytes(head):
    """What looked like the start of a mark but is not one is read as it is, no byte lost."""
    data = head + b"x.test/\nhttp://b.test/\n"
    jobs = jobs_of_a_pipe_written_in_two(data, 1)
    assert [j.line for j in jobs] == [1, 2]
    assert jobs[0].invalid is not None and jobs[0].raw == head + b"x.test/"
    assert (jobs[1].target, jobs[1].invalid) == ("http://b.test/", None)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_a_utf16_list_without_its_mark_says_what_it_looks_like(encoding):
    """Without a mark it cannot be told from bytes for sure, so it is not decoded; but its
    records named a NUL-separated list (find -print0), which the user did not make."""
    jobs, _ = jobs_of("http://a.test/1\nhttp://a.test/2\n".encode(encoding))
    assert len(jobs) >= 2
    for job in jobs[:2]:
        assert job.invalid is not None and "UTF-16 without its byte-order mark" in job.invalid


def test_a_utf16_file_joined_after_a_utf8_one_says_so():
    """`cat a.txt b16.txt`: the mark is no longer at the start, so the rest is not decoded; its
    records blamed bad UTF-8 and CR-only line ends, and now say what the lines look like."""
    utf16 = "http://b.test/\r\nhttp://c.test/\r\n".encode("utf-16")
    jobs, _ = jobs_of(b"http://a.test/\n" + utf16)
    assert jobs[0].invalid is None
    for job in jobs[1:]:
        assert job.invalid is not None and "UTF-16" in job.invalid, job
        assert "carriage return" not in job.invalid and "UTF-8" not in job.invalid.split(":")[0]


class _LongUtf16Line(io.RawIOBase):
    """A UTF-16 list of one line of `size` characters and a short one, made as it is read."""

    def __init__(self, size: int) -> None:
        piece = "x".encode("utf-16-le") * 16384
        self.pieces = iter(
            [b"\xff\xfe", *[piece] * (size // 16384), "\nhttp://b.test/\n".encode("utf-16-le")]
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        piece = next(self.pieces, b"")  # never longer than a BufferedReader's buffer
        buffer[: len(piece)] = piece
        return len(piece)


def test_a_long_utf16_line_is_read_in_bounded_memory():
    """The 8 KiB bound of a line holds as for UTF-8: a line of 4 million characters is cut and
    skipped in bounded pieces, never held."""
    stream = io.BufferedReader(_LongUtf16Line(4_000_000), buffer_size=1 << 16)
    jobs, peak = read_with_peak(InputReader([Source("long", stream=stream)], "https"))
    assert [(j.line, j.invalid is None) for j in jobs] == [(1, False), (2, True)]
    assert peak < 1 << 20, peak


@pytest.mark.parametrize(
    ("line", "holds"), [(b"x", 1), (b" " * 40 + b"#", 0), (b"\xef\xbb\xbf  h", 1)]
)
def test_counting_a_file_ahead_keeps_no_more_than_a_line_s_start(tmp_path, line, holds):
    """The progress display's count of a file's URLs kept a line's whole unfinished part, and
    copied it once a MiB: a 1 GB line took 371 MB and 32 s, a 3 GB one printed nothing for
    minutes (s26 h2 1). Only a line's start decides whether it holds a URL."""
    import tracemalloc

    from fetcher.input.reader import count_url_lines

    path = tmp_path / "long.txt"
    with path.open("wb") as file:
        file.write(line + b"y" * (24 << 20) + b"\nhttp://a.test/\n\n# c\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        tracemalloc.start()
        count = count_url_lines(fd, 0, lambda: False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        os.close(fd)
    assert count == holds + 1
    assert peak < 6 << 20, peak


@pytest.mark.parametrize("tail", [b"", b"#c", b"  ", b"h"])
def test_counting_ahead_drops_a_long_line_s_marks_as_the_reader_does(tmp_path, tail):
    """A line of marks across the count's 1 MiB reads (then nothing, a comment, blanks or a
    URL) is what the reader makes of it: the count ahead took the marks past its 4 KiB look
    at a line's start for a URL (s28 r2 3)."""
    from fetcher.input.reader import count_url_lines

    path = tmp_path / "marks.txt"
    # A blank line first: the first 1 MiB read then ends between two marks.
    path.write_bytes(b"\n" + b"\xef\xbb\xbf" * 400_000 + tail + b"\nhttp://a.test/\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert count_url_lines(fd, 0, lambda: False) == 1 + (tail == b"h")
    finally:
        os.close(fd)
    with path.open("rb") as stream:
        jobs = list(InputReader([Source("marks", stream=stream)], "https"))
    assert len(jobs) == 1 + (tail == b"h")


def test_a_mark_of_the_other_byte_order_mid_line_makes_the_line_invalid_and_masked():
    """s34 r3 4: a wide list whose last line has no line end, joined with `cat` to one of the
    other byte order: the mark came mid-line, the line was fetched (a.test, its path the
    second file's first URL swapped), and shown with that URL's password byte-swapped."""
    data = b"\xff\xfe" + "http://a.test:9/x".encode("utf-16-le")
    data += b"\xfe\xff" + "http://alice:FIRSTSECRET@b.test:9/x\n".encode("utf-16-be")
    jobs, _ = jobs_of(data)
    assert "other byte order" in (jobs[0].invalid or ""), jobs[0].invalid
    assert "FIRSTSECRET" not in jobs[0].url and "alice:***@b.test" in jobs[0].url, jobs[0].url


def test_three_wide_lists_joined_show_each_part_in_its_own_order_masked():
    """s34 r4 1: LE, BE and LE lists joined with `cat`, the first two with no last line end:
    swapped back from the mark to the line's end, the third list's URL, read in its own order,
    was swapped into garbage, and its password shown byte-swapped."""
    data = b"\xff\xfe" + "http://a.test:9/x".encode("utf-16-le")
    data += b"\xfe\xff" + "http://bob:BOBSECRET@b.test:9/x".encode("utf-16-be")
    data += b"\xff\xfe" + "http://carol:CAROLSECRET@c.test:9/x\n".encode("utf-16-le")
    jobs, _ = jobs_of(data)
    shown = jobs[0].url
    assert "other byte order" in (jobs[0].invalid or ""), jobs[0].invalid
    assert "bob:***@b.test" in shown and "carol:***@c.test" in shown, shown
    assert "SECRET" not in shown, shown


def test_a_utf8_line_holding_u_fffe_is_refused_and_shown_as_it_is():
    """s34 r4 3 had a UTF-8 line with U+FFFE after its start (a noncharacter) read as it is,
    unless an ASCII character's bytes swapped followed it; a join of wide lists whose second
    began with a character not ASCII was then fetched (s35 r1 1). A line is no one's URL with
    a reversed mark anywhere: refused, its text before the mark shown as it is."""
    (job,), _ = jobs_of("http://a.test/caf\u00e9\ufffe\n".encode())
    assert "other byte order" in (job.invalid or ""), job.invalid
    assert job.url == "http://a.test/caf\u00e9", job.url


@pytest.mark.parametrize("start", ["\u00fcser", "\u4f8b\u3048.test/a", "\u00a0x", "\U0001f600x"])
def test_a_join_whose_other_order_begins_with_no_ascii_is_refused_and_masked(start):
    """s35 r1 1: a reversed mark mid-line followed by a character that is not ASCII swapped
    (ü, 例, a no-break space, an emoji) let the line be fetched: the second list, byte-swapped,
    went in the path of a request to the first list's host, its passwords in it."""
    data = b"\xff\xfe" + "http://a.test:9/x".encode("utf-16-le")
    data += b"\xfe\xff" + f"{start}\nhttp://bob:BOBSECRET@b.test:9/x\r\n".encode("utf-16-be")
    data += "carol:CAROLSECRET@c.test:9/\n".encode("utf-16-be")
    jobs, _ = jobs_of(data)
    assert "other byte order" in (jobs[0].invalid or ""), jobs[0].invalid
    shown = jobs[0].url
    assert "SECRET" not in shown and "bob:***@b.test" in shown and "carol:***@" in shown, shown


def test_a_third_list_of_the_reader_s_order_with_no_mark_is_shown_masked():
    """s35 r1 2: LE (a mark), BE (a mark) and LE with none (`iconv -t UTF-16LE` writes none),
    no last line ends: swapped back to the next mark, the third list's URL was swapped into
    garbage, its password shown byte-swapped in the record and the summary."""
    data = b"\xff\xfe" + "http://a.test:9/x".encode("utf-16-le")
    data += b"\xfe\xff" + "http://bob:BOBSECRET@b.test:9/x".encode("utf-16-be")
    data += "http://carol:CAROLSECRET@c.test:9/x\n".encode("utf-16-le")
    jobs, _ = jobs_of(data)
    shown = jobs[0].url
    assert "bob:***@b.test" in shown and "carol:***@c.test" in shown, shown


@pytest.mark.parametrize("at", range(MAX_LINE_BYTES - 6, MAX_LINE_BYTES))
def test_a_reversed_mark_at_the_8_kib_edge_of_an_argument_is_seen(at):
    """s35 r1 6: a mark whose bytes end past the first 8 KiB was not looked for, and the
    argument was refused as too long, its second URL's password shown byte-swapped."""
    first = "http://a.test/" + "x" * (at - len("http://a.test/"))
    swapped = "".join(chr(ord(c) << 8) for c in "http://bob:BOBSECRET@b.test/x")
    job = JobMaker("https").argument_job(first + "\ufffe" + swapped)
    assert job is not None and "other byte order" in (job.invalid or ""), job and job.invalid
    assert "SECRET" not in job.url, job.url


@pytest.mark.parametrize(("first", "second"), [("le", "be"), ("be", "le")])
@pytest.mark.parametrize("ended", [False, True], ids=["joined-mid-line", "line-ended"])
def test_a_list_of_the_other_byte_order_with_no_mark_is_refused_and_masked(first, second, ended):
    """s35 r2 1: a wide list joined with cat to one of the other byte order that has no mark
    of its own (iconv -t UTF-16BE writes none): read in the first's order, its text is swapped
    ASCII (`栀琀琀瀀`), its line ends too, one line that was fetched (the passwords in the path
    of a request to the first list's host), or shown byte-swapped. A run of swapped ASCII is
    text of the other byte order: refused, shown turned back, masked."""
    marks = {"le": b"\xff\xfe", "be": b"\xfe\xff"}
    data = marks[first] + ("http://a.test:9/first" + "\n" * ended).encode(f"utf-16-{first}")
    data += "http://alice:S3CRETpw@b.test:9/x\nhttps://bob:HUNTER2@c.test/y\n".encode(
        f"utf-16-{second}"
    )
    jobs, _ = jobs_of(data)
    turned = jobs[-1]
    assert "other byte order" in (turned.invalid or ""), [(j.url, j.invalid) for j in jobs]
    assert "S3CRET" not in turned.url and "HUNTER" not in turned.url, turned.url
    assert "alice:***@b.test" in turned.url and "bob:***@c.test" in turned.url, turned.url
    assert [j.invalid for j in jobs[:-1]] == [None] * ended


def test_a_utf8_line_of_cjk_is_not_taken_for_swapped_text():
    """The control: real CJK text (one U+xx00 character among others) is read as it is."""
    (job,), _ = jobs_of("http://a.test/\u4e00\u4e2d\u6587\u4e00/\u4f00\u5000x\n".encode())
    assert job.invalid is None, job.invalid


def test_a_row_the_last_fetcher_keyed_without_the_root_s_slash_names_its_line():
    """s37 r3 2: --retry-failed took a stored line whose row an earlier fetcher keyed
    `http://localhost:18099` (its spelling mapped, no '/') for one edited by hand, and
    retried the bare URL, the line's headers, data and meta lost."""
    from fetcher.input.reader import names_url

    job = JobMaker("https").url_job("http://LOCALHOST:18099", None, b"http://LOCALHOST:18099")
    assert job.target == "http://localhost:18099/"
    assert names_url(job, "http://localhost:18099") and names_url(job, job.target)
    assert not names_url(job, "http://localhost:18099/other")
