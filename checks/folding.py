"""Helpers for rules that handle extra Jacobian axes themselves (by overriding ``call``).

A rule receives a gradient of shape ``(batch, *extra, *output)`` when a backward model is built
with extra axes. The base class folds ``extra`` into the batch axis before
``call_on_reshaped_gradient``; the corpus's extra-axes cases override ``call`` to do it
themselves, wrongly.
"""

from __future__ import annotations

import math


def extra_axes(gradient, output_dims) -> list[int]:
    """The sizes of the extra axes of ``gradient`` (empty without extra axes)."""
    n_extra = len(gradient.shape) - 1 - len(output_dims)
    return [int(d) for d in gradient.shape[1 : 1 + n_extra]]


def rows(extra: list[int]) -> int:
    """How many gradients per example the extra axes carry."""
    return math.prod(extra)
