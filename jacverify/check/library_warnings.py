"""Silence, during a check, the deprecation warnings libraries raise inside it.

A check calls a layer, its rule and its references thousands of times; every call that goes
through Keras' tensor-to-numpy conversion on torch raises NumPy's ``__array__ ... copy keyword``
``DeprecationWarning`` from inside Keras. A user's test run would end with thousands of
warnings that say nothing about the user's code and bury the warnings that do.

While a check runs, :func:`library_warnings_silenced` ignores ``DeprecationWarning``,
``PendingDeprecationWarning`` and ``FutureWarning`` attributed to a module of Keras, torch,
NumPy, SciPy, Hypothesis or jacverify (the module the warning points at, as
:func:`warnings.filterwarnings` matches it). Every other warning is left as it is: the user's
own code (a custom layer's ``call``, the test around the check) and any other category still
warn, and the warning filters are restored when the check ends.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = ["LIBRARY_MODULES", "SILENCED_CATEGORIES", "library_warnings_silenced"]

#: Modules whose deprecation warnings a check silences (a regular expression matched at the
#: start of the module name the warning is attributed to).
LIBRARY_MODULES = r"(keras|torch|numpy|scipy|hypothesis|jacverify)(\.|$)"

#: The categories silenced for those modules.
SILENCED_CATEGORIES: tuple[type[Warning], ...] = (
    DeprecationWarning,
    PendingDeprecationWarning,
    FutureWarning,
)


@contextlib.contextmanager
def library_warnings_silenced() -> Iterator[None]:
    """Within the block (or the decorated function), ignore the deprecation warnings raised
    inside the libraries a check uses; the warning filters are restored after.

    Not thread-safe in the way :class:`warnings.catch_warnings` is not: two threads entering
    and leaving it out of order can restore each other's filters.
    """
    with warnings.catch_warnings():
        for category in SILENCED_CATEGORIES:
            warnings.filterwarnings("ignore", category=category, module=LIBRARY_MODULES)
        yield
