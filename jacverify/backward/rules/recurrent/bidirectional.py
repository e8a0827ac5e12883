"""Rule for ``keras.layers.Bidirectional`` over a recurrent layer with one cell."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.recurrent.base_recurrent import (
    RecurrentPass,
    check_static_time_steps,
    repeat_mask_to,
    step_input_dims,
)

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


@register_backward(keras.layers.Bidirectional)
class BackwardBidirectional(BackwardNonLinearLayer):
    """Backward through time of both directions, each from its own layer (``forward_layer``
    and ``backward_layer``: SimpleRNN, LSTM, GRU or RNN with a known cell), their upstream
    gradients taken apart according to ``merge_mode``:

    * ``concat``: the two halves of ``g`` along the last axis;
    * ``sum`` / ``ave``: ``g`` (halved for ``ave``) to both;
    * ``mul``: ``g * y_backward`` and ``g * y_forward`` (the outputs are recomputed);
    * ``None``: the layer has two outputs, one gradient each.

    With ``return_sequences`` the backward direction's output is reversed in time before the
    merge, so its gradient is reversed back. With ``return_state`` the final states of the
    forward direction then of the backward one follow the output(s), one gradient each; with
    ``initial_state=`` the first half of the states starts the forward direction.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if layer.merge_mode not in MERGE_MODES:
            raise ValueError(
                f"{type(self).__name__}: unknown merge_mode {layer.merge_mode!r} of layer "
                f"'{layer.name}'; expected one of {MERGE_MODES}."
            )
        check_static_time_steps(layer, self.input_dim_wo_batch)
        dims = step_input_dims(self.input_dim_wo_batch)
        self._forward = RecurrentPass(layer.forward_layer, step_input_dims=dims)
        self._backward = RecurrentPass(layer.backward_layer, step_input_dims=dims)

    def _split_gradients(self, gradient):
        """``(d_forward_output, d_backward_output or None, d_forward_states,
        d_backward_states)``; ``d_backward_output`` is ``None`` unless merge_mode is None."""
        gradients = list(gradient) if isinstance(gradient, (list, tuple)) else [gradient]
        n_outputs = 2 if self.layer.merge_mode is None else 1
        outputs, states = gradients[:n_outputs], gradients[n_outputs:]
        n_forward = self._forward.n_states
        if not self.layer.return_state:
            states = [None] * (n_forward + self._backward.n_states)
        second = outputs[1] if n_outputs == 2 else None
        return outputs[0], second, states[:n_forward], states[n_forward:]

    def _merge_vjp(self, d_merged, y_forward, y_backward):
        """Gradients of the two directions' outputs (time aligned) from the merged one's."""
        mode = self.layer.merge_mode
        if mode == "concat":
            units = int(y_forward.shape[-1])
            return d_merged[..., :units], d_merged[..., units:]
        if mode == "sum":
            return d_merged, d_merged
        if mode == "ave":
            half = d_merged / 2.0
            return half, half
        return d_merged * y_backward, d_merged * y_forward  # mul

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = list(input) if isinstance(input, (list, tuple)) else [input]
        d_output, d_second, d_states_f, d_states_b = self._split_gradients(gradient)
        sequences = ops.cast(inputs[0], d_output.dtype)
        initial = inputs[1:]
        half = len(initial) // 2
        mask = repeat_mask_to(mask, sequences)
        run_f = self._forward.forward(sequences, initial[:half], mask)
        run_b = self._backward.forward(sequences, initial[half:], mask)
        reversed_in_time = bool(self.layer.return_sequences)
        y_backward = run_b.outputs
        if reversed_in_time:
            y_backward = ops.flip(y_backward, axis=1)
        if self.layer.merge_mode is None:
            d_f, d_b = d_output, d_second
        else:
            d_f, d_b = self._merge_vjp(d_output, run_f.outputs, y_backward)
        if reversed_in_time:
            d_b = ops.flip(d_b, axis=1)
        d_seq_f, d_init_f = self._forward.backward(run_f, d_f, d_states_f)
        d_seq_b, d_init_b = self._backward.backward(run_b, d_b, d_states_b)
        d_sequences = d_seq_f + d_seq_b
        if not initial:
            return d_sequences
        return [d_sequences, *d_init_f, *d_init_b]
