"""Rule for ``keras.layers.Maximum``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.merging.base_merge import BackwardExtremumMerge


@register_backward(keras.layers.Maximum)
class BackwardMaximum(BackwardExtremumMerge):
    """``g`` goes to the input holding the maximum, split equally between tied inputs
    (summed over the axes an input was broadcast along)."""

    def _extremum(self, a, b):
        # Not ops.maximum: Keras's type promotion turns float64 into float32 there.
        return ops.where(ops.greater(b, a), b, a)
