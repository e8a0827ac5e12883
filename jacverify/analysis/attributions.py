"""Attributions from input gradients: saliency, integrated gradients, SmoothGrad.

Each is computed with the backward model of the model (:func:`jacverify.clone_to_backward`),
one backward call per step for the whole batch, with the upstream gradient selecting each
example's target unit.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from jacverify.analysis.backward_models import input_gradient_model, run
from jacverify.analysis.inputs import (
    AnalysisInputError,
    classes_of,
    input_batch,
    positive,
    positive_int,
    targets,
)


class Attributions(np.ndarray):
    """Attributions shaped like the input, as a numpy array, with the quadrature's
    completeness (integrated gradients):

    * ``completeness_error``: per example, ``|sum(attributions) - (f(x) - f(baseline))|``
      relative to ``|f(x) - f(baseline)|`` (absolute when that difference is below 1e-12);
    * ``output_difference``: per example, ``f(x) - f(baseline)`` for the target unit;
    * ``target``: the target unit of each example.
    """

    completeness_error: np.ndarray
    output_difference: np.ndarray
    target: np.ndarray

    def __array_finalize__(self, obj: Any) -> None:
        for name in ("completeness_error", "output_difference", "target"):
            setattr(self, name, getattr(obj, name, None))


def upstream(target: np.ndarray, units: int, dtype: str) -> np.ndarray:
    """One-hot upstream gradients ``(n, units)`` selecting each example's target unit."""
    g = np.zeros((len(target), units), dtype=dtype)
    g[np.arange(len(target)), target] = 1.0
    return g


def _prepare(model: keras.Model, x: Any, target: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    """The input batch, the targets (argmax of the output by default) and the one-hot
    upstream gradient."""
    units = classes_of(model)
    batch = input_batch(model, x)
    scores = run(model, batch) if target is None and units > 1 else None
    chosen = targets(model, target, len(batch), scores)
    return batch, chosen, upstream(chosen, units, str(model.outputs[0].dtype))


def _gradient(model: keras.Model, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return run(input_gradient_model(model), [x, g])


def saliency(model: keras.Model, x: Any, target: Any = None) -> np.ndarray:
    """The gradient of each example's target output with respect to its input.

    Args:
        model: a Keras model with one input and outputs ``(batch, units)``.
        x: a batch of inputs ``(n, *input_shape)``.
        target: the unit per example (an int, or one per example); ``None``: the argmax of
            the model's output (a model with one unit needs none).

    Returns:
        An array shaped like ``x``: ``d f_target(x) / d x``.
    """
    batch, _, g = _prepare(model, x, target)
    return _gradient(model, batch, g)


def _baseline(baseline: Any, batch: np.ndarray) -> np.ndarray:
    if baseline is None:
        return np.zeros_like(batch)
    array = np.asarray(baseline, dtype=batch.dtype)
    try:
        return np.broadcast_to(array, batch.shape).copy()
    except ValueError:
        raise AnalysisInputError(
            f"baseline has shape {array.shape}; give one shaped like an example "
            f"{batch.shape[1:]} or like x {batch.shape}"
        ) from None


def integrated_gradients(
    model: keras.Model, x: Any, target: Any = None, baseline: Any = None, steps: int = 32
) -> Attributions:
    """Integrated gradients: ``(x - baseline)`` times the average gradient along the straight
    path from the baseline to ``x``, by Gauss-Legendre quadrature with ``steps`` nodes (one
    backward call per node for the whole batch).

    Args:
        model: a Keras model with one input and outputs ``(batch, units)``.
        x: a batch of inputs.
        target: the unit per example; ``None``: the argmax of the output at ``x``.
        baseline: the path's start, shaped like one example or like ``x`` (default zeros).
        steps: quadrature nodes.

    Returns:
        :class:`Attributions` shaped like ``x``, with ``completeness_error`` per example
        (how far the attributions' sum is from ``f(x) - f(baseline)``).
    """
    steps = positive_int(steps, "steps")
    batch, chosen, g = _prepare(model, x, target)
    start = _baseline(baseline, batch)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (nodes + 1.0) / 2.0, weights / 2.0
    total = np.zeros(batch.shape, dtype=np.float64)
    for alpha, weight in zip(alphas, weights, strict=True):
        point = (start + alpha * (batch - start)).astype(batch.dtype)
        total += weight * _gradient(model, point, g)
    result = ((batch - start) * total).astype(batch.dtype).view(Attributions)
    rows = np.arange(len(batch))
    difference = (
        run(model, batch)[rows, chosen].astype(np.float64)
        - run(model, start)[rows, chosen].astype(np.float64)
    )
    summed = result.reshape(len(batch), -1).sum(axis=1, dtype=np.float64)
    scale = np.where(np.abs(difference) > 1e-12, np.abs(difference), 1.0)
    result.completeness_error = np.abs(summed - difference) / scale
    result.output_difference = difference
    result.target = chosen
    return result


def smoothgrad(
    model: keras.Model,
    x: Any,
    target: Any = None,
    noise: float = 0.1,
    samples: int = 16,
    seed: int | None = None,
) -> np.ndarray:
    """SmoothGrad: the saliency averaged over ``samples`` noisy copies of each input.

    Args:
        model: a Keras model with one input and outputs ``(batch, units)``.
        x: a batch of inputs.
        target: the unit per example; ``None``: the argmax of the output at ``x`` (the clean
            input: the target does not change with the noise).
        noise: the noise's standard deviation, relative to each example's value range
            (``max - min``; 1 for a constant example).
        samples: noisy copies (one backward call each, for the whole batch).
        seed: the noise's seed.

    Returns:
        An array shaped like ``x``.
    """
    noise = positive(noise, "noise")
    samples = positive_int(samples, "samples")
    batch, _, g = _prepare(model, x, target)
    flat = batch.reshape(len(batch), -1)
    spread = flat.max(axis=1) - flat.min(axis=1)
    spread = np.where(spread > 0, spread, 1.0).reshape((-1,) + (1,) * (batch.ndim - 1))
    rng = np.random.default_rng(seed)
    total = np.zeros(batch.shape, dtype=np.float64)
    for _ in range(samples):
        noisy = batch + noise * spread * rng.standard_normal(batch.shape)
        total += _gradient(model, noisy.astype(batch.dtype), g)
    return (total / samples).astype(batch.dtype)
