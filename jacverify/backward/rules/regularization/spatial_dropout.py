"""Rule for ``keras.layers.SpatialDropout1D``, ``2D`` and ``3D`` (the identity at inference)."""

from __future__ import annotations

import keras

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.regularization.base_identity import BackwardInferenceIdentity


@register_backward(
    keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D, keras.layers.SpatialDropout3D
)
class BackwardSpatialDropout(BackwardInferenceIdentity):
    """The identity: returns ``g`` unchanged.

    The backward model runs the forward layers in inference mode (``training=None/False``),
    where ``SpatialDropout1D``, ``2D`` and ``3D`` return their input unchanged: no feature map
    is dropped, whatever the ``data_format``. This rule does not describe the training-mode
    function.
    """
