"""Models of each example's loss and of its gradient with respect to the model's input."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from jacverify.analysis.backward_models import cached
from jacverify.analysis.inputs import AnalysisInputError, single_input_and_output
from jacverify.analysis.losses import OneHotLabels, ResolvedLoss, SignedLabels, resolve_loss
from jacverify.backward.clone import BackwardModel, clone_to_backward


def _label_input(model: keras.Model, resolved: ResolvedLoss) -> tuple[Any, Any]:
    """The ``y_true`` input and the labels the loss layer takes."""
    _, output_shape = single_input_and_output(model)
    if resolved.labels == "sparse":
        if not output_shape or output_shape[-1] is None:
            raise AnalysisInputError(
                f"{resolved.name} needs a model output with a known number of classes on its "
                f"last axis; model '{model.name}' outputs (batch, *{output_shape})"
            )
        labels = keras.Input(shape=output_shape[:-1], dtype="int32", name="y_true")
        one_hot = OneHotLabels(output_shape[-1], dtype=model.outputs[0].dtype, name="one_hot")
        return labels, one_hot(labels)
    if resolved.labels == "signed":
        labels = keras.Input(shape=output_shape, dtype="int32", name="y_true")
        return labels, SignedLabels(dtype=model.outputs[0].dtype, name="signed_labels")(labels)
    labels = keras.Input(shape=output_shape, dtype=model.outputs[0].dtype, name="y_true")
    return labels, labels


def loss_model(model: keras.Model, loss: Any) -> keras.Model:
    """A Keras model with inputs ``[x, y_true]`` whose output ``(batch, 1)`` is each example's
    loss (``loss``: a ``keras.losses.Loss`` instance or name; see
    :func:`jacverify.analysis.losses.resolve_loss`). Sparse crossentropy takes integer labels
    ``(batch, *positions)``; hinge losses integer labels -1/1 or 0/1 shaped like the model's
    output; the other losses float labels shaped like the model's output."""
    resolved = loss if isinstance(loss, ResolvedLoss) else resolve_loss(loss)
    single_input_and_output(model)
    labels, prepared = _label_input(model, resolved)
    value = resolved.layer([model.outputs[0], prepared])
    return keras.Model(
        inputs=[model.inputs[0], labels], outputs=value, name=f"{model.name}_{resolved.name}"
    )


def loss_gradient_model(model: keras.Model, loss: Any) -> keras.Model:
    """A Keras model with inputs ``[x, y_true]`` whose output is the gradient of each
    example's loss with respect to its input ``x`` (shaped like ``x``).

    It is the backward model (:func:`jacverify.clone_to_backward`) of :func:`loss_model`
    with an upstream gradient of 1: the model's rules and the loss's registered rule.

    Args:
        model: a Keras model with one input and one output (custom layers need registered
            rules, as for ``clone_to_backward``).
        loss: a ``keras.losses.Loss`` instance (its options are kept, its reduction is not:
            each example gets its own loss) or a loss name: crossentropies (categorical,
            sparse categorical, binary; ``from_logits`` either way, label smoothing), mean
            squared and absolute error, Huber, log-cosh, hinge and squared hinge.

    Raises:
        ValueError: an unsupported loss or option, or a model with several inputs or outputs.
        MissingBackwardRuleError: a layer of the model has no rule.
    """
    return _input_gradient(loss_model(model, loss))[0]


def _input_gradient(losses: keras.Model) -> tuple[keras.Model, keras.Model]:
    """The gradient model of a loss model (its backward model with an upstream gradient 1,
    keeping only the gradient with respect to ``x``), and the same model also returning the
    loss (outputs ``[loss, gradient]``: the loss layer on the activations it already has)."""
    one = np.ones((1, 1), dtype=str(losses.outputs[0].dtype))
    backward = clone_to_backward(losses, gradient=one)
    gradient = BackwardModel(
        inputs=backward.inputs, outputs=backward.outputs[0],
        name=f"{losses.name}_input_gradient",
    )
    both = BackwardModel(
        inputs=backward.inputs, outputs=[losses.outputs[0], backward.outputs[0]],
        name=f"{losses.name}_and_input_gradient",
    )
    return gradient, both


def cached_loss_models(model: keras.Model, loss: Any) -> tuple[keras.Model, ...]:
    """``(loss_model, loss_gradient_model, loss_and_gradient_model)`` of ``model`` and
    ``loss``, built once; the last has outputs ``[loss, gradient]``."""
    resolved = resolve_loss(loss)
    options = {k: v for k, v in resolved.layer.get_config().items() if k != "name"}
    key = ("loss", type(resolved.layer).__name__, resolved.labels,
           repr(sorted(options.items())))

    def build() -> tuple[keras.Model, ...]:
        losses = loss_model(model, resolved)
        return (losses, *_input_gradient(losses))

    return cached(model, key, build)
