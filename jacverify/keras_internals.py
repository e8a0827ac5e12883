"""Every use of Keras internals (``keras.src``, private attributes) by the checker, the
reports, the testing helpers and the pytest plugin, in one place.

Keras 3 keeps some things jacverify needs out of its public API: the classes of ``keras.ops``
operations, a few application layers, the table behind float64 -> float32 promotion, and the
shapes a layer was built with. When Keras changes one of them, this module is the one place to
change. (The builder, ``jacverify/backward/``, has its own uses still to move here.)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
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
    "KerasGlobalState",
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


#: Keras' 64-bit -> 32-bit promotion entries that :func:`float64_not_downcast` keeps 64-bit.
_KEPT_64_BIT = {"float64": "float64", "complex128": "complex128"}
_promotion_lock = threading.Lock()
_promotion_depth = 0
_promotion_saved: dict = {}


def _promotion_table() -> dict | None:
    try:
        from keras.src.backend.common import dtypes
    except ImportError:  # another Keras layout: nothing to patch
        return None
    table = getattr(dtypes, "BIT64_TO_BIT32_DTYPE", None)
    return table if isinstance(table, dict) and "float64" in table else None


@contextlib.contextmanager
def float64_not_downcast() -> Iterator[bool]:
    """While the block runs, Keras' type promotion keeps float64 (and complex128) results in
    64 bits (on torch and JAX it maps them to 32 bits). Yields whether the table could be
    patched. Nested and concurrent blocks share one patch: the table is restored when the last
    block ends, whatever order threads leave in."""
    global _promotion_depth
    table = _promotion_table()
    if table is None:
        yield False
        return
    with _promotion_lock:
        if _promotion_depth == 0:
            _promotion_saved.clear()
            _promotion_saved.update({k: table[k] for k in _KEPT_64_BIT if k in table})
            table.update({k: v for k, v in _KEPT_64_BIT.items() if k in _promotion_saved})
        _promotion_depth += 1
    try:
        yield True
    finally:
        with _promotion_lock:
            _promotion_depth -= 1
            if _promotion_depth == 0:
                table.update(_promotion_saved)


def _global_attribute(name: str) -> Any:
    from keras.src.backend.common import global_state

    return global_state.get_global_attribute(name)


@dataclass
class KerasGlobalState:
    """What Keras keeps process-wide that a check can change: the counters behind automatic
    layer names (``dense_3``) and the global random seed generator (unseeded random ops and
    initializers draw from it)."""

    name_uids: dict | None
    seed_generator: Any
    seed_state: Any

    @classmethod
    def capture(cls) -> KerasGlobalState:
        """The state now."""
        import keras

        uids = _global_attribute("object_name_uids")
        generator = _global_attribute("global_seed_generator")
        state = None if generator is None else keras.ops.convert_to_numpy(generator.state)
        return cls(None if uids is None else dict(uids), generator, state)

    @staticmethod
    def _counters(values: dict) -> dict:
        import collections

        return collections.defaultdict(int, values)

    def restore(self) -> None:
        """Put the captured state back."""
        from keras.src.backend.common import global_state

        uids = _global_attribute("object_name_uids")
        if self.name_uids is None or uids is None:
            counters = None if self.name_uids is None else self._counters(self.name_uids)
            global_state.set_global_attribute("object_name_uids", counters)
        else:
            uids.clear()
            uids.update(self.name_uids)
        global_state.set_global_attribute("global_seed_generator", self.seed_generator)
        if self.seed_generator is not None:
            self.seed_generator.state.assign(self.seed_state)
