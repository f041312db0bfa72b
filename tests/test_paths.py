"""Where -o DIR saves each body (SPEC §2.4): fetcher.output.paths.url_parts and OutputDir.

Explicit examples pin the layout; hypothesis properties show, for arbitrary URLs, that names are
safe and stay inside DIR, and, for arbitrary sequences of URLs placed and saved one after another
(also over what an earlier run left), that no two URLs share a file and placing never fails.
The last section pins bugs found by these tests and since fixed.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import threading
from urllib.parse import quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.output.paths import (
    INDEX,
    MAX_COMPONENT_BYTES,
    OutputDir,
    name_hash,
    name_parts,
    remote_name_parts,
    url_hash,
    url_parts,
)

HASH_SUFFIX = re.compile(r"~[0-9a-f]{8}\Z")
FAST = settings(max_examples=300, deadline=None)
QUICK = settings(max_examples=150, deadline=None)


def nbytes(name: str) -> int:
    return len(name.encode("utf-8", "surrogatepass"))


def is_control(char: str) -> bool:
    """C0 controls and DEL: what a name must never hold raw (NUL, newline, escape...)."""
    return ord(char) < 0x20 or ord(char) == 0x7F


def inside(root: str, path: str) -> bool:
    """path (after resolving '..' and symbolic links) is root or below it."""
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


def place(out: OutputDir, url: str) -> str:
    """The path OutputDir gives url, its folder descriptor closed at once."""
    with out.place(url) as placed:
        return placed.path


def save(path: str, url: str) -> None:
    """What the real writer does: a temporary file beside the target, renamed over it."""
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".fetcher-", suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogatepass", newline="") as file:
        file.write(url)
    os.replace(temporary, path)


def content(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogatepass", newline="") as file:
        return file.read()


def files_under(root: str) -> set[str]:
    return {os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names}


def place_all(out: OutputDir, root: str, urls: list[str], late: bool = False) -> dict[str, str]:
    """Place and save each URL in order (or, when late, save them all only after placing them
    all, as when downloads are still running); check the properties; return url -> path."""
    given_to: dict[str, str] = {}
    owner: dict[str, str] = {}
    for url in urls:
        path = place(out, url)  # (d) never raises
        assert inside(root, os.path.dirname(path)), (url, path)  # (a)
        assert os.path.dirname(os.path.realpath(path)) != os.path.realpath(root), (url, path)
        assert given_to.setdefault(url, path) == path, f"{url} moved: {given_to[url]} {path}"  # (c)
        assert owner.setdefault(path, url) == url, f"{url} and {owner[path]} share {path}"  # (b)
        assert not os.path.isdir(path), (url, path)
        if not late:
            save(path, url)
    for url in urls if late else []:
        save(given_to[url], url)
    for url, path in given_to.items():
        assert inside(root, path), (url, path)  # (a), with the file there
        assert content(path) == url, f"{path} was overwritten"  # (e)
    return given_to


# ---------------------------------------------------------------------------------------------
# 1. Layout, explicit examples
# ---------------------------------------------------------------------------------------------

LAYOUT = [
    # index.html for an empty path or one ending in '/'
    ("http://h/", ["h", "index.html"]),
    ("http://h", ["h", "index.html"]),
    ("http://h/a/", ["h", "a", "index.html"]),
    ("http://h/a", ["h", "a"]),
    ("http://h/a/b.txt", ["h", "a", "b.txt"]),
    # host[_port]: default ports give no suffix, others do; the host is lower-cased, the path not
    ("https://h:8443/x", ["h_8443", "x"]),
    ("http://h:8080/", ["h_8080", "index.html"]),
    ("http://h:80/x", ["h", "x"]),
    ("https://h:443/x", ["h", "x"]),
    ("http://h:443/x", ["h_443", "x"]),
    ("https://h:80/x", ["h_80", "x"]),
    ("http://h:/x", ["h", "x"]),
    ("HTTP://Ex.AMPLE.Com/A/B", ["ex.ample.com", "A", "B"]),
    ("HTTPS://H:443/", ["h", "index.html"]),
    ("http://[::1]:8080/a", ["__1_8080", "a"]),
    # an IPv6 address without its brackets, each ':' an '_' (usage.md, Saving bodies)
    ("https://[2001:DB8::A]:443/a", ["2001_db8__a", "a"]),
    ("http://[::ffff:127.0.0.1]:81/a", ["__ffff_127.0.0.1_81", "a"]),
    ("http://127.0.0.1/a", ["127.0.0.1", "a"]),
    # user information never reaches the name
    ("http://user:secret@h/a", ["h", "a"]),
    # the query is kept after '@', '/' in it re-encoded; an empty query or a fragment is dropped
    ("http://h/a?x=1&y=2", ["h", "a@x=1&y=2"]),
    ("http://h/?q", ["h", "index.html@q"]),
    ("http://h?q", ["h", "index.html@q"]),
    ("http://h/a/?q", ["h", "a", "index.html@q"]),
    ("http://h/a?x=/etc/passwd", ["h", "a@x=%2Fetc%2Fpasswd"]),
    ("http://h/a?%2F..%2F", ["h", "a@%2F..%2F"]),
    ("http://h/a?x=%41%00%25", ["h", "a@x=A%00%25"]),
    ("http://h/a?", ["h", "a"]),
    ("http://h/a#frag", ["h", "a"]),
    ("http://h/a?q#frag", ["h", "a@q"]),
    # percent-decoded for readability; '/', '\\', '%', NUL, controls (re-)encoded
    ("http://h/a%2Fb", ["h", "a%2Fb"]),
    ("http://h/a%2fb", ["h", "a%2Fb"]),
    ("http://h/a%41", ["h", "aA"]),
    ("http://h/caf%C3%A9", ["h", "café"]),
    ("http://h/caf%c3%a9/", ["h", "café", "index.html"]),
    ("http://h/a%20b", ["h", "a b"]),
    ("http://h/a%25", ["h", "a%25"]),
    ("http://h/a%2541", ["h", "a%2541"]),
    ("http://h/a%", ["h", "a%25"]),
    ("http://h/a%zz", ["h", "a%25zz"]),
    ("http://h/a%00b", ["h", "a%00b"]),
    ("http://h/a%0Ab%0d%1B%7F", ["h", "a%0Ab%0D%1B%7F"]),
    ("http://h/a%5Cb", ["h", "a%5Cb"]),
    ("http://h/a\\b", ["h", "a%5Cb"]),
    # bytes that are not UTF-8 stay percent-encoded as received: a name is always valid text
    ("http://h/a%ff", ["h", "a%FF"]),
    ("http://h/caf%E9", ["h", "caf%E9"]),
    ("http://h/caf%E9/x?q=%e9%C3%A9%FF", ["h", "caf%E9", "x@q=%E9é%FF"]),
    ("http://h/%C3%A9%C3", ["h", "é%C3"]),  # a sequence cut short
    ("http://h/%ED%A0%80", ["h", "%ED%A0%80"]),  # an encoded surrogate is not UTF-8
    ("http://h/%C0%AF", ["h", "%C0%AF"]),  # an overlong '/' neither
    ("http://h/caf%25E9", ["h", "caf%25E9"]),  # the text '%E9' stays apart from the byte
    # dot segments resolved, clamped at the host; empty segments dropped
    ("http://h/./a/../b", ["h", "b"]),
    ("http://h/../../etc/passwd", ["h", "etc", "passwd"]),
    ("http://h/..", ["h", "index.html"]),
    ("http://h/a/b/../", ["h", "a", "index.html"]),
    ("http://h/a//b", ["h", "a", "b"]),
    ("http://h//", ["h", "index.html"]),
    ("http://h/.../", ["h", "...", "index.html"]),
    # an encoded dot segment is a name, kept encoded: never '.' or '..'
    ("http://h/%2e", ["h", "%2E"]),
    ("http://h/%2e%2E", ["h", "%2E%2E"]),
    ("http://h/%2e%2e/%2e%2e/x", ["h", "%2E%2E", "%2E%2E", "x"]),
    ("http://h/.%2e/x", ["h", "%2E%2E", "x"]),
    ("http://h/..%2F..%2Fx", ["h", "..%2F..%2Fx"]),
    ("http://h/%252E", ["h", "%252E"]),
]


@pytest.mark.parametrize(("url", "expected"), LAYOUT)
def test_layout(url: str, expected: list[str]) -> None:
    assert url_parts(url) == expected


def test_components_at_most_255_bytes_exactly() -> None:
    assert url_parts("http://h/" + "a" * 255) == ["h", "a" * 255]
    name = url_parts("http://h/" + "a" * 256)[-1]
    assert nbytes(name) == MAX_COMPONENT_BYTES
    assert HASH_SUFFIX.search(name) and name.startswith("a" * 240)


@pytest.mark.parametrize("chunk", ["a", "é", "€", "😀", "%2F", "%00"])
@pytest.mark.parametrize("where", ["host", "folder", "file", "query"])
def test_long_components_are_cut_with_a_hash(chunk: str, where: str) -> None:
    long = chunk * 400  # decoded and re-encoded, each of these names is itself
    url, index, whole = {
        "host": (f"http://{'h' * 400}/x", 0, "h" * 400),
        "folder": (f"http://h/{long}/x", 1, long),
        "file": (f"http://h/x/{long}", 2, long),
        "query": (f"http://h/x?{long}", 1, "x@" + long),
    }[where]
    parts = url_parts(url)
    assert all(nbytes(name) <= MAX_COMPONENT_BYTES for name in parts)
    name = parts[index]
    # A file's: a hash of the whole URL; a folder's (a host's too): of its own name, which
    # each of its files shares (s25 h5 5).
    folder = where in ("host", "folder")
    assert name.endswith("~" + (name_hash(whole) if folder else url_hash(url)))
    kept = name[: -len("~12345678")]
    assert whole.startswith(kept)  # cut, never split inside a character
    assert nbytes(kept) > MAX_COMPONENT_BYTES - len("~12345678") - 4  # as long as fits


@pytest.mark.parametrize("where", ["folder", "file", "query"])
def test_long_names_differing_after_255_bytes_differ(where: str) -> None:
    stem = "n" * 300
    urls = {
        "folder": (f"http://h/{stem}x/f", f"http://h/{stem}y/f"),
        "file": (f"http://h/{stem}x", f"http://h/{stem}y"),
        "query": (f"http://h/f?{stem}x", f"http://h/f?{stem}y"),
    }[where]
    first, second = (url_parts(url) for url in urls)
    assert first != second
    assert all(nbytes(name) <= MAX_COMPONENT_BYTES for name in first + second)


# ---------------------------------------------------------------------------------------------
# 2. url_parts: properties for arbitrary URLs
# ---------------------------------------------------------------------------------------------

LABEL = st.text("abcdefghijklmnopqrstuvwxyzABCDEFXYZ0123456789-", min_size=1, max_size=15)
HOSTS = st.one_of(
    st.lists(LABEL, min_size=1, max_size=4).map(".".join),
    st.sampled_from(
        ["localhost", "127.0.0.1", "[::1]", "[2001:DB8::A]", "EXAMPLE.com", "bücher.example"]
    ),
    st.integers(200, 400).map(lambda n: "h" * n),
)
PORTS = st.one_of(st.none(), st.sampled_from([80, 443, 8080, 8443]), st.integers(0, 65535))
# fmt: off
SPECIAL_SEGMENTS = [
    "", ".", "..", "...", "%2e", "%2E", "%2e%2E", ".%2e", "%2e.", "%2F", "a%2Fb", "%2f..%2f",
    "%00", "%0a", "%0D", "%1b", "%7F", "%25", "%", "%zz", "%2", "%252E", "%252F", "\\", "%5C",
    "~", "@", "index.html", "a@q", "%ff", "%C3%A9", "%ED%A0%80", "%C0%AF", "é", "😀", " ", "a b",
]
# fmt: on
SEGMENTS = st.one_of(
    st.sampled_from(SPECIAL_SEGMENTS),
    st.text(max_size=12),  # any character: controls, '/', '?', '#', '%', unicode
    st.binary(min_size=1, max_size=8).map(lambda data: "".join(f"%{b:02x}" for b in data)),
    st.builds(
        lambda chunk, n: chunk * n,
        st.sampled_from(["a", "é", "😀", "%2F", "%2e", "%00", "."]),
        st.integers(60, 400),
    ),
)
QUERIES = st.one_of(
    st.none(),
    st.sampled_from(["", "q", "a=1&b=2", "x=/y", "%2F", "%00", "..", "%2e%2e", "a%25b", "@"]),
    st.text(max_size=20),
    st.integers(250, 400).map(lambda n: "q" * n),
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "HttpS"]))
    user = draw(st.sampled_from(["", "user@", "user:secret@"]))
    host = draw(HOSTS)
    port = draw(PORTS)
    segments = draw(st.lists(SEGMENTS, max_size=6))
    if segments:
        path = "/" + "/".join(segments) + draw(st.sampled_from(["", "/"]))
    else:
        path = draw(st.sampled_from(["", "/", "//"]))
    query = draw(QUERIES)
    fragment = draw(st.sampled_from([None, "", "frag", "a/../b"]))
    url = f"{scheme}://{user}{host}" + ("" if port is None else f":{port}") + path
    url += "" if query is None else "?" + query
    url += "" if fragment is None else "#" + fragment
    return url


@FAST
@given(urls())
def test_url_parts_are_always_safe_names(url: str) -> None:
    parts = url_parts(url)
    assert len(parts) >= 2  # never empty: a host folder and a file name at least
    for name in parts:
        assert name not in ("", ".", ".."), (url, parts)
        assert "/" not in name and "\\" not in name and "\0" not in name, (url, parts)
        assert not any(is_control(c) for c in name), (url, parts)
        assert nbytes(name) <= MAX_COMPONENT_BYTES, (url, name)
        assert len(os.fsencode(name)) <= MAX_COMPONENT_BYTES, (url, name)
        name.encode("utf-8")  # valid text, which records must be: no lone surrogate
    root = os.path.join(os.sep, "srv", "out")
    joined = os.path.normpath(os.path.join(root, *parts))
    assert os.path.commonpath([root, joined]) == root and joined != root, (url, joined)
    assert len(joined.split(os.sep)) == len(root.split(os.sep)) + len(parts)  # nothing collapsed
    assert url_parts(url) == parts  # a pure function


@FAST
@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.lists(LABEL, min_size=1, max_size=3).map(".".join),
    port=PORTS,
    segments=st.lists(st.text("abcXYZ019-_.~", min_size=1, max_size=10), max_size=5),
    slash=st.booleans(),
    query=st.one_of(st.none(), st.text("abcXYZ019=&-_.~", min_size=1, max_size=10)),
)
def test_layout_of_plain_urls(
    scheme: str, host: str, port: int | None, segments: list[str], slash: bool, query: str | None
) -> None:
    segments = [s for s in segments if s not in (".", "..")]
    url = f"{scheme}://{host}" + ("" if port is None else f":{port}")
    url += "/" + "/".join(segments) + ("/" if slash and segments else "")
    url += "" if query is None else "?" + query
    default = {"http": 80, "https": 443}[scheme]
    folder = host.lower() + ("" if port in (None, default) else f"_{port}")
    names = [*segments, INDEX] if slash or not segments else list(segments)
    if query:
        names[-1] += "@" + query
    assert url_parts(url) == [folder, *names]


def quote_segment(text: str) -> str:
    return "%2E" * len(text) if text in (".", "..") else quote(text, safe="")


@FAST
@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=5))
def test_decoding_a_name_gives_back_the_decoded_segment(segments: list[str]) -> None:
    """Readable and unambiguous: percent-decoding each name gives the URL's decoded segment, so
    different decoded paths always get different names."""
    url = "http://h/" + "/".join(quote_segment(s) for s in segments)
    assert [unquote(name) for name in url_parts(url)[1:]] == segments


@FAST
@given(
    path=st.lists(st.text(min_size=1, max_size=20), max_size=3),
    slash=st.booleans(),
    query=st.text(min_size=1, max_size=30),
)
def test_the_query_is_kept_after_an_at_sign(path: list[str], slash: bool, query: str) -> None:
    base = "http://h/" + "/".join(quote_segment(s) for s in path) + ("/" if slash else "")
    plain = url_parts(base)
    parts = url_parts(base + "?" + quote(query, safe=""))
    assert parts[:-1] == plain[:-1]
    name = parts[-1]
    assert name.startswith(plain[-1] + "@")
    assert "/" not in name
    assert unquote(name[len(plain[-1]) + 1 :]) == query


@FAST
@given(
    stem=st.builds(
        lambda c, n: c * n, st.sampled_from(["a", "é", "😀", "%2F"]), st.integers(86, 300)
    ),
    tails=st.lists(st.text(min_size=1, max_size=5), min_size=2, max_size=2, unique=True),
    where=st.sampled_from(["folder", "file", "query"]),
)
def test_long_names_differing_only_at_the_end_differ(
    stem: str, tails: list[str], where: str
) -> None:
    def url(tail: str) -> str:
        name = stem + quote(tail, safe="")
        return {
            "folder": f"http://h/{name}/f",
            "file": f"http://h/{name}",
            "query": f"http://h/f?{name}",
        }[where]

    first, second = (url_parts(url(tail)) for tail in tails)
    assert first != second
    assert all(nbytes(name) <= MAX_COMPONENT_BYTES for name in first + second)


# ---------------------------------------------------------------------------------------------
# 3. OutputDir: one run
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path) -> str:
    folder = tmp_path / "out"
    folder.mkdir()
    return str(folder)


def test_place_returns_the_layout_path_and_creates_its_folders(root: str) -> None:
    out = OutputDir(root)
    path = place(out, "https://Example.com:8443/a/b/c.txt?x=/1")
    assert path == os.path.join(root, "example.com_8443", "a", "b", "c.txt@x=%2F1")
    assert os.path.isdir(os.path.dirname(path))
    assert not os.path.exists(path)  # the body is the writer's job
    assert place(out, "http://h/") == os.path.join(root, "h", "index.html")


@pytest.mark.parametrize("spelling", ["{}/", "{}/./", "{}/sub/..", "{}//"])
def test_the_root_may_be_spelled_any_way(root: str, spelling: str) -> None:
    os.makedirs(os.path.join(root, "sub"))
    assert place(OutputDir(spelling.format(root)), "http://h/a") == os.path.join(root, "h", "a")


def test_a_relative_root(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)
    path = place(OutputDir("rel"), "http://h/../../a")
    assert path == os.path.join("rel", "h", "a")
    save(path, "x")
    assert inside(root, path)


@pytest.mark.parametrize(
    "urls",
    [
        ["http://h/a", "http://h/a/b"],  # a file, then a folder at the same name
        ["http://h/a/b", "http://h/a"],  # a folder, then a file
        ["http://h/a", "http://h/a/"],  # a/ is a/index.html
        ["http://h/a/", "http://h/a"],
        ["http://h/a", "http://h/a/b", "http://h/a/b/c", "http://h/a/"],
        ["http://h/a/b/c", "http://h/a/b", "http://h/a", "http://h/a/"],
        ["http://h/a/", "http://h/a/index.html"],  # the same name from two URLs
        ["http://h/a", "http://h/a#f", "http://h/a?", "http://H/a", "http://h:80/a"],
        ["http://h/a?q", "http://h/a@q", "http://h/a%40q"],
        ["http://h/a%2Fb", "http://h/a/b", "http://h/a%252Fb"],
        ["http://h/" + "x" * 300, "http://h/" + "x" * 300 + "/y", "http://h/" + "x" * 301],
    ],
)
@pytest.mark.parametrize("late", [False, True], ids=["saved-at-once", "saved-late"])
def test_clashes_are_resolved(root: str, urls: list[str], late: bool) -> None:
    paths = place_all(OutputDir(root), root, urls + urls, late)  # and each again: the same path
    assert len(set(paths.values())) == len(set(urls))
    assert files_under(root) == set(paths.values())  # no temporary or stray file left


def test_the_first_url_keeps_the_plain_name(root: str) -> None:
    out = OutputDir(root)
    paths = place_all(out, root, ["http://h/a", "http://h/a/b", "http://h/a#2"])
    assert paths["http://h/a"] == os.path.join(root, "h", "a")
    assert HASH_SUFFIX.search(paths["http://h/a#2"])  # a later URL with the same name
    assert HASH_SUFFIX.search(os.path.dirname(paths["http://h/a/b"]))  # a file is at h/a


CLASH_SEGMENTS = ["a", "b", "A", "%61", "index.html", "a@q", "~", ".", "..", "", "%2F", "%2e"]
CLASH_SEGMENTS += ["x" * 300, "é" * 150, "y" * 200]  # cut (with a hash), and long but uncut


@st.composite
def clashing_urls(draw: st.DrawFn) -> str:
    """URLs from a small alphabet, so that names, files and folders clash often."""
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(st.sampled_from(["h", "H", "h:80", "h:443", "h:8080", "g"]))
    segments = draw(st.lists(st.sampled_from(CLASH_SEGMENTS), max_size=4))
    url = f"{scheme}://{host}/" + "/".join(segments) + draw(st.sampled_from(["", "/"]))
    url += draw(st.sampled_from(["", "", "?", "?q", "?x=/", "#f"]))
    return url


@QUICK  # each example makes real files and folders: 300 took 17 s of the suite
@given(st.lists(clashing_urls(), min_size=1, max_size=10), st.booleans())
def test_a_run_never_overwrites_never_escapes_never_fails(urls: list[str], late: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "out")
        paths = place_all(OutputDir(root), root, urls, late)
        assert len(set(paths.values())) == len(paths)
        assert files_under(root) == set(paths.values())


@QUICK
@given(st.lists(urls(), min_size=1, max_size=6))
def test_a_run_of_arbitrary_urls(urls: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "out")
        os.mkdir(root)
        place_all(OutputDir(root), root, urls + urls[:2])


NESTED = [
    "http://h/a",
    "http://h/a/",
    "http://h/a/b",
    "http://h/a/b/",
    "http://h/a/b/c",
    "http://h/a/index.html",
    "http://h/a?q",
    "http://h/a/b?q",
]


@FAST
@given(st.permutations(NESTED), st.integers(1, len(NESTED)), st.booleans())
def test_files_and_folders_at_one_name_in_any_order(
    urls: list[str], count: int, late: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "out")
        chosen = urls[:count]
        paths = place_all(OutputDir(root), root, chosen + chosen[::-1], late)
        assert len(set(paths.values())) == count


def test_concurrent_placing(root: str) -> None:
    urls = NESTED + [u + "x" for u in NESTED] + ["http://h/a#f", "http://H/a"]
    out = OutputDir(root)
    results: list[list[tuple[str, str]]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(index: int) -> None:
        barrier.wait()
        order = urls[index:] + urls[:index]
        results[index] = [(url, place(out, url)) for url in (order if index % 2 else order[::-1])]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    given_to: dict[str, str] = {}
    for url, path in (pair for result in results for pair in result):
        assert given_to.setdefault(url, path) == path
    assert len(set(given_to.values())) == len(urls)
    for url, path in given_to.items():
        save(path, url)
    for url, path in given_to.items():
        assert content(path) == url


# ---------------------------------------------------------------------------------------------
# 4. What an earlier run left
# ---------------------------------------------------------------------------------------------


def test_an_earlier_folder_where_a_file_is_needed(root: str) -> None:
    old = os.path.join(root, "h", "a")
    os.makedirs(os.path.join(old, "b"))
    save(os.path.join(old, "b", "c"), "old")
    paths = place_all(OutputDir(root), root, ["http://h/a", "http://h/a/b"])
    assert paths["http://h/a"] != old
    assert os.path.isdir(old) and content(os.path.join(old, "b", "c")) == "old"


def test_an_earlier_file_where_a_folder_is_needed(root: str) -> None:
    old = os.path.join(root, "h", "a")
    os.makedirs(os.path.dirname(old))
    save(old, "old")
    paths = place_all(OutputDir(root), root, ["http://h/a/b", "http://h/a/b/c", "http://h/a/"])
    assert all(not path.startswith(old + os.sep) for path in paths.values())
    assert content(old) == "old"


def test_an_earlier_file_where_the_host_folder_is_needed(root: str) -> None:
    save(os.path.join(root, "h"), "old")
    save(os.path.join(root, "h_8080"), "old")
    place_all(OutputDir(root), root, ["http://h/a", "http://h:8080/", "http://h/a/b"])
    assert content(os.path.join(root, "h")) == "old"


def test_an_earlier_file_at_the_same_name_is_replaced(root: str) -> None:
    """A second run saves a URL where the first one did (a fresh copy), not beside it."""
    first = place_all(OutputDir(root), root, ["http://h/a", "http://h/a/b"])
    second = place_all(OutputDir(root), root, ["http://h/a", "http://h/a/b"])
    assert first == second


@QUICK
@given(
    st.lists(clashing_urls(), min_size=1, max_size=8),
    st.lists(clashing_urls(), min_size=1, max_size=8),
)
def test_a_run_over_what_an_earlier_run_left(earlier: list[str], now: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "out")
        place_all(OutputDir(root), root, earlier)
        place_all(OutputDir(root), root, now)


@QUICK
@given(st.permutations(NESTED), st.permutations(NESTED), st.integers(1, len(NESTED)))
def test_nested_names_over_an_earlier_run(earlier: list[str], now: list[str], count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "out")
        place_all(OutputDir(root), root, earlier[:count])
        place_all(OutputDir(root), root, now[:count] + now)


# ---------------------------------------------------------------------------------------------
# Bugs these tests found, fixed in fetcher/paths.py
# ---------------------------------------------------------------------------------------------

DOT_HOSTS = ["http://../x", "http://./x", "https://../", "http://..:80/etc/passwd"]


@pytest.mark.parametrize("url", DOT_HOSTS)
def test_a_dot_host_stays_inside(url: str) -> None:
    parts = url_parts(url)
    assert parts[0] not in (".", "..")


def test_a_dot_dot_host_is_saved_inside(root: str) -> None:
    place_all(OutputDir(root), root, ["http://../x"])


@pytest.mark.parametrize("earlier_run", [False, True])
def test_folder_clash_on_a_name_near_255_bytes(root: str, earlier_run: bool) -> None:
    name = "n" * 250
    out = OutputDir(root)
    if earlier_run:
        os.makedirs(os.path.join(root, "h"))
        save(os.path.join(root, "h", name), "old")
    else:
        place_all(out, root, [f"http://h/{name}"])
    try:
        place_all(out, root, [f"http://h/{name}/b"])
    except OSError as exc:
        assert exc.errno == errno.ENAMETOOLONG  # the failure this bug causes, and no other
        raise AssertionError("place raised ENAMETOOLONG") from exc


@pytest.mark.parametrize("needs", ["file", "folder"])
def test_a_clash_name_already_taken(root: str, needs: str) -> None:
    victim = "http://h/a#y" if needs == "file" else "http://h/a/b"
    squatter = "http://h/a~" + url_hash(victim)  # a name the code gives the victim on a clash
    place_all(OutputDir(root), root, [squatter, "http://h/a", victim])


@pytest.mark.parametrize("url", ["http://h/a/.", "http://h/a/b/.."])
def test_a_final_dot_segment_means_a_folder(url: str) -> None:
    assert url_parts(url) == ["h", "a", "index.html"]


def test_c1_controls_are_encoded() -> None:
    name = url_parts("http://h/a%C2%9B%C2%85b")[-1]
    assert not any(0x80 <= ord(c) <= 0x9F for c in name), name


@pytest.mark.parametrize(
    ("path", "name"),
    [("/invoice%E2%80%AEfdp.exe", "invoice%E2%80%AEfdp.exe"),  # RLO: shown as 'invoiceexe.pdf'
     ("/zw%E2%80%8Bx", "zw%E2%80%8Bx"), ("/a%E2%80%A8b", "a%E2%80%A8b"),
     ("/caf%C3%A9", "caf\u00e9")],  # letters stay as they are
    ids=["bidi", "zero-width", "line-separator", "letters"],
)  # fmt: skip
def test_characters_that_do_not_show_as_themselves_are_encoded(path: str, name: str) -> None:
    """A bidi override in a name (from a URL, a -J name) made 'ls' show invoice<RLO>fdp.exe as
    'invoiceexe.pdf' (s17 h1 D4): a name holds what human displays escape, encoded."""
    assert url_parts(f"http://h{path}")[-1] == name
    (given,) = name_parts(unquote_for_test(path[1:]), "http://h/")
    assert given == name


def unquote_for_test(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def test_an_output_name_with_a_lone_surrogate_becomes_valid_text() -> None:
    """A jsonl ``output`` may carry "\\udcff": the name written in records must still encode."""
    (name,) = name_parts("a\udcffb", "http://h/")
    assert name == "a%ED%B3%BFb"
    name.encode("utf-8")


def test_placing_after_close_fails_cleanly(root: str) -> None:
    """After the run closes DIR's descriptor, a late worker gets an error, never a walk from
    whatever the descriptor number came to mean."""
    out = OutputDir(root)
    out.close()
    out.close()  # twice is harmless
    with pytest.raises(OSError, match="the run has ended"):
        out.place("http://h/a")


@pytest.mark.parametrize("name", [".fetcher-0123456789abcdef.part", ".fetcher-x"])
def test_no_saved_file_is_named_like_a_temporary(name: str) -> None:
    """A URL's, the input's or the server's name that looks like fetcher's own temporary
    ('.fetcher-*.part') would be removed by a clean-up after a crash (found by a hostile
    tester): its dot is encoded."""
    url = f"http://127.0.0.1/{name}"
    for parts in (url_parts(url), name_parts(name, url), remote_name_parts(name, url)):
        assert parts[-1] == "%2E" + name[1:], parts


def test_a_path_longer_than_the_system_takes_is_refused(tmp_path) -> None:
    """Each name is at most 255 bytes, but a deep URL made a path past PATH_MAX (4096), saved
    through folder descriptors and reported in a record whose path nothing can open (found by
    a hostile tester). wget refuses such a URL too."""
    folder = OutputDir(str(tmp_path))
    deep = "http://127.0.0.1/" + "/".join(["d" * 250] * 17) + "/f"
    with pytest.raises(OSError) as caught:
        folder.place(deep)
    assert caught.value.errno == errno.ENAMETOOLONG
    shallow = "http://127.0.0.1/" + "/".join(["d" * 250] * 12) + "/f"
    with folder.place(shallow) as placement:
        assert len(os.fsencode(placement.path)) < 4096
    # Many short components: the path is under 1 KiB (the room kept for a clash suffix was
    # counted once per component, and refused it: found on review).
    many = "http://127.0.0.1/" + "/".join(["a"] * 420)
    with folder.place(many) as placement:
        assert len(os.fsencode(placement.path)) < 1024
    folder.close()


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("sub/", ["sub", "index.html"]),
        ("a/b/.", ["a", "b", "index.html"]),
        ("a/b/..", ["a", "index.html"]),
        ("sub", ["sub"]),
        ("a/b", ["a", "b"]),
    ],
)
def test_an_output_name_that_names_a_folder_saves_its_index_as_a_url_path_does(name, parts):
    """A jsonl 'output' of 'sub/' was saved as the file DIR/sub, where a URL's path 'sub/'
    goes to sub/index.html: a later 'sub/x' then had a file where its folder must be (s16 h1
    F12). The same rule for both: a name ending in a folder is that folder's index.html."""
    assert name_parts(name, "http://h/") == parts


