"""Keras' default float type and dtype policy, as data that travels with a check to a worker.

A check's numbers depend on two process-wide Keras settings besides its task: the default
float type (``keras.config.floatx()``, the dtype of the inputs and kernels configurations draw,
of domain maps) and the global dtype policy (``keras.config.dtype_policy()``, the dtype of the
layers a configuration builds). A worker process starts with Keras' defaults (float32), so a
task checked there under a caller's float64 session would be a float32 check. What a task
carries to a worker is therefore its caller's :class:`FloatSettings`, applied in the worker
around the task (its unpickling included: unpickled layers take the policy) and undone after,
so that a worker taking tasks from callers of different settings keeps none of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras

from jacverify import keras_internals

__all__ = ["FloatSettings"]


@dataclass(frozen=True)
class FloatSettings:
    """Keras' default float type and global dtype policy (serialized), as plain data."""

    floatx: str
    dtype_policy: Any  # keras.dtype_policies.serialize() of the policy

    @classmethod
    def current(cls) -> FloatSettings:
        """The settings of this process now."""
        policy = keras_internals.global_dtype_policy()
        if policy is None:  # unset: Keras' policy follows the float type
            policy = keras.DTypePolicy(keras.config.floatx())
        return cls(keras.config.floatx(), keras.dtype_policies.serialize(policy))

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """These settings within the block; this process' own (an unset policy included)
        after it, whether it returns or raises."""
        floatx, policy = keras.config.floatx(), keras_internals.global_dtype_policy()
        keras.config.set_floatx(self.floatx)
        keras.config.set_dtype_policy(keras.dtype_policies.deserialize(self.dtype_policy))
        try:
            yield
        finally:
            keras.config.set_floatx(floatx)
            keras_internals.set_global_dtype_policy(policy)
