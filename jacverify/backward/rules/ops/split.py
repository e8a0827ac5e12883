"""Rules of ``keras.ops.split``, ``array_split``, ``hsplit`` and ``dsplit``: calls with
several outputs (one upstream gradient per piece, see docs/writing_rules.md); the gradient is
the pieces' gradients concatenated back along the split axis. ``vsplit`` (and ``hsplit`` of
one-dimensional tensors) split along the first axis, which in a model is the batch axis: the
rule refuses them."""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes
from jacverify.keras_internals import ops_numpy as knp


class _BackwardSplitLike(BackwardOperation):
    """``g_x = concatenate([g_0, ..., g_n], axis)``: linear."""

    is_linear = True

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self._input_dims()[0]) + 1
        (self._axis,) = canonical_axes(self.split_axis(rank), rank,
                                       f"{type(layer).__name__} '{layer.name}'")

    def split_axis(self, rank: int) -> int:
        """The axis the operation splits a tensor of ``rank`` along (batch axis included)."""
        return self.layer.axis

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        pieces = list(gradient) if isinstance(gradient, (list, tuple)) else [gradient]
        if len(pieces) == 1:
            return pieces[0]
        return ops.concatenate(pieces, axis=self._axis)


@register_backward(knp.Split)
class BackwardSplitOp(_BackwardSplitLike):
    """``ops.split(x, indices_or_sections, axis)`` (not along the batch axis)."""


@register_backward(knp.ArraySplit)
class BackwardArraySplitOp(_BackwardSplitLike):
    """``ops.array_split(x, indices_or_sections, axis)`` (not along the batch axis)."""


@register_backward(knp.Hsplit)
class BackwardHsplitOp(_BackwardSplitLike):
    """``ops.hsplit(x, indices_or_sections)``: along axis 1 (axis 0 for one-dimensional
    tensors, the batch axis: refused)."""

    def split_axis(self, rank: int) -> int:
        return 0 if rank == 1 else 1


@register_backward(knp.Vsplit)
class BackwardVsplitOp(_BackwardSplitLike):
    """``ops.vsplit(x, indices_or_sections)``: along axis 0, the batch axis: refused."""

    def split_axis(self, rank: int) -> int:
        return 0


@register_backward(knp.Dsplit)
class BackwardDsplitOp(_BackwardSplitLike):
    """``ops.dsplit(x, indices_or_sections)``: along axis 2 (tensors of rank 3 or more)."""

    def split_axis(self, rank: int) -> int:
        return 2
