"""Rules of ``reshape``, ``transpose`` and ``unstack`` for graphs whose batch size is known.

The registered rules of these operations work per example: the batch axis stays first and is
never mixed, so the same rule serves every batch size and Jacobian mode (extra gradient axes
folded into the batch). A layer traced at known sizes (see
:mod:`jacverify.backward.rules.traced_per_shape`) may move elements across the batch axis, as
window attention does (``(batch, h, w, c)`` reshaped into ``(batch * windows, size, size, c)``,
or ``(batch, n, 3, heads, d)`` transposed to put the ``3`` first). Such a call is still a
permutation of the whole tensor: its backward is the inverse permutation of the whole gradient.
These rules compute that; they take the gradient exactly shaped like the whole output (no
extra Jacobian axes), which is what the backward model of a graph of known sizes gives them.
"""

from __future__ import annotations

from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.rules._tensors import is_torch_tensor
from jacverify.keras_internals import ops_core as kcore
from jacverify.keras_internals import ops_numpy as knp


class _KnownBatchRule(BackwardNonLinearLayer):
    """Checks that the gradient has no extra Jacobian axes (they would be folded into the
    batch axis, which these rules move)."""

    def call(self, inputs, training=None, mask=None):
        gradient, _ = self._split_inputs(inputs)
        first = gradient[0] if isinstance(gradient, (list, tuple)) else gradient
        out_dims = self.output_dim_wo_batch
        if isinstance(gradient, (list, tuple)):
            out_dims = out_dims[0]
        if len(first.shape) != len(out_dims) + 1:
            raise ValueError(
                f"{type(self).__name__}: '{self.layer.name}' moves elements across the batch "
                "axis; its rule takes a gradient shaped like the whole output (batch size "
                f"known, no extra Jacobian axes), got shape {tuple(first.shape)}."
            )
        return super().call(inputs, training=training, mask=mask)


class BackwardReshapeKnownBatch(_KnownBatchRule):
    """``ops.reshape(x, shape)`` with the batch size known: ``g`` reshaped to ``x``'s whole
    shape."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if is_torch_tensor(gradient):
            return gradient.reshape(input.shape)
        return ops.reshape(gradient, tuple(ops.shape(input)))


class BackwardTransposeKnownBatch(_KnownBatchRule):
    """``ops.transpose(x, axes)`` with the batch size known: ``g`` through the inverse
    permutation (the batch axis may move)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        rank = len(gradient.shape)
        axes = self.layer.axes
        perm = list(range(rank))[::-1] if axes is None else [int(a) % rank for a in axes]
        inverse = [perm.index(i) for i in range(rank)]
        if is_torch_tensor(gradient):
            return gradient.permute(inverse)
        return ops.transpose(gradient, inverse)


class BackwardUnstackKnownBatch(_KnownBatchRule):
    """``ops.unstack(x, axis)`` with the batch size known (also along the batch axis):
    ``g_x = stack(g_i, axis)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        slices = list(gradient) if isinstance(gradient, (list, tuple)) else [gradient]
        return ops.stack(slices, axis=int(self.layer.axis))


#: The rules a backward model of a graph of known sizes uses for these operations.
KNOWN_BATCH_RULES: dict[type, type] = {
    knp.Reshape: BackwardReshapeKnownBatch,
    knp.Transpose: BackwardTransposeKnownBatch,
    kcore.Unstack: BackwardUnstackKnownBatch,
}
