"""A library function's own code, run with some of the global names it looks up swapped.

fetcher reuses a few long steps of http.client and requests unchanged but for one helper each
(the header parser of ``HTTPResponse.begin``, the cookie extraction of ``Session.send``).
Copying their code would fork it; patching their modules would change them for every other
user in the process. A function made here shares the original's code object and reads a copy
of its module's namespace in which only the given names differ.

The copy is taken once, at import: a name rebound in the library's module later (a monkeypatch
by someone else) is not seen by the function made here.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])


def with_globals(function: F, **names: object) -> F:
    """function's own code, looking names up in a copy of its module's namespace with names
    replaced."""
    original = cast(types.FunctionType, function)
    namespace = dict(original.__globals__, **names)
    made = types.FunctionType(
        original.__code__, namespace, original.__name__, original.__defaults__, original.__closure__
    )
    made.__kwdefaults__ = original.__kwdefaults__
    made.__qualname__, made.__doc__ = original.__qualname__, original.__doc__
    return cast(F, made)
