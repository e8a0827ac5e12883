"""Rule for ``keras.layers.Rescaling``."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward


@register_backward(keras.layers.Rescaling)
class BackwardRescaling(BackwardLinearLayer):
    """``x * scale + offset``: ``g * scale``.

    ``scale`` may be a scalar or an array (e.g. one value per channel). As in the layer's own
    ``call``, an array ``scale`` is padded with trailing axes to rank 3 when the image data
    format is ``channels_first``. Where ``scale`` or ``offset`` broadcast the output to a
    larger shape than the input's, the gradient is summed back over those axes. The layer
    rescales the same way in training and at inference.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._scale = np.asarray(ops.convert_to_numpy(layer.scale), dtype="float64")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dtype = keras.backend.standardize_dtype(gradient.dtype)
        scale = ops.convert_to_tensor(self._scale, dtype=dtype)
        if scale.ndim > 0 and keras.config.image_data_format() == "channels_first":
            scale = ops.reshape(scale, tuple(scale.shape) + (1,) * (3 - scale.ndim))
        result = gradient * scale
        rank = len(result.shape)
        input_dims = list(self.input_dim_wo_batch)
        if rank != len(input_dims) + 1:
            raise ValueError(
                f"{type(self).__name__}: scale/offset of layer '{self.layer.name}' broadcast "
                f"the input of shape {input_dims} to rank {rank - 1}."
            )
        axes = tuple(
            1 + i
            for i, (d, o) in enumerate(zip(input_dims, result.shape[1:], strict=True))
            if d == 1 and o != 1
        )
        if axes:
            result = ops.sum(result, axis=axes, keepdims=True)
        return result
