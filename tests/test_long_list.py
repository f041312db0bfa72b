"""tests/long.txt names test functions that exist: a renamed or removed one would leave the
list, and a test renamed back into the default suite, unseen."""

from __future__ import annotations

import ast

from tests.conftest import LONG_TESTS, ROOT


def test_every_long_test_named_exists() -> None:
    missing = []
    for name in sorted(LONG_TESTS):
        path, _, function = name.partition("::")
        module = ast.parse((ROOT / path).read_text()) if (ROOT / path).is_file() else None
        defined = (
            set()
            if module is None
            else {node.name for node in module.body if isinstance(node, ast.FunctionDef)}
        )
        if function not in defined:
            missing.append(name)
    assert LONG_TESTS and not missing, missing
