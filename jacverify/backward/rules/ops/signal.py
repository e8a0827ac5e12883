"""Rule of ``keras.ops.extract_sequences(x, sequence_length, sequence_stride)``: frames of
the last axis. Linear; the adjoint adds each frame's gradient back at its offset
(overlap-add)."""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_math as kmath


@register_backward(kmath.ExtractSequences)
class BackwardExtractSequencesOp(BackwardOperation):
    """``g[..., n, :]`` added at ``[n * stride, n * stride + length)`` of the last axis."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = self._dims_known()

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        size = int(self._runtime_dims(input)[0][-1])
        length = int(self.layer.sequence_length)
        stride = int(self.layer.sequence_stride)
        frames = int(gradient.shape[-2])
        rank = len(gradient.shape) - 1
        result = None
        for n in range(frames):
            widths = [[0, 0]] * (rank - 1) + [[n * stride, size - n * stride - length]]
            part = ops.pad(gradient[..., n, :], widths)
            result = part if result is None else result + part
        if result is None:
            shape = (int(gradient.shape[0]), *self._runtime_dims(input)[0])
            return ops.zeros(shape, dtype=gradient.dtype)
        return result
