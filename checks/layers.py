"""The corpus's custom layers and their correct backward rules.

``Clip`` and ``PlusConstant`` (and their rules) come from the tutorial
(:mod:`jacverify.examples.tutorial`); the others are defined here:

* ``Swish``: ``x * sigmoid(beta * x)``, a smooth activation;
* ``Vee``: ``right * (x - center)`` above ``center``, ``left * (center - x)`` below: a kink at
  a config value, with different slopes on either side;
* ``LinearMap``: ``activation(x W + b)``, a layer with weights (a square ``W`` when ``units``
  equals the input size);
* ``PairMax`` and ``PairProduct``: merges of two inputs of the same shape.
"""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.examples.tutorial import (  # noqa: F401 - part of the corpus
    BackwardClip,
    BackwardClipCorrect,
    BackwardPlusConstant,
    Clip,
    PlusConstant,
)

_PACKAGE = "checks"


def const(value: float, like):
    """``value`` as a 0-d tensor of ``like``'s dtype."""
    return ops.convert_to_tensor(value, dtype=like.dtype)


# ------------------------------------------------------------------------------ layers
@keras.saving.register_keras_serializable(package=_PACKAGE)
class Swish(keras.layers.Layer):
    """``x * sigmoid(beta * x)``."""

    def __init__(self, beta: float = 1.5, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)

    def call(self, inputs):
        return inputs * ops.sigmoid(const(self.beta, inputs) * inputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "beta": self.beta}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Vee(keras.layers.Layer):
    """``right * (x - center)`` for ``x > center``, ``left * (center - x)`` otherwise."""

    def __init__(self, center: float = 0.5, left: float = 1.0, right: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.center = float(center)
        self.left = float(left)
        self.right = float(right)

    def call(self, inputs):
        shifted = inputs - const(self.center, inputs)
        return ops.where(
            ops.greater(shifted, 0), const(self.right, inputs) * shifted,
            -const(self.left, inputs) * shifted,
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "center": self.center, "left": self.left,
                "right": self.right}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LinearMap(keras.layers.Layer):
    """``activation(x W + b)`` on the last axis (``W``: ``(input size, units)``)."""

    def __init__(self, units: int, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(int(input_shape[-1]), self.units), initializer="random_normal", name="kernel"
        )
        self.bias = self.add_weight(
            shape=(self.units,), initializer="random_normal", name="bias"
        )

    def call(self, inputs):
        return self.activation(ops.einsum("...i,io->...o", inputs, self.kernel) + self.bias)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PairMax(keras.layers.Layer):
    """The elementwise maximum of two inputs (the first one where they tie)."""

    def call(self, inputs):
        a, b = inputs
        return ops.where(ops.greater(b, a), b, a)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PairProduct(keras.layers.Layer):
    """The elementwise product of two inputs."""

    def call(self, inputs):
        a, b = inputs
        return a * b


# ------------------------------------------------------------------------ correct rules
def swish_derivative(x, beta: float):
    """``d/dx [x sigmoid(beta x)] = s + beta x s (1 - s)`` with ``s = sigmoid(beta x)``."""
    b = const(beta, x)
    s = ops.sigmoid(b * x)
    return s + b * x * s * (1 - s)


def vee_slope(x, center: float, left: float, right: float, at_kink: float | None = None):
    """``right`` above ``center``, ``-left`` below; ``at_kink`` (default ``-left``) at it."""
    shifted = x - const(center, x)
    slope = ops.where(ops.greater(shifted, 0), const(right, x), const(-left, x))
    if at_kink is not None:
        slope = ops.where(ops.equal(shifted, 0), const(at_kink, x), slope)
    return slope


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BackwardSwish(BackwardNonLinearLayer):
    """``g * swish'(x)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * swish_derivative(ops.cast(input, gradient.dtype), self.layer.beta)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BackwardVee(BackwardNonLinearLayer):
    """``g * right`` above ``center``, ``g * -left`` below (and at it: a subgradient)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        x = ops.cast(input, gradient.dtype)
        return gradient * vee_slope(x, layer.center, layer.left, layer.right)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BackwardLinearMap(BackwardNonLinearLayer):
    """``(g * f'(x W + b)) W^T`` (linear without activation)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = layer.activation is keras.activations.linear

    def pre_activation(self, input, dtype):
        """``x W + b`` in ``dtype``."""
        kernel = ops.cast(self.layer.kernel, dtype)
        return ops.einsum("...i,io->...o", ops.cast(input, dtype), kernel) + ops.cast(
            self.layer.bias, dtype
        )

    def activation_gradient(self, gradient, input):
        """``g * f'(x W + b)``: only ``tanh`` and the identity are supported."""
        activation = self.layer.activation
        if activation is keras.activations.linear:
            return gradient
        if activation is keras.activations.tanh:
            y = ops.tanh(self.pre_activation(input, gradient.dtype))
            return gradient * (1 - y * y)
        raise NotImplementedError(f"LinearMap rule: activation {activation.__name__}")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        gradient = self.activation_gradient(gradient, input)
        return ops.einsum("...o,io->...i", gradient, ops.cast(self.layer.kernel, gradient.dtype))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BackwardPairMax(BackwardNonLinearLayer):
    """``g`` to the input holding the maximum, split half and half where they tie."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a, b = (ops.cast(t, gradient.dtype) for t in input)
        share_a = ops.where(
            ops.greater(a, b), const(1.0, gradient),
            ops.where(ops.equal(a, b), const(0.5, gradient), const(0.0, gradient)),
        )
        return [gradient * share_a, gradient * (1 - share_a)]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BackwardPairProduct(BackwardNonLinearLayer):
    """``[g * b, g * a]``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a, b = (ops.cast(t, gradient.dtype) for t in input)
        return [gradient * b, gradient * a]


__all__ = [
    "BackwardClip",
    "BackwardClipCorrect",
    "BackwardLinearMap",
    "BackwardPairMax",
    "BackwardPairProduct",
    "BackwardPlusConstant",
    "BackwardSwish",
    "BackwardVee",
    "Clip",
    "LinearMap",
    "PairMax",
    "PairProduct",
    "PlusConstant",
    "Swish",
    "Vee",
]
