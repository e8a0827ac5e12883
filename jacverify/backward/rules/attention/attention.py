"""Rules for ``keras.layers.Attention`` (dot-product or concat scores) and
``keras.layers.AdditiveAttention``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import CallArgumentsMixin
from jacverify.backward.rules.attention._common import match_batch, softmax_vjp
from jacverify.keras_internals import private_member


def _layer_masks(mask):
    """``(query_mask, value_mask)`` from what the rule receives as ``mask``: the list the layer
    takes, ``[query_mask, value_mask]``, or the one Keras fills in from the inputs' Keras masks
    when the rule is called eagerly as ``rule([gradient, [query, value]])``:
    ``[gradient_mask, [query_mask, value_mask]]``."""
    if mask is None:
        return None, None
    if isinstance(mask, dict):
        mask = mask.get("mask")
    if not isinstance(mask, (list, tuple)):
        return None, None
    if len(mask) == 2 and isinstance(mask[1], (list, tuple)):
        mask = mask[1]
    return (mask[0] if len(mask) > 0 else None), (mask[1] if len(mask) > 1 else None)


class _BackwardDotAttentionBase(CallArgumentsMixin, BackwardNonLinearLayer):
    """``out = softmax_mask(scores(q, k)) v`` (zeroed where the query mask is False):
    ``g_v = p^T g``, ``g_p = g v^T``, ``g_s = p * (g_p - <g_p, p>)`` (masked positions have
    ``p = 0``), then the scores' own vector-Jacobian product to ``q`` and ``k``. Inputs
    ``[query, value]`` or ``[query, value, key]``; dropout is the identity at inference.
    ``return_attention_scores=True`` (two outputs) is not supported.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if self.call_argument(None, "return_attention_scores", False):
            raise ValueError(
                f"{type(self).__name__}: '{layer.name}' is called with "
                "return_attention_scores=True (two outputs); not supported."
            )
        self._use_causal_mask = bool(self.call_argument(None, "use_causal_mask", False))

    def _scores_and_vjp(self, q, k):
        """``(scores, vjp)`` with ``vjp(g_scores) -> (g_q, g_k)``."""
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        dtype = gradient.dtype
        inputs = [ops.cast(x, dtype) for x in input]
        q, v = inputs[0], inputs[1]
        k = inputs[2] if len(inputs) > 2 else v
        q_mask, v_mask = match_batch(_layer_masks(mask), int(gradient.shape[0]))
        scores, scores_vjp = self._scores_and_vjp(q, k)
        score_mask = private_member(layer, "calculate_score_mask")
        scores_mask = score_mask(scores, v_mask, self._use_causal_mask)
        apply_scores = private_member(layer, "apply_scores")
        _, probs = apply_scores(scores, v, scores_mask=scores_mask, training=False)
        probs = ops.cast(probs, dtype)
        if q_mask is not None:
            gradient = ops.where(ops.expand_dims(q_mask, -1), gradient,
                                 ops.zeros_like(gradient))
        g_v = ops.einsum("bqt,bqd->btd", probs, gradient)
        g_probs = ops.einsum("bqd,btd->bqt", gradient, v)
        g_scores = softmax_vjp(g_probs, probs, (-1,))
        g_q, g_k = scores_vjp(g_scores)
        if len(inputs) > 2:
            return [g_q, g_v, g_k]
        return [g_q, g_v + g_k]


@register_backward(keras.layers.Attention)
class BackwardAttention(_BackwardDotAttentionBase):
    """Rule of ``keras.layers.Attention``: ``score_mode="dot"`` (``scale * q k^T``, ``scale``
    the learned scalar with ``use_scale``) or ``"concat"``
    (``w * sum_d tanh(scale * (q_d + k_d))``)."""

    def _scores_and_vjp(self, q, k):
        layer = self.layer
        dtype = q.dtype
        scale = None if layer.scale is None else ops.cast(layer.scale, dtype)
        if layer.score_mode == "dot":
            scores = ops.einsum("bqd,btd->bqt", q, k)
            if scale is not None:
                scores = scores * scale

            def vjp(g):
                if scale is not None:
                    g = g * scale
                return ops.einsum("bqt,btd->bqd", g, k), ops.einsum("bqt,bqd->btd", g, q)

            return scores, vjp
        w = ops.cast(layer.concat_score_weight, dtype)
        inner = ops.expand_dims(q, -2) + ops.expand_dims(k, -3)  # (b, q, t, d)
        if scale is not None:
            inner = inner * scale
        t = ops.tanh(inner)
        scores = w * ops.sum(t, axis=-1)

        def vjp(g):
            d = ops.expand_dims(g * w, -1) * (1.0 - t * t)  # (b, q, t, d)
            if scale is not None:
                d = d * scale
            return ops.sum(d, axis=2), ops.sum(d, axis=1)

        return scores, vjp


@register_backward(keras.layers.AdditiveAttention)
class BackwardAdditiveAttention(_BackwardDotAttentionBase):
    """Rule of ``keras.layers.AdditiveAttention``: scores ``sum_d scale_d tanh(q_d + k_d)``
    (``scale`` a learned vector with ``use_scale``, else 1)."""

    def _scores_and_vjp(self, q, k):
        layer = self.layer
        dtype = q.dtype
        scale = ops.cast(layer.scale, dtype) if layer.use_scale else None
        t = ops.tanh(ops.expand_dims(q, -2) + ops.expand_dims(k, -3))  # (b, q, t, d)
        scores = ops.sum(t if scale is None else scale * t, axis=-1)

        def vjp(g):
            d = ops.expand_dims(g, -1) * (1.0 - t * t)
            if scale is not None:
                d = d * scale
            return ops.sum(d, axis=2), ops.sum(d, axis=1)

        return scores, vjp
