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

#: Environment variable naming jacverify's cache directory.
CACHE_ENV = "JACVERIFY_CACHE_DIR"

__all__ = [
    "CACHE_ENV",
    "cache_directory",
    "hypothesis_directory",
    "hypothesis_storage",
    "use_cache_directory",
    "user_chose_hypothesis_storage",
]

_lock = threading.RLock()
_override: list[Path] = []


def _platform_cache_home() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def cache_directory() -> Path:
    """jacverify's cache directory (not created): ``$JACVERIFY_CACHE_DIR``, else the one set
    by :func:`use_cache_directory` (the pytest plugin's), else the platform's user cache
    directory + ``jacverify``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    with _lock:
        if _override:
            return _override[-1]
    return _platform_cache_home() / "jacverify"


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
