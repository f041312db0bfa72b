"""Where a body is saved under -o DIR: ``DIR/<host>[_<port>]/<path>``, safely.

``url_parts`` is a pure mapping from a URL to path components. Each component is percent-decoded
for readability and then re-encoded where a file name cannot hold a character (``/``, ``\\``,
NUL, control characters) and for ``%`` itself, so that different decoded names stay different;
bytes that are not UTF-8 stay percent-encoded as received, so every name is valid text. Dot
segments are resolved first and a decoded ``.`` or ``..`` stays encoded, so nothing climbs out of
DIR. A component longer than 255 bytes is cut and given a hash: a file's of the whole URL, a
folder's of its own name (one folder for all its files).

``OutputDir`` places the components on disk for one run: a name already given to another
request in this run (another URL, or another method or body for the URL: its owner is the
request's --state key, fetcher.http.request.state_key), or a file where a folder is needed
(``/a`` then ``/a/b``), or a folder where a file is needed, gets ``~<hash of the request>`` on
the component that clashes. Names do not depend on the order requests are saved in: a
bodiless GET takes the URL's own name, any other request its ``~<hash>`` name (a name the input
gives is the request's own), and a request keeps the name its --state row names (``Owner``) when
this run has not given it out.
DIR is opened once; every folder under it is reached from that descriptor, one component at a
time, never through a symbolic link: a link where a folder is needed is refused (``LinkInTheWay``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import stat
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from fetcher.output.atomic import TEMP_PREFIX, is_marked, open_output_dir
from fetcher.redact import hidden, redact_text, redact_url
from fetcher.settings import DEFAULT_PORTS

MAX_COMPONENT_BYTES = 255
INDEX = "index.html"
QUERY_MARK = "@"
# Characters a file name cannot hold or that would make two names ambiguous, percent-encoded.
_UNSAFE = {chr(c) for c in range(32)} | {chr(c) for c in range(0x7F, 0xA0)} | {"/", "\\", "%"}
_UNSAFE |= {chr(c) for c in range(0xD800, 0xE000)}  # lone surrogates are not text
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Unnameable(OSError):
    """A name the file-system encoding cannot spell: under an ASCII locale (LC_ALL=C without
    Python's UTF-8 coercion), a URL path with an 'é'. os.fsencode's UnicodeEncodeError is no
    OSError: the record said other, in the codec's words, where a file not written is io."""

    def __init__(self, encoding: str, name: str) -> None:
        message = f"cannot name the file in this locale's encoding ({encoding})"
        super().__init__(errno.EILSEQ, message, name)


def check_nameable(parts: list[str]) -> None:
    """Raise Unnameable for the first of parts the file-system encoding cannot spell, before
    any folder is made for them: nothing is left behind."""
    for part in parts:
        try:
            os.fsencode(part)
        except UnicodeEncodeError as exc:
            raise Unnameable(exc.encoding, part) from None


class LinkInTheWay(OSError):
    """A symbolic link (or something not a folder) sits where a folder is needed: refused,
    never followed."""

    def __init__(self, path: str) -> None:
        super().__init__(
            errno.ELOOP, "a symbolic link or a file is in the way (links are not followed)", path
        )


PATH_MAX = 4096  # Linux's, with its NUL: a path of this many bytes or more cannot be opened
CLASH_ROOM = 32  # what url_hash suffixes ("~1a2b3c4d-2") may add to the names of one path


def url_digest(url: str) -> bytes:
    """The SHA-256 of url: who owns a file in a run (two URLs never share one by chance)."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).digest()


def url_hash(url: str) -> str:
    """8 hex digits of the SHA-256 of url as records show it, to tell names apart: short to
    read, so two of some 80,000 URLs share one, and never what decides who owns a file
    (url_digest does). Not of a password: 32 bits of a hash of a URL all but whose password is
    known would tell a weak password from the others."""
    return url_digest(redact_url(url)).hex()[:8]


def request_hash(url: str, key: str) -> str:
    """8 hex digits naming the clash suffix of the request key (state_key) to url: the URL's own
    (url_hash) for a GET or HEAD without a body, whose key is its URL, as before requests had
    owners; for another, of its method and the URL (password masked), never of its body: a
    body may hold a password (a login form), and 32 bits of a hash of a body all but whose
    password is known would tell a weak one from the others. Two bodies POSTed to one URL
    share the suffix; the second's name gets the count after it (_first_free)."""
    if key == url:
        return url_hash(url)
    return url_hash(f"{key.partition(' ')[0]} {redact_url(url)}")


def _percent(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


def _encode(text: str, escaped_bytes: bool = False) -> str:
    """Percent-encode, as UTF-8, what a name must not hold, and what does not show as itself
    (a bidi override made 'ls' show invoice<RLO>fdp.exe as invoiceexe.pdf); unquote() gives
    the text back. escaped_bytes: text was decoded with surrogateescape (a -J name), and a
    byte it could not decode (U+DC80 to U+DCFF) is that byte, as received (``caf%E9``), as
    _decode leaves one."""
    return "".join(
        (_percent(bytes([ord(c) - 0xDC00])) if escaped_bytes and "\udc80" <= c <= "\udcff"
         else _percent(c.encode("utf-8", "surrogatepass")))
        if c in _UNSAFE or (c > "\x7f" and hidden(c))
        else c
        for c in text
    )  # fmt: skip


def _decode(text: str) -> str:
    """Percent-decode text for a name, re-encoding what a name must not hold. Bytes that are not
    UTF-8 stay percent-encoded as received (``caf%E9``): a name is always valid text, as the
    records that carry it must be, and never one with a lone surrogate."""
    data = unquote_to_bytes(text.encode("utf-8", "surrogatepass"))
    names: list[str] = []
    while data:
        try:
            names.append(_encode(data.decode()))
            break
        except UnicodeDecodeError as exc:
            names.append(_encode(data[: exc.start].decode()))
            names.append(_percent(data[exc.start : exc.end]))
            data = data[exc.end :]
    return "".join(names)


def name_hash(name: str) -> str:
    """8 hex digits of the SHA-256 of a name's own text: what a folder's name cut to 255 bytes
    ends with, the same whichever URL's file it holds (s25 h5 5: one folder's files went to as
    many folders as URLs). Of a name already masked (redact_text): no password is hashed."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _fit(component: str, url: str | None = None) -> str:
    """Cut a component to MAX_COMPONENT_BYTES (UTF-8) with a hash suffix when it is too long:
    of url for a file's name (url_hash, as records show), of its own text for a folder's
    (url None: name_hash), so that every file of one folder lands in that folder."""
    data = component.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_COMPONENT_BYTES:
        return component
    suffix = "~" + (name_hash(component) if url is None else url_hash(url))
    cut = data[: MAX_COMPONENT_BYTES - len(suffix)].decode("utf-8", "ignore")
    return cut + suffix


def _not_dots(name: str) -> str:
    """'.' and '..' are not names: they stay encoded. Nor is a name a temporary of fetcher's
    would have ('.fetcher-...'), which a clean-up after a crash removes: its dot is encoded."""
    if name in (".", ".."):
        return "%2E" * len(name)
    return "%2E" + name[1:] if name.startswith(TEMP_PREFIX) else name


def _segments(path: str) -> list[str]:
    """RFC 3986 dot-segment removal, clamped at the root; empty segments dropped."""
    out: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return out


def host_folder(url: str) -> str:
    """The folder url's host gets under DIR, cut like any name (a host name may be longer than
    a folder name can): whatever names the file in it, the URL's path or -J."""
    parts = urlsplit(url)
    host = (parts.hostname or "unknown-host").lower()
    port = parts.port
    name = host if port is None or port == DEFAULT_PORTS.get(parts.scheme) else f"{host}_{port}"
    return _fit(_not_dots(_encode(name.replace(":", "_"))))


def url_parts(url: str) -> list[str]:
    """The relative path components for url: host folder, folders, file name. Never empty, never
    '.', '..' or a name with '/', NUL or a control character; each at most 255 bytes."""
    parts = urlsplit(url)
    # A URL inside the path or the query (a return address: ?next=http://u:pw@h/) has its
    # password masked, as the record's url has: a file's name is printed, as the record's path.
    path, query = redact_text(parts.path), redact_text(parts.query)
    names = [_not_dots(_decode(s)) for s in _segments(path)]
    if not names or names_a_folder(path):  # "/a/", "/a/b/.." and "/a/." name /a/
        names.append(INDEX)
    if query:
        names[-1] += QUERY_MARK + _decode(query)
    return [host_folder(url), *map(_fit, names[:-1]), _fit(names[-1], url)]


def names_a_folder(path: str) -> bool:
    """Whether a path ends in a folder ("a/", "a/.", "a/b/.."): its file is that folder's
    INDEX, for a URL's path and an input's output name alike."""
    return not path or path.endswith("/") or path.rsplit("/", 1)[-1] in (".", "..")


def name_parts(name: str, url: str) -> list[str]:
    """A file name given by the input (``output``), made as safe as a URL's path: folders kept,
    dot segments resolved within it, unsafe characters encoded; a name that ends in a folder
    is its INDEX, as for a URL's path; never empty."""
    name = name.replace("\\", "/")
    names = [_not_dots(_encode(segment)) for segment in _segments(name)]
    if not names or names_a_folder(name):
        names.append(INDEX)
    return [*map(_fit, names[:-1]), _fit(names[-1], url)]


def remote_name_parts(filename: str, url: str) -> list[str]:
    """-J: a Content-Disposition file name (one name, no folder: fetcher.http.headers) in the
    URL's host folder, made as safe as a URL's path."""
    return [host_folder(url), _fit(_not_dots(_encode(filename, escaped_bytes=True)), url)]


def components(url: str, name: str | None, remote_name: str | None) -> list[str]:
    """Where url's body goes under DIR: the input's name for it, else the server's (-J), else
    the URL's own path."""
    if name:
        return name_parts(name, url)
    if remote_name:
        return remote_name_parts(remote_name, url)
    return url_parts(url)


def first_component(url: str, name: str | None) -> str:
    """The first of url's components, known before its response: with or without a -J name,
    the host's folder (or name's first). Two URLs whose files could clash share it (so
    --processes deals them to one process, whose OutputDir keeps them apart)."""
    return components(url, name, None)[0]


DEAL_BYTES = 240  # under a cut name's 246 bytes, less a character cut short (3 bytes)


def deal_name(url: str, name: str | None) -> str:
    """What decides the worker process that places url's body (--processes): its first
    component up to the first '~', and at most DEAL_BYTES of it. OutputDir may de-clash that
    component itself (a file where a host's folder is needed) as X~<hash>, which is cut to 255
    bytes when long: a name another line's output can give directly (s25 h5 1). Each name X
    can become keeps X's text up to its first '~' or DEAL_BYTES, so one process gives them all.
    """
    return deal_name_of(first_component(url, name))


def deal_name_of(top: str) -> str:
    """deal_name of a first component top as it is under DIR, de-clashed or not."""
    data = top.partition("~")[0].encode("utf-8", "surrogatepass")
    return data[:DEAL_BYTES].decode("utf-8", "ignore")


@dataclass(frozen=True, slots=True)
class Owner:
    """A request that owns a file in a run: its --state key (request.state_key) and the path its
    row names, where it was saved last (None: no row, or nothing saved). The request keeps that
    name if it is one of its own and no other request of the run was given it, so that its file
    does not move from run to run with the order requests happen to be saved in (s23 r4 3: a
    GET's 304 turned into a 200, and its old file was left behind, named by no row).
    row_mark: the row's saved_mark (atomic.file_mark) of that file, None when not known: in a
    folder adopted from a dead worker process, the file still so marked is the request's own,
    an earlier run's, not one the dead worker saved (s26 h3 1)."""

    key: str
    row_path: str | None = None
    row_mark: int | None = None


@dataclass(frozen=True, slots=True)
class _Claimant:
    """What _first_free needs to know of the request placing a file: the URL, the request's
    clash suffix (request_hash), the digest that owns its files (url_digest of its key), whether
    the name itself is its own (a bodiless GET's URL name, or a name the input gives), and the
    file name its row names (Owner.row_path)."""

    url: str
    mark: str
    digest: bytes
    own_name: bool
    kept: str | None
    kept_in: str | None  # the folder under DIR the row's file is in, as its path ends
    kept_mark: int | None = None  # the row's saved_mark of that file (Owner.row_mark)


def _claimant(url: str, owner: str | Owner | None, given: bool) -> _Claimant:
    """The claimant for url's request (owner: its key or Owner; None, a bodiless GET's: url);
    given: the name is the input's (``output``), which any request may take as it is."""
    key = url if owner is None else owner if isinstance(owner, str) else owner.key
    row = owner.row_path if isinstance(owner, Owner) else None
    mark = owner.row_mark if isinstance(owner, Owner) else None
    kept = None if row is None else os.path.basename(row)
    kept_in = None if row is None else os.path.dirname(row)
    return _Claimant(url, request_hash(url, key), url_digest(key), given or key == url, kept,
                     kept_in, mark)  # fmt: skip


def _candidate(name: str, claimant: _Claimant, n: int) -> str:
    """The n-th name of name for claimant: name itself, then name~<mark>, name~<mark>-3, ...,
    each cut to 255 bytes."""
    if n == 1:
        return name
    suffix = claimant.mark + ("" if n == 2 else f"-{n}")
    return _fit(f"{name}~{suffix}", f"{claimant.url}~{n}")


def _candidates(name: str, claimant: _Claimant, file: bool, kept_here: bool) -> Iterator[str]:
    """The names tried for a component, in order. A folder: name, then its suffixed names. A
    file: first the name its row names, if it is one of its suffixed names (never another's:
    a row cannot lead it anywhere else), so that two URLs of one name keep the files they
    had whatever the order of the next run (s25 h5 4: they swapped, a whole body each and a
    file left that no row named); then name, only when it is the request's own
    (_Claimant.own_name); then the suffixed names in order. kept_here: the row's file is in
    the folder being placed into (_in_folder), the only one where its name is kept (s26 r2 4:
    a line moved to another folder took its ~ name there, its own name free)."""
    kept = _kept_name(name, claimant) if file and kept_here else None
    if kept is not None:
        yield kept
    if not file or claimant.own_name:
        yield name
    for n in itertools.count(2):
        yield _candidate(name, claimant, n)


def _in_folder(row_folder: str | None, folder: int, file: bool) -> bool:
    """Whether row_folder (the folder of a row's file, as an earlier run spelled its path) is
    the open folder a file is being placed into: the same folder on disk. By text it was
    neither for a row saved under a relative DIR nor for folders that only end alike (s26 r6
    2, 5). A stat of the row's folder, once a file placed for a request with a row."""
    if not file or row_folder is None:
        return False
    try:
        there, here = os.stat(row_folder or os.curdir), os.fstat(folder)
    except (OSError, ValueError):
        return False
    return (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)


def _kept_name(name: str, claimant: _Claimant) -> str | None:
    """The name claimant's row names when it is one of claimant's suffixed names of name."""
    kept = claimant.kept
    prefix = f"{name}~{claimant.mark}"
    if kept is None or not kept.startswith(prefix):
        return None
    count = kept[len(prefix) :]
    n = 2 if not count else int(count[1:]) if _a_count(count) else 0
    return kept if n >= 2 and _candidate(name, claimant, n) == kept else None


def _its_own_file(claimant: _Claimant, name: str, kept_here: bool, info: os.stat_result | None,
                  folder: int) -> bool:  # fmt: skip
    """Whether the regular file info (name, in folder, being placed into) is the one the
    claimant's row names and still the file the row saved (its saved_mark): an earlier run's
    file of the request's own, which a dead worker process did not save in this run (its
    body would have a new inode: atomic.file_mark), so that an adopted folder keeps it for
    the request's conditions (a 304) and lets the request replace it (s26 h3 1)."""
    if not kept_here or name != claimant.kept or claimant.kept_mark is None or info is None:
        return False
    return _is_file(info) and is_marked(claimant.kept_mark, name, folder)


def _a_count(text: str) -> bool:
    """Whether text is a clash count as _candidate writes it: '-' and a few ASCII digits."""
    digits = text[1:]
    return text[:1] == "-" and 0 < len(digits) < 10 and digits.isascii() and digits.isdigit()


@dataclass(slots=True)
class Placement:
    """Where one body goes: ``name`` in the folder open as ``folder`` (a descriptor the holder
    owns and must close), shown as ``path`` (DIR as given, joined with the names)."""

    path: str
    folder: int
    name: str

    def close(self) -> None:
        if self.folder >= 0:
            os.close(self.folder)
            self.folder = -1

    def __enter__(self) -> Placement:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _if_a_file(placement: Placement) -> Placement | None:
    """placement when a regular file is there; else None, placement closed."""
    if _is_file(_lstat(placement.folder, placement.name)):
        return placement
    placement.close()
    return None


def _lstat(folder: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_folder(parent: int, name: str, path: str, create: bool) -> int | None:
    """The folder name in parent, opened without following a link: created when missing and
    create is true, else None. Raises LinkInTheWay for a link or anything else not a folder
    (O_NOFOLLOW makes that hold even if the name is swapped after it was looked at)."""
    for _ in range(3):
        try:
            return os.open(name, _FOLDER_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(name, 0o777, dir_fd=parent)
            except FileExistsError:
                pass  # made by someone else meanwhile: open whatever it is, or refuse it
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise LinkInTheWay(path) from None
            raise
    raise LinkInTheWay(path)  # it keeps disappearing: someone is playing with it


def _is_file(info: os.stat_result | None) -> bool:
    return info is not None and stat.S_ISREG(info.st_mode)


def _fits_file(info: os.stat_result | None) -> bool:
    """Not a folder. A link fits: the rename replaces the link itself, never its target."""
    return info is None or not stat.S_ISDIR(info.st_mode)


def _fits_folder(info: os.stat_result | None) -> bool:
    """A folder, nothing, or a link (refused when opened, rather than routed around: a link
    in DIR where a folder is needed is someone's doing, and the record should say so)."""
    return info is None or stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode)


def shown_root(root: str) -> str:
    """DIR as records show it: the path given, without what cannot change the folder the
    system finds: repeated slashes, ``.``, and ``name/..`` where name is not a link. After a
    link, ``..`` stays: ``link/..`` is the parent of the link's target, which the text alone
    cannot tell (ls, curl and wget go there too, and so does fetcher)."""
    start = os.sep if root.startswith(os.sep) else ""
    names: list[str] = []
    for name in root.split(os.sep):
        if name in ("", ".") or (name == os.pardir and start and not names):  # "/.." is "/"
            continue
        up = name == os.pardir and bool(names) and names[-1] != os.pardir
        if up and not os.path.islink(start + os.sep.join(names)):
            names.pop()
        else:
            names.append(name)
    return start + os.sep.join(names) or os.curdir


class OutputDir:
    """Places bodies under one folder for one run. Thread-safe: workers call ``place``.

    DIR is opened once, here, by the system's reading of the path given (following a link the
    user gave as DIR: that is their choice), or handed over already open as descriptor (a
    worker process gets its parent's: it never looks DIR up by name, which may lead elsewhere
    by then), which it owns from then on. root is only shown, never looked up again; everything
    below DIR is reached from its descriptor without following any link.

    A folder adopted (``adopt``: the hosts of a worker process that died) may hold its files:
    one this object never gave is not replaced (``~<hash>``) but by its row's (_its_own_file).
    """

    def __init__(self, root: str, descriptor: int | None = None) -> None:
        self.root = shown_root(root)
        self._adopted: set[str] = set()  # first components (see adopt)
        if descriptor is None:
            descriptor = open_output_dir(root)  # no link planted since the start's check
        self._root_fd = descriptor
        self._closer = weakref.finalize(self, os.close, self._root_fd)
        self._lock = threading.Lock()
        # file path -> url_digest of the request key (state_key) given it: a GET's is its
        # URL's, a POST's its method, URL and body hash, so that different requests to one URL
        # never share a file, and one listed twice does. The whole digest, not url_hash: 32
        # bits collide within a run of some 80,000 URLs. Not the key: the map holds an entry for
        # every file of the run, and a URL may be kilobytes where a digest is 32 bytes.
        self._owner: dict[str, bytes] = {}

    def adopt(self, top: str) -> None:
        """From now on, the folder top (a first component: a host's folder, an output name's
        first folder) may hold files another process saved in this run: none is replaced."""
        with self._lock:
            self._adopted.add(top)

    def descriptor(self) -> int:
        """DIR's descriptor, to hand to a worker process (this object still owns and closes
        it); -1 once closed."""
        return self._root_fd

    def close(self) -> None:
        """Close DIR's descriptor, under the lock, so that no walk starts from a number that
        was closed and reused; placing fails from then on."""
        with self._lock:
            self._closer()
            self._root_fd = -1

    def place(self, url: str, name: str | None = None, remote_name: str | None = None,
              owner: str | Owner | None = None) -> Placement:  # fmt: skip
        """Create the folders for url and return where its body goes: the URL's own path, or
        name (a relative file name, made safe the same way) when given, or remote_name (-J)
        in the host's folder. owner: the request's state key (state_key) or Owner, url when
        None (a bodiless GET's). Raises OSError when a folder cannot be created, LinkInTheWay
        when a link sits where a folder is needed, Unnameable when the locale cannot spell a
        name."""
        parts = components(url, name, remote_name)
        check_nameable(parts)
        # Each name fits (255 bytes), but not always the path: a file saved through folder
        # descriptors past PATH_MAX has a path nothing can open. Room is kept for a clash
        # suffix or two (~, 8 hex digits, a count); more clashes near the limit are not seen.
        longest = len(os.fsencode(os.path.join(self.root, *parts))) + CLASH_ROOM
        if longest >= PATH_MAX:
            message = f"the path would be longer than the system's {PATH_MAX} bytes"
            raise OSError(errno.ENAMETOOLONG, message, url)
        placement = self._walk(parts, _claimant(url, owner, bool(name)), create=True)
        assert placement is not None  # create=True never gives up on a missing folder
        return placement

    def existing(self, url: str, name: str | None = None, remote_name: str | None = None,
                 owner: str | Owner | None = None) -> Placement | None:  # fmt: skip
        """Where the body of url's request (owner, as for place) would be saved to, if a
        regular file is there now (its folder open: the caller closes it); else None. Creates
        nothing and follows no link. The file counts as given to that request in this run. It
        is read through its folder's descriptor, never by its path's text again: a folder
        swapped for a link after this walk would lead that outside DIR (s29 t2 1)."""
        parts = components(url, name, remote_name)
        try:
            placement = self._walk(parts, _claimant(url, owner, bool(name)), create=False)
        except OSError:
            return None
        return None if placement is None else _if_a_file(placement)

    def claim(self, path: str, owner: str) -> bool:
        """Keep path, a file an earlier run saved (as this run spells DIR), for the request
        whose state key is owner, for the rest of the run, as if this run had saved it: a
        request skipped as fresh (--skip-fresh) keeps its file, and another request of the run
        takes another name rather than replace it (s23 r4 1). False when another request of
        the run was given path: it is being replaced, and the request is fetched again."""
        digest = url_digest(owner)
        with self._lock:
            return self._owner.setdefault(path, digest) == digest

    def _walk(self, parts: list[str], claimant: _Claimant, create: bool,
              claim: bool = True) -> Placement | None:  # fmt: skip
        """Walk (and with create, make) the folders of the claimant's components (parts) from
        DIR's descriptor, resolving clashes; None when a folder is missing and create is false.
        With claim, the file name is claimed for the claimant's request when create is true or
        a regular file is there. Raises Unnameable for a name the locale cannot spell."""
        check_nameable(parts)
        with self._lock:
            foreign = parts[0] in self._adopted
            if self._root_fd < 0:
                raise OSError(errno.EBADF, "the run has ended", self.root)
            folder, path = os.dup(self._root_fd), self.root
            try:
                for component in parts[:-1]:
                    path, child = self._first_free(folder, path, component, claimant, False)
                    opened = _open_folder(folder, child, path, create)
                    os.close(folder)
                    folder = -1
                    if opened is None:
                        return None
                    folder = opened
                path, child = self._first_free(folder, path, parts[-1], claimant, True, foreign)
                if claim and (create or _is_file(_lstat(folder, child))):
                    self._owner[path] = claimant.digest
            except BaseException:
                if folder >= 0:
                    os.close(folder)
                raise
            return Placement(path, folder, child)

    def _first_free(self, folder: int, parent: str, name: str, claimant: _Claimant, file: bool,
                    foreign: bool = False) -> tuple[str, str]:  # fmt: skip
        """The first of the claimant's names for name (_candidates) that fits in folder, as
        (path, name). The order is fixed for a request, and a name that did not fit never fits
        later, so a request placed again gets the same path. foreign: in an adopted folder, a
        file this object did not give is never replaced, but by its own (_its_own_file)."""
        owner, kept_here = claimant.digest, _in_folder(claimant.kept_in, folder, file)
        for candidate in _candidates(name, claimant, file, kept_here):
            path = os.path.join(parent, candidate)
            if file:
                # not given to another request in this run, nor kept by one skipped as fresh
                # (an earlier run's file is replaced)
                owned = self._owner.get(path, owner) == owner
                info = _lstat(folder, candidate)
                taken = foreign and path not in self._owner and _is_file(info)
                taken = taken and not _its_own_file(claimant, candidate, kept_here, info, folder)
                fits = owned and _fits_file(info) and not taken
            else:
                # not a file given in this run, nor a file an earlier run left
                fits = path not in self._owner and _fits_folder(_lstat(folder, candidate))
            if fits:
                return path, candidate
        raise AssertionError("unreachable")


def top_of(output: OutputDir, path: str) -> str | None:
    """The first component under output's DIR of path (a path as this run spells DIR:
    Bodies.held), which decides the worker process that gives its name (--processes:
    first_component); None when path is not under DIR."""
    root = output.root if output.root.endswith(os.sep) else output.root + os.sep
    if not path.startswith(root):
        return None
    return path[len(root) :].split(os.sep, 1)[0]


def folder_of(
    output: OutputDir, url: str, name: str | None = None, owner: str | Owner | None = None
) -> Placement | None:
    """Where url's body would go under output (its folder open, the file's name), if its
    folders are there: a look for a file left there (a partial to remove), not a body to save.
    Creates nothing, follows no link, and takes the name for no URL (the run's next body for
    it may be another URL's). None when a folder is missing or is no folder."""
    with contextlib.suppress(OSError):
        claimant = _claimant(url, owner, bool(name))
        return output._walk(components(url, name, None), claimant, False, claim=False)
    return None


def reach(output: OutputDir, names: list[str]) -> int | None:
    """The folder DIR/names... under output, open (the caller closes it), reached as place
    reaches a folder: from DIR's descriptor, one name at a time, never through a link
    (_open_folder); nothing created. None when a name is missing, a link or no folder, cannot
    be spelt in this locale, or the run has ended. For a file already there (Bodies.held):
    what place refuses to write through is not under DIR for a skip either (s28 r1 2). The
    first name is opened under output's lock (close takes it), from DIR's descriptor itself:
    no dup on every skip."""
    try:
        with output._lock:
            if output._root_fd < 0:
                return None
            if not names:
                return os.dup(output._root_fd)
            folder = _open_folder(output._root_fd, names[0], names[0], create=False)
        for name in names[1:]:
            if folder is None:
                return None
            parent, folder = folder, None
            try:
                folder = _open_folder(parent, name, name, create=False)
            finally:
                os.close(parent)
    except (OSError, UnicodeError, ValueError):
        return None
    return folder
