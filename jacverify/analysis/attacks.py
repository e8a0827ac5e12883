"""Adversarial inputs from loss gradients: FGSM and PGD (L-infinity and L2 balls).

The loss gradient is the backward model of the model and a per-example loss layer
(:func:`jacverify.analysis.loss_gradient_model`): one backward call per step for the whole
batch.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from jacverify.analysis.backward_models import run
from jacverify.analysis.inputs import (
    AnalysisInputError,
    input_batch,
    matching_count,
    positive,
    positive_int,
    single_input_and_output,
)
from jacverify.analysis.loss_gradients import cached_loss_models
from jacverify.analysis.losses import resolve_loss
from jacverify.keras_internals import keras_history

#: Activations after which a model's output is taken for probabilities, not logits.
_PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")
#: The norms of the balls, as accepted and as named internally.
NORMS = {"inf": "inf", np.inf: "inf", 2: "2", "2": "2", "l2": "2", "linf": "inf"}


def outputs_probabilities(model: keras.Model) -> bool:
    """Whether the model's last layer ends with a softmax or sigmoid."""
    history = keras_history(model.outputs[0])
    layer = history.operation if history else None
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", str(activation or ""))
    return name in _PROBABILITY_ACTIVATIONS


def default_loss(model: keras.Model, y: np.ndarray) -> keras.losses.Loss:
    """The loss an attack uses when none is given: binary crossentropy for a model with one
    output unit, else categorical crossentropy (sparse for integer labels ``(n,)``); on
    logits unless the model's last layer ends with a softmax or sigmoid."""
    _, output = single_input_and_output(model)
    logits = not outputs_probabilities(model)
    if output and output[-1] == 1:
        return keras.losses.BinaryCrossentropy(from_logits=logits)
    if y.ndim == len(output):  # no class axis: class indices
        return keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    return keras.losses.CategoricalCrossentropy(from_logits=logits)


def labels_for(model: keras.Model, y: Any, n: int, loss: Any) -> tuple[np.ndarray, Any]:
    """``(labels, loss)``: the labels checked against the loss and the model's output shape,
    and the loss (the default one when ``loss`` is ``None``)."""
    array = matching_count(y, n, "labels")
    _, output = single_input_and_output(model)
    if loss is None:
        loss = default_loss(model, array)
    resolved = resolve_loss(loss)
    if resolved.labels == "sparse":
        expected = tuple(output[:-1])
        if array.shape[1:] == (*expected, 1):
            array = array.reshape(array.shape[:-1])
        if not np.all(np.equal(np.mod(array, 1), 0)) or np.any(array < 0) or np.any(
            array >= output[-1]
        ):
            raise AnalysisInputError(
                f"labels must be class indices in [0, {output[-1] - 1}] for {resolved.name}"
            )
        dtype = "int32"
    else:
        expected = tuple(output)
        if array.shape[1:] == () and expected == (1,):
            array = array.reshape(-1, 1)
        dtype = "int32" if resolved.labels == "signed" else str(model.outputs[0].dtype)
    if array.shape[1:] != expected:
        raise AnalysisInputError(
            f"labels have shape {array.shape}; {resolved.name} on this model takes "
            f"(n, {', '.join(str(d) for d in expected)})" if expected else
            f"labels have shape {array.shape}; {resolved.name} on this model takes (n,)"
        )
    return array.astype(dtype), loss


def example_losses(model: keras.Model, x: Any, y: Any, loss: Any = None) -> np.ndarray:
    """Each example's loss, shape ``(n,)`` (the default loss as for the attacks)."""
    batch = input_batch(model, x)
    labels, loss = labels_for(model, y, len(batch), loss)
    losses = cached_loss_models(model, loss)[0]
    return run(losses, [batch, labels])[:, 0]


def _norm(norm: Any) -> str:
    try:
        return NORMS[norm.lower() if isinstance(norm, str) else norm]
    except (KeyError, TypeError):
        raise AnalysisInputError(f"norm must be 'inf' or 2, got {norm!r}") from None


def _clip_range(clip: Any) -> tuple[float, float] | None:
    if clip is None:
        return None
    try:
        low, high = (float(v) for v in clip)
    except (TypeError, ValueError):
        raise AnalysisInputError(f"clip must be a pair (low, high), got {clip!r}") from None
    if not low < high:
        raise AnalysisInputError(f"clip must have low < high, got {clip!r}")
    return low, high


