"""Two runs that save one URL into one -o DIR (s29 t2 2). Each renames its body over the name;
when the other's rename came between one's rename and its check that the name holds its file,
the first removed what it found there, the other run's complete body, whose record said ok
with a path that was gone. What a rename moved there is removed only when it is not a regular
file of this user's, as for the run's own files (docs/choices.md): a link or another user's
file an attacker swapped in goes; another run's body stays, and the run that lost says so."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from fetcher.errors import ErrorKind, FetchError
from fetcher.output.bodies import Bodies

URL = "http://h.test/f"


def test_another_runs_body_renamed_over_ours_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    output = Bodies(str(out), spool=False).open(URL, 200, True)
    assert output is not None and output.saved is not None
    output.write(b"this run's body\n")
    real_replace = os.replace

    def replace_then_the_other_run(src: Any, dst: Any, **kwargs: Any) -> None:
        real_replace(src, dst, **kwargs)
        other = out / "h.test" / "other-run.tmp"
        other.write_bytes(b"the other run's body\n")
        real_replace(other, out / "h.test" / "f")

    monkeypatch.setattr(os, "replace", replace_then_the_other_run)
    with pytest.raises(FetchError) as raised:
        output.finish()
    monkeypatch.undo()
    assert raised.value.kind is ErrorKind.IO
    assert (out / "h.test" / "f").read_bytes() == b"the other run's body\n"
    assert sorted(p.name for p in (out / "h.test").iterdir()) == ["f"]


def test_a_link_renamed_over_ours_still_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    target = tmp_path / "elsewhere"
    target.write_bytes(b"x")
    output = Bodies(str(out), spool=False).open(URL, 200, True)
    assert output is not None
    output.write(b"this run's body\n")
    real_replace = os.replace

    def replace_then_a_link(src: Any, dst: Any, **kwargs: Any) -> None:
        real_replace(src, dst, **kwargs)
        link = out / "h.test" / "link.tmp"
        link.symlink_to(target)
        real_replace(link, out / "h.test" / "f")

    monkeypatch.setattr(os, "replace", replace_then_a_link)
    with pytest.raises(FetchError):
        output.finish()
    monkeypatch.undo()
    assert list((out / "h.test").iterdir()) == [] and target.read_bytes() == b"x"
