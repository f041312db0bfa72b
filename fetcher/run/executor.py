"""The interface between a run and whatever fetches its tasks: threads of this process
(fetcher.run.threads) or worker processes (fetcher.run.processes).

An executor puts each task's final Result, or a ``Skipped`` for one it never started, in the
run's inbox; it never raises for a URL. The run calls ``start`` and ``close`` from its calling
thread, ``submit`` from the dispatcher thread, and the rest from the calling thread after a stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from fetcher.http.task import Task
from fetcher.run.messages import Inbox

if TYPE_CHECKING:
    from fetcher.http.cookies import Change


# Told of each host pause (host, seconds: no request to it starts for that long).
PauseListener = Callable[[str, float], None]


class RunStartError(Exception):
    """The system refused a thread or a process the run needs (memory, a limit on tasks): the
    run has not read a line, and ends with this message rather than running short-handed."""


def start_thread(thread: threading.Thread) -> None:
    """Start one of the run's own threads; RunStartError if the system refuses it."""
    try:
        thread.start()
    except RuntimeError as exc:  # "can't start new thread"
        raise RunStartError(f"cannot start the run's thread {thread.name} ({exc})") from None


class Executor(Protocol):
    window: int  # lines read and not yet recorded, at most: enough to keep every worker busy
    batch_size: int  # tasks the dispatcher gathers before a submit

    def start(self, inbox: Inbox) -> None:
        """Start the workers; their results go to inbox. Raises RunStartError when the system
        refuses one; ``close`` then ends those already started."""

    def submit(self, tasks: list[Task]) -> None:
        """Fetch these tasks (dispatcher thread)."""

    def stop(self) -> None:
        """The first stop: no task starts any more; in-flight ones may finish."""

    def drain(self) -> list[Task]:
        """After a stop: the tasks this process holds that were never started or are waiting
        for a retry (a worker process hands its own back through the inbox instead)."""

    def pause(self, host: str, seconds: float) -> None:
        """No request to host starts for seconds, in any worker (a 429/503 Retry-After that a
        worker elsewhere was given)."""

    def listen_pauses(self, listener: PauseListener) -> None:
        """Tell listener of every pause of a host that this executor's workers are told of, by
        a server or relayed (the run's window parks the URLs of a paused host: a Retry-After
        holding them was not to stop the other hosts; fetcher.run.window)."""

    def close(self, stopped: bool, abandoned: bool) -> None:
        """The run is over: end the workers, without waiting for stuck ones when stopped, and
        close their connections unless a request was abandoned mid-flight (its thread may
        still be using its session)."""

    def cookie_changes(self) -> list[list[Change]]:
        """For -c: what the sessions' servers set or deleted, one list per process (oldest
        first), to apply to the file as it is at the save (fetcher.http.cookies.save_jar)."""
