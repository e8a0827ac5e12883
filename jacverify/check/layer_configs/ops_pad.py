"""Configurations of ``keras.ops.pad`` (constant mode): widths on every non-batch axis."""

from __future__ import annotations

from hypothesis import strategies as st
from keras.src.ops import numpy as knp

from jacverify.check.layer_configs.ops import unary


def _pad(draw, rank: int):
    widths = [(0, 0)] + [
        (draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank - 1)
    ]
    return knp.Pad(widths)


STRATEGIES = {knp.Pad: lambda: unary(_pad)}

UNSUPPORTED: dict = {}