def _per_example_norm(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(len(values), -1).astype(np.float64)
    return np.linalg.norm(flat, axis=1).reshape((-1,) + (1,) * (values.ndim - 1))


def project(delta: np.ndarray, eps: float, norm: str) -> np.ndarray:
    """``delta`` moved into the ball of radius ``eps`` (per example)."""
    if norm == "inf":
        return np.clip(delta, -eps, eps)
    lengths = _per_example_norm(delta)
    return delta * np.minimum(1.0, eps / np.maximum(lengths, 1e-30))


def ascent_direction(gradient: np.ndarray, norm: str) -> np.ndarray:
    """The steepest ascent step of unit size in the norm: the gradient's sign (L-infinity)
    or the gradient over its L2 length (zero where the gradient is zero)."""
    if norm == "inf":
        return np.sign(gradient)
    lengths = _per_example_norm(gradient)
    return np.where(lengths > 0, gradient / np.maximum(lengths, 1e-30), 0.0)


def random_start(shape: tuple, eps: float, norm: str, rng: np.random.Generator) -> np.ndarray:
    """A point drawn uniformly in the ball of radius ``eps`` (per example)."""
    if norm == "inf":
        return rng.uniform(-eps, eps, size=shape)
    directions = rng.standard_normal(shape)
    directions /= np.maximum(_per_example_norm(directions), 1e-30)
    size = int(np.prod(shape[1:]))
    radii = eps * rng.uniform(0.0, 1.0, size=(shape[0],)) ** (1.0 / size)
    return directions * radii.reshape((-1,) + (1,) * (len(shape) - 1))


def _finish(x: np.ndarray, delta: np.ndarray, clip: tuple | None) -> np.ndarray:
    adversarial = x.astype(np.float64) + delta
    if clip is not None:
        adversarial = np.clip(adversarial, *clip)
    return adversarial


def fgsm(model: keras.Model, x: Any, y: Any, eps: float, loss: Any = None) -> np.ndarray:
    """The fast gradient sign method: ``x + eps * sign(d loss / d x)``.

    Args:
        model: a Keras model with one input and one output.
        x: a batch of inputs.
        y: the labels (one per example, as the loss takes them).
        eps: the radius of the L-infinity ball (> 0).
        loss: a ``keras.losses.Loss`` or name; ``None``: crossentropy (see
            :func:`default_loss`).

    Returns:
        The adversarial inputs, shaped like ``x``, each within ``eps`` of its input.
    """
    eps = positive(eps, "eps")
    batch = input_batch(model, x)
    labels, loss = labels_for(model, y, len(batch), loss)
    gradient_model = cached_loss_models(model, loss)[1]
    gradient = run(gradient_model, [batch, labels])
    return (batch + eps * np.sign(gradient)).astype(batch.dtype)


def pgd(
    model: keras.Model,
    x: Any,
    y: Any,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    loss: Any = None,
    seed: int | None = None,
    norm: Any = "inf",
    clip: Any = None,
) -> np.ndarray:
    """Projected gradient ascent on the loss, from a random start in the ball.

    Each step moves every input by ``step_size`` along the steepest ascent direction of its
    loss in the norm (the gradient's sign for ``"inf"``, its direction for 2), then projects
    back into the ball of radius ``eps`` around the input, and into the data range ``clip``.
    Each example's result is the point of highest loss met (the one-step attack from the
    input, which for ``"inf"`` is FGSM's point, the random start, the points the steps were
    taken from, and the last point), so that a step overshooting a maximum does not lose it
    and the result is never below the one-step attack.

    Args:
        model: a Keras model with one input and one output.
        x: a batch of inputs.
        y: the labels (one per example, as the loss takes them).
        eps: the radius of the ball (> 0).
        steps: gradient steps (one backward call each, returning the loss too, for the whole
            batch; one backward and two forward calls more for the one-step attack and the
            last point).
        step_size: the length of a step; default ``2.5 * eps / steps``.
        loss: a ``keras.losses.Loss`` or name; ``None``: crossentropy (see
            :func:`default_loss`).
        seed: the seed of the random start.
        norm: ``"inf"`` or ``2``.
        clip: ``(low, high)``, the data range adversarial inputs stay in; ``None``: no range.

    Returns:
        The adversarial inputs, shaped like ``x``.
    """
    eps = positive(eps, "eps")
    steps = positive_int(steps, "steps")
    step_size = 2.5 * eps / steps if step_size is None else positive(step_size, "step_size")
    norm = _norm(norm)
    bounds = _clip_range(clip)
    batch = input_batch(model, x)
    labels, loss = labels_for(model, y, len(batch), loss)
    losses, _, loss_and_gradient = cached_loss_models(model, loss)
    rng = np.random.default_rng(seed)
    origin = batch.astype(np.float64)
    delta = _finish(batch, random_start(batch.shape, eps, norm, rng), bounds) - origin
    best = Best(batch)
    gradient = run(loss_and_gradient, [batch, labels])[1]
    one_step = _one_step(batch, gradient, eps, norm, bounds)
    best.offer(one_step, run(losses, [one_step, labels])[:, 0])
    for _ in range(steps):
        point = (origin + delta).astype(batch.dtype)
        values, gradient = run(loss_and_gradient, [point, labels])
        best.offer(point, values[:, 0])
        delta = project(delta + step_size * ascent_direction(gradient, norm), eps, norm)
        delta = _finish(batch, delta, bounds) - origin
    point = (origin + delta).astype(batch.dtype)
    best.offer(point, run(losses, [point, labels])[:, 0])
    return best.points


def _one_step(batch: np.ndarray, gradient: np.ndarray, eps: float, norm: str,
              bounds: tuple | None) -> np.ndarray:
    """``x + eps * ascent direction`` in the input's dtype, computed as :func:`fgsm` does."""
    point = (batch + eps * ascent_direction(gradient, norm)).astype(batch.dtype)
    return point if bounds is None else np.clip(point, *bounds).astype(batch.dtype)


class Best:
    """The point of highest loss met so far, per example."""

    def __init__(self, batch: np.ndarray) -> None:
        self.points = batch.copy()
        self.values = np.full(len(batch), -np.inf)

    def offer(self, points: np.ndarray, values: np.ndarray) -> None:
        """Keep each example's point where its loss is higher than the best so far."""
        better = values > self.values
        self.points[better] = points[better]
        self.values[better] = values[better]
