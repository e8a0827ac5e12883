"""Rule for ``StochasticDepth`` of ``keras.applications`` ConvNeXt models."""

from __future__ import annotations

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.regularization.base_identity import BackwardInferenceIdentity
from jacverify.keras_internals import StochasticDepth


@register_backward(StochasticDepth)
class BackwardStochasticDepth(BackwardInferenceIdentity):
    """The identity: at inference ``StochasticDepth`` returns its input (it drops residual
    paths only in training)."""
