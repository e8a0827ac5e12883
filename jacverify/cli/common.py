"""What every command shares: exit statuses, the usage error, consoles, one-line messages.

Nothing here imports Keras or torch: usage errors are answered before they load.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator

#: Exit statuses.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

#: The only Keras backend jacverify runs on for now.
SUPPORTED_BACKEND = "torch"


class UsageError(Exception):
    """A problem with what the command was given: one line for stderr, exit status 2."""


#: Width of the output when it is not a terminal (a pipe, a file, a CI log).
PIPE_COLUMNS = 120


def console(stderr: bool = False):
    """A Rich console. Off a terminal the width is unknown (``COLUMNS`` there is often a
    default such as 80 set by a tool, not a screen): 120 columns, or ``COLUMNS`` when it
    asks for more."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty():
        width = max(PIPE_COLUMNS, _columns_from_environment() or 0)
    return Console(file=stream, width=width, highlight=False, stderr=stderr)


def _columns_from_environment() -> int | None:
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return None
    return columns if columns > 0 else None


def first_line(text: str, limit: int = 300) -> str:
    """The first line of ``text`` without terminal colours, at most ``limit`` characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text)).strip()
    line = text.splitlines()[0].strip() if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def error_text(error: BaseException) -> str:
    """The messages of an exception and of its causes, joined."""
    parts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        parts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


def require_torch_backend() -> None:
    """Raise :class:`UsageError` unless Keras is to run (or runs) on the torch backend."""
    backend = os.environ.get("KERAS_BACKEND", SUPPORTED_BACKEND)
    keras = sys.modules.get("keras")
    if keras is not None:
        try:
            backend = str(keras.backend.backend())
        except Exception:  # noqa: BLE001 - a half-imported Keras: go by the environment
            pass
    if backend != SUPPORTED_BACKEND:
        raise UsageError(
            f"KERAS_BACKEND={backend}: jacverify needs the torch backend for now; unset "
            "KERAS_BACKEND or set KERAS_BACKEND=torch"
        )


@contextlib.contextmanager
def hypothesis_plugins_off() -> Iterator[None]:
    """Within the block, a first import of Hypothesis skips the plugins other installed
    packages register for it (``HYPOTHESIS_NO_PLUGINS``): the checks do not use them, and
    loading them can cost a second (trio's imports pytest). Unless the variable is set
    already; it is removed again after the block."""
    if "HYPOTHESIS_NO_PLUGINS" in os.environ:
        yield
        return
    os.environ["HYPOTHESIS_NO_PLUGINS"] = "1"
    try:
        yield
    finally:
        os.environ.pop("HYPOTHESIS_NO_PLUGINS", None)
