"""The base of the recurrent cells' time steps: :class:`CellMath` (one step forward and its
vector-Jacobian product, from the cell's weights) and the error for cells without one."""

from __future__ import annotations

import keras
from keras import ops


class UnsupportedCellError(ValueError):
    """Raised for a recurrent cell whose backward step jacverify does not know."""


def _dot(x, kernel):
    """``x @ kernel`` over the last axis of ``x`` (an einsum: ``keras.ops.matmul`` computes
    float64 products of 3-d tensors in float32 on the torch backend). A batch of vectors (the
    states of one time step) takes the tensors' own ``@``: the same product, without the
    einsum's parsing and Keras' dispatch at every step."""
    if len(x.shape) == 2 and len(kernel.shape) == 2:
        return x @ kernel
    return ops.einsum("...i,io->...o", x, kernel)


def _dot_transposed(gradient, kernel):
    """``gradient @ kernel^T`` over the last axis of ``gradient``."""
    return ops.einsum("...o,io->...i", gradient, kernel)


class CellMath:
    """The time step of one Keras cell (see the module docstring)."""

    def __init__(self, cell: keras.layers.Layer) -> None:
        self.cell = cell
        self._weights: dict = {}

    def begin_run(self) -> None:
        """Forget the weights cast for the previous run (they may have changed since)."""
        self._weights = {}

    def weight(self, name: str, dtype):
        """The cell's weight ``name`` cast to ``dtype``, once per run."""
        key = (name, str(dtype))
        if key not in self._weights:
            self._weights[key] = ops.cast(getattr(self.cell, name), dtype)
        return self._weights[key]

    def weight_transposed(self, name: str, dtype):
        """The transpose of the 2-d weight ``name`` cast to ``dtype``, once per run."""
        key = (name, str(dtype), "T")
        if key not in self._weights:
            self._weights[key] = ops.transpose(self.weight(name, dtype))
        return self._weights[key]

    @property
    def state_sizes(self) -> list:
        size = self.cell.state_size
        return list(size) if isinstance(size, (list, tuple)) else [size]

    def zero_states(self, batch, dtype) -> list:
        return [ops.zeros((batch, int(s)), dtype=dtype) for s in self.state_sizes]

    # The input projection ``x W (+ b)`` shared by the three dense cells.
    def project(self, x):
        projection = _dot(x, self.weight("kernel", x.dtype))
        bias = self._input_bias(x.dtype)
        return projection if bias is None else projection + bias

    def project_vjp(self, d_projection, x=None):
        return _dot_transposed(d_projection, self.weight("kernel", d_projection.dtype))

    def _input_bias(self, dtype):
        return self.weight("bias", dtype) if self.cell.use_bias else None

    def step(self, projection, states):
        raise NotImplementedError

    def step_vjp(self, d_output, d_states, cache):
        raise NotImplementedError
