"""Rules of the ``keras.ops`` functions that move values without changing them:
``depth_to_space`` / ``space_to_depth`` (inverse permutations of each other), ``unfold``
(im2col) and ``fold`` (col2im, which sums overlapping blocks), and einops' ``rearrange``
(the rearrangement back, by the reversed pattern).

All are linear. The adjoint of a permutation is its inverse, so each of the first two is the
other's rule; ``fold`` is the adjoint of ``unfold`` and ``unfold`` the adjoint of ``fold``
(each block position is read once by one and written once by the other).
"""

from __future__ import annotations

import re

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._arguments import data_format_of
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_einops as keinops
from jacverify.keras_internals import ops_nn as knn


class _BackwardRearrangementOp(BackwardOperation):
    """Base of the rules of rearrangements (linear: their Jacobian is a fixed permutation or
    its transpose)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = self._dims_known()


@register_backward(knn.DepthToSpace)
class BackwardDepthToSpaceOp(_BackwardRearrangementOp):
    """``ops.depth_to_space``: ``space_to_depth`` of the gradient."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if int(self.layer.block_size) == 1:  # the identity
            return gradient
        return ops.space_to_depth(gradient, self.layer.block_size,
                                  data_format=data_format_of(self.layer))


@register_backward(knn.SpaceToDepth)
class BackwardSpaceToDepthOp(_BackwardRearrangementOp):
    """``ops.space_to_depth``: ``depth_to_space`` of the gradient."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if int(self.layer.block_size) == 1:  # the identity
            return gradient
        return ops.depth_to_space(gradient, self.layer.block_size,
                                  data_format=data_format_of(self.layer))


@register_backward(knn.Unfold)
class BackwardUnfoldOp(_BackwardRearrangementOp):
    """``ops.unfold(x, kernel_size, dilation, padding, stride)`` of ``x`` (N, C, H, W):
    ``fold`` of the gradient back to (H, W)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        op = self.layer
        _, height, width = self._runtime_dims(input)[0]
        return ops.fold(gradient, output_size=(height, width), kernel_size=op.kernel_size,
                        dilation=op.dilation, padding=op.padding, stride=op.stride)


@register_backward(knn.Fold)
class BackwardFoldOp(_BackwardRearrangementOp):
    """``ops.fold(x, output_size, kernel_size, ...)``: ``unfold`` of the gradient."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        op = self.layer
        return ops.unfold(gradient, kernel_size=op.kernel_size, dilation=op.dilation,
                          padding=op.padding, stride=op.stride)


def _axes(side: str) -> list[str]:
    return re.findall(r"\w+|\(.*?\)", side)


@register_backward(keinops.Rearrange)
class BackwardRearrangeOp(BackwardOperation):
    """``ops.rearrange(x, "lhs -> rhs", **axes_lengths)``: ``rearrange(g, "rhs -> lhs")``
    with every axis's size (read from the input as Keras reads them). The first axis (the
    batch axis) must stay first, ungrouped."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        args = list(self.call_args)
        self._pattern = args[1] if len(args) > 1 else self.call_kwargs["pattern"]
        self._lengths = {k: v for k, v in self.call_kwargs.items() if k != "pattern"}
        lhs, rhs = re.split(r"\s*->\s*", self._pattern.strip())
        self._lhs, self._rhs = lhs, rhs
        first_in, first_out = _axes(lhs)[0], _axes(rhs)[0]
        if first_in != first_out or "(" in first_in:
            raise ValueError(
                f"Rearrange '{layer.name}': '{self._pattern}' does not keep the first axis "
                "(the batch axis) first and alone: its Jacobian couples the examples of a "
                "batch, which a backward rule cannot express."
            )
        self.is_linear = False

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        sizes = dict(self._lengths)
        for axis, dim in zip(_axes(self._lhs), tuple(input.shape), strict=True):
            names = re.findall(r"\w+", axis)
            if len(names) == 1:
                sizes[names[0]] = int(dim)
                continue
            known = [n for n in names if n in sizes]
            missing = [n for n in names if n not in sizes]
            if missing:
                product = 1
                for n in known:
                    product *= int(sizes[n])
                sizes[missing[0]] = int(dim) // product
        first = re.findall(r"\w+", _axes(self._lhs)[0])[0]
        sizes.pop(first, None)  # the batch size follows the gradient (Jacobian rows folded)
        return ops.rearrange(gradient, f"{self._rhs} -> {self._lhs}", **sizes)
