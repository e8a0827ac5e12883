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

from collections import OrderedDict

import keras

from jacverify.backward.base import BackwardNonLinearLayer, _is_multi
from jacverify.backward.factory import is_float_dtype
from jacverify.backward.rules._call_arguments import CallArgumentsMixin, fill_in
from jacverify.keras_internals import outside_call_context

#: The sizes the builder gives unknown axes when it checks that a layer can be traced at known
#: sizes: the batch axis, and every other axis of unknown size.
PROBE_BATCH = 2
PROBE_SIZE = 8


class BackwardTracedPerShape(CallArgumentsMixin, BackwardNonLinearLayer):
    """``g^T J(x)`` of a layer traced at the shapes of ``x`` (see the module docstring).

    The first call at new input shapes traces the layer and builds a backward model (about
    as long as building the layer's part of the backward model); later calls at those shapes
    cost what that backward model costs. At most ``max_shapes`` backward models are kept.
    """

    max_shapes = 8
    #: Rules for the traced graph's parts, taking precedence over the registry (default: the
    #: whole-batch rules of :data:`~jacverify.backward.rules.ops.known_batch.KNOWN_BATCH_RULES`).
    part_rules: dict | None = None

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        object.__setattr__(self, "_backward_by_shape", OrderedDict())

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        several = _is_multi(self.input_dim_wo_batch)
        inputs = list(input) if several else [input]
        gradients = list(gradient) if isinstance(gradient, (list, tuple)) else [gradient]
        masks = [m for m in keras.tree.flatten(mask) if m is not None] if mask is not None else []
        key = tuple((tuple(t.shape), str(t.dtype)) for t in [*inputs, *masks])
        backward, feeds, float_inputs = self._backward_at(key, inputs, mask)
        values = [*inputs, *masks]
        result = backward([*[values[i] for i in feeds], *gradients])
        result = list(result) if isinstance(result, (list, tuple)) else [result]
        by_input = dict(zip(float_inputs, result, strict=True))
        grads = [
            by_input[i] if i in by_input else keras.ops.zeros_like(x, dtype=gradients[0].dtype)
            for i, x in enumerate(inputs)
        ]
        return grads if several else grads[0]

    def _backward_at(self, key, inputs, mask):
        cache = self._backward_by_shape
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        from jacverify.backward.tracing import TracingFailed

        try:
            with outside_call_context():
                cache[key] = build_backward_at(self.layer, self.call_arguments, inputs, mask,
                                               self.part_rules)
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



def build_backward_at(layer, call_arguments: dict, inputs: list, mask,
                      part_rules: dict | None = None) -> tuple:
    """Trace ``layer``'s call at the shapes and dtypes of ``inputs`` and ``mask`` (tensors or
    ``keras.KerasTensor`` of known shapes) and build its backward model (with ``part_rules``,
    by default the whole-batch rules, before the registry's).

    Returns ``(backward, feeds, float_inputs)``: ``backward`` takes the traced graph's inputs
    then the upstream gradients; ``feeds[j]`` is the index, in ``[*inputs, *masks]`` (masks in
    ``keras.tree.flatten`` order), of the value for its ``j``-th input; ``float_inputs`` the
    indices of the inputs it returns gradients for, in order.
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
    return backward, feeds, float_inputs


def probe_shape(shape, batch: int = PROBE_BATCH, size: int = PROBE_SIZE) -> tuple:
    """``shape`` with its unknown sizes given: ``batch`` on the first axis, ``size`` on the
    others."""
    return tuple(
        (batch if axis == 0 else size) if d is None else int(d) for axis, d in enumerate(shape)
    )
