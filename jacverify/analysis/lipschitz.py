"""Lower bounds of local L2 Lipschitz constants: the largest singular value of the Jacobian,
by power iteration with the backward model, maximised over points of a ball.

At a point ``z``, for any unit vector ``u`` in the output space, ``||J(z)^T u||`` is at most
the largest singular value of ``J(z)``, which is at most the Lipschitz constant of the model on
any ball containing ``z``. Power iteration steers ``u`` towards the top left singular vector:
``u <- J J^T u``, with ``J^T u`` from the backward model (exact) and ``J w`` from a central
difference of the model (it only steers; the bound itself is always ``||J^T u||`` from the
backward model, so it stays a lower bound whatever the difference's error).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from jacverify.analysis.attacks import random_start
from jacverify.analysis.backward_models import input_gradient_model, run
from jacverify.analysis.inputs import input_batch, positive, positive_int, single_input_and_output

#: Relative length of the central difference step (of the input's scale).
DIFFERENCE_STEP = 1e-3


def _unit(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(len(values), -1)
    lengths = np.linalg.norm(flat, axis=1).reshape((-1,) + (1,) * (values.ndim - 1))
    return values / np.maximum(lengths, 1e-30)


def _lengths(values: np.ndarray) -> np.ndarray:
    return np.linalg.norm(values.reshape(len(values), -1).astype(np.float64), axis=1)


def _jacobian_times(model: keras.Model, z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``J(z) w`` per example by a central difference (steps scaled to ``z`` and ``w``)."""
    scale = _lengths(z) / np.sqrt(z[0].size) + 1.0
    step = (DIFFERENCE_STEP * scale / np.maximum(_lengths(w), 1e-30)).reshape(
        (-1,) + (1,) * (z.ndim - 1)
    )
    plus = run(model, (z + step * w).astype(z.dtype)).astype(np.float64)
    minus = run(model, (z - step * w).astype(z.dtype)).astype(np.float64)
    return (plus - minus) / (2.0 * step.reshape((-1,) + (1,) * (plus.ndim - 1)))


def local_lipschitz(
    model: keras.Model, x: Any, radius: float, steps: int = 20, seed: int | None = None
) -> np.ndarray:
    """Per example, a lower bound of the model's L2 Lipschitz constant on the ball of
    ``radius`` around it.

    The bound is the largest ``||J(z)^T u||`` (``u`` a unit vector, ``J^T u`` computed by the
    backward model) met over ``steps`` power iterations: the first half at the example
    itself, the others at random points of the ball (each warm-started from the previous
    direction). For a linear map it is the spectral norm of its matrix.

    Args:
        model: a Keras model with one input and one output.
        x: a batch of inputs.
        radius: the radius of the L2 ball (> 0).
        steps: power iterations (one backward call and two forward calls each, for the
            whole batch).
        seed: the seed of the starting directions and of the points of the ball.

    Returns:
        An array ``(n,)`` of lower bounds.
    """
    radius = positive(radius, "radius")
    steps = positive_int(steps, "steps")
    batch = input_batch(model, x)
    _, output_shape = single_input_and_output(model)
    backward = input_gradient_model(model)
    rng = np.random.default_rng(seed)
    dtype = str(model.outputs[0].dtype)
    u = _unit(rng.standard_normal((len(batch), *output_shape)))
    best = np.zeros(len(batch))
    for step in range(steps):
        z = batch
        if step >= (steps + 1) // 2:
            z = (batch + random_start(batch.shape, radius, "2", rng)).astype(batch.dtype)
        w = run(backward, [z, u.astype(dtype)]).astype(np.float64)
        best = np.maximum(best, _lengths(w))
        u = _next_direction(_jacobian_times(model, z, w), rng)
    return best


def _next_direction(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``values`` made unit per example; a random unit vector where it is zero (a point
    where the Jacobian vanishes must not end the search)."""
    flat = np.abs(values.reshape(len(values), -1)).max(axis=1)
    if np.any(flat == 0):
        fresh = rng.standard_normal(values.shape)
        values = np.where((flat == 0).reshape((-1,) + (1,) * (values.ndim - 1)), fresh, values)
    return _unit(values)
