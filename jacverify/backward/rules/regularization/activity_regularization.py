"""Rule for ``keras.layers.ActivityRegularization`` (the identity)."""

from __future__ import annotations

import keras

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.regularization.base_identity import BackwardInferenceIdentity


@register_backward(keras.layers.ActivityRegularization)
class BackwardActivityRegularization(BackwardInferenceIdentity):
    """The identity: returns ``g`` unchanged.

    ``ActivityRegularization`` returns its input unchanged in every mode; its L1/L2 penalty is
    a loss added to the model's losses, not part of the output the backward model
    differentiates. (The backward model runs the forward layers in inference mode,
    ``training=None/False``.)
    """
