"""Argument helpers shared by the rules of ``keras.ops`` functions of the ``nn``, ``math``,
``linalg``, ``image`` and ``core`` families: constant operands (kernels, weights, targets
given as arrays), per-axis tuples, data formats."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.keras_internals import standardize_data_format


def constant_operand(rule, position: int | None, name: str, dtype, *, required: bool = True):
    """The call argument at ``position``/``name`` as a tensor of ``dtype``; it must be a constant
    (an array, a variable): a tensor of the model there would carry a batch axis the operation
    does not expect. ``None`` when absent and not ``required``."""
    value = rule.call_argument(position, name)
    if value is None:
        if required:
            raise ValueError(
                f"{type(rule).__name__}: operation '{rule.layer.name}' was called without its "
                f"'{name}' argument."
            )
        return None
    if is_input(value):
        raise ValueError(
            f"{type(rule).__name__}: the '{name}' argument of '{rule.layer.name}' "
            f"({type(rule.layer).__name__}) is a tensor of the model, with a batch axis; the "
            f"backward rule supports a constant '{name}' (an array or a variable) only. Pass "
            "the weights as a constant, or wrap the computation in a layer with its own rule."
        )
    if isinstance(value, keras.Variable):
        value = value.value
    return ops.cast(ops.convert_to_tensor(np.asarray(ops.convert_to_numpy(value))), dtype)


def optional_operand(rule, position: int | None, name: str, inputs, dtype):
    """The call argument as a tensor of ``dtype`` (the model's tensor it stands for, or the
    constant), ``None`` when absent; and the index of the input it is (``None`` for constants)."""
    value = rule.call_argument(position, name)
    if value is None:
        return None, None
    if is_input(value):
        index = input_index(value)
        tensor = None if inputs is None else ops.cast(inputs[index], dtype)
        return tensor, index
    if isinstance(value, keras.Variable):
        value = value.value
    return ops.cast(ops.convert_to_tensor(np.asarray(ops.convert_to_numpy(value))), dtype), None


def per_axis(value, rank: int) -> tuple:
    """``value`` (an int or a sequence of ints) as a ``rank``-tuple of ints."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1 and rank != 1:
            value = value * rank
        return tuple(int(v) for v in value)
    return (int(value),) * rank


def data_format_of(operation) -> str:
    return standardize_data_format(getattr(operation, "data_format", None))


def accumulate(results: list, index: int | None, gradient) -> None:
    """Add ``gradient`` to the gradient of input ``index`` (skipped for constants)."""
    if index is None:
        return
    results[index] = gradient if results[index] is None else results[index] + gradient
