"""The float64 clone's measured precision (``jacverify.check.references.measured_precision``):
float64 for a float64 forward, also where it is locally constant up to rounding (sparsemax
saturated), float32 for a forward that rounds to float32."""

from __future__ import annotations

import numpy as np
import torch
from keras import ops

from jacverify.check.references import measured_precision

EPS32, EPS64 = float(np.finfo(np.float32).eps), float(np.finfo(np.float64).eps)


def _sparsemax(rows: np.ndarray) -> np.ndarray:
    return ops.convert_to_numpy(ops.sparsemax(torch.from_numpy(rows), axis=-1))


def _through_float32(rows: np.ndarray) -> np.ndarray:
    return np.tanh(rows.astype(np.float32)).astype(np.float64)


def test_a_saturated_float64_sparsemax_is_measured_float64():
    """At ``(-2.47120917, -0.08392968)`` sparsemax is ``(0, 1)``, its second output computed
    as ``z2 - (z2 - 1)``: 1 up to an ulp that moves with ``z2``, so its difference quotients
    are rounding noise of relative size 1 (it was measured float32, and a float64 session's
    finite differences then took float32-sized steps across a kink 4e-7 away)."""
    x = np.array([-2.4712091735124495, -0.08392968424113566])
    outputs = _sparsemax(x[None, :] + np.array([[0.0, 0.0], [0.0, 1e-8]]))
    assert np.all(outputs[:, 0] == 0.0) and np.all(np.abs(outputs[:, 1] - 1.0) <= 4 * EPS64)
    for seed in range(5):
        assert measured_precision(_sparsemax, x, np.random.default_rng(seed)) == EPS64


def test_float64_and_float32_forwards_are_told_apart():
    x = np.array([0.3, -1.2, 0.7])
    rng = np.random.default_rng(0)
    assert measured_precision(lambda r: np.tanh(r), x, rng) == EPS64
    assert measured_precision(_through_float32, x, rng) == EPS32
