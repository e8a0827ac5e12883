"""Rule for ``keras.layers.Add``."""

from __future__ import annotations

import keras

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.merging.base_merge import MergeRuleMixin


@register_backward(keras.layers.Add)
class BackwardAdd(MergeRuleMixin, BackwardLinearLayer):
    """Each input receives ``g``, summed over the axes it was broadcast along."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = self._dims_known()

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        n = len(self._merge_dims())
        return self._pack(self._reduce_all([gradient] * n, input))
