"""Rule for ``keras.layers.EinsumDense``."""

from __future__ import annotations

import re
import string

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.activations.functions import activation_vjp
from jacverify.backward.rules.core.dense import check_not_quantized


def explicit_equation(equation: str, input_ndim: int) -> tuple[str, str, str]:
    """``(input, kernel, output)`` subscripts of an EinsumDense equation, with its ellipsis
    (``...``, standing for the axes of the input the equation does not name) replaced by
    letters the equation does not use."""
    match = re.fullmatch(r"\s*([a-zA-Z.]+)\s*,\s*([a-zA-Z]+)\s*->\s*([a-zA-Z.]+)\s*", equation)
    if match is None:
        raise ValueError(f"EinsumDense rule: cannot parse the equation '{equation}'.")
    lhs, kernel, rhs = match.groups()
    if "..." in lhs:
        n_elided = input_ndim - (len(lhs) - 3)
        free = [c for c in string.ascii_letters if c not in equation][:n_elided]
        lhs = lhs.replace("...", "".join(free))
        rhs = rhs.replace("...", "".join(free))
    if "." in lhs or "." in rhs or len(lhs) != input_ndim:
        raise ValueError(
            f"EinsumDense rule: the equation '{equation}' does not match an input of rank "
            f"{input_ndim}."
        )
    return lhs, kernel, rhs


@register_backward(keras.layers.EinsumDense)
class BackwardEinsumDense(BackwardNonLinearLayer):
    """``einsum(O,W->I)(g * f'(z), W)`` for the forward ``z = einsum(I,W->O)(x, W) + b``.

    The backward equation swaps the input and output subscripts, in one einsum. Two cases
    need one more operand each: an input axis the forward equation sums away without the
    kernel (a label only in ``I``) gets a gradient constant along it (a ones vector), and a
    label repeated in ``I`` (a diagonal) gets a gradient on that diagonal only (an identity
    matrix).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        check_not_quantized(layer)
        self._vjp = activation_vjp(layer.activation)
        lhs, kernel, rhs = explicit_equation(layer.equation, len(self.input_dim_wo_batch) + 1)
        unused = iter(c for c in string.ascii_letters if c not in lhs + kernel + rhs)
        result, extra = "", []  # extra: (subscripts, "ones" | "eye", input axis)
        for axis, c in enumerate(lhs):
            if c in result:  # a repeated label: a fresh one, tied to it by an identity
                fresh = next(unused)
                extra.append((c + fresh, "eye", axis))
                result += fresh
                continue
            result += c
            if c not in kernel and c not in rhs and lhs.count(c) == 1:
                extra.append((c, "ones", axis))
        self._backward_equation = ",".join([rhs, kernel] + [e[0] for e in extra]) + "->" + result
        self._extra = [(kind, axis) for _, kind, axis in extra]
        known = all(self._static_size(axis) is not None for _, axis in self._extra)
        self.is_linear = self._vjp is None and known

    def _static_size(self, axis):
        return None if axis == 0 else self.input_dim_wo_batch[axis - 1]

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        dtype = gradient.dtype
        kernel = ops.cast(layer.kernel, dtype)
        if self._vjp is not None:
            z = ops.einsum(layer.equation, ops.cast(input, dtype), kernel)
            if layer.bias is not None:
                z = z + ops.cast(layer.bias, dtype)
            gradient = self._vjp(gradient, z)
        operands = [gradient, kernel]
        for kind, axis in self._extra:
            size = self._static_size(axis)
            if size is None:
                size = ops.shape(input)[axis]
            if kind == "ones":
                operands.append(ops.ones((size,), dtype=dtype))
            else:
                operands.append(ops.eye(size, dtype=dtype))
        return ops.einsum(self._backward_equation, *operands)
