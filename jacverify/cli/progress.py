"""Progress of a check on stderr: a bar on a terminal, one plain line per checked call
elsewhere (CI logs show movement), or nothing."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

from jacverify.cli.common import console

#: ``--progress`` values; ``auto`` is ``bar`` on a terminal, ``plain`` elsewhere.
PROGRESS_MODES = ("auto", "bar", "plain", "none")

#: ``report(index, total, label)`` before each checked call; ``status(text)`` for the rest.
Report = Callable[[int, int, str], None]
Status = Callable[[str], None]


def resolve_mode(mode: str, *, quiet: bool) -> str:
    """``bar``, ``plain`` or ``none`` for a ``--progress`` value (``--quiet`` means none)."""
    if quiet or mode == "none":
        return "none"
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "plain"
    return mode


@contextlib.contextmanager
def progress_reporter(mode: str) -> Iterator[tuple[Status, Report]]:
    """``(status, report)`` callables drawing progress in ``mode`` while the block runs."""
    if mode == "bar":
        with _bar() as callbacks:
            yield callbacks
    elif mode == "plain":
        yield _plain()
    else:
        yield (lambda text: None), (lambda index, total, label: None)


def _plain() -> tuple[Status, Report]:
    """Only the checked calls get a line: loading and preparing stay silent, so that a model
    that does not load gives one line on stderr, the error."""
    start = time.perf_counter()

    def report(index: int, total: int, label: str) -> None:
        width = len(str(total))
        print(f"jacverify: {time.perf_counter() - start:6.1f} s  [{index + 1:>{width}}/{total}] "
              f"checking {label}", file=sys.stderr, flush=True)

    return (lambda text: None), report


@contextlib.contextmanager
def _bar() -> Iterator[tuple[Status, Report]]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        SpinnerColumn(), TextColumn("checking"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.description}", markup=False),
        console=console(stderr=True), transient=True,
    )
    with progress:
        task = progress.add_task("", total=None)

        def status(text: str) -> None:
            progress.update(task, description=text)

        def report(index: int, total: int, label: str) -> None:
            progress.update(task, total=total, completed=index, description=str(label))

        yield status, report
