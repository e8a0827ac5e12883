"""Cases for ``PairMax``: the elementwise maximum of two inputs (subgradients at a tie: any
split ``(t, 1 - t)`` with ``0 <= t <= 1``)."""

from __future__ import annotations

import keras
from keras import ops

from checks.case import Case, correct, wrong
from checks.layers import BackwardPairMax, PairMax


class PairMaxTieBoth(BackwardPairMax):
    """``g`` to both inputs where they tie (weights sum to 2)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a, b = (ops.cast(t, gradient.dtype) for t in input)
        return [gradient * ops.cast(ops.greater_equal(a, b), gradient.dtype),
                gradient * ops.cast(ops.greater_equal(b, a), gradient.dtype)]


class PairMaxTieNeither(BackwardPairMax):
    """``g`` to neither input where they tie (weights sum to 0)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a, b = (ops.cast(t, gradient.dtype) for t in input)
        return [gradient * ops.cast(ops.greater(a, b), gradient.dtype),
                gradient * ops.cast(ops.greater(b, a), gradient.dtype)]


def _pair_max() -> keras.layers.Layer:
    return PairMax()


SHAPES = [(4,), (4,)]

CASES: list[Case] = [
    correct("pair_max_correct", _pair_max, SHAPES, BackwardPairMax,
            "g to the larger input, half and half on ties"),
    wrong("pair_max_tie_both", _pair_max, SHAPES, PairMaxTieBoth, "boundary", "tie",
          "gives g to both inputs where they tie"),
    wrong("pair_max_tie_neither", _pair_max, SHAPES, PairMaxTieNeither, "boundary", "tie",
          "gives g to neither input where they tie"),
]
