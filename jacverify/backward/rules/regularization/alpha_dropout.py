"""Rule for ``keras.layers.AlphaDropout`` (the identity at inference)."""

from __future__ import annotations

import keras

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.regularization.base_identity import BackwardInferenceIdentity


@register_backward(keras.layers.AlphaDropout)
class BackwardAlphaDropout(BackwardInferenceIdentity):
    """The identity: returns ``g`` unchanged.

    The backward model runs the forward layers in inference mode (``training=None/False``),
    where ``AlphaDropout`` returns its input unchanged:
    no unit is dropped and no affine correction is applied.
    This rule does not describe the training-mode function.
    """
