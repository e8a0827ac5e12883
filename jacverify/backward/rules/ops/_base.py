"""Shared plumbing of the rules of ``keras.ops`` operations.

A functional model records a ``keras.ops`` call (``x + 3.0``, ``ops.reshape(x, ...)``,
``ops.mean(x, axis=1)``) as a call of an operation object (``keras.src.ops.numpy.Add``, ...).
Its configuration is on the object (``Mean.axis``); the rest of the call (the ``3.0``) reaches
the rule as ``call_arguments`` (see :mod:`jacverify.backward.rules._call_arguments`). Rules are
registered by operation class, like layer rules.

Every tensor in a functional model has the batch axis first; an operation that mixes the batch
axis with others (a reduction over axis 0, a transpose moving it) has a Jacobian coupling the
examples of a batch, which a per-example rule cannot express: the rules raise ``ValueError``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer, _is_multi
from jacverify.backward.rules._call_arguments import (
    CallArgumentsMixin,
    input_index,
    is_input,
)


class BackwardOperation(CallArgumentsMixin, BackwardNonLinearLayer):
    """Base of the rules of ``keras.ops`` operations: call arguments, shapes, dtypes."""

    # ------------------------------------------------------------------ shapes and inputs
    def _input_dims(self) -> list:
        """Shapes (without batch) of the data inputs, always as a list of shapes."""
        dims = self.input_dim_wo_batch
        return [list(d) for d in dims] if _is_multi(dims) else [list(dims)]

    def _inputs(self, input) -> list | None:  # noqa: A002 - calling-convention name
        if input is None:
            return None
        return list(input) if _is_multi(self.input_dim_wo_batch) else [input]

    def _pack(self, gradients: list):
        return gradients if _is_multi(self.input_dim_wo_batch) else gradients[0]

    def _dims_known(self) -> bool:
        return all(d is not None for dims in self._input_dims() for d in dims)

    def _runtime_dims(self, input) -> list:  # noqa: A002
        """Input shapes without batch, read from the inputs where the static ones are unknown."""
        dims = self._input_dims()
        inputs = self._inputs(input)
        if inputs is None or self._dims_known():
            return dims
        return [[int(d) for d in tuple(x.shape)[1:]] for x in inputs]

    # --------------------------------------------------------------------- values
    def operand(self, value, inputs, dtype):
        """A call argument as a tensor of ``dtype``: the input it stands for, or the constant."""
        if is_input(value):
            return ops.cast(inputs[input_index(value)], dtype)
        return ops.convert_to_tensor(np.asarray(value), dtype=dtype)


def canonical_axes(axis, rank: int, what: str) -> tuple:
    """Non-negative axes of a per-example operation on a tensor of ``rank`` (batch included);
    never the batch axis, never ``None`` (all axes)."""
    if axis is None:
        raise ValueError(
            f"{what} over every axis (axis=None) includes the batch axis: its Jacobian couples "
            "the examples of a batch, which a backward rule cannot express."
        )
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    result = []
    for a in axes:
        a = int(a)
        if not -rank <= a < rank:
            raise ValueError(f"{what}: axis {a} is out of range for rank {rank}.")
        a %= rank
        if a == 0:
            raise ValueError(
                f"{what} along axis {axis!r} includes the batch axis: its Jacobian couples the "
                "examples of a batch, which a backward rule cannot express."
            )
        result.append(a)
    return tuple(sorted(set(result)))


def reduce_to_shape(gradient, dims_wo_batch):
    """Sum an output-shaped ``gradient`` (batch first) back to an operand that NumPy-style
    broadcasting stretched: over the axes where the operand has size 1 and the output not.
    The operand must have the batch axis too (same rank as the output)."""
    dims = list(dims_wo_batch)
    out = list(gradient.shape[1:])
    if len(dims) != len(out):
        raise ValueError(
            f"an operand of shape (batch, *{dims}) broadcast to (batch, *{out}): broadcasting "
            "across the batch axis is not supported."
        )
    pairs = enumerate(zip(dims, out, strict=True))
    axes = tuple(1 + i for i, (d, o) in pairs if d == 1 and o != 1)
    if axes:
        gradient = ops.sum(gradient, axis=axes, keepdims=True)
    return gradient


def dtype_of(tensor) -> str:
    return keras.backend.standardize_dtype(tensor.dtype)
