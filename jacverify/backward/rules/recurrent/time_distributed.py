"""Rule for ``keras.layers.TimeDistributed`` over any layer that has a rule."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardLayer
from jacverify.backward.registry import (
    MissingBackwardRuleError,
    get_backward_rule,
    register_backward,
)
from jacverify.keras_internals import private_member


@register_backward(keras.layers.TimeDistributed)
class BackwardTimeDistributed(BackwardLayer):
    """The inner layer's registered rule applied to every time step at once, the time axis
    folded into the batch axis (``TimeDistributed`` applies the inner layer to each step on
    its own). Linear when the inner rule is; the Keras mask reaches the inner rule, folded the
    same way, when the inner layer takes one."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        inner = layer.layer
        try:
            rule_class = get_backward_rule(inner)
        except MissingBackwardRuleError as error:
            raise MissingBackwardRuleError(
                f"{error} (the layer wrapped by TimeDistributed '{layer.name}')"
            ) from None
        rule = rule_class(
            layer=inner,
            input_dim_wo_batch=list(self.input_dim_wo_batch[1:]),
            output_dim_wo_batch=list(self.output_dim_wo_batch[1:]),
        )
        # A helper, not a sublayer: the inner layer is saved once, as part of the wrapper.
        object.__setattr__(self, "_inner_rule", rule)
        self.is_linear = bool(rule.is_linear)
        self._inner_takes_mask = bool(private_member(inner, "call_has_mask_arg", False))

    @staticmethod
    def _fold(tensor):
        return ops.reshape(tensor, (-1, *ops.shape(tensor)[2:]))

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        batch, steps = ops.shape(gradient)[0], ops.shape(gradient)[1]
        folded_input = None if input is None else self._fold(input)
        folded_mask = None
        if mask is not None and self._inner_takes_mask:
            if int(ops.shape(mask)[0]) != int(batch):  # extra Jacobian axes folded in
                mask = ops.repeat(mask, int(batch) // int(ops.shape(mask)[0]), axis=0)
            folded_mask = self._fold(mask)
        result = self._inner_rule.call_on_reshaped_gradient(
            self._fold(gradient), input=folded_input, training=training, mask=folded_mask
        )
        return ops.reshape(result, (batch, steps, *ops.shape(result)[1:]))

