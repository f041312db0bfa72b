"""The progress protocol that the run calls as it goes, and a display that shows nothing."""

from __future__ import annotations

from typing import Protocol

from fetcher.results import Result, Summary


class Events(Protocol):
    """Called from the writer thread only, once per record and at the edges of the run."""

    def on_total(self, total: int) -> None: ...

    def on_result(self, result: Result, summary: Summary) -> None: ...

    def on_finish(self, summary: Summary) -> None: ...


class NullEvents:
    """What runs when no one is watching: costs one method call per record."""

    def on_total(self, total: int) -> None:
        pass

    def on_result(self, result: Result, summary: Summary) -> None:
        pass

    def on_finish(self, summary: Summary) -> None:
        pass
