"""Rule for ``keras.layers.Dropout`` (the identity at inference)."""

from __future__ import annotations

import keras

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.regularization.base_identity import BackwardInferenceIdentity


@register_backward(keras.layers.Dropout)
class BackwardDropout(BackwardInferenceIdentity):
    """The identity: returns ``g`` unchanged.

    The backward model runs the forward layers in inference mode (``training=None/False``),
    where ``Dropout`` returns its input unchanged:
    no unit is dropped and nothing is rescaled by ``1 / (1 - rate)``.
    This rule does not describe the training-mode function.
    """
