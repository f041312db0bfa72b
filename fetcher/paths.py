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
import os
import threading
from urllib.parse import unquote, urlsplit

MAX_COMPONENT_BYTES = 255
INDEX = "index.html"
QUERY_MARK = "@"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters a file name cannot hold or that would make two names ambiguous, percent-encoded.
_UNSAFE = {chr(c) for c in range(32)} | {"\x7f", "/", "\\", "%"}


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _encode(text: str) -> str:
    return "".join(f"%{ord(c):02X}" if c in _UNSAFE else c for c in text)


def _fit(component: str, url: str) -> str:
    """Cut a component to MAX_COMPONENT_BYTES (UTF-8) with a hash suffix when it is too long."""
    data = component.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_COMPONENT_BYTES:
        return component
    suffix = "~" + url_hash(url)
    cut = data[: MAX_COMPONENT_BYTES - len(suffix)].decode("utf-8", "ignore")
    return cut + suffix


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
    return _encode(name.replace(":", "_"))


def url_parts(url: str) -> list[str]:
    """The relative path components for url: host folder, folders, file name. Never empty, never
    '.', '..' or a name with '/', NUL or a control character; each at most 255 bytes."""
    parts = urlsplit(url)
    segments = _segments(parts.path)
    names = []
    for segment in segments:
        name = _encode(unquote(segment, errors="surrogateescape"))
        names.append("%2E" * len(name) if name in (".", "..") else name)
    if not names or parts.path.endswith("/"):
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
                folder = self._folder(folder, name, mark)
            name = components[-1]
            target = os.path.join(folder, name)
            if os.path.isdir(target) or self._owner.get(target, mark) != mark:
                target = os.path.join(folder, _fit(name + "~" + mark, url + "~"))
            self._owner[target] = mark
            return target

    def _folder(self, parent: str, name: str, mark: str) -> str:
        path = os.path.join(parent, name)
        if path in self._owner or (os.path.exists(path) and not os.path.isdir(path)):
            path = os.path.join(parent, f"{name}~{mark}")  # a file is where a folder is needed
        os.makedirs(path, exist_ok=True)
        return path
