"""Rules of the product ``keras.ops``: ``tensordot``, ``dot``, ``inner`` (as einsums, like
``matmul``), ``kron``, ``cross`` and ``trace``. The batch axis must stay the output's first
axis: products of two tensors of the model contract or combine per example only where the
operation keeps the batch axis first."""

from __future__ import annotations

import string

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.backward.rules.ops._base import (
    BackwardOperation,
    canonical_axes,
    reduce_to_shape,
)
from jacverify.backward.rules.ops.linalg import BackwardEinsumOp, _BackwardContraction
from jacverify.keras_internals import ops_numpy as knp


class _BackwardEinsumLike(_BackwardContraction):
    """An operation that is an einsum of its two operands: subclasses give the subscripts
    from the operands' ranks; the rule is then the einsum's."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._terms, self._out = self.subscripts(*self._ranks())
        for value, term in zip(self._operands, self._terms, strict=False):
            if is_input(value) and (not self._out or term[0] != self._out[0]):
                raise ValueError(
                    f"{type(layer).__name__} '{layer.name}' of operands of ranks "
                    f"{self._ranks()} does not keep the batch axis first in its output: its "
                    "Jacobian couples the examples of a batch."
                )

    def subscripts(self, r1: int, r2: int) -> tuple[list, str]:
        """``([term of x1, term of x2], output term)``."""
        raise NotImplementedError

    call_on_reshaped_gradient = BackwardEinsumOp.call_on_reshaped_gradient


def _letters(start: int, count: int) -> str:
    return string.ascii_letters[start : start + count]


@register_backward(knp.Tensordot)
class BackwardTensordotOp(_BackwardEinsumLike):
    """``tensordot(x1, x2, axes)``: contracts ``axes`` of ``x1`` with ``axes`` of ``x2``."""

    def subscripts(self, r1, r2):
        axes = self.layer.axes
        if isinstance(axes, int):
            first, second = list(range(r1 - axes, r1)), list(range(axes))
        else:
            first, second = ([axes[0]] if isinstance(axes[0], int) else list(axes[0]),
                             [axes[1]] if isinstance(axes[1], int) else list(axes[1]))
        first = [a % r1 for a in first]
        second = [a % r2 for a in second]
        t1 = _letters(0, r1)
        t2 = list(_letters(r1, r2))
        for a, b in zip(first, second, strict=True):
            t2[b] = t1[a]
        t2 = "".join(t2)
        out = "".join(c for i, c in enumerate(t1) if i not in first)
        out += "".join(c for i, c in enumerate(t2) if i not in second)
        return [t1, t2], out


@register_backward(knp.Dot)
class BackwardDotOp(_BackwardEinsumLike):
    """``dot(x1, x2)``: the last axis of ``x1`` with the second-to-last of ``x2`` (its only
    axis when one-dimensional)."""

    def subscripts(self, r1, r2):
        if r1 == 0 or r2 == 0:
            raise NotImplementedError(
                f"Dot '{self.layer.name}' with a scalar operand: use ops.multiply."
            )
        t1 = _letters(0, r1)
        t2 = list(_letters(r1, r2))
        contracted = r2 - 2 if r2 >= 2 else 0
        t2[contracted] = t1[-1]
        t2 = "".join(t2)
        return [t1, t2], t1[:-1] + t2[:contracted] + t2[contracted + 1 :]


@register_backward(knp.Inner)
class BackwardInnerOp(_BackwardEinsumLike):
    """``inner(x1, x2)``: the last axes of both."""

    def subscripts(self, r1, r2):
        t1 = _letters(0, r1)
        t2 = _letters(r1, r2 - 1) + t1[-1]
        return [t1, t2], t1[:-1] + t2[:-1]


@register_backward(knp.Kron)
class BackwardKronOp(BackwardOperation):
    """``kron(x1, x2)``: block ``(i, j)`` of the output is ``x1[i] * x2``. With the operands'
    axes interleaved, the output is an outer product: each operand receives the gradient
    contracted with the other. The other operand's first axis (after NumPy's padding to a
    common rank) must have size 1, so the batch axis stays per example."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._operands = [self.call_argument(0, "x1"), self.call_argument(1, "x2")]
        dims = self._input_dims()
        shapes = [[None, *dims[input_index(v)]] if is_input(v) else list(np.shape(v))
                  for v in self._operands]
        rank = max(len(s) for s in shapes)
        self._shapes = [[1] * (rank - len(s)) + s for s in shapes]
        for k, value in enumerate(self._operands):
            other = self._shapes[1 - k]
            if is_input(value) and other[0] != 1:
                raise ValueError(
                    f"Kron '{layer.name}': the other operand's first axis has size "
                    f"{other[0]}, which would repeat the batch axis: its Jacobian couples the "
                    "examples of a batch."
                )
        self._rank = rank

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = self._inputs(input)
        dims = self._runtime_dims(input)
        values = [ops.reshape(self.operand(v, inputs, gradient.dtype),
                              [-1 if d is None else d for d in shape])
                  for v, shape in zip(self._operands, self._shapes, strict=True)]
        # g[(i0 j0), (i1 j1), ...] -> g[i0, j0, i1, j1, ...]
        split = []
        for d1, d2 in zip(self._shapes[0][1:], self._shapes[1][1:], strict=True):
            split += [d1, d2]
        lead = (-1, 1) if is_input(self._operands[0]) else (1, -1)
        g = ops.reshape(gradient, (*lead, *split))
        letters1 = _letters(0, self._rank)
        letters2 = _letters(self._rank, self._rank)
        interleaved = "".join(a + b for a, b in zip(letters1, letters2, strict=True))
        terms = [letters1, letters2]
        results = [None] * len(dims)
        for k, value in enumerate(self._operands):
            if not is_input(value):
                continue
            other = values[1 - k]
            spec = f"{interleaved},{terms[1 - k]}->{terms[k]}"
            grad = ops.einsum(spec, g, other)
            i = input_index(value)
            grad = ops.reshape(grad, (-1, *dims[i]))
            results[i] = grad if results[i] is None else results[i] + grad
        return self._pack(results)


