"""Rule of ``keras.ops.pad`` with ``mode="constant"``: the gradient is the upstream gradient
without the padded borders (the padding values are constants)."""

from __future__ import annotations

import keras
from keras.src.ops import numpy as knp

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation


@register_backward(knp.Pad)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardPadOp(BackwardOperation):
    """``ops.pad(x, pad_width, mode="constant")`` (no padding of the batch axis): ``g`` cropped
    back to the input's extent along every axis. Other modes (reflect, symmetric, edge...) fold
    borders back onto the input and are refused."""

    is_linear = True

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if layer.mode != "constant":
            raise NotImplementedError(
                f"jacverify: no rule for ops.pad with mode={layer.mode!r} ('{layer.name}'); "
                "only mode='constant' has one."
            )
        rank = len(self._input_dims()[0]) + 1
        widths = [tuple(int(w) for w in pair) for pair in layer.pad_width]
        if len(widths) == 1:
            widths = widths * rank
        if widths[0] != (0, 0):
            raise ValueError(
                f"BackwardPadOp: '{layer.name}' pads the batch axis: its Jacobian couples the "
                "examples of a batch, which a backward rule cannot express."
            )
        self._widths = widths

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        index = tuple(slice(before, gradient.shape[axis] - after)
                      for axis, (before, after) in enumerate(self._widths))
        return gradient[index]
