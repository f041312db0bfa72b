"""Where a body is saved under -o DIR: ``DIR/<host>[_<port>]/<path>``, safely.

``url_parts`` is a pure mapping from a URL to path components. Each component is percent-decoded
for readability and then re-encoded where a file name cannot hold a character (``/``, ``\\``,
NUL, control characters) and for ``%`` itself, so that different decoded names stay different;
dot segments are resolved first and a decoded ``.`` or ``..`` stays encoded, so nothing climbs
out of DIR. A component longer than 255 bytes is cut and given a hash of the whole URL.

``OutputDir`` places the components on disk for one run: a name already given to another URL in
this run, or a file where a folder is needed (``/a`` then ``/a/b``), or a folder where a file is
needed, gets ``~<hash of the URL>`` on the component that clashes. Names are stable per URL.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

MAX_COMPONENT_BYTES = 255
INDEX = "index.html"
QUERY_MARK = "@"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters a file name cannot hold or that would make two names ambiguous, percent-encoded.
_UNSAFE = {chr(c) for c in range(32)} | {chr(c) for c in range(0x7F, 0xA0)} | {"/", "\\", "%"}


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _encode(text: str) -> str:
    """Percent-encode, as UTF-8, what a name must not hold; unquote() gives the text back."""
    return "".join("".join(f"%{b:02X}" for b in c.encode()) if c in _UNSAFE else c for c in text)


def _fit(component: str, url: str) -> str:
    """Cut a component to MAX_COMPONENT_BYTES (UTF-8) with a hash suffix when it is too long."""
    data = component.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_COMPONENT_BYTES:
        return component
    suffix = "~" + url_hash(url)
    cut = data[: MAX_COMPONENT_BYTES - len(suffix)].decode("utf-8", "ignore")
    return cut + suffix


def _not_dots(name: str) -> str:
    """'.' and '..' are not names: they stay encoded."""
    return "%2E" * len(name) if name in (".", "..") else name


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
    parts = urlsplit(url)
    host = (parts.hostname or "unknown-host").lower()
    port = parts.port
    name = host if port is None or port == _DEFAULT_PORTS.get(parts.scheme) else f"{host}_{port}"
    return _not_dots(_encode(name.replace(":", "_")))


def url_parts(url: str) -> list[str]:
    """The relative path components for url: host folder, folders, file name. Never empty, never
    '.', '..' or a name with '/', NUL or a control character; each at most 255 bytes."""
    parts = urlsplit(url)
    segments = _segments(parts.path)
    names = [_not_dots(_encode(unquote(s, errors="surrogateescape"))) for s in segments]
    # "/a/" and, after dot-segment removal, "/a/b/.." and "/a/." name the folder /a/
    if not names or parts.path.endswith("/") or parts.path.rsplit("/", 1)[-1] in (".", ".."):
        names.append(INDEX)
    if parts.query:
        names[-1] += QUERY_MARK + _encode(unquote(parts.query, errors="surrogateescape"))
    return [_fit(name, url) for name in [host_folder(url), *names]]


def name_parts(name: str, url: str) -> list[str]:
    """A file name given by the input (``output``), made as safe as a URL's path: folders kept,
    dot segments resolved within it, unsafe characters encoded; never empty."""
    names = [_encode(segment) for segment in _segments(name.replace("\\", "/"))]
    names = ["%2E" * len(n) if n in (".", "..") else n for n in names] or [INDEX]
    return [_fit(n, url) for n in names]


class OutputDir:
    """Places bodies under one folder for one run. Thread-safe: workers call ``place``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.normpath(root)
        self._lock = threading.Lock()
        self._owner: dict[str, str] = {}  # relative file path -> hash of the URL given it

    def place(self, url: str, name: str | None = None) -> str:
        """Create the folders for url and return the path its body goes to: the URL's own, or
        name (a relative file name, made safe the same way) when given. Raises OSError when a
        folder cannot be created."""
        components = name_parts(name, url) if name else url_parts(url)
        mark = url_hash(url)
        with self._lock:
            folder = self.root
            for name in components[:-1]:
                folder = self._first_free(folder, name, url, mark, self._fits_folder)
                os.makedirs(folder, exist_ok=True)
            target = self._first_free(folder, components[-1], url, mark, self._fits_file)
            self._owner[target] = mark
            return target

    def _fits_file(self, path: str, mark: str) -> bool:
        """Not a folder, and not given to another URL in this run (an earlier run's file is
        replaced)."""
        return self._owner.get(path, mark) == mark and not os.path.isdir(path)

    def _fits_folder(self, path: str, mark: str) -> bool:
        """Not a file given in this run, nor a file (or dangling link) an earlier run left."""
        return path not in self._owner and (os.path.isdir(path) or not os.path.lexists(path))

    @staticmethod
    def _first_free(
        parent: str, name: str, url: str, mark: str, fits: Callable[[str, str], bool]
    ) -> str:
        """The first of name, name~<hash>, name~<hash>-3, ... that fits, each cut to 255 bytes.
        The order is fixed, and a name that did not fit never fits later, so a URL placed again
        gets the same path."""
        for n in itertools.count(1):
            if n == 1:
                candidate = name
            else:
                candidate = _fit(f"{name}~{mark}" + ("" if n == 2 else f"-{n}"), f"{url}~{n}")
            path = os.path.join(parent, candidate)
            if fits(path, mark):
                return path
        raise AssertionError("unreachable")
