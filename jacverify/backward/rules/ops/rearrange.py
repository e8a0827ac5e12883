"""Rules of the ``keras.ops`` functions that move values without changing them:
``depth_to_space`` / ``space_to_depth`` (inverse permutations of each other), ``unfold``
(im2col) and ``fold`` (col2im, which sums overlapping blocks).

All are linear. The adjoint of a permutation is its inverse, so each of the first two is the
other's rule; ``fold`` is the adjoint of ``unfold`` and ``unfold`` the adjoint of ``fold``
(each block position is read once by one and written once by the other).
"""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._arguments import data_format_of
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_nn as knn


class _BackwardLinearOp(BackwardOperation):
    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = self._dims_known()


@register_backward(knn.DepthToSpace)
class BackwardDepthToSpaceOp(_BackwardLinearOp):
    """``ops.depth_to_space``: ``space_to_depth`` of the gradient."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if int(self.layer.block_size) == 1:  # the identity
            return gradient
        return ops.space_to_depth(gradient, self.layer.block_size,
                                  data_format=data_format_of(self.layer))


@register_backward(knn.SpaceToDepth)
class BackwardSpaceToDepthOp(_BackwardLinearOp):
    """``ops.space_to_depth``: ``depth_to_space`` of the gradient."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if int(self.layer.block_size) == 1:  # the identity
            return gradient
        return ops.depth_to_space(gradient, self.layer.block_size,
                                  data_format=data_format_of(self.layer))


@register_backward(knn.Unfold)
class BackwardUnfoldOp(_BackwardLinearOp):
    """``ops.unfold(x, kernel_size, dilation, padding, stride)`` of ``x`` (N, C, H, W):
    ``fold`` of the gradient back to (H, W)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        op = self.layer
        _, height, width = self._runtime_dims(input)[0]
        return ops.fold(gradient, output_size=(height, width), kernel_size=op.kernel_size,
                        dilation=op.dilation, padding=op.padding, stride=op.stride)


@register_backward(knn.Fold)
class BackwardFoldOp(_BackwardLinearOp):
    """``ops.fold(x, output_size, kernel_size, ...)``: ``unfold`` of the gradient."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        op = self.layer
        return ops.unfold(gradient, kernel_size=op.kernel_size, dilation=op.dilation,
                          padding=op.padding, stride=op.stride)
