"""The backward of a layer whose ``call()`` needs its input's sizes as numbers.

Some layers compute with sizes in Python: window counts from the batch size
(``ops.shape(x)[0] // n``), a token tiled to the batch size, a causal mask of ``arange`` of the
sequence length. Traced on symbolic inputs these sizes are unknown (``None``) and the call
fails. Traced on inputs of known sizes, the call is an ordinary graph: the size-only
computations are constants in it (they carry no gradient), and its parts' rules build its
backward. Reshapes, transposes and unstacks that move elements across the batch axis (window
partitions) get the rules of :mod:`jacverify.backward.rules.ops.known_batch` there.

The builder gives such a layer (no rule, untraceable on symbolic inputs, traceable at known
sizes) a :class:`BackwardTracedPerShape` rule. When the backward model runs, the rule traces the
layer at the sizes of the tensors it receives and builds that graph's backward model from the
parts' rules (the same rules, checked the same way, as any traced layer), once per distinct set
of input shapes (a few are kept); every call at those shapes reuses it. No autograd is involved.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras

from jacverify.backward.base import BackwardNonLinearLayer, _is_multi
from jacverify.backward.factory import is_float_dtype
from jacverify.backward.rules._call_arguments import CallArgumentsMixin, fill_in
from jacverify.backward.rules.pre_activation import identical
from jacverify.backward.runner import runner_of
from jacverify.keras_internals import outside_call_context

#: The sizes the builder gives unknown axes when it checks that a layer can be traced at known
#: sizes: the batch axis, and every other axis of unknown size.
PROBE_BATCH = 2
PROBE_SIZE = 8


@dataclass
class _AtShape:
    """The backward of the layer at one set of input shapes."""

    backward: Any
    feeds: list
    float_inputs: list
    #: The layer's call traced at these shapes, as the backward model's forward calls.
    forward: Any
    #: Whether the traced graph's output equals the layer's own call bit for bit (``None``
    #: until checked, on the first call at these shapes through :meth:`provide_forward`).
    reproduces: bool | None = None


class BackwardTracedPerShape(CallArgumentsMixin, BackwardNonLinearLayer):
    """``g^T J(x)`` of a layer traced at the shapes of ``x`` (see the module docstring).

    The first call at new input shapes traces the layer and builds a backward model (about
    as long as building the layer's part of the backward model); later calls at those shapes
    cost what that backward model costs. At most ``max_shapes`` backward models are kept.

    In a backward model run by :class:`~jacverify.backward.runner.GraphRunner`, the forward
    call of the layer is made by :meth:`provide_forward`: the traced graph computes the
    layer's output and keeps its activations, which the rule's call on the same tensors then
    reuses instead of running the graph's forward part again.
    """

    max_shapes = 8
    #: Rules for the traced graph's parts, taking precedence over the registry (default: the
    #: whole-batch rules of :data:`~jacverify.backward.rules.ops.known_batch.KNOWN_BATCH_RULES`).
    part_rules: dict | None = None

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        object.__setattr__(self, "_backward_by_shape", OrderedDict())
        # The traced graph's activations from provide_forward, by thread, until the rule's
        # call on the same tensors takes them.
        object.__setattr__(self, "_activations", {})

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        several = _is_multi(self.input_dim_wo_batch)
        inputs = list(input) if several else [input]
        gradients = list(gradient) if isinstance(gradient, (list, tuple)) else [gradient]
        masks = _flat_masks(mask)
        at = self._backward_at(inputs, masks, mask)
        values = [*inputs, *masks]
        feed = [*[values[i] for i in at.feeds], *gradients]
        known = self._take_activations(values)
        result = at.backward(feed) if known is None else at.backward.call_reusing(feed, known)
        result = list(result) if isinstance(result, (list, tuple)) else [result]
        by_input = dict(zip(at.float_inputs, result, strict=True))
        grads = [
            by_input[i] if i in by_input else keras.ops.zeros_like(x, dtype=gradients[0].dtype)
            for i, x in enumerate(inputs)
        ]
        return grads if several else grads[0]

    def provide_forward(self, inputs: list, mask, call_layer: Callable) -> Any:
        """The layer's output on ``inputs`` (the call's data tensors; ``mask`` its masks, as the
        rule receives them), computed by the layer's graph traced at their shapes, whose
        activations the next call of this rule on the same tensors (in this thread) reuses.

        ``call_layer()`` makes the layer's own call. It runs once per set of shapes, to check
        that the traced graph gives its output bit for bit; where it does not, the layer's own
        call is used at those shapes and nothing is kept.
        """
        masks = _flat_masks(mask)
        at = self._backward_at(inputs, masks, mask)
        if at.reproduces is False:
            return call_layer()
        values = [*inputs, *masks]
        outputs, activations = runner_of(at.forward).run(
            [values[i] for i in at.feeds], False, keep=True)
        output = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        if at.reproduces is None:
            expected = call_layer()
            flat = keras.tree.flatten(expected)
            if len(flat) != 1 or not identical(flat[0], output):
                at.reproduces = False
                return expected
            at.reproduces = True
        self._activations[threading.get_ident()] = (values, activations)
        return output

    def _take_activations(self, values: list) -> dict | None:
        """The activations kept by :meth:`provide_forward` for exactly these tensors."""
        kept = self._activations.pop(threading.get_ident(), None)
        if kept is None or len(kept[0]) != len(values) or any(
                a is not b for a, b in zip(kept[0], values, strict=True)):
            return None
        return kept[1]

    def _backward_at(self, inputs, masks, mask) -> _AtShape:
        key = tuple((tuple(t.shape), str(t.dtype)) for t in [*inputs, *masks])
        cache = self._backward_by_shape
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        from jacverify.backward.tracing import TracingFailed

        try:
            with outside_call_context():
                cache[key] = _AtShape(*build_backward_at(
                    self.layer, self.call_arguments, inputs, mask, self.part_rules))
        except TracingFailed as reason:
            shapes = ", ".join(str(shape) for shape, _ in key)
            raise ValueError(
                f"BackwardTracedPerShape: layer '{self.layer.name}' "
                f"({type(self.layer).__name__}) cannot be traced at input shapes {shapes}: "
                f"{reason}. Call the backward model at shapes the layer accepts."
            ) from None
        while len(cache) > self.max_shapes:
            cache.popitem(last=False)
        return cache[key]


def _flat_masks(mask) -> list:
    return [m for m in keras.tree.flatten(mask) if m is not None] if mask is not None else []


def build_backward_at(layer, call_arguments: dict, inputs: list, mask,
                      part_rules: dict | None = None) -> tuple:
    """Trace ``layer``'s call at the shapes and dtypes of ``inputs`` and ``mask`` (tensors or
    ``keras.KerasTensor`` of known shapes) and build its backward model (with ``part_rules``,
    by default the whole-batch rules, before the registry's).

    Returns ``(backward, feeds, float_inputs, forward)``: ``backward`` takes the traced graph's
    inputs then the upstream gradients; ``feeds[j]`` is the index, in ``[*inputs, *masks]``
    (masks in ``keras.tree.flatten`` order), of the value for its ``j``-th input;
    ``float_inputs`` the indices of the inputs it returns gradients for, in order; ``forward``
    the traced call as a functional model of the backward model's own forward calls (fed like
    ``backward`` without the gradients; see
    :meth:`~jacverify.backward.clone.BackwardModel.forward_model`).
    Raises :class:`~jacverify.backward.tracing.TracingFailed` when the call cannot be traced,
    and the builder's errors when a part has no rule.
    """
    # The package's public builder, as any rule that builds backward models of its own would
    # use it (the builder module in turn gives layers this rule).
    from jacverify import clone_to_backward
    from jacverify.backward.tracing import trace_layer_call

    def stand_in(tensor):
        return keras.Input(batch_shape=tuple(int(d) for d in tensor.shape),
                           dtype=str(keras.backend.standardize_dtype(tensor.dtype)))

    data = [stand_in(t) for t in inputs]
    mask_stand_ins = keras.tree.map_structure(
        lambda m: None if m is None else stand_in(m), mask)
    args = fill_in(call_arguments["args"], data, mask_stand_ins)
    kwargs = fill_in(call_arguments["kwargs"], data, mask_stand_ins)
    traced = trace_layer_call(layer, tuple(args), dict(kwargs))
    flat_masks = [m for m in keras.tree.flatten(mask_stand_ins) if m is not None]
    index_of = {id(t): i for i, t in enumerate([*data, *flat_masks])}
    feeds = [index_of[id(outer)] for outer in traced.outer_inputs]
    inner_of = {id(o): i for o, i in zip(traced.outer_inputs, traced.inner_inputs, strict=True)}
    float_inputs = [i for i, t in enumerate(data)
                    if is_float_dtype(t.dtype) and id(t) in inner_of]
    outputs = traced.functional.outputs
    if len(outputs) != 1 or traced.output_positions != [0]:
        raise ValueError(
            f"BackwardTracedPerShape: '{layer.name}' returns {len(traced.output_positions)} "
            "tensors; this rule handles calls with one output."
        )
    from jacverify.backward.rules.ops.known_batch import KNOWN_BATCH_RULES

    rules = KNOWN_BATCH_RULES if part_rules is None else part_rules
    wrt = [inner_of[id(data[i])] for i in float_inputs]
    backward = clone_to_backward(traced.functional, rules, wrt=wrt)
    return backward, feeds, float_inputs, backward.forward_model()


def probe_shape(shape, batch: int = PROBE_BATCH, size: int = PROBE_SIZE) -> tuple:
    """``shape`` with its unknown sizes given: ``batch`` on the first axis, ``size`` on the
    others."""
    return tuple(
        (batch if axis == 0 else size) if d is None else int(d) for axis, d in enumerate(shape)
    )
