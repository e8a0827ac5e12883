"""Operations no backward rule can express, refused with the reason when the backward model
is built: ``view`` (its result is not a differentiable function of the values), and the
operations that always mix the examples of a batch (``outer``, ``vdot``, ``corrcoef``,
``correlate`` flatten or correlate along the batch axis; ``linspace``, ``logspace``,
``geomspace`` of tensor endpoints put their samples before the batch axis on torch; ``psnr``
averages over every axis; the segment reductions reduce rows of the batch axis; ``scatter`` and
``scatter_update`` address elements by index tuples that include the batch coordinate;
``meshgrid`` takes one-dimensional tensors, ``lstsq`` a two-dimensional matrix, and
``map_coordinates`` coordinates for every axis: in a model each of these is the batch axis),
the operations on complex tensors (``eig``, ``polar``, ``view_as_complex``, ``view_as_real``:
a backward model carries real gradients), and ``elastic_transform`` (its displacement field
is drawn anew at every call)."""

from __future__ import annotations

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_core as kcore
from jacverify.keras_internals import ops_image as kimage
from jacverify.keras_internals import ops_linalg as klinalg
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_nn as knn
from jacverify.keras_internals import ops_numpy as knp

_COUPLES = ("its Jacobian couples the examples of a batch, which a backward rule cannot "
            "express")
_COMPLEX = ("it {} complex tensors; a backward model carries real gradients (split complex "
            "values into real and imaginary parts, as keras.ops.fft does)")

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
    knp.Meshgrid: f"the torch backend takes one-dimensional tensors only, which in a model "
                  f"are the batch axis: {_COUPLES}",
    klinalg.Lstsq: f"its matrix a must be two-dimensional, so the rows of a and b are the "
                   f"batch axis: {_COUPLES}",
    kimage.MapCoordinates: f"its coordinates address every axis of the input, the batch axis "
                           f"included: {_COUPLES}",
    klinalg.Eig: _COMPLEX.format("returns") + "; at repeated eigenvalues no derivative "
                 "exists either (use eigh for symmetric matrices)",
    knn.Polar: _COMPLEX.format("returns"),
    kmath.ViewAsComplex: _COMPLEX.format("returns"),
    kmath.ViewAsReal: _COMPLEX.format("takes"),
    kimage.ElasticTransform: "its displacement field is drawn from the global random "
                             "generator at every call (the torch backend uses the seed only "
                             "on the meta device), so no rule can know the field the forward "
                             "call used",
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
