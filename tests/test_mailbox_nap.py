"""The writer's loop takes no lock that a signal handler takes.

A first signal sets the run's ``stopping`` Event from the handler, which runs on the calling
thread between two bytecodes. The writer's nap between batches of results was
``stopping.wait(nap)``: had the handler run while that thread held the Event's lock (not
reentrant) inside ``wait``, ``set`` would have waited for it for ever, and the first Ctrl-C
hung the run (s14 r2 10). Taking messages, napping and flushing now call nothing in
``threading``: the queue is a SimpleQueue, whose put a handler may call."""

from __future__ import annotations

import sys
import threading
from types import FrameType
from typing import Any

from fetcher.run.mailbox import Mailbox


def test_the_writers_nap_calls_nothing_in_threading() -> None:
    refilled: list[bool] = []

    def refill() -> None:  # the queue found empty: a result arrives during the nap
        if not refilled:
            refilled.append(True)
            mailbox.put("second")

    mailbox = Mailbox(on_empty=refill, on_idle=lambda: None, nap=True)
    mailbox.put("first")
    assert mailbox.next() == "first"  # a batch has begun: the next empty queue means a nap
    called: list[str] = []

    def trace(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename == threading.__file__:
            called.append(frame.f_code.co_name)

    sys.setprofile(trace)
    try:
        message = mailbox.next()
    finally:
        sys.setprofile(None)
    assert message == "second" and refilled
    assert called == [], f"the writer's loop called threading's {called}"
