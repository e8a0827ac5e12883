"""Shared rule of the regularization layers, which are the identity at inference."""

from __future__ import annotations

from jacverify.backward.base import BackwardLinearLayer


class BackwardInferenceIdentity(BackwardLinearLayer):
    """The identity: returns ``g`` unchanged.

    The backward model runs the forward layers in inference mode (``training=None/False``),
    where this layer passes its input through unchanged. Its training-time randomness (masks,
    noise) is not part of the function the backward model differentiates.
    """

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient
