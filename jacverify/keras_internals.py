"""Every use of Keras internals (``keras.src``, private attributes) by the checker, the
reports, the testing helpers and the pytest plugin, in one place.

Keras 3 keeps some things jacverify needs out of its public API: the classes of ``keras.ops``
operations, a few application layers, the table behind float64 -> float32 promotion, and the
shapes a layer was built with. When Keras changes one of them, this module is the one place to
change. (The builder, ``jacverify/backward/``, has its own uses still to move here.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from keras.src.applications.convnext import LayerScale, StochasticDepth
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
from keras.src.ops import core as ops_core
from keras.src.ops import linalg as ops_linalg
from keras.src.ops import math as ops_math
from keras.src.ops import nn as ops_nn
from keras.src.ops import numpy as ops_numpy

__all__ = [
    "CustomScaleLayer",
    "LayerScale",
    "StochasticDepth",
    "build_shapes",
    "float64_not_downcast",
    "ops_core",
    "ops_linalg",
    "ops_math",
    "ops_nn",
    "ops_numpy",
    "public_module",
]

#: The prefix of Keras' internal module names.
INTERNAL_PREFIX = "keras.src."


def build_shapes(layer: Any) -> dict:
    """The input shapes ``layer`` was built with, by ``build()`` argument name (``{}`` when
    Keras did not record them)."""
    return dict(getattr(layer, "_build_shapes_dict", None) or {})


def public_module(module: str) -> str:
    """A Keras class's module without the internal prefix (``keras.src.layers...`` ->
    ``layers...``)."""
    return module.removeprefix(INTERNAL_PREFIX)


@contextlib.contextmanager
def float64_not_downcast() -> Iterator[bool]:
    """While the block runs, Keras' type promotion keeps float64 results in float64 (on torch
    and JAX it maps them to float32). Yields whether the table could be patched."""
    table = None
    old = None
    try:
        from keras.src.backend.common import dtypes

        table = getattr(dtypes, "BIT64_TO_BIT32_DTYPE", None)
        if isinstance(table, dict) and "float64" in table:
            old = table["float64"]
            table["float64"] = "float64"
        else:
            table = None
    except ImportError:  # another Keras layout: nothing to patch
        table = None
    try:
        yield table is not None
    finally:
        if table is not None:
            table["float64"] = old
