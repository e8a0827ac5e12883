"""Rule for ``keras.layers.Multiply``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.merging.base_merge import MergeRuleMixin, expand_to_rank


@register_backward(keras.layers.Multiply)
class BackwardMultiply(MergeRuleMixin, BackwardNonLinearLayer):
    """Input ``i`` receives ``g * prod_{j != i} x_j``, summed over the axes it was broadcast
    along (e.g. the spatial axes of the ``(batch, 1, 1, C)`` gate of a squeeze-and-excitation
    block).

    The products of all inputs but one come from prefix and suffix products (no division, so
    zeros are fine). Keras masks on the inputs are not taken into account.
    """

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = self._merge_inputs(input)
        n = len(inputs)
        if n == 1:
            return self._pack([gradient])
        rank = len(gradient.shape)
        xs = [expand_to_rank(ops.cast(x, gradient.dtype), rank) for x in inputs]
        prefix = [None] * n  # prefix[i] = x_0 * ... * x_{i-1}
        suffix = [None] * n  # suffix[i] = x_{i+1} * ... * x_{n-1}
        for i in range(1, n):
            prefix[i] = xs[i - 1] if prefix[i - 1] is None else prefix[i - 1] * xs[i - 1]
        for i in range(n - 2, -1, -1):
            suffix[i] = xs[i + 1] if suffix[i + 1] is None else xs[i + 1] * suffix[i + 1]
        gradients = []
        for before, after in zip(prefix, suffix, strict=True):
            if before is None:
                others = after
            elif after is None:
                others = before
            else:
                others = before * after
            gradients.append(gradient * others)
        return self._pack(self._reduce_all(gradients, input))
