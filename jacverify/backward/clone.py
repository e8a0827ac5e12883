"""``clone_to_backward``: build a Keras model of a model's backward pass from per-layer rules."""

from __future__ import annotations

from typing import Any, Mapping

import keras
import numpy as np
from keras import ops

from jacverify.backward.base import BackwardLayer, _shape_wo_batch
from jacverify.backward.graph import Step, trace
from jacverify.backward.registry import MissingBackwardRuleError, get_backward_rule


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
    """The gradient of an input that no output depends on: zeros shaped like it."""

    def call(self, reference):
        return ops.zeros_like(reference)

    def compute_output_shape(self, reference_shape):
        return reference_shape


def clone_to_backward(
    model: keras.Model,
    mapping_keras2backward_classes: Mapping[type, type] | None = None,
    gradient: Any = None,
    *,
    name: str | None = None,
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

    Returns:
        A Keras model whose inputs are ``model.inputs`` (plus the gradient inputs when
        ``gradient`` is not fixed) and whose outputs are the gradients with respect to each
        model input (a single tensor for a single-input model).

    Raises:
        MissingBackwardRuleError: a layer has no registered rule (the message says how to add
            one).
    """
    graph = trace(model)
    rule_names: set[str] = set()
    grad_inputs, grad_outputs = _gradient_tensors(graph, gradient)

    contributions: dict[int, list] = {}
    for out, grad in zip(graph.outputs, grad_outputs):
        contributions.setdefault(id(out), []).append(grad)

    for step in reversed(graph.steps):
        out_grads = [_sum(contributions.pop(id(o), [])) for o in step.outputs]
        if all(g is None for g in out_grads):
            continue  # nothing downstream depends on this call
        if not _is_differentiable(step):
            continue
        if len(step.outputs) != 1:
            raise ValueError(
                f"Layer '{step.qualified_name}' ({type(step.operation).__name__}) returns "
                f"{len(step.outputs)} tensors; backward rules support one output."
            )
        rule = _make_rule(step, mapping_keras2backward_classes, rule_names)
        if rule.is_linear:
            result = rule(out_grads[0])
        else:
            result = rule([out_grads[0], step.input_structure])
        results = result if isinstance(result, (list, tuple)) else [result]
        if len(results) != len(step.inputs):
            raise ValueError(
                f"Rule {type(rule).__name__} of layer '{step.qualified_name}' returned "
                f"{len(results)} gradients for {len(step.inputs)} inputs."
            )
        for tensor, grad in zip(step.inputs, results):
            if _is_float(tensor.dtype):
                contributions.setdefault(id(tensor), []).append(grad)

    outputs = []
    for tensor in graph.inputs:
        total = _sum(contributions.get(id(tensor), []))
        outputs.append(total if total is not None else ZeroGradient()(tensor))
    model_inputs = list(graph.inputs) + grad_inputs
    return keras.Model(
        inputs=model_inputs[0] if len(model_inputs) == 1 else model_inputs,
        outputs=outputs[0] if len(outputs) == 1 else outputs,
        name=name or f"{model.name}_backward",
    )


def _is_differentiable(step: Step) -> bool:
    """Some input and every output are floating point (integer inputs, such as a mask or
    token ids, get no gradient)."""
    return any(_is_float(t.dtype) for t in step.inputs) and all(
        _is_float(t.dtype) for t in step.outputs
    )


def _is_float(dtype) -> bool:
    return "float" in str(dtype)


def _make_rule(step: Step, mapping, taken_names: set) -> BackwardLayer:
    try:
        rule_class = get_backward_rule(step.operation, mapping)
    except MissingBackwardRuleError as error:
        where = f" (inside {'/'.join(step.path)})" if step.path else ""
        raise MissingBackwardRuleError(f"{error}{where}") from None
    in_dims = [_shape_wo_batch(t.shape) for t in step.inputs]
    rule = rule_class(
        layer=step.operation,
        input_dim_wo_batch=in_dims[0] if len(in_dims) == 1 else in_dims,
        output_dim_wo_batch=_shape_wo_batch(step.outputs[0].shape),
    )
    # A layer called several times (shared, or inside a nested model used twice) gets one rule
    # per call; Keras needs distinct names.
    base, suffix = rule.name, 1
    while rule.name in taken_names:
        rule.name = f"{base}_{suffix}"
        suffix += 1
    taken_names.add(rule.name)
    return rule


def _sum(grads: list):
    if not grads:
        return None
    if len(grads) == 1:
        return grads[0]
    return keras.layers.Add()(grads)


def _gradient_tensors(graph, gradient):
    """The backward model's extra inputs and the upstream gradient of each model output."""
    outputs = graph.outputs
    if gradient is None:
        names = _gradient_input_names(outputs)
        grad_inputs = [
            keras.Input(shape=tuple(o.shape[1:]), dtype=o.dtype, name=n)
            for o, n in zip(outputs, names)
        ]
        return grad_inputs, list(grad_inputs)
    given = list(gradient) if isinstance(gradient, (list, tuple)) else [gradient]
    if len(given) != len(outputs):
        raise ValueError(
            f"gradient: got {len(given)} gradient(s) for a model with {len(outputs)} output(s)."
        )
    if all(isinstance(g, keras.KerasTensor) for g in given):
        for g, o in zip(given, outputs):
            if tuple(g.shape[len(g.shape) - len(o.shape) + 1 :]) != tuple(o.shape[1:]):
                raise ValueError(
                    f"gradient input of shape {g.shape} does not end with the output shape "
                    f"{tuple(o.shape[1:])}."
                )
        return given, given
    fixed = []
    reference = graph.inputs[0]
    for g, o in zip(given, outputs):
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


def _gradient_input_names(outputs):
    """``gradient_<name of the layer producing the output>``, made unique."""
    names = []
    for index, output in enumerate(outputs):
        history = getattr(output, "_keras_history", None)
        base = history.operation.name if history and history.operation else f"output_{index}"
        name = f"gradient_{base}"
        if name in names:
            name = f"{name}_{index}"
        names.append(name)
    return names
