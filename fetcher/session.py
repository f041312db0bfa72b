"""One configured requests.Session per worker thread, each created on first use in its thread.

A Session is not thread-safe (requests issue #2766), so sessions are never shared; each is kept in
a registry so that all of them are closed when the run ends, whichever thread made them.
"""

from __future__ import annotations

import threading

import requests
from requests.adapters import HTTPAdapter

from fetcher.settings import Settings


def make_session(settings: Settings) -> requests.Session:
    """A Session configured from settings. Every worker's session is made here, identically."""
    session = requests.Session()
    session.headers["User-Agent"] = settings.user_agent
    session.max_redirects = settings.max_redirects
    # One thread uses a session at a time, so one connection per host is all it can use; no
    # retries here: failures are classified and reported, never hidden in the adapter.
    adapter = HTTPAdapter(pool_connections=16, pool_maxsize=1, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class SessionPool:
    """Hands each thread its own Session; ``close_all`` closes every session ever handed out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._lock = threading.Lock()
        self.sessions: list[requests.Session] = []
        self.closed = False

    def get(self) -> requests.Session:
        """The calling thread's session, created on its first call."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = make_session(self.settings)
            self._local.session = session
            with self._lock:
                self.sessions.append(session)
        return session

    def close_all(self) -> None:
        with self._lock:
            sessions = list(self.sessions)
            self.closed = True
        for session in sessions:
            session.close()
