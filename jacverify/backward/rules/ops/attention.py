"""Rule of ``keras.ops.dot_product_attention(query, key, value, bias, mask, scale,
is_causal)``.

With ``s = scale * q k^T + a`` (``a``: the bias, or 0 / a large negative number where the mask
or the causal triangle hides a key, as Keras adds them), ``p = softmax(s)`` over the keys and
``o = p v``: ``dv = p^T g``, ``dp = g v^T``, ``ds = p * (dp - g . o)`` (``g . o`` equals
``sum(dp * p)`` over the keys, and is exact where the values attended to are equal),
``dq = scale * ds k``, ``dk = scale * ds^T q``, and the bias (a tensor of the model) receives
``ds`` summed over the axes it was broadcast along. Keys and values with fewer heads than the
queries (grouped-query attention) receive the sum over the query heads that share them.
Tensors are ``(batch, length, heads, head_dim)``; the bias broadcasts to
``(batch, heads, query_length, key_length)``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import fill_in, is_input, is_mask
from jacverify.backward.rules.attention._common import match_batch
from jacverify.backward.rules.ops._arguments import accumulate, optional_operand
from jacverify.backward.rules.ops._base import BackwardOperation, reduce_to_shape
from jacverify.keras_internals import ops_nn as knn

_ARGUMENTS = ("query", "key", "value", "bias", "mask", "scale")


def _large_negative(dtype):
    """The number Keras' torch backend adds at hidden positions."""
    return ops.convert_to_tensor((65500.0 if dtype == "float16" else 3.38953e38) * -0.7,
                                 dtype=dtype)


@register_backward(knn.DotProductAttention)
class BackwardDotProductAttentionOp(BackwardOperation):
    """See the module docstring (the same kinks as softmax: none)."""

    def _argument(self, name):
        return self.call_argument(_ARGUMENTS.index(name), name)

    def _heads(self, t, groups):
        """Key/value heads repeated to the query heads (as Keras' torch backend does)."""
        return t if groups == 1 else ops.repeat(t, groups, axis=2)

    def _mask(self, mask, inputs, shape):
        value = self._argument("mask")
        if value is None:
            return None
        if is_mask(value) or is_input(value):
            # A tensor of the model: its batch follows the inputs' (extra Jacobian axes).
            return match_batch(ops.cast(fill_in(value, inputs, mask), "bool"), shape[0])
        return ops.convert_to_tensor(np.asarray(ops.convert_to_numpy(value)).astype(bool))

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dtype = keras.backend.standardize_dtype(gradient.dtype)
        inputs = self._inputs(input)
        results = [None] * len(inputs)
        q, iq = optional_operand(self, 0, "query", inputs, dtype)
        k, ik = optional_operand(self, 1, "key", inputs, dtype)
        v, iv = optional_operand(self, 2, "value", inputs, dtype)
        bias, ib = optional_operand(self, 3, "bias", inputs, dtype)
        n_heads, kv_heads = int(q.shape[2]), int(k.shape[2])
        groups = n_heads // kv_heads if n_heads > kv_heads and kv_heads > 1 else 1
        k_all, v_all = self._heads(k, groups), self._heads(v, groups)
        scale = self._argument("scale")
        scale = 1.0 / float(np.sqrt(int(q.shape[-1]))) if scale is None else float(scale)
        logits = ops.einsum("btnh,bsnh->bnts", q, k_all) * scale
        shape = tuple(int(d) for d in logits.shape)
        hidden = self._mask(mask, inputs, shape)
        if bool(self.layer.is_causal):
            causal = ops.convert_to_tensor(np.tril(np.ones(shape[2:], dtype=bool)))
            hidden = causal if hidden is None else ops.logical_and(hidden, causal)
        if hidden is not None:
            zero = ops.zeros((), dtype=dtype)
            logits = logits + ops.where(hidden, zero, _large_negative(dtype))
        if bias is not None:
            logits = logits + match_batch(bias, shape[0])
        weights = ops.exp(logits - ops.max(logits, axis=-1, keepdims=True))
        total = ops.sum(weights, axis=-1, keepdims=True)
        probs = weights / total
        d_values = ops.einsum("bnts,btnh->bsnh", probs, gradient)
        # sum(dp * p) over the keys is g . o, with o = (e v) / sum(e) as the forward computes
        # it: where the values attended to are equal, o is exactly them, and dp - g . o is
        # exactly 0, as the derivative is.
        outputs = ops.einsum("bnts,bsnh->btnh", weights, v_all) / ops.expand_dims(
            ops.transpose(ops.squeeze(total, -1), (0, 2, 1)), -1)
        centre = ops.expand_dims(ops.transpose(ops.sum(gradient * outputs, axis=-1), (0, 2, 1)), -1)
        d_logits = probs * (ops.einsum("btnh,bsnh->bnts", gradient, v_all) - centre)
        d_query = ops.einsum("bnts,bsnh->btnh", d_logits, k_all) * scale
        d_keys = ops.einsum("bnts,btnh->bsnh", d_logits, q) * scale
        accumulate(results, iq, d_query)
        accumulate(results, ik, self._fold_heads(d_keys, kv_heads, groups))
        accumulate(results, iv, self._fold_heads(d_values, kv_heads, groups))
        if ib is not None:
            dims = self._runtime_dims(input)[ib]
            accumulate(results, ib, reduce_to_shape(d_logits, dims))
        results = [ops.zeros_like(x, dtype=dtype) if r is None else r
                   for r, x in zip(results, inputs, strict=True)]
        return self._pack(results)

    @staticmethod
    def _fold_heads(gradient, kv_heads, groups):
        """Sum the gradient of the repeated heads back onto the shared key/value heads."""
        n_heads = int(gradient.shape[2])
        if n_heads == kv_heads:
            return gradient
        s, h = int(gradient.shape[1]), int(gradient.shape[3])
        if kv_heads == 1:
            return ops.sum(gradient, axis=2, keepdims=True)
        return ops.sum(ops.reshape(gradient, (-1, s, kv_heads, groups, h)), axis=3)
