"""Configurations of the attention layers (several inputs): Attention (dot and concat scores),
AdditiveAttention, MultiHeadAttention and GroupQueryAttention, with and without a separate
key, scales, biases, value and output sizes."""

from __future__ import annotations

import keras
from hypothesis import strategies as st

from jacverify.check.layer_configs._common import finish, layer_strategy, packed, weight_seeds

L = keras.layers


@st.composite
def _sequences(draw, dims: tuple, with_key: bool) -> list:
    """Shapes of ``[query, value]`` or ``[query, value, key]``: ``(T, dim)`` each."""
    t_query, t_value = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    shapes = [(t_query, dims[0]), (t_value, dims[1])]
    if with_key:
        shapes.append((t_value, dims[2]))
    return shapes


@layer_strategy
def attention(draw, layer_class):
    """``Attention`` (dot or concat scores, scaled or not) or ``AdditiveAttention``."""
    dim = draw(st.integers(1, 4))
    shapes = draw(_sequences((dim, dim, dim), draw(st.booleans())))
    if layer_class is L.Attention:
        layer = L.Attention(use_scale=draw(st.booleans()),
                            score_mode=draw(st.sampled_from(["dot", "concat"])))
    else:
        layer = L.AdditiveAttention(use_scale=draw(st.booleans()))
    return finish(layer, shapes, draw(weight_seeds))


@layer_strategy
def multi_head_attention(draw):
    """``MultiHeadAttention``: heads, key and value sizes, bias, output size, gate."""
    with_key = draw(st.booleans())
    dims = tuple(draw(st.integers(1, 3)) for _ in range(3))
    shapes = draw(_sequences(dims, with_key))
    layer = L.MultiHeadAttention(
        num_heads=draw(st.integers(1, 2)), key_dim=draw(st.integers(1, 3)),
        value_dim=draw(st.sampled_from([None, 1, 2])), use_bias=draw(st.booleans()),
        output_shape=draw(st.sampled_from([None, 2])), use_gate=draw(st.booleans()),
    )
    # Multi-head layers take query, value[, key] as separate arguments.
    return packed(layer, shapes, draw(weight_seeds))


@layer_strategy
def group_query_attention(draw):
    """``GroupQueryAttention``: query heads shared by fewer key/value heads."""
    with_key = draw(st.booleans())
    dims = tuple(draw(st.integers(1, 3)) for _ in range(3))
    shapes = draw(_sequences(dims, with_key))
    kv_heads = draw(st.integers(1, 2))
    layer = L.GroupQueryAttention(
        head_dim=draw(st.integers(1, 3)), num_query_heads=kv_heads * draw(st.integers(1, 2)),
        num_key_value_heads=kv_heads, use_bias=draw(st.booleans()),
        use_gate=draw(st.booleans()),
    )
    # Multi-head layers take query, value[, key] as separate arguments.
    return packed(layer, shapes, draw(weight_seeds))


STRATEGIES = {
    L.Attention: lambda: attention(L.Attention),
    L.AdditiveAttention: lambda: attention(L.AdditiveAttention),
    L.MultiHeadAttention: multi_head_attention,
    L.GroupQueryAttention: group_query_attention,
}
UNSUPPORTED: dict = {}
