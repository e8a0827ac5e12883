"""Counting ulps between two floats: the closed form against stepping with nextafter."""

from __future__ import annotations

import numpy as np
import pytest

from jacverify.check.kinks import ulps_between


def _stepped(a: float, steps: int, dtype: str) -> float:
    t = np.dtype(dtype).type
    value = t(a)
    toward = t(np.inf) if steps > 0 else t(-np.inf)
    for _ in range(abs(steps)):
        value = np.nextafter(value, toward)
    return float(value)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_ulps_between_counts_the_floats_stepped_over(dtype):
    """Across zero, through subnormals, both ways."""
    for start in (0.0, -0.0, 1.0, -1.0, 2.0, 0.1, 1e-40, -1e-40, 5e-324):
        for steps in (0, 1, -1, 2, -3, 17, -64, 64):
            end = _stepped(start, steps, dtype)
            assert ulps_between(start, end, dtype) == abs(steps), (start, steps)
            assert ulps_between(end, start, dtype) == abs(steps), (start, steps)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ulps_between_gives_none_past_64(dtype):
    assert ulps_between(1.0, _stepped(1.0, 65, dtype), dtype) is None
    assert ulps_between(1.0, 2.0, dtype) is None
    assert ulps_between(-0.0, 0.0, dtype) == 0
