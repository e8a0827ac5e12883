"""One call of a model, checked in place, as a task that can travel to a worker process.

:class:`CallTask` holds what the check of one call needs as plain data: the operation (a
Keras layer or ``keras.ops`` operation, pickled by Keras as its configuration and weights),
the rule class, the call's input shapes and constant arguments, the activations that reach
it, and the check's options. :func:`coverage_key` says when two calls are the same check:
the same forward class and rule, the same configuration (name aside), the same weights, the
same constant call arguments, input shapes and dtype.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from jacverify.check import task_cost
from jacverify.check.adapters import PackedCall
from jacverify.check.layer_check import check_layer
from jacverify.check.parallel import operation_from_state, operation_state
from jacverify.check.results import LayerCheck

__all__ = ["CallTask", "coverage_key"]


class _Unkeyable(Exception):
    """A value that has no exact, stable description (the call gets its own check)."""


def _array_digest(array: np.ndarray) -> list:
    array = np.ascontiguousarray(array)
    return ["array", str(array.dtype), list(array.shape),
            hashlib.sha256(array.tobytes()).hexdigest()]


def _canonical(value: Any) -> Any:
    """``value`` as exact JSON data: arrays and tensors by dtype, shape and content digest;
    raises :class:`_Unkeyable` for anything else that is not plain data."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [_canonical(v) for v in value]]
    if isinstance(value, (np.ndarray, np.generic)):
        return _array_digest(np.asarray(value))
    if keras.ops.is_tensor(value) or isinstance(value, keras.Variable):
        return _array_digest(np.asarray(keras.ops.convert_to_numpy(value)))
    raise _Unkeyable(type(value).__name__)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def coverage_key(operation: Any, rule: type, shapes: list, args: list, kwargs: dict,
                 dtype: str) -> str | None:
    """A digest equal for two calls exactly when one check covers both: same forward class
    and rule class, same ``get_config()`` apart from the name, same weights (values
    included: a rule may be right for some weights and wrong for others), same constant call
    arguments, input shapes and dtype. ``None`` when the call cannot be described exactly
    (no usable config, arguments that are not plain data): it is then checked on its own."""
    try:
        config = {k: v for k, v in operation.get_config().items() if k != "name"}
        weights = [_array_digest(np.asarray(keras.ops.convert_to_numpy(w)))
                   for w in getattr(operation, "weights", [])]
        described = [
            _qualified(type(operation)), _qualified(rule), _canonical(config), weights,
            _canonical(list(args)), _canonical(dict(kwargs)), [list(s) for s in shapes],
            str(dtype),
        ]
        text = json.dumps(described, sort_keys=True)
    except Exception:  # noqa: BLE001 - no exact description: no sharing
        return None
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class CallTask:
    """The in-place check of one call of a model (see :func:`run` and the module doc)."""

    label: str  # the call's name in results
    operation: Any  # the Keras layer or operation called
    rule: type  # the rule class
    shapes: list  # input shapes without the batch axis
    args: list  # the call's arguments, {"__input__": i} where input i goes
    kwargs: dict
    dtype: str  # the dtype (policy name) the call computes in
    inputs: list  # activations per input, (rows, *shape) each
    examples: int
    seed: int
    convention: str
    rule_name: str | None = None
    #: Labels of the other calls whose activations joined ``inputs`` (one check covers them).
    covers: list = field(default_factory=list)

    def run(self) -> LayerCheck:
        """The check of the call around its activations."""
        adapter = PackedCall(self.operation, self.shapes, self.args, self.kwargs,
                             label=self.label, dtype=self.dtype)
        single = len(self.shapes) == 1
        return check_layer(
            adapter, self.rule, input_shape=self.shapes[0] if single else self.shapes,
            inputs=self.inputs[0] if single else self.inputs, examples=self.examples,
            seed=self.seed, convention=self.convention,
        )

    @property
    def cost_key(self) -> str:
        """Names this check for the durations of earlier runs (see
        :mod:`jacverify.check.task_cost`)."""
        return task_cost.cost_key(self.operation, self.rule, self.shapes, self.examples)

    def estimated_seconds(self) -> float:
        """A guess of this check's seconds from its configuration."""
        return task_cost.estimate_seconds(self.operation, self.shapes, self.examples)

    def failed(self, error: BaseException) -> LayerCheck:
        """``inconclusive``: the check could not run, and why."""
        return LayerCheck(
            verdict="inconclusive",
            reason=f"The check could not run: {type(error).__name__}: {error}",
            layer_name=self.label, layer_class=type(self.operation).__name__,
            rule_class=self.rule_name, input_shape=[list(s) for s in self.shapes],
            seed=self.seed, convention=self.convention,
        )

    def __getstate__(self) -> dict:
        return {**self.__dict__, "operation": operation_state(self.operation)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**state, "operation": operation_from_state(state["operation"])})