# ---------------------------------------------------------------------------------------------
# A folder cut to 255 bytes ends with a hash of its own name, not the URL's: the files of one
# long folder (or of one long host) landed in as many folders as URLs (s25 h5 5).
# ---------------------------------------------------------------------------------------------

LONG_FOLDER = "F" * 300
LONG_HOST_PORT = ".".join(["h" * 60] * 4) + ":8080"  # 243 bytes, 248 with "_8080", 5 labels: over


@pytest.mark.parametrize(
    "urls, index",
    [
        ([f"http://h/{LONG_FOLDER}/x", f"http://h/{LONG_FOLDER}/y", f"http://h/{LONG_FOLDER}/"], 1),
        ([f"http://h/a/{LONG_FOLDER}/b/x", f"http://h/a/{LONG_FOLDER}/b/y?q"], 2),
        ([f"http://{'h' * 60}.{LONG_HOST_PORT}/x", f"http://{'h' * 60}.{LONG_HOST_PORT}/y"], 0),
    ],
)
def test_the_files_of_one_long_folder_stay_in_one_folder(root: str, urls, index) -> None:
    folders = {url_parts(url)[index] for url in urls}
    assert len(folders) == 1, folders
    [folder] = folders
    assert nbytes(folder) == MAX_COMPONENT_BYTES and HASH_SUFFIX.search(folder)
    paths = place_all(OutputDir(root), root, urls, False)
    assert len({os.path.dirname(path) for path in paths.values()}) == 1, paths


def test_an_output_name_s_long_folder_is_the_same_folder_for_every_url() -> None:
    parts = [name_parts(f"{LONG_FOLDER}/f{n}", f"http://h/{n}") for n in range(3)]
    assert len({p[0] for p in parts}) == 1
    assert len({p[1] for p in parts}) == 3


def test_long_folders_that_differ_past_the_cut_are_two_folders() -> None:
    first = url_parts(f"http://h/{LONG_FOLDER}a/x")[1]
    second = url_parts(f"http://h/{LONG_FOLDER}b/x")[1]
    assert first != second
