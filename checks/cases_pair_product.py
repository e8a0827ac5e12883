"""Cases for ``PairProduct``: the elementwise product of two inputs."""

from __future__ import annotations

import keras
from keras import ops

from checks.case import Case, correct, wrong
from checks.layers import BackwardPairProduct, PairProduct


class PairProductSecondNegated(BackwardPairProduct):
    """``[g b, -g a]``: the second input's gradient has the wrong sign."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        ga, gb = super().call_on_reshaped_gradient(gradient, input)
        return [ga, -gb]


class PairProductScaled(BackwardPairProduct):
    """``[g b (1 + 1e-3), g a]``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        ga, gb = super().call_on_reshaped_gradient(gradient, input)
        return [ga * (1.0 + 1e-3), gb]


class PairProductOneGradient(BackwardPairProduct):
    """Returns only the first input's gradient."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return [gradient * ops.cast(input[1], gradient.dtype)]


def _pair_product() -> keras.layers.Layer:
    return PairProduct()


SHAPES = [(4,), (4,)]

CASES: list[Case] = [
    correct("pair_product_correct", _pair_product, SHAPES, BackwardPairProduct, "[g b, g a]"),
    wrong("pair_product_second_negated", _pair_product, SHAPES, PairProductSecondNegated,
          "fail", "sign", "negates the second input's gradient"),
    wrong("pair_product_scaled", _pair_product, SHAPES, PairProductScaled, "fail", "scale",
          "scales the first input's gradient by (1 + 1e-3)"),
    wrong("pair_product_one_gradient", _pair_product, SHAPES, PairProductOneGradient, "error",
          "shape", "returns one gradient for a layer with two inputs"),
]
