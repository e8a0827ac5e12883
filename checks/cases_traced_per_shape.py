"""Cases for a layer traced per input shape (``BackwardTracedPerShape``): a layer that needs
its batch size as a number and moves windows across the batch axis, with the builder's rule
(which must pass) and with a wrong whole-batch rule for one of its parts (a permutation not
inverted, quiet because the next reshape takes any tensor of the right size)."""

from __future__ import annotations

import keras
from keras import ops
from keras.src.ops import core as kcore
from keras.src.ops import numpy as knp

from checks.case import Case, correct, wrong
from jacverify.backward.rules.ops.known_batch import (
    KNOWN_BATCH_RULES,
    BackwardTransposeKnownBatch,
    BackwardUnstackKnownBatch,
)
from jacverify.backward.rules.traced_per_shape import BackwardTracedPerShape


@keras.saving.register_keras_serializable(package="jacverify_checks")
class WindowMix(keras.layers.Layer):
    """Splits each example's ``(4, 3)`` rows into 2 windows of 2 rows in the batch axis
    (``batch * 2`` windows, the count computed in Python from the batch size), moves the
    window axis last, mixes the two rows of each window, merges the windows back and
    prepends a token tiled to the batch size: ``(batch, 4, 3) -> (batch, 5, 3)``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.dense.build((None, 3))
        self.token = self.add_weight(shape=(1, 1, 3), initializer="random_normal")

    def call(self, x):
        batch = ops.shape(x)[0]
        windows = ops.reshape(x, (batch * 2, 2, 3))
        rows = ops.transpose(windows, (1, 2, 0))  # (2, 3, windows): the batch axis moves
        first, second = ops.unstack(rows, axis=0)
        first, second = ops.transpose(first), ops.transpose(second)  # (windows, 3)
        mixed = ops.stack([ops.tanh(self.dense(first)), first * second], axis=1)
        merged = ops.reshape(mixed, (batch, 4, 3))
        token = ops.tile(self.token, (batch, 1, 1))
        return ops.concatenate([token, merged * merged], axis=1)


class TransposeNotInverted(BackwardTransposeKnownBatch):
    """Wrong: sends the gradient through the permutation itself, not its inverse (the same
    for a swap of two axes, not for a cycle of three)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        axes = self.layer.axes
        if axes is None:
            return super().call_on_reshaped_gradient(gradient, input, training, mask)
        return ops.transpose(gradient, [int(a) % len(gradient.shape) for a in axes])


class UnstackReversed(BackwardUnstackKnownBatch):
    """Wrong: stacks the slices' gradients in reverse order (the right shape, wrong
    values)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return super().call_on_reshaped_gradient(list(gradient)[::-1], input, training, mask)


class TracedPerShapeTransposeNotInverted(BackwardTracedPerShape):
    part_rules = {**KNOWN_BATCH_RULES, knp.Transpose: TransposeNotInverted}


class TracedPerShapeUnstackReversed(BackwardTracedPerShape):
    part_rules = {**KNOWN_BATCH_RULES, kcore.Unstack: UnstackReversed}


CASES: list[Case] = [
    correct("window_mix_traced_per_shape", WindowMix, (4, 3), BackwardTracedPerShape,
            "traced at each batch size, its windows' reshapes, transposes and unstack through "
            "the whole-batch rules"),
    wrong("window_mix_transpose_not_inverted", WindowMix, (4, 3),
          TracedPerShapeTransposeNotInverted, "error", "shape",
          "the window transpose (a 3-cycle moving the batch axis) sent through itself, not "
          "its inverse: its gradient is not shaped like the transpose's input, which the "
          "backward model built at each size refuses (the window reshape after it would "
          "take the misplaced gradient without complaint)"),
]
