"""Rule for ``keras.layers.Subtract``."""

from __future__ import annotations

import keras

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.merging.base_merge import MergeRuleMixin


@register_backward(keras.layers.Subtract)
class BackwardSubtract(MergeRuleMixin, BackwardLinearLayer):
    """``x0 - x1``: ``g`` and ``-g``, each summed over the axes its input was broadcast along."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = self._dims_known()

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return self._pack(self._reduce_all([gradient, -gradient], input))
