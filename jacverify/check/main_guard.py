"""Whether the running script guards its work with ``if __name__ == "__main__":``.

Local worker processes start by importing the script that runs (``spawn`` and ``forkserver``
do, so that its classes exist there). A script whose checks run at its top level, outside that
guard, would run them again in every worker, which then fails while starting workers of its
own. :func:`unguarded_main_call` tells the checker so before it starts any worker.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
from types import FrameType

__all__ = ["unguarded_main_call"]


def _is_main_comparison(node: ast.AST) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1
            and isinstance(node.ops[0], ast.Eq)):
        return False
    sides = [node.left, node.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    constants = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and constants)


def _is_main_test(test: ast.expr) -> bool:
    """An ``if`` test that holds only in the script run as ``__main__``: the comparison, or a
    conjunction holding it (``__name__ == "__main__" and ...``)."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(_is_main_test(value) for value in test.values)
    return _is_main_comparison(test)


@functools.lru_cache(maxsize=8)
def _guarded_lines(path: str) -> tuple[tuple[int, int], ...] | None:
    """The line ranges of the ``if __name__ == "__main__":`` blocks of a script (``None``
    when its source cannot be read or parsed)."""
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    return tuple(
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_main_test(node.test)
    )


def _main_module_frame() -> FrameType | None:
    """The frame of the ``__main__`` script's top level on the current call stack."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            return frame
        frame = frame.f_back
    return None


def _imported_by_workers() -> bool:
    """Whether workers import the main module again: a script run by path, or a module run
    with ``-m``, but not a package's ``__main__`` (``python -m package``), which
    ``multiprocessing`` leaves out."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    return not (isinstance(name, str) and (name == "__main__" or name.endswith(".__main__")))


def unguarded_main_call() -> str | None:
    """``"script.py, line N"`` when this call comes from the top level of the running script
    outside an ``if __name__ == "__main__":`` block, else ``None`` (guarded, an interactive
    session, ``python -c``, a package run as ``python -m package``, or a source that cannot be
    read)."""
    frame = _main_module_frame()
    if frame is None or not _imported_by_workers():
        return None
    path = frame.f_code.co_filename
    if not os.path.isfile(path):
        return None
    blocks = _guarded_lines(path)
    if blocks is None:
        return None
    line = frame.f_lineno
    if any(start <= line <= end for start, end in blocks):
        return None
    return f"{path}, line {line}"
