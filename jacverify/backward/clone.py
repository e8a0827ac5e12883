"""``clone_to_backward``: build a Keras model of a model's backward pass from per-layer rules."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from jacverify.backward.base import (
    NATIVE_SERIALIZATION_PACKAGE,
    BackwardLayer,
    _shape_wo_batch,
    serialization_package,
)
from jacverify.backward.factory import (
    RuleConstructionError,
    describe_operation,
    is_complex_dtype,
    is_float_dtype,
    make_rule,
    refuse_non_rule,
    rule_label,
    widest_float_dtype,
)
from jacverify.backward.gradient_shapes import (
    expected_gradient_shapes,
    gradient_shapes_checked,
    symbolic_result_shapes,
    verify_gradient_shapes,
)
from jacverify.backward.graph import Step, trace
from jacverify.backward.precision import float64_precision
from jacverify.backward.registry import (
    MissingBackwardRuleError,
    UntraceableLayerError,
    get_backward_rule,
    untraceable_message,
)
from jacverify.backward.runner import (
    GraphRunner,
    direct_calls_enabled,
    returns_no_mask,
    runner_of,
)
from jacverify.keras_internals import (
    Functional,
    get_keras_mask,
    inbound_nodes,
    keras_history,
    nodes_by_depth,
)


@keras.saving.register_keras_serializable(package="jacverify")
class ConstantGradient(keras.layers.Layer):
    """Emits a fixed upstream gradient, broadcast to the batch size of its input."""

    def __init__(self, shape, value=None, **kwargs):
        super().__init__(**kwargs)
        self.gradient_shape = [int(d) for d in shape]
        initializer = "zeros" if value is None else keras.initializers.Constant(value)
        self.gradient = self.add_weight(
            shape=self.gradient_shape, initializer=initializer, trainable=False, name="gradient"
        )
        self.built = True

    def call(self, reference):
        batch = ops.shape(reference)[0]
        value = ops.cast(self.gradient, self.compute_dtype)
        return ops.broadcast_to(value, (batch, *self.gradient_shape[1:]))

    def compute_output_shape(self, reference_shape):
        return (reference_shape[0], *self.gradient_shape[1:])

    def get_config(self):
        config = super().get_config()
        config["shape"] = self.gradient_shape
        return config


@keras.saving.register_keras_serializable(package="jacverify")
class ZeroGradient(keras.layers.Layer):
    """The gradient of an input that no output depends on: zeros shaped like it, with the
    gradient's extra Jacobian axes (``extra_axes``) after the batch axis."""

    def __init__(self, extra_axes=(), **kwargs):
        super().__init__(**kwargs)
        self.extra_axes = [int(d) for d in extra_axes]

    def call(self, reference):
        if not self.extra_axes:
            return ops.zeros_like(reference)
        shape = (ops.shape(reference)[0], *self.extra_axes, *ops.shape(reference)[1:])
        return ops.zeros(shape, dtype=reference.dtype)

    def compute_output_shape(self, reference_shape):
        return (reference_shape[0], *self.extra_axes, *reference_shape[1:])

    def get_config(self):
        config = super().get_config()
        config["extra_axes"] = self.extra_axes
        return config


