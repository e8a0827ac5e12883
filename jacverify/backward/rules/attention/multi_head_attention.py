"""Rules for ``keras.layers.MultiHeadAttention`` and ``keras.layers.GroupQueryAttention``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer, _is_multi
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import CallArgumentsMixin, input_index, is_input
from jacverify.backward.rules.attention._common import match_batch, softmax_vjp
from jacverify.backward.rules.core.einsum_dense import BackwardEinsumDense
from jacverify.backward.rules.ops.linalg import einsum_vjp, expand_ellipsis
from jacverify.backward.rules.pre_activation import forward_state, identical
from jacverify.keras_internals import private_member


class _BackwardMultiHeadBase(CallArgumentsMixin, BackwardNonLinearLayer):
    """Multi-head attention, backwards:

    ``out = O(softmax_mask(s * einsum(Q x_q, K x_k)) V x_v)`` (times ``sigmoid(G x_q)`` before
    ``O`` with ``use_gate``). The rule recomputes the projections and the attention
    probabilities ``p`` (with the layer's own mask logic: Keras masks of the inputs, the
    ``attention_mask``, ``use_causal_mask``, the sliding window), then goes back through
    ``O``, the combination einsum (``g_p``, ``g_v``), the softmax (``p * (g_p - <g_p, p>)``;
    masked positions have ``p = 0`` and get nothing), the score einsum (``g_q``, ``g_k``) and
    the projections (EinsumDense rules). Dropout is the identity at inference.

    Not supported: ``return_attention_scores=True`` (two outputs). A Keras mask that reaches the
    layer implicitly is found only while the input still carries it: ``MultiHeadAttention``
    clears its inputs' Keras masks when it is called, so pass masks explicitly
    (``query_mask=``, ``value_mask=``, ``attention_mask=``) to be sure the rule sees them.
    A fully masked query row is not covered (Keras's two code paths disagree there).
    """

    #: Whether the score einsum takes (key, query) (MHA) or (query, key) (GQA).
    key_first = True

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if self.call_argument(None, "return_attention_scores", False):
            raise ValueError(
                f"{type(self).__name__}: '{layer.name}' is called with "
                "return_attention_scores=True (two outputs); not supported."
            )
        self._query = self.call_argument(0, "query")
        self._value = self.call_argument(1, "value")
        self._key = self.call_argument(2, "key", None)
        self._use_causal_mask = bool(self.call_argument(None, "use_causal_mask", False))
        dims = self.input_dim_wo_batch
        dims = [list(d) for d in dims] if _is_multi(dims) else [list(dims)]
        self._dims = dims

        def dims_of(value, default=None):
            return dims[input_index(value)] if is_input(value) else default

        q_dims = dims_of(self._query)
        v_dims = dims_of(self._value)
        k_dims = dims_of(self._key, v_dims)
        rules = {
            "query": (private_member(layer, "query_dense"), q_dims),
            "key": (private_member(layer, "key_dense"), k_dims),
            "value": (private_member(layer, "value_dense"), v_dims),
        }
        gate = private_member(layer, "gate_dense", None)
        if self._use_gate() and gate is not None:
            rules["gate"] = (gate, q_dims)
        projections = {}
        for name, (dense, in_dims) in rules.items():
            out_shape = dense.compute_output_shape((None, *in_dims))
            projections[name] = BackwardEinsumDense(
                dense, input_dim_wo_batch=in_dims, output_dim_wo_batch=list(out_shape[1:]),
                name=f"{self.name}_{name}",
            )
        out_rule_in = list(self._attention_output_dims(q_dims))
        projections["output"] = BackwardEinsumDense(
            private_member(layer, "output_dense"), input_dim_wo_batch=out_rule_in,
            output_dim_wo_batch=list(self.output_dim_wo_batch), name=f"{self.name}_output",
        )
        # Not tracked by Keras: they are rebuilt from the layer, and hold no state.
        object.__setattr__(self, "_projections", projections)
        dot = private_member(layer, "dot_product_equation")
        combine = private_member(layer, "combine_equation")
        self._dot_terms, self._dot_out = expand_ellipsis(dot, [len(dot.split(",")[0])] * 2)
        self._combine_terms, self._combine_out = expand_ellipsis(
            combine, [len(t) for t in combine.split("->")[0].split(",")]
        )

    # ---------------------------------------------------------------- layer specifics
    def _use_gate(self) -> bool:
        return bool(private_member(self.layer, "use_gate", False))

    def _scale(self) -> float:
        return private_member(self.layer, "inverse_sqrt_key_dim")

    def _softmax_axes(self, rank):
        axis = private_member(self.layer, "softmax").axis
        axes = axis if isinstance(axis, (list, tuple)) else (axis,)
        return tuple(int(a) % rank for a in axes)

    def _attention_output_dims(self, q_dims):
        """Shape (without batch) of the attention output fed to the output projection."""
        value_dim = self._projections_value_dim()
        return [*q_dims[:-1], self._heads(), value_dim]

    def _heads(self) -> int:
        return int(private_member(self.layer, "num_heads"))

    def _projections_value_dim(self) -> int:
        return int(private_member(self.layer, "value_dim"))

    def _expand_kv(self, tensor):
        return tensor

    def _reduce_kv(self, gradient):
        return gradient

    # ---------------------------------------------------------------------- the rule
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dtype = gradient.dtype
        raw = list(input) if _is_multi(self.input_dim_wo_batch) else [input]
        inputs = [ops.cast(x, dtype) for x in raw]
        query = inputs[input_index(self._query)]
        value = inputs[input_index(self._value)]
        key = inputs[input_index(self._key)] if is_input(self._key) else value
        masks = match_batch(mask if isinstance(mask, dict) else {}, int(gradient.shape[0]))
        projected = self._kept_projections(raw, dtype)
        if projected is None:
            projected = self._projections_of(query, key, value)
        forward = self._attention(query, value, projected, masks)
        g_query, g_key, g_value = self._attention_backward(gradient, query, forward,
                                                           projected[2])

        results = [None] * len(inputs)

        def add(value, grad):
            i = input_index(value)
            results[i] = grad if results[i] is None else results[i] + grad

        add(self._query, g_query)
        add(self._value, g_value)
        add(self._key if is_input(self._key) else self._value, g_key)
        results = [ops.zeros_like(x) if r is None else r
                   for r, x in zip(results, inputs, strict=True)]
        return results if _is_multi(self.input_dim_wo_batch) else results[0]

    def _projections_of(self, query, key, value) -> tuple:
        """``(Q x_q, K x_k, V x_v)`` by the projections' own call (not ``__call__``: no
        Keras-mask bookkeeping on the inputs), keys and values expanded to the query heads."""
        layer = self.layer
        q = private_member(layer, "query_dense").call(query)
        k = self._expand_kv(private_member(layer, "key_dense").call(key))
        v = self._expand_kv(private_member(layer, "value_dense").call(value))
        return q, k, v

    def _kept_projections(self, raw_inputs: list, dtype) -> tuple | None:
        """The projections kept by a forward call on exactly these inputs (none here; see
        :class:`BackwardMultiHeadAttention`)."""
        return None

    def _attention(self, query, value, projected: tuple, masks: dict) -> dict:
        """The forward quantities the backward needs: the score einsum's operands, the
        attention probabilities ``p`` (with the layer's own mask logic: Keras masks of the
        inputs, ``attention_mask``, causal mask, sliding window) and ``p V x_v``."""
        layer = self.layer
        q, k, v = projected
        attention_mask = private_member(layer, "compute_attention_mask")(
            query,
            value,
            query_mask=masks.get("query_mask"),
            value_mask=masks.get("value_mask"),
            key_mask=masks.get("key_mask") if is_input(self._key) else None,
            attention_mask=masks.get("attention_mask"),
            use_causal_mask=self._use_causal_mask,
        )
        q_scaled = q * ops.cast(self._scale(), q.dtype)
        operands = [k, q_scaled] if self.key_first else [q_scaled, k]
        scores = ops.einsum(private_member(layer, "dot_product_equation"), *operands)
        probs = ops.cast(private_member(layer, "masked_softmax")(scores, attention_mask),
                         query.dtype)
        attended = ops.einsum(private_member(layer, "combine_equation"), probs, v)
        return {"operands": operands, "probs": probs, "attended": attended}

    def _attention_backward(self, gradient, query, forward: dict, v) -> tuple:
        """``(g_query, g_key, g_value)``: back through ``O``, the gate, the combination einsum,
        the softmax, the score einsum and the projections."""
        p = self._projections
        g = p["output"].call_on_reshaped_gradient(gradient)
        g_query = None
        if "gate" in p:
            gate = private_member(self.layer, "gate_dense").call(query)
            g_query = p["gate"].call_on_reshaped_gradient(g * forward["attended"], input=query)
            g = g * gate
        probs, operands = forward["probs"], forward["operands"]
        g_probs = einsum_vjp(self._combine_terms, self._combine_out, [probs, v], g, 0)
        g_v = einsum_vjp(self._combine_terms, self._combine_out, [probs, v], g, 1)
        g_scores = softmax_vjp(g_probs, probs, self._softmax_axes(len(probs.shape)))
        i_k, i_q = (0, 1) if self.key_first else (1, 0)
        g_k = einsum_vjp(self._dot_terms, self._dot_out, operands, g_scores, i_k)
        g_q = einsum_vjp(self._dot_terms, self._dot_out, operands, g_scores, i_q)
        g_q = g_q * ops.cast(self._scale(), gradient.dtype)
        g_from_q = p["query"].call_on_reshaped_gradient(g_q)
        g_query = g_from_q if g_query is None else g_query + g_from_q
        g_key = p["key"].call_on_reshaped_gradient(self._reduce_kv(g_k))
        g_value = p["value"].call_on_reshaped_gradient(self._reduce_kv(g_v))
        return g_query, g_key, g_value


@register_backward(keras.layers.MultiHeadAttention)
class BackwardMultiHeadAttention(_BackwardMultiHeadBase):
    """Rule of ``keras.layers.MultiHeadAttention`` (any ``attention_axes``, ``use_gate``,
    ``sliding_window``, masks, causal mask).

    In a backward model run by :class:`~jacverify.backward.runner.GraphRunner`, the rule makes
    the layer's forward call (:meth:`provide_forward`) when no mask, gate or sliding window is
    involved, and its own call on the same inputs reuses the query, key and value projections
    of that call instead of computing them again. The forward call computes what the layer's
    ``call`` computes (the projections, the layer's ``_compute_attention``, the output
    projection); the first call at each input shape also makes the layer's own call and
    compares the outputs bit for bit, and where they differ the layer's own call is used at
    that shape and nothing is kept.
    """

    def provide_forward(self, inputs: list, mask: Any, call_layer: Callable) -> Any:
        """The layer's output on ``inputs`` (the rule's input tensors), keeping the
        projections for the next call of this rule on the same tensors (in this thread)."""
        layer = self.layer
        if (self._use_causal_mask or self._use_gate()
                or private_member(layer, "sliding_window", None) is not None
                or any(m is not None for m in keras.tree.flatten(mask))):
            return call_layer()
        state = forward_state(self)
        shapes = tuple((tuple(x.shape), str(x.dtype)) for x in inputs)
        verdict = state["reproduces"].get(shapes)
        if verdict is False:
            return call_layer()
        query = inputs[input_index(self._query)]
        value = inputs[input_index(self._value)]
        key = inputs[input_index(self._key)] if is_input(self._key) else value
        projected = self._projections_of(query, key, value)
        attention_mask = private_member(layer, "compute_attention_mask")(query, value)
        attended, _ = private_member(layer, "compute_attention")(*projected, attention_mask,
                                                                 False)
        output = private_member(layer, "output_dense").call(attended)
        if verdict is None:
            expected = call_layer()
            state["reproduces"][shapes] = identical(expected, output)
            if not state["reproduces"][shapes]:
                return expected
        state["kept"][threading.get_ident()] = (list(inputs), projected)
        return output

    def _kept_projections(self, raw_inputs: list, dtype) -> tuple | None:
        kept = forward_state(self)["kept"].pop(threading.get_ident(), None)
        if kept is None or len(kept[0]) != len(raw_inputs) or any(
                a is not b for a, b in zip(kept[0], raw_inputs, strict=True)):
            return None
        projected = kept[1]
        return projected if all(t.dtype == dtype for t in projected) else None


@register_backward(keras.layers.GroupQueryAttention)
class BackwardGroupQueryAttention(_BackwardMultiHeadBase):
    """Rule of ``keras.layers.GroupQueryAttention``: as multi-head attention, with each key and
    value head shared by ``num_repeats`` query heads (its gradient summed over them)."""

    key_first = False

    def _use_gate(self) -> bool:
        return bool(getattr(self.layer, "use_gate", False))

    def _scale(self) -> float:
        return private_member(self.layer, "inverse_sqrt_head_dim")

    def _heads(self) -> int:
        return int(self.layer.num_query_heads)

    def _projections_value_dim(self) -> int:
        return int(self.layer.head_dim)

    def _softmax_axes(self, rank):
        return (rank - 1,)

    def _expand_kv(self, tensor):
        return ops.repeat(tensor, self.layer.num_repeats, axis=2)

    def _reduce_kv(self, gradient):
        repeats = int(self.layer.num_repeats)
        if repeats == 1:
            return gradient
        shape = list(ops.shape(gradient))
        heads = int(shape[2]) // repeats
        grouped = ops.reshape(gradient, [-1, *shape[1:2], heads, repeats, *shape[3:]])
        return ops.sum(grouped, axis=3)