@register_backward(knp.Cross)
class BackwardCrossOp(BackwardOperation):
    """``cross(x1, x2)`` of 3-vectors along the last axis: ``b x g`` to ``x1`` and ``g x a``
    to ``x2`` (summed back over broadcast axes). Keras' torch backend takes no other axes."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        axes = {layer.axisa, layer.axisb, layer.axisc}
        if axes != {-1}:
            raise NotImplementedError(
                f"Cross '{layer.name}': only vectors along the last axis are supported."
            )
        self._operands = [self.call_argument(0, "x1"), self.call_argument(1, "x2")]

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = self._inputs(input)
        dims = self._runtime_dims(input)
        a, b = (self.operand(v, inputs, gradient.dtype) for v in self._operands)
        shape = ops.shape(gradient)
        a, b = ops.broadcast_to(a, shape), ops.broadcast_to(b, shape)
        partials = [_cross(b, gradient), _cross(gradient, a)]
        results = [None] * len(dims)
        for value, partial in zip(self._operands, partials, strict=True):
            if is_input(value):
                i = input_index(value)
                grad = reduce_to_shape(partial, dims[i])
                results[i] = grad if results[i] is None else results[i] + grad
        return self._pack(results)


def _cross(u, v):
    """``u x v`` of 3-vectors along the last axis, in the operands' dtype (``ops.cross``
    computes float64 in float32 on the torch backend)."""
    u0, u1, u2 = u[..., 0], u[..., 1], u[..., 2]
    v0, v1, v2 = v[..., 0], v[..., 1], v[..., 2]
    return ops.stack([u1 * v2 - u2 * v1, u2 * v0 - u0 * v2, u0 * v1 - u1 * v0], axis=-1)


@register_backward(knp.Trace)
class BackwardTraceOp(BackwardOperation):
    """``trace(x, offset, axis1, axis2)``: ``g`` on the summed diagonal, 0 elsewhere."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        dims = self._input_dims()[0]
        rank = len(dims) + 1
        what = f"Trace '{layer.name}'"
        a1 = canonical_axes(layer.axis1, rank, what)[0]
        a2 = canonical_axes(layer.axis2, rank, what)[0]
        diagonal = np.eye(int(dims[a1 - 1]), int(dims[a2 - 1]), k=int(layer.offset))
        if a1 > a2:
            diagonal = diagonal.T
        shape = [1] * rank
        shape[a1], shape[a2] = int(dims[a1 - 1]), int(dims[a2 - 1])
        self._mask = diagonal.reshape(shape)
        self._axes = sorted((a1, a2))
        self.is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        for axis in self._axes:
            gradient = ops.expand_dims(gradient, axis)
        return gradient * ops.convert_to_tensor(self._mask, dtype=gradient.dtype)

