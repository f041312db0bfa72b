"""A worker process's log lines, sent to the process you started, which prints them where its
own go: above the live display (a worker's own write landed across it), and with that process's
stops (a worker, a process group of its own, wrote to the terminal from the background under
`stty tostop`)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading

from fetcher.run.wire import Outbox, WorkerLog

_TRACEBACK = logging.Formatter()  # formats an exception as the parent's formatter would


def send_logs_to_parent(outbox: Outbox) -> LogsToParent | None:
    """From now on this process's log lines go to the parent; None, and they stay on stderr, if
    the system refuses the thread that sends them."""
    handler = LogsToParent(outbox)
    try:
        handler.sender.start()
    except RuntimeError:  # "can't start new thread"
        return None
    logging.getLogger().handlers[:] = [handler]
    return handler


class LogsToParent(logging.Handler):
    """Takes each log record's parts, and a thread of its own sends them to the parent: a
    record may be logged from a signal handler while the thread it interrupted is sending on
    the same pipe, whose lock it holds (``queue.SimpleQueue.put`` may be called there)."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self.outbox = outbox
        self.lines: queue.SimpleQueue[WorkerLog | None] = queue.SimpleQueue()
        self.sender = threading.Thread(target=self._send, name="fetcher-logs", daemon=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            failure = (
                None if record.exc_info is None else _TRACEBACK.formatException(record.exc_info)
            )
            self.lines.put(WorkerLog(record.created, record.name, record.levelno,
                                     record.getMessage(), failure, record.stack_info))  # fmt: skip
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)

    def close(self) -> None:
        """Every line logged so far sent (or dropped, the parent gone), then the thread ends."""
        if self.sender.is_alive():
            self.lines.put(None)
            self.sender.join()
        super().close()

    def _send(self) -> None:
        while (line := self.lines.get()) is not None:
            with contextlib.suppress(OSError, ValueError):  # the parent is gone, or the pipe
                self.outbox.send(line)


def log_here(line: WorkerLog) -> None:
    """A worker's log line, handled in this process as if logged here, at its time."""
    record = logging.LogRecord(line.name, line.level, "", 0, line.message, None, None,
                               sinfo=line.stack_info)  # fmt: skip
    record.created = line.created
    record.msecs = int((line.created - int(line.created)) * 1000) + 0.0
    record.exc_text = line.failure
    logging.getLogger(line.name).handle(record)
