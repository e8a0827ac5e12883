"""Calling a built rule without Keras' per-call bookkeeping, when that changes nothing.

A rule is called thousands of times in a check. Keras' ``Layer.__call__`` converts and
casts the inputs, checks the input spec, builds, resolves ``training``, attaches masks and
records losses before it reaches ``call``: about a millisecond per call on small tensors,
often more than the rule's own work. For a built layer with no input spec, inputs already
in its input dtype and no mixed-precision policy, none of it changes the result.

:func:`invoke` calls ``rule(arguments)`` the first time it meets a kind of arguments (the
number of axes and the dtype of each tensor) and ``rule.call(arguments)`` beside it; when the
two give the same structure, dtypes, shapes and values (NaNs in the same places), later
calls with that kind of arguments go through ``rule.call``. Whenever ``rule.call`` raises,
the call is made again through Keras' ``__call__``, so a rule that raises is reported with
exactly the error Keras gives.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from jacverify.keras_internals import in_autocast_scope

__all__ = ["direct_call_decisions", "invoke", "through_keras_call"]

#: Per rule: ``{kind of arguments: whether rule.call gives what rule(...) gives}``.
_decisions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Blocks of :func:`through_keras_call` running (the shortcut is off while any runs).
_keras_only = [0]


@contextlib.contextmanager
def through_keras_call() -> Iterator[None]:
    """Within the block every rule is called through Keras' ``__call__`` (benchmarks and
    tests compare the two paths)."""
    _keras_only[0] += 1
    try:
        yield
    finally:
        _keras_only[0] -= 1


def _tensors(arguments: Any) -> list:
    if isinstance(arguments, (list, tuple)):
        return [t for part in arguments for t in _tensors(part)]
    return [arguments]


def _kind(tensors: list) -> tuple:
    """What Keras' conversion depends on: each tensor's number of axes and dtype."""
    return tuple((len(t.shape), str(t.dtype)) for t in tensors)


def _may_skip_keras(rule: Any, tensors: list) -> bool:
    """Whether ``rule.call`` can stand for ``rule(...)`` at all: a built layer without an
    input spec or a mixed-precision policy, called outside an autocast scope, on tensors
    Keras would not cast."""
    if not isinstance(rule, keras.layers.Layer) or not rule.built:
        return False
    if rule.input_spec is not None or rule.compute_dtype != rule.variable_dtype:
        return False
    if in_autocast_scope():
        return False
    if not all(keras.ops.is_tensor(t) for t in tensors):
        return False
    wanted = rule.input_dtype
    return all(
        keras.backend.standardize_dtype(t.dtype) == wanted
        for t in tensors if keras.backend.is_float_dtype(t.dtype)
    )


def _same(expected: Any, got: Any) -> bool:
    """The same structure, and tensors of the same dtype, shape and values (NaN in the
    same places)."""
    if isinstance(expected, (list, tuple)) or isinstance(got, (list, tuple)):
        return (
            isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple))
            and len(expected) == len(got)
            and all(_same(e, g) for e, g in zip(expected, got, strict=True))
        )
    if not (keras.ops.is_tensor(expected) and keras.ops.is_tensor(got)):
        return False
    if expected.dtype != got.dtype or tuple(expected.shape) != tuple(got.shape):
        return False
    a = np.asarray(keras.ops.convert_to_numpy(expected))
    b = np.asarray(keras.ops.convert_to_numpy(got))
    return bool(np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.inexact)))


def _probe(rule: Any, arguments: Any) -> tuple[Any, bool]:
    """``rule(arguments)``, and whether ``rule.call(arguments)`` gives the same."""
    expected = rule(arguments)
    try:
        got = rule.call(arguments)
    except Exception:  # noqa: BLE001 - a rule that needs Keras' __call__
        return expected, False
    return expected, _same(expected, got)


def invoke(rule: Any, arguments: Any) -> Any:
    """``rule(arguments)``, through ``rule.call`` when it has been shown to give the same
    for this kind of arguments (see the module doc). Raises what ``rule(arguments)``
    raises."""
    tensors = _tensors(arguments)
    if _keras_only[0] or not _may_skip_keras(rule, tensors):
        return rule(arguments)
    try:
        decisions = _decisions.setdefault(rule, {})
    except TypeError:  # not weakly referenceable or not hashable: no memory, no shortcut
        return rule(arguments)
    kind = _kind(tensors)
    decided = decisions.get(kind)
    if decided is None:
        out, decisions[kind] = _probe(rule, arguments)
        return out
    if not decided:
        return rule(arguments)
    try:
        return rule.call(arguments)
    except Exception:  # noqa: BLE001 - Keras' own path raises the error the user sees
        return rule(arguments)


def direct_call_decisions(rule: Any) -> dict:
    """For tests and benchmarks: the kinds of arguments ``rule`` has been probed with, and
    whether its ``call`` stands for Keras' ``__call__`` on them."""
    try:
        return dict(_decisions.get(rule, {}))
    except TypeError:
        return {}
