"""Rules of the pooling functions of ``keras.ops``: ``max_pool``, ``average_pool``,
``adaptive_max_pool`` and ``adaptive_average_pool``.

Each function computes exactly what the pooling layer of the same kind computes (the layers
call it), so each rule builds that layer from the function's arguments and applies the
layer's rule (:mod:`jacverify.backward.rules.pooling`): same routing of maxima (the first on
ties, torch's convention), same divisors at "same" padding.
"""

from __future__ import annotations

import keras

from jacverify.backward.registry import get_backward_rule, register_backward
from jacverify.backward.rules.ops._arguments import data_format_of, per_axis
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_nn as knn


class _BackwardViaLayer(BackwardOperation):
    """A rule that applies the rule of an equivalent Keras layer (``equivalent_layer``)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        twin = self.equivalent_layer(len(self._input_dims()[0]) - 1)
        rule_class = get_backward_rule(twin)
        self._twin_rule = rule_class(
            layer=twin,
            input_dim_wo_batch=self.input_dim_wo_batch,
            output_dim_wo_batch=self.output_dim_wo_batch,
            dtype=self.dtype_policy,
        )
        self.is_linear = self._twin_rule.is_linear

    def equivalent_layer(self, n_spatial: int) -> keras.layers.Layer:
        """The Keras layer computing what the operation computes on ``n_spatial`` axes."""
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return self._twin_rule.call_on_reshaped_gradient(gradient, input=input)


_MAX = {1: keras.layers.MaxPooling1D, 2: keras.layers.MaxPooling2D,
        3: keras.layers.MaxPooling3D}
_AVERAGE = {1: keras.layers.AveragePooling1D, 2: keras.layers.AveragePooling2D,
            3: keras.layers.AveragePooling3D}
_ADAPTIVE_MAX = {1: keras.layers.AdaptiveMaxPooling1D, 2: keras.layers.AdaptiveMaxPooling2D,
                 3: keras.layers.AdaptiveMaxPooling3D}
_ADAPTIVE_AVERAGE = {1: keras.layers.AdaptiveAveragePooling1D,
                     2: keras.layers.AdaptiveAveragePooling2D,
                     3: keras.layers.AdaptiveAveragePooling3D}


class _BackwardWindowPoolOp(_BackwardViaLayer):
    classes: dict = {}

    def equivalent_layer(self, n_spatial):
        op = self.layer
        pool_size = per_axis(op.pool_size, n_spatial)
        strides = pool_size if op.strides is None else per_axis(op.strides, n_spatial)
        return self.classes[n_spatial](
            pool_size=pool_size, strides=strides, padding=op.padding,
            data_format=data_format_of(op),
        )


@register_backward(knn.MaxPool)
class BackwardMaxPoolOp(_BackwardWindowPoolOp):
    """``ops.max_pool``: each window's gradient to its maximum (the first on ties)."""

    classes = _MAX


@register_backward(knn.AveragePool)
class BackwardAveragePoolOp(_BackwardWindowPoolOp):
    """``ops.average_pool``: each window's gradient spread evenly over the window."""

    classes = _AVERAGE


class _BackwardAdaptivePoolOp(_BackwardViaLayer):
    classes: dict = {}

    def equivalent_layer(self, n_spatial):
        op = self.layer
        return self.classes[n_spatial](
            output_size=per_axis(op.output_size, n_spatial), data_format=data_format_of(op)
        )


@register_backward(knn.AdaptiveMaxPool)
class BackwardAdaptiveMaxPoolOp(_BackwardAdaptivePoolOp):
    """``ops.adaptive_max_pool``: each cell's gradient to its maxima (shared on ties)."""

    classes = _ADAPTIVE_MAX


@register_backward(knn.AdaptiveAveragePool)
class BackwardAdaptiveAveragePoolOp(_BackwardAdaptivePoolOp):
    """``ops.adaptive_average_pool``: each cell's gradient spread evenly over its box."""

    classes = _ADAPTIVE_AVERAGE
