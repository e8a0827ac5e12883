"""Cases for ``LinearMap(units, activation)``: ``activation(x W + b)``, a layer with weights."""

from __future__ import annotations

import keras
from keras import ops

from checks.case import Case, correct, wrong
from checks.layers import BackwardLinearMap, LinearMap


class LinearMapUntransposed(BackwardLinearMap):
    """``g W`` instead of ``g W^T`` (the shapes agree when ``W`` is square)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        gradient = self.activation_gradient(gradient, input)
        return ops.einsum("...o,oi->...i", gradient, ops.cast(self.layer.kernel, gradient.dtype))


class LinearMapScaled(BackwardLinearMap):
    """``g W^T (1 + 1e-3)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return super().call_on_reshaped_gradient(gradient, input) * (1.0 + 1e-3)


class LinearMapActivationDropped(BackwardLinearMap):
    """``g W^T``: the activation's derivative is dropped."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.einsum("...o,io->...i", gradient, ops.cast(self.layer.kernel, gradient.dtype))


class LinearMapTanhAtOutput(BackwardLinearMap):
    """``tanh'`` evaluated at the layer's output ``tanh(z)`` instead of ``z = x W + b``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        output = ops.tanh(self.pre_activation(input, gradient.dtype))
        t = ops.tanh(output)
        gradient = gradient * (1 - t * t)
        return ops.einsum("...o,io->...i", gradient, ops.cast(self.layer.kernel, gradient.dtype))


def _square() -> keras.layers.Layer:
    return LinearMap(4)


def _square_tanh() -> keras.layers.Layer:
    return LinearMap(4, activation="tanh")


def _wide() -> keras.layers.Layer:
    return LinearMap(3)


CASES: list[Case] = [
    correct("linear_map_square_correct", _square, (4,), BackwardLinearMap, "g W^T, W 4x4"),
    correct("linear_map_3x4_correct", _wide, (4,), BackwardLinearMap, "g W^T, W 4x3"),
    correct("linear_map_tanh_correct", _square_tanh, (4,), BackwardLinearMap,
            "(g * (1 - tanh(z)^2)) W^T"),
    wrong("linear_map_untransposed", _square, (4,), LinearMapUntransposed, "fail",
          "transposed", "g W instead of g W^T on a square W"),
    wrong("linear_map_scaled", _square, (4,), LinearMapScaled, "fail", "scale",
          "g W^T (1 + 1e-3)"),
    wrong("linear_map_tanh_dropped", _square_tanh, (4,), LinearMapActivationDropped, "fail",
          "chain_rule", "drops tanh' (returns g W^T)"),
    wrong("linear_map_tanh_at_output", _square_tanh, (4,), LinearMapTanhAtOutput, "fail",
          "output_not_input", "evaluates tanh' at the output tanh(z) instead of z"),
    wrong("linear_map_3x4_untransposed", _wide, (4,), LinearMapUntransposed, "error",
          "raises", "g W instead of g W^T on a 4x3 W: the product raises"),
]
