"""Operations no backward rule can express, refused with the reason when the backward model
is built: ``view`` (its result is not a differentiable function of the values), and the
operations that always mix the examples of a batch (``outer``, ``vdot``, ``corrcoef``,
``correlate`` flatten or correlate along the batch axis; ``linspace``, ``logspace``,
``geomspace`` of tensor endpoints put their samples before the batch axis on torch; ``psnr``
averages over every axis; the segment reductions reduce rows of the batch axis; ``scatter`` and
``scatter_update`` address elements by index tuples that include the batch coordinate)."""

from __future__ import annotations

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_core as kcore
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_nn as knn
from jacverify.keras_internals import ops_numpy as knp

_COUPLES = ("its Jacobian couples the examples of a batch, which a backward rule cannot "
            "express")

#: Refused operations, with the reason.
REFUSED_OPS = {
    knp.View: "it reinterprets the bits of a tensor as another dtype; the result is not a "
              "differentiable function of the values",
    knp.Outer: f"it flattens its inputs, the batch axis included: {_COUPLES}",
    knp.Vdot: f"it flattens its inputs, the batch axis included: {_COUPLES}",
    knp.Corrcoef: f"it correlates rows across the whole tensor: {_COUPLES}",
    knp.Correlate: f"it takes one-dimensional inputs, which in a model are the batch axis: "
                   f"{_COUPLES}",
    **dict.fromkeys(
        (knp.Linspace, knp.Logspace, knp.Geomspace),
        f"with tensor endpoints it puts the samples' axis first (the torch backend supports "
        f"axis=0 only), before the batch axis: {_COUPLES}",
    ),
    knn.PSNR: f"it averages over every axis, the batch axis included: {_COUPLES}",
    **dict.fromkeys(
        (kmath.SegmentSum, kmath.SegmentMax, kmath.SegmentMin, kmath.SegmentProd),
        f"it reduces the rows of the batch axis into segments: {_COUPLES}",
    ),
    **dict.fromkeys(
        (kcore.Scatter, kcore.ScatterUpdate),
        f"its indices address the batch axis too (full index tuples): {_COUPLES}",
    ),
}


@register_backward(*REFUSED_OPS)
class RefusedOperation(BackwardOperation):
    """A refused operation: building its rule raises ``ValueError`` with the reason."""

    #: How the coverage table (``jacverify.ops_coverage``) lists the operations of this rule.
    coverage = "refused"

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        reason = REFUSED_OPS.get(type(layer), "it has no backward rule")
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' cannot be differentiated by a backward "
            f"rule: {reason}. Keep it off the path from the model's inputs to its outputs, or "
            "write the computation with other operations."
        )
