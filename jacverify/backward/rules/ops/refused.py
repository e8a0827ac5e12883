"""``keras.ops`` functions whose Jacobian no per-example backward rule can express: their
rules refuse them when the backward model is built, with the reason.

* ``psnr`` averages the squared error over every axis, the batch axis included;
* ``segment_sum``/``segment_max``/``segment_min``/``segment_prod`` reduce rows of the batch
  axis into segments, ``scatter``/``scatter_update`` address elements by index tuples that
  include the batch coordinate: their Jacobians couple the examples of a batch.
"""

from __future__ import annotations

import keras
from keras.src.ops import core as kcore
from keras.src.ops import math as kmath
from keras.src.ops import nn as knn

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation

_COUPLED = ("its Jacobian couples the examples of a batch, which a backward rule cannot "
            "express.")


class BackwardRefusedOp(BackwardOperation):
    """Base of the rules that refuse their operation: ``reason`` says why."""

    reason = ""

    def __init__(self, layer, **kwargs):
        raise ValueError(
            f"'{layer.name}' ({type(layer).__name__}): {self.reason} Compute it outside the "
            "differentiated part of the model (or on constants), or wrap the computation in a "
            "layer with its own rule."
        )


@register_backward(kmath.SegmentSum, kmath.SegmentMax, kmath.SegmentMin, kmath.SegmentProd)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardSegmentReductionOp(BackwardRefusedOp):
    """Refuses the segment reductions (they reduce along the batch axis)."""

    reason = f"it reduces the rows of the batch axis into segments: {_COUPLED}"


@register_backward(kcore.Scatter, kcore.ScatterUpdate)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardScatterOp(BackwardRefusedOp):
    """Refuses ``scatter`` / ``scatter_update`` (indices address the batch axis)."""

    reason = f"its indices address the batch axis too (full index tuples), so {_COUPLED}"


@register_backward(knn.PSNR)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardPSNROp(BackwardRefusedOp):
    """Refuses ``psnr`` (one value for the whole batch)."""

    reason = f"it averages over every axis, the batch axis included, so {_COUPLED}"
