"""Silence, during a check, the warnings libraries raise inside it.

A check calls a layer, its rule and its references thousands of times; every call that goes
through Keras' tensor-to-numpy conversion on torch raises NumPy's ``__array__ ... copy keyword``
``DeprecationWarning`` from inside Keras. A user's test run would end with thousands of
warnings that say nothing about the user's code and bury the warnings that do.

While a check runs, :func:`library_warnings_silenced` ignores every warning attributed to a
module of Keras, torch, NumPy, SciPy or Hypothesis (the module the warning points at, as
:func:`warnings.filterwarnings` matches it): the checker calls layers in ways of its own
(float64 clones, batches of directions, drawn configurations), and what those libraries say
about such calls (deprecations, torch's "Tensor.T is deprecated on 0-D tensors", Keras'
softmax over an axis of size 1) is about the checker's calls, not the user's code. jacverify's
own ``DeprecationWarning``, ``PendingDeprecationWarning`` and ``FutureWarning`` raised inside a
check are ignored too; its other warnings are meant for the user and show. Every other warning
is left as it is: the user's own code (a custom layer's ``call``, the test around the check)
still warns, and the warning filters are restored when the check ends.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = [
    "LIBRARY_MODULES",
    "OWN_MODULES",
    "SILENCED_CATEGORIES",
    "library_warnings_silenced",
]

#: Modules whose warnings a check silences, all categories (a regular expression matched at
#: the start of the module name the warning is attributed to).
LIBRARY_MODULES = r"(keras|torch|numpy|scipy|hypothesis)(\.|$)"

#: jacverify's modules: only their deprecation warnings are silenced during a check.
OWN_MODULES = r"jacverify(\.|$)"

#: The categories silenced for jacverify's own modules.
SILENCED_CATEGORIES: tuple[type[Warning], ...] = (
    DeprecationWarning,
    PendingDeprecationWarning,
    FutureWarning,
)


@contextlib.contextmanager
def library_warnings_silenced() -> Iterator[None]:
    """Within the block (or the decorated function), ignore the warnings raised inside the
    libraries a check uses, and jacverify's own deprecation warnings; the warning filters are
    restored after.

    Not thread-safe in the way :class:`warnings.catch_warnings` is not: two threads entering
    and leaving it out of order can restore each other's filters.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=LIBRARY_MODULES)
        for category in SILENCED_CATEGORIES:
            warnings.filterwarnings("ignore", category=category, module=OWN_MODULES)
        yield
