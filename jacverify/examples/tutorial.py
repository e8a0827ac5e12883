"""The tutorial's custom layers and rules, and the models built from them.

``BackwardClip`` is the tutorial's rule, kept as written: it is wrong outside ``[vmin, vmax]``
(``sign`` gives -1 there, not 0) and at the edges. ``BackwardClipCorrect`` is right.
"""

from __future__ import annotations

import keras

from jacverify.backward.base import BackwardLinearLayer, BackwardNonLinearLayer


@keras.saving.register_keras_serializable(package="jacverify.examples")
class PlusConstant(keras.layers.Layer):
    """Adds a constant to its input."""

    def __init__(self, constant, **kwargs):
        super().__init__(**kwargs)
        self.constant = float(constant)

    def call(self, inputs):
        return inputs + self.constant

    def get_config(self):
        return {**super().get_config(), "constant": self.constant}


@keras.saving.register_keras_serializable(package="jacverify.examples")
class Clip(keras.layers.Layer):
    """Clips its input to ``[vmin, vmax]``."""

    def __init__(self, vmin=0.0, vmax=1.0, **kwargs):
        super().__init__(**kwargs)
        self.vmin = vmin
        self.vmax = vmax

    def call(self, inputs):
        return keras.ops.clip(inputs, self.vmin, self.vmax)

    def get_config(self):
        return {**super().get_config(), "vmin": self.vmin, "vmax": self.vmax}


@keras.saving.register_keras_serializable(package="jacverify.examples")
class BackwardPlusConstant(BackwardLinearLayer):
    """The derivative of ``x + c`` is the identity."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient


@keras.saving.register_keras_serializable(package="jacverify.examples")
class BackwardClip(BackwardNonLinearLayer):
    """The tutorial's rule for Clip, as written there (wrong outside the range)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        eps = keras.config.epsilon()
        mask_lower_vmax = keras.ops.sign(self.layer.vmax - input - eps)
        mask_lower_vmin = keras.ops.sign(input - self.layer.vmin + eps)
        return gradient * (mask_lower_vmax * mask_lower_vmin)


@keras.saving.register_keras_serializable(package="jacverify.examples")
class BackwardClipCorrect(BackwardNonLinearLayer):
    """1 on ``[vmin, vmax]`` (a valid subgradient at both edges), 0 outside."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inside = keras.ops.logical_and(
            keras.ops.greater_equal(input, self.layer.vmin),
            keras.ops.less_equal(input, self.layer.vmax),
        )
        return gradient * keras.ops.cast(inside, gradient.dtype)


def plus_constant_model() -> keras.Model:
    """The tutorial's ``Dense -> PlusConstant -> sigmoid -> Dense`` model."""
    return keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(2),
            PlusConstant(2.0),
            keras.layers.Activation("sigmoid"),
            keras.layers.Dense(1),
        ],
        name="plus_constant_model",
    )


def clip_model() -> keras.Model:
    """The tutorial's ``Dense -> Clip(0, 2) -> sigmoid -> Dense`` model."""
    return keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(2),
            Clip(0.0, 2.0),
            keras.layers.Activation("sigmoid"),
            keras.layers.Dense(1),
        ],
        name="clip_model",
    )
