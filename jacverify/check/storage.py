"""Where the checker's Hypothesis files go.

Hypothesis keeps working files (the example database of failing inputs, a cache of the
constants it finds in local source files) in its storage directory, ``.hypothesis/`` of the
current directory unless configured. A check must not litter whatever directory a library call
happens to run in, so while jacverify runs Hypothesis the storage directory is jacverify's own
cache:

1. ``$JACVERIFY_CACHE_DIR/hypothesis`` when that variable is set;
2. under the pytest plugin, ``jacverify/hypothesis`` in pytest's cache directory
   (``.pytest_cache/d/``; ``pytest --cache-clear`` empties it);
3. else ``$XDG_CACHE_HOME/jacverify/hypothesis`` (``~/.cache/jacverify/hypothesis``;
   ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows).

A storage directory the user chose (``HYPOTHESIS_STORAGE_DIRECTORY``, or
``hypothesis.configuration.set_hypothesis_home_dir`` to a directory not named ``.hypothesis``)
is kept, and so is a database set in the user's Hypothesis settings profile: only Hypothesis'
defaults are redirected.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Environment variable naming jacverify's cache directory.
CACHE_ENV = "JACVERIFY_CACHE_DIR"

__all__ = [
    "CACHE_ENV",
    "cache_directory",
    "database_for_checks",
    "hypothesis_directory",
    "hypothesis_storage",
    "use_cache_directory",
    "user_cache_directory",
    "user_chose_hypothesis_storage",
]

_lock = threading.RLock()
_override: list[Path] = []


def user_cache_directory() -> Path:
    """The platform's per-user cache directory + ``jacverify``: ``$XDG_CACHE_HOME/jacverify``
    (default ``~/.cache/jacverify``), ``~/Library/Caches/jacverify`` on macOS,
    ``%LOCALAPPDATA%\\jacverify`` on Windows."""
    if sys.platform == "win32":
        home = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        home = Path.home() / "Library" / "Caches"
    else:
        home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home / "jacverify"


def cache_directory() -> Path:
    """jacverify's cache directory (not created): ``$JACVERIFY_CACHE_DIR``, else the one set
    by :func:`use_cache_directory` (the pytest plugin's), else
    :func:`user_cache_directory`."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    with _lock:
        if _override:
            return _override[-1]
    return user_cache_directory()


def hypothesis_directory() -> Path:
    """The Hypothesis storage directory checks use when the user has not chosen one."""
    return cache_directory() / "hypothesis"


@contextlib.contextmanager
def use_cache_directory(directory: str | Path) -> Iterator[Path]:
    """Make ``directory`` jacverify's cache directory while the block runs (unless
    ``$JACVERIFY_CACHE_DIR`` says otherwise); the pytest plugin points it at pytest's cache."""
    path = Path(directory)
    with _lock:
        _override.append(path)
    try:
        yield path
    finally:
        with _lock:
            _override.remove(path)


def user_chose_hypothesis_storage() -> bool:
    """True when Hypothesis' storage directory is not its default ``.hypothesis/``: set by
    ``HYPOTHESIS_STORAGE_DIRECTORY`` or ``set_hypothesis_home_dir``."""
    from hypothesis.configuration import storage_directory

    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return True
    home = storage_directory(intent_to_write=False).home_directory
    return home.name != ".hypothesis"


_depth = 0
_previous: Path | None = None


@contextlib.contextmanager
def hypothesis_storage() -> Iterator[Path]:
    """While the block runs, Hypothesis' default storage directory is
    :func:`hypothesis_directory` (restored after); a storage directory the user chose is kept.
    Yields the storage directory in use. Re-entrant: nested blocks keep the outer one's."""
    global _depth, _previous
    from hypothesis.configuration import set_hypothesis_home_dir, storage_directory

    with _lock:
        if _depth == 0:
            current = storage_directory(intent_to_write=False).home_directory
            _previous = None
            if not user_chose_hypothesis_storage():
                _previous = current
                set_hypothesis_home_dir(hypothesis_directory())
        _depth += 1
        in_use = storage_directory(intent_to_write=False).home_directory
    try:
        yield in_use
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _previous is not None:
                set_hypothesis_home_dir(_previous)
                _previous = None


def database_for_checks(configured: Any) -> Any:
    """The example database in which the testing helpers keep the seeds of failed checks:
    ``configured`` (the database of the Hypothesis settings in use), unless it is Hypothesis'
    default ``.hypothesis/examples``, which becomes ``examples`` in :func:`hypothesis_directory`.
    ``None`` (no database) stays ``None``."""
    from hypothesis.configuration import storage_directory
    from hypothesis.database import DirectoryBasedExampleDatabase

    if configured is None or user_chose_hypothesis_storage():
        return configured
    if not isinstance(configured, DirectoryBasedExampleDatabase):
        return configured
    default = Path(storage_directory("examples", intent_to_write=False).path)
    if Path(configured.path).resolve() != default.resolve():
        return configured
    return DirectoryBasedExampleDatabase(hypothesis_directory() / "examples")
