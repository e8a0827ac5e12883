"""Rule for ``keras.layers.GaussianNoise`` (the identity at inference)."""

from __future__ import annotations

import keras

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.regularization.base_identity import BackwardInferenceIdentity


@register_backward(keras.layers.GaussianNoise)
class BackwardGaussianNoise(BackwardInferenceIdentity):
    """The identity: returns ``g`` unchanged.

    The backward model runs the forward layers in inference mode (``training=None/False``),
    where ``GaussianNoise`` returns its input unchanged:
    no additive noise is applied.
    This rule does not describe the training-mode function.
    """
