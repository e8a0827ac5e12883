"""Rule for ``keras.layers.Concatenate``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.merging.base_merge import MergeRuleMixin


@register_backward(keras.layers.Concatenate)
class BackwardConcatenate(MergeRuleMixin, BackwardLinearLayer):
    """Split ``g`` along the concatenation axis into one slice per input.

    Linear when every input's size along the axis is known; otherwise the rule takes the
    inputs to read their sizes at run time. Concatenating along the batch axis is refused.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self.output_dim_wo_batch) + 1
        self.concat_axis = layer.axis % rank
        if self.concat_axis == 0:
            raise ValueError(
                f"{type(self).__name__}: layer '{layer.name}' concatenates along the batch "
                f"axis (axis={layer.axis}); backward rules need one example per batch row."
            )
        self.is_linear = all(d[self.concat_axis - 1] is not None for d in self._merge_dims())

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self._merge_dims()
        if len(dims) == 1:
            return self._pack([gradient])
        if self.is_linear:
            sizes = [d[self.concat_axis - 1] for d in dims]
        else:
            sizes = [int(x.shape[self.concat_axis]) for x in self._merge_inputs(input)]
        indices = []
        total = 0
        for size in sizes[:-1]:
            total += size
            indices.append(total)
        return self._pack(list(ops.split(gradient, indices, axis=self.concat_axis)))
