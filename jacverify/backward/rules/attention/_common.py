"""Helpers shared by the attention rules."""

from __future__ import annotations

import keras
from keras import ops


def match_batch(mask, batch):
    """Repeat a mask (or each mask in a structure) whose batch divides ``batch``: extra Jacobian
    axes were folded into the batch of the gradient and the inputs, not of the masks."""

    def repeat(m):
        if m is None or len(m.shape) == 0:
            return m
        n = m.shape[0]
        if n is None or int(n) in (1, batch) or batch % int(n):
            return m
        return ops.repeat(m, batch // int(n), axis=0)

    return keras.tree.map_structure(repeat, mask)


def softmax_vjp(gradient, probs, axes):
    """``p * (g - sum(g * p))`` over ``axes`` (positions with probability 0, masked ones, get
    0)."""
    return probs * (gradient - ops.sum(gradient * probs, axis=axes, keepdims=True))