@keras.saving.register_keras_serializable(package="jacverify")
class UnusedOutputGradient(keras.layers.Layer):
    """The upstream gradient of an output nothing uses, for a rule of a call with several
    outputs: zeros shaped like the output, with the batch and extra Jacobian axes of the
    gradient of a used output (``n_extra`` of them)."""

    def __init__(self, n_extra=0, **kwargs):
        super().__init__(**kwargs)
        self.n_extra = int(n_extra)

    def call(self, inputs):
        used, output = inputs
        lead = tuple(ops.shape(used)[: 1 + self.n_extra])
        return ops.zeros(lead + tuple(ops.shape(output)[1:]), dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        used, output = input_shape
        return tuple(used[: 1 + self.n_extra]) + tuple(output[1:])

    @returns_no_mask
    def compute_mask(self, inputs, previous_mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config["n_extra"] = self.n_extra
        return config


@keras.saving.register_keras_serializable(package="jacverify")
class GradientSum(keras.layers.Layer):
    """The sum of the gradients a tensor receives from its consumers (one per path).

    Unlike ``keras.layers.Add`` it keeps the dtype of the tensor it differentiates (the builder
    gives it that dtype), so float64 models get float64 sums.
    """

    def call(self, gradients):
        total = gradients[0]
        for gradient in gradients[1:]:
            total = total + gradient
        return total

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    @returns_no_mask
    def compute_mask(self, inputs, previous_mask=None):
        return None


@keras.saving.register_keras_serializable(package="jacverify")
class BackwardModel(Functional):
    """The Keras model ``clone_to_backward`` returns: a functional model that, called eagerly,
    runs its graph without Keras's per-call bookkeeping where that changes nothing.

    ``Layer.__call__`` spends 0.1 to 0.2 ms per call (structure traversals, mask
    propagation, call contexts, dtype handling) before and after the layer's ``call`` runs,
    more than the work of most calls in a backward model. Called on concrete tensors at
    inference, the model runs its graph with :class:`~jacverify.backward.runner.GraphRunner`:
    every rule, forward layer and ``keras.ops`` call whose ``call`` provably gives what its
    ``__call__`` gives is called directly, the others through ``__call__``; the outputs equal
    those of Keras' own ``Functional.call`` bit for bit. Symbolic calls, calls with masks or
    ``training=True``, and calls inside ``jacverify.backward.runner.direct_calls(False)`` take
    Keras' path. Save and load it like any Keras model.

    Called without ``training``, it runs its forward layers with ``training=False``: rules
    describe the model at inference (dropout and noise are the identity, batch normalization
    uses its moving statistics, random augmentation layers leave their input unchanged).
    """

    def call(self, inputs, training=None, mask=None, **kwargs):
        # float64 models compute in float64 throughout (Keras would round products to float32).
        # Every rule's result is checked against its layer's input shape (Keras would
        # broadcast another shape where gradients add up).
        with float64_precision(), gradient_shapes_checked():
            # The backward model describes the model at inference: its forward layers run
            # with training=False unless told otherwise (random augmentation layers default to
            # True).
            if training is None:
                training = False
            runner = self._direct_runner(inputs, training, mask, kwargs)
            if runner is None:
                return super().call(inputs, training=training, mask=mask, **kwargs)
            return unpack_singleton(runner.run(self._standardize_inputs(inputs), training))

    def call_reusing(self, inputs: list, known: dict) -> Any:
        """The model's outputs on ``inputs`` (a flat list, at inference), with the calls whose
        outputs are all in ``known`` (values by ``id`` of the model's symbolic tensors, as
        computed by the same calls on the same inputs) left out. Equals ``self(inputs)``."""
        with float64_precision(), gradient_shapes_checked():
            runner = self._direct_runner(inputs, False, None, {})
            if runner is None:
                return self(inputs)
            return unpack_singleton(runner.run(self._standardize_inputs(inputs), False,
                                               known=known))

    def call_directly(self, inputs: list) -> Any:
        """The model's outputs on ``inputs`` (a flat list, at inference), without Keras'
        ``__call__`` around the model where the graph runner can run it (concrete torch
        tensors, no masks): what a rule calling a backward model of its own wants. Equals
        ``self(inputs)``."""
        return self.call_reusing(inputs, {})

    def forward_model(self) -> keras.Model | None:
        """A functional model of the differentiated model's forward pass made of this backward
        model's own forward calls (traced layers inlined alike, the same symbolic tensors);
        ``None`` for a loaded backward model.

        Running it with :meth:`~jacverify.backward.runner.GraphRunner.run` (``keep=True``)
        gives the model's outputs and every forward activation this backward model reads, by
        symbolic tensor, which :meth:`call_reusing` then does not compute again."""
        tensors = self.__dict__.get("_forward_tensors")
        if tensors is None:
            return None
        forward = self.__dict__.get("_forward_model")
        if forward is None:
            inputs, outputs = tensors
            with _recursion_limit(1000 + 8 * len(self.operations)):
                forward = Functional(inputs, outputs, name=f"{self.name}_forward")
            object.__setattr__(self, "_forward_model", forward)
        return forward

    def _direct_runner(self, inputs, training, mask, kwargs) -> GraphRunner | None:
        """The graph runner making direct calls for this call, or ``None`` for Keras' path."""
        if kwargs or not direct_calls_enabled():
            return None
        if mask is not None and any(m is not None for m in keras.tree.flatten(mask)):
            return None
        flat = keras.tree.flatten(inputs)
        if any(isinstance(t, keras.KerasTensor) or get_keras_mask(t) is not None
               for t in flat):
            return None
        runner = runner_of(self)
        return runner if runner.can_run_directly(training) else None

    def get_config(self):
        # A traced layer's own weight used in a keras.ops call (``x * self.w``) is an argument
        # of that call in the graph: it is saved as its value (the saved model's weights).
        with _variables_as_values(self):
            return super().get_config()


def unpack_singleton(outputs):
    """A list or tuple of one output as that output (as Keras' functional models return)."""
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        return outputs[0]
    return outputs


@contextlib.contextmanager
def _variables_as_values(model):
    def value(v):
        return np.asarray(ops.convert_to_numpy(v)) if isinstance(v, keras.Variable) else v

    changed = []
    for nodes in nodes_by_depth(model).values():
        for node in nodes:
            arguments = node.arguments
            flat = keras.tree.flatten((arguments.args, arguments.kwargs))
            if any(isinstance(v, keras.Variable) for v in flat):
                changed.append((arguments, arguments.args, arguments.kwargs))
                arguments.args = keras.tree.map_structure(value, arguments.args)
                arguments.kwargs = keras.tree.map_structure(value, arguments.kwargs)
    try:
        yield
    finally:
        for arguments, args, kwargs in changed:
            arguments.args, arguments.kwargs = args, kwargs


def clone_to_backward(
    model: keras.Model,
    mapping_keras2backward_classes: Mapping[type, type] | None = None,
    gradient: Any = None,
    *,
    name: str | None = None,
    fallback: str | None = None,
    wrt: Any = None,
) -> keras.Model:
    """Build a Keras model computing the vector-Jacobian product of ``model``.

    Args:
        model: a Sequential or functional Keras model (nested models are allowed).
        mapping_keras2backward_classes: ``{layer_class: rule_class}`` taking precedence over
            the registry for this call.
        gradient: the upstream gradient. ``None``: the backward model takes it as extra inputs
            (one per model output, shaped like it). An array or ``keras.Variable`` (one per
            output; with or without a batch axis of size 1): it is fixed, and the backward
            model takes only the model's inputs. A Keras tensor (``keras.Input``): used as the
            gradient input, and may carry extra axes after the batch axis to get several
            vector-Jacobian products (rows of a Jacobian) at once.
        name: the backward model's name (default ``<model.name>_backward``).
        fallback: ``None`` (default): a layer or operation without a rule raises
            :class:`MissingBackwardRuleError`. ``"autograd"``: such calls get an
            :class:`~jacverify.backward.rules.autograd_fallback.AutogradFallback` rule, which
            differentiates the forward call with torch autograd when the backward model runs.
            The backward model is then tied to the torch backend, and those rules are
            autograd's, not analytic rules (a warning lists them; see docs/builder.md).
        wrt: what to differentiate with respect to. ``None`` (default): every model input
            (integer inputs, such as token ids, get zeros). A tensor of the model (e.g.
            ``embedding.output``) or a layer called once (its output), or a list of them: the
            backward model returns the gradient with respect to each, as attributions on token
            models need.

    Returns:
        A Keras model whose inputs are ``model.inputs`` (plus the gradient inputs when
        ``gradient`` is not fixed) and whose outputs are the gradients with respect to each
        model input, or to each ``wrt`` tensor (a single tensor when there is one).

    Raises:
        MissingBackwardRuleError: a layer has no registered rule (the message says how to add
            one).
    """
    if fallback not in (None, "autograd"):
        raise ValueError(f"fallback must be None or 'autograd', got {fallback!r}.")
    with float64_precision():
        return _build(model, mapping_keras2backward_classes, gradient, name, fallback, wrt)


def _build(model, mapping_keras2backward_classes, gradient, name, fallback, wrt
           ) -> keras.Model:
    graph = trace(model, mapping_keras2backward_classes)
    targets = graph.inputs if wrt is None else resolve_wrt(graph, wrt, model)
    target_ids = {id(t) for t in targets}
    reached = _steps_reached_from(graph, targets)
    rule_names: set[str] = set()
    fallbacks: list[str] = []
    grad_inputs, grad_outputs = _gradient_tensors(graph, gradient)
    rule_names.update(t.name for t in grad_inputs)  # the layers' names must differ from them
    extra_axes = _extra_axes(graph.outputs, grad_outputs)

    contributions: dict[int, list] = {}
    for out, grad in zip(graph.outputs, grad_outputs, strict=False):
        contributions.setdefault(id(out), []).append(grad)
    found: dict[int, Any] = {}  # the gradients of the targets that steps produce
    producers = {id(t): step for step in graph.steps for t in step.outputs}

    for index in reversed(range(len(graph.steps))):
        step = graph.steps[index]
        out_grads = [_sum(contributions.pop(id(o), []), o, rule_names) for o in step.outputs]
        found.update({id(o): g for o, g in zip(step.outputs, out_grads, strict=True)
                      if id(o) in target_ids})
        if all(g is None for g in out_grads) or index not in reached:
            continue  # nothing downstream depends on it, or it does not depend on a target
        _refuse_complex(step, producers)
        if not _is_differentiable(step):
            continue
        rule = _make_rule(step, mapping_keras2backward_classes, rule_names, fallback, fallbacks)
        results = _apply_rule(rule, step, out_grads)
        for tensor, grad in zip(step.inputs, results, strict=False):
            if _is_float(tensor.dtype):
                contributions.setdefault(id(tensor), []).append(grad)

    outputs = []
    for tensor in targets:
        total = found.get(id(tensor))
        if total is None:
            total = _sum(contributions.get(id(tensor), []), tensor, rule_names)
        outputs.append(
            total if total is not None
            else ZeroGradient(extra_axes=extra_axes, dtype=_gradient_dtype(tensor))(tensor)
        )
    if fallbacks:
        _warn_fallback(fallbacks)
    model_inputs = list(graph.inputs) + grad_inputs
    # Keras maps a functional graph recursively (one frame per node along the longest path);
    # the backward model is about twice as deep as the model.
    with _recursion_limit(1000 + 8 * len(graph.steps)):
        backward = BackwardModel(
            inputs=model_inputs[0] if len(model_inputs) == 1 else model_inputs,
            outputs=outputs[0] if len(outputs) == 1 else outputs,
            name=name or f"{model.name}_backward",
        )
    object.__setattr__(backward, "_forward_tensors", (list(graph.inputs), list(graph.outputs)))
    return backward


def resolve_wrt(graph, wrt, model) -> list:
    """The graph's tensors for ``wrt`` (tensors of the model or layers called once)."""
    items = list(wrt) if isinstance(wrt, (list, tuple)) else [wrt]
    tensors = []
    for item in items:
        what = item
        if isinstance(item, keras.layers.Layer):
            what = f"layer '{item.name}'"
            calls = [s for s in graph.steps if s.operation is item]
            if not calls and len(inbound_nodes(item)) == 1:  # a traced block: inlined
                calls = [Step(item, [], keras.tree.flatten(item.output))]
            if len(calls) != 1 or len(calls[0].outputs) != 1:
                raise ValueError(
                    f"wrt: {what} has no single output to differentiate with respect to (it "
                    f"is called {len(calls)} time(s) in the model, or returns several "
                    "tensors); pass the tensor itself (one of its outputs)."
                )
            item = calls[0].outputs[0]
        if not isinstance(item, keras.KerasTensor):
            raise TypeError(f"wrt: expected a tensor of the model or a layer, got {what!r}.")
        tensor = graph.tensor_of(item)
        if tensor is None:
            raise ValueError(
                f"wrt: {item} is not a tensor of model '{model.name}' (take it from the "
                "model's layers, e.g. model.get_layer('embedding').output)."
            )
        if not _is_float(tensor.dtype):
            raise ValueError(f"wrt: {item.name} is {tensor.dtype}; only floating tensors have "
                             "a gradient.")
        tensors.append(tensor)
    return tensors


def _steps_reached_from(graph, targets) -> set:
    """Indices of the steps that depend on one of ``targets`` (the only ones whose rules
    carry a gradient back to them)."""
    reached_tensors = {id(t) for t in targets}
    reached = set()
    for index, step in enumerate(graph.steps):
        if any(id(t) in reached_tensors for t in step.inputs):
            reached.add(index)
            reached_tensors.update(id(t) for t in step.outputs)
    return reached


def _apply_rule(rule: BackwardLayer, step: Step, out_grads: list) -> list:
    """Call ``rule`` on the upstream gradients of ``step``'s outputs; one gradient per input.

    A call with several outputs gets one gradient per output, zeros for the outputs nothing
    downstream uses; its rule is always called ``rule([gradients, input])``."""
    call_kwargs = {} if step.mask is None else {"mask": step.mask}
    if len(step.outputs) > 1:
        used = next(g for g in out_grads if g is not None)
        reference = next(o for o, g in zip(step.outputs, out_grads, strict=True)
                         if g is not None)
        n_extra = len(used.shape) - len(reference.shape)
        gradients = [
            g if g is not None
            else UnusedOutputGradient(n_extra, dtype=str(used.dtype))([used, output])
            for g, output in zip(out_grads, step.outputs, strict=True)
        ]
        rule_inputs = [gradients, step.input_structure]
    elif rule.is_linear:
        used, reference = out_grads[0], step.outputs[0]
        rule_inputs = out_grads[0]
    else:
        used, reference = out_grads[0], step.outputs[0]
        rule_inputs = [out_grads[0], step.input_structure]
    if serialization_package(type(rule)) != NATIVE_SERIALIZATION_PACKAGE:
        _verify_symbolic_result(rule, step, rule_inputs, call_kwargs,
                                tuple(used.shape)[: 1 + len(used.shape) - len(reference.shape)])
    result = rule(rule_inputs, **call_kwargs)
    results = result if isinstance(result, (list, tuple)) else [result]
    if len(results) != len(step.inputs):
        raise ValueError(
            f"Rule {type(rule).__name__} of layer '{step.qualified_name}' returned "
            f"{len(results)} gradients for {len(step.inputs)} inputs."
        )
    return results


def _verify_symbolic_result(rule: BackwardLayer, step: Step, rule_inputs, call_kwargs: dict,
                            lead: tuple) -> None:
    """Refuse a rule (one that does not ship with jacverify) whose result, run on ``meta``
    tensors, is not shaped like its call's inputs (with the gradient's ``lead`` axes): Keras
    builds on the shape the rule declares, and would broadcast another one when the backward
    model runs. A rule that cannot run on ``meta`` tensors is checked when the model runs."""
    shapes = symbolic_result_shapes(rule, (rule_inputs,), call_kwargs)
    if shapes is None:
        return
    dims = [_shape_wo_batch(t.shape) for t in step.inputs]
    verify_gradient_shapes(rule, shapes, expected_gradient_shapes(lead, dims, step.inputs),
                           layer_name=step.qualified_name)


@contextlib.contextmanager
def _recursion_limit(limit: int):
    previous = sys.getrecursionlimit()
    if limit > previous:
        sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def _is_differentiable(step: Step) -> bool:
    """Some input and some output are floating point or complex (integer inputs, such as a
    mask or token ids, get no gradient; integer outputs, such as the indices of ``top_k``,
    carry none; complex values do vary with their inputs, so a step making or reading them
    needs a rule, which refuses them)."""
    return any(_varies(t.dtype) for t in step.inputs) and any(
        _varies(t.dtype) for t in step.outputs
    )


def _refuse_complex(step: Step, producers: dict) -> None:
    """Raise when a call on the path from the differentiated tensors to the outputs takes or
    returns a complex tensor: rules carry real gradients only, and skipping the call would
    silently drop the gradient that flows through it. The error names the call where the
    complex values start (``producers``: the step that made each tensor, by id)."""
    if not any(is_complex_dtype(t.dtype) for t in [*step.inputs, *step.outputs]):
        return
    origin = _complex_origin(step, producers)
    dtypes = ", ".join(sorted({str(t.dtype) for t in [*origin.inputs, *origin.outputs]
                               if is_complex_dtype(t.dtype)}))
    met = "" if origin is step else f", reaching '{step.qualified_name}'"
    raise ValueError(
        f"'{origin.qualified_name}' ({type(origin.operation).__name__}) makes a complex "
        f"tensor ({dtypes}) that depends on the differentiated inputs{met}: backward rules "
        "carry real gradients only, so the gradient through complex values cannot be built. "
        "Keep complex dtypes off the path from the inputs to the outputs (keras.ops.fft and "
        "its kin take and return (real, imaginary) pairs of real tensors), or wrap the "
        "computation in a layer of your own with a registered rule."
    )


def _complex_origin(step: Step, producers: dict) -> Step:
    """The earliest call upstream of ``step`` (through complex tensors) that makes a complex
    tensor from real ones."""
    seen = set()
    while True:
        upstream = [producers.get(id(t)) for t in step.inputs if is_complex_dtype(t.dtype)]
        upstream = [s for s in upstream if s is not None and id(s) not in seen]
        if not upstream:
            return step
        step = upstream[0]
        seen.add(id(step))


def _varies(dtype) -> bool:
    return _is_float(dtype) or "complex" in str(dtype)


def _gradient_dtype(tensor) -> str | None:
    """The dtype of a tensor's gradient: its own when floating point (else the default)."""
    return str(tensor.dtype) if _is_float(tensor.dtype) else None


_is_float = is_float_dtype


def _make_rule(step: Step, mapping, taken_names: set, fallback=None,
               fallbacks: list | None = None) -> BackwardLayer:
    try:
        rule_class = backward_rule_class(step, mapping)
    except MissingBackwardRuleError as error:
        rule_class = _rule_without_registered_one(step, error, fallback, fallbacks)
    refuse_non_rule(step.operation, rule_class)
    # A keras.ops operation has no dtype policy: the rule computes in its output's dtype, or
    # in the widest floating dtype of its inputs (Keras's symbolic dtype inference maps
    # float64 to float32 for some ops that compute in float64 on torch).
    try:
        rule = make_rule(
            step.operation,
            [_shape_wo_batch(t.shape) for t in step.inputs],
            [_shape_wo_batch(t.shape) for t in step.outputs],
            rule=rule_class,
            call_arguments=step.call_arguments()
            if getattr(rule_class, "uses_call_arguments", False) else None,
            dtype=None if isinstance(step.operation, keras.layers.Layer)
            else _operation_dtype(step),
        )
    except TypeError as error:  # called against its signature; a rule's own refusals pass
        raise RuleConstructionError(
            f"Making the backward rule {rule_label(rule_class)} for "
            f"{describe_operation(step.operation)} raised {_first_line(error)}. The builder "
            f"calls a rule class as Rule(layer=..., input_dim_wo_batch=..., "
            f"output_dim_wo_batch=...) (see docs/writing_rules.md): fix the rule, or map the "
            f"layer's class to another one."
        ) from error
    # A layer called several times (shared, or inside a nested model used twice) gets one rule
    # per call; Keras needs distinct names.
    base, suffix = rule.name, 1
    while rule.name in taken_names:
        rule.name = f"{base}_{suffix}"
        suffix += 1
    taken_names.add(rule.name)
    return rule


def _first_line(error: BaseException) -> str:
    """``TypeError: message``: an error's type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300]}" if lines else type(error).__name__


def backward_rule_class(step: Step, mapping: Mapping[type, type] | None = None) -> type:
    """The rule class the builder gives the call of ``step``: its layer's (from ``mapping`` or
    the registry), else :class:`~jacverify.backward.rules.traced_per_shape.
    BackwardTracedPerShape` for a layer that cannot be traced on symbolic inputs but can at
    known sizes. Raises :class:`MissingBackwardRuleError` (:class:`UntraceableLayerError`
    for a layer that cannot be traced at all) otherwise."""
    try:
        return get_backward_rule(step.operation, mapping)
    except MissingBackwardRuleError:
        if step.trace_error is None:
            raise
    if not step.known_sizes_tried:
        step.known_sizes_error = _traceable_at_known_sizes(step)
        step.known_sizes_tried = True
    if step.known_sizes_error is None:
        from jacverify.backward.rules.traced_per_shape import BackwardTracedPerShape

        return BackwardTracedPerShape
    raise UntraceableLayerError(untraceable_message(
        step.qualified_name, type(step.operation),
        f"{step.trace_error}; {step.known_sizes_error}"))


def _rule_without_registered_one(step: Step, error: MissingBackwardRuleError, fallback,
                                 fallbacks: list | None) -> type:
    """The rule class of a call without one: the autograd fallback when asked for; raises
    otherwise."""
    if step.trace_error is not None and fallback != "autograd":
        raise error from None
    if fallback != "autograd":
        where = f" (inside {'/'.join(step.path)})" if step.path else ""
        raise MissingBackwardRuleError(
            f"{error}{where} Or build with fallback='autograd' to differentiate it with "
            "torch autograd (ties the backward model to the torch backend)."
        ) from None
    from jacverify.backward.rules.autograd_fallback import AutogradFallback

    if fallbacks is not None:
        fallbacks.append(f"{step.qualified_name} ({type(step.operation).__name__})")
    return AutogradFallback


def _traceable_at_known_sizes(step: Step) -> str | None:
    """``None`` when the call of ``step`` (untraceable on symbolic inputs) can be traced, and
    its backward built, at known sizes (the batch and other unknown sizes given, see
    :mod:`jacverify.backward.rules.traced_per_shape`); else why not."""
    from jacverify.backward.rules.traced_per_shape import (
        PROBE_BATCH,
        PROBE_SIZE,
        build_backward_at,
        probe_shape,
    )

    tensors = [*step.inputs, *[m for m in keras.tree.flatten(step.mask) if m is not None]]
    if all(None not in tuple(t.shape) for t in tensors):
        return "its input sizes are all known"

    def probe(tensor):
        return keras.KerasTensor(probe_shape(tensor.shape), dtype=tensor.dtype)

    inputs = [probe(t) for t in step.inputs]
    mask = keras.tree.map_structure(lambda m: None if m is None else probe(m), step.mask)
    try:
        build_backward_at(step.operation, step.call_arguments(), inputs, mask)
    except Exception as error:  # the layer's own code, or a part without a rule
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return (f"nor at known sizes (batch {PROBE_BATCH}, other unknown sizes {PROBE_SIZE}: "
                f"{type(error).__name__}: {text})")
    return None


def _operation_dtype(step: Step) -> str:
    return widest_float_dtype(
        [t.dtype for t in [*step.inputs, *step.outputs]], default=step.outputs[0].dtype
    )


def _warn_fallback(names: list) -> None:
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    warnings.warn(
        f"jacverify: {len(names)} call(s) have no backward rule and use torch autograd "
        f"(fallback='autograd'): {shown}. This backward model runs on the torch backend "
        "only; these parts are autograd's vector-Jacobian products (torch's conventions at "
        "kinks, the forward call recomputed), not checked analytic rules.",
        stacklevel=3,
    )


def _sum(grads: list, tensor, taken_names: set):
    """The sum of a tensor's gradients, in a layer named apart from ``taken_names`` (the
    gradient inputs are named after the model's output layers, e.g. ``gradient_sum``)."""
    if not grads:
        return None
    if len(grads) == 1:
        return grads[0]
    index = len(taken_names)
    while f"gradient_sum_{index}" in taken_names:
        index += 1
    name = f"gradient_sum_{index}"
    taken_names.add(name)
    return GradientSum(dtype=str(tensor.dtype), name=name)(grads)


def _gradient_tensors(graph, gradient):
    """The backward model's extra inputs and the upstream gradient of each model output."""
    outputs = graph.outputs
    if gradient is None:
        names = _gradient_input_names(outputs)
        grad_inputs = [
            keras.Input(shape=tuple(o.shape[1:]), dtype=o.dtype, name=n)
            for o, n in zip(outputs, names, strict=False)
        ]
        return grad_inputs, list(grad_inputs)
    given = list(gradient) if isinstance(gradient, (list, tuple)) else [gradient]
    if len(given) != len(outputs):
        raise ValueError(
            f"gradient: got {len(given)} gradient(s) for a model with {len(outputs)} output(s)."
        )
    if all(isinstance(g, keras.KerasTensor) for g in given):
        for g, o in zip(given, outputs, strict=False):
            if tuple(g.shape[len(g.shape) - len(o.shape) + 1 :]) != tuple(o.shape[1:]):
                raise ValueError(
                    f"gradient input of shape {g.shape} does not end with the output shape "
                    f"{tuple(o.shape[1:])}."
                )
        return given, given
    fixed = []
    reference = graph.inputs[0]
    for g, o in zip(given, outputs, strict=False):
        value = np.asarray(ops.convert_to_numpy(g) if not isinstance(g, np.ndarray) else g)
        out_shape = tuple(o.shape[1:])
        if value.shape == out_shape:
            value = value[None]
        if value.shape[0] != 1 or value.shape[1:] != out_shape:
            raise ValueError(
                f"fixed gradient of shape {value.shape} does not match output shape "
                f"(1, *{out_shape})."
            )
        layer = ConstantGradient(value.shape, value=value, dtype=o.dtype)
        fixed.append(layer(reference))
    return [], fixed


def _extra_axes(outputs, gradients) -> list:
    """The extra Jacobian axes of the upstream gradients (the same for every output)."""
    for output, grad in zip(outputs, gradients, strict=False):
        n_extra = len(grad.shape) - len(output.shape)
        if n_extra > 0:
            extra = list(grad.shape[1 : 1 + n_extra])
            if any(d is None for d in extra):
                return []  # unknown: unused inputs get zeros without the extra axes
            return [int(d) for d in extra]
    return []


def _gradient_input_names(outputs):
    """``gradient_<name of the layer producing the output>``, made unique."""
    names = []
    for index, output in enumerate(outputs):
        history = keras_history(output)
        base = history.operation.name if history and history.operation else f"output_{index}"
        name = f"gradient_{base}"
        if name in names:
            name = f"{name}_{index}"
        names.append(name)
    return names
