"""Cases for the recurrent layers: the registered rules (which must pass), and subclasses of
them with one bug each (a dropped forget-gate factor, a transposed recurrent kernel, time
reversed, masked steps that leak gradient, swapped Bidirectional halves, ...).

``check_layer`` calls a layer without a Keras mask, so the masked cases use
:class:`PositionMaskedLSTM`, an LSTM that masks a fixed time step of every sequence itself.
"""

from __future__ import annotations

import keras
from keras import ops

from checks.case import Case, correct, wrong
from jacverify.backward.rules.recurrent.base_recurrent import repeat_mask_to
from jacverify.backward.rules.recurrent.bidirectional import BackwardBidirectional
from jacverify.backward.rules.recurrent.cells import GRUCellMath, LSTMCellMath, SimpleRNNCellMath
from jacverify.backward.rules.recurrent.conv_lstm import BackwardConvLSTM, ConvLSTMCellMath
from jacverify.backward.rules.recurrent.gru import BackwardGRU
from jacverify.backward.rules.recurrent.lstm import BackwardLSTM
from jacverify.backward.rules.recurrent.simple_rnn import BackwardSimpleRNN
from jacverify.backward.rules.recurrent.time_distributed import BackwardTimeDistributed

L = keras.layers


# --------------------------------------------------------------------- a masked LSTM
@keras.saving.register_keras_serializable(package="jacverify_checks")
class PositionMaskedLSTM(L.LSTM):
    """An LSTM whose time step ``masked_step`` is masked in every sequence (the states carry
    through it, its input is ignored)."""

    masked_step = 1

    def position_mask(self, sequences):
        steps = int(sequences.shape[1])
        keep = ops.not_equal(ops.arange(steps), self.masked_step)
        return ops.broadcast_to(keep[None, :], (ops.shape(sequences)[0], steps))

    def call(self, sequences, initial_state=None, mask=None, training=False):
        return super().call(sequences, initial_state=initial_state,
                            mask=self.position_mask(sequences), training=training)


class BackwardPositionMaskedLSTM(BackwardLSTM):
    """The registered LSTM rule given the layer's own mask."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return super().call_on_reshaped_gradient(
            gradient, input, mask=self.layer.position_mask(input))


class MaskedStepsLeak(BackwardPositionMaskedLSTM):
    """The forward pass masked, the backward pass not: a masked step's input gets gradient
    and the states' gradient goes through the cell there instead of around it."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        sequences = ops.cast(input, gradient.dtype)
        run = self._pass
        forward = run.forward(sequences, None, repeat_mask_to(
            self.layer.position_mask(input), sequences))
        forward.masks = [None] * len(forward.masks)
        d_sequences, _ = run.backward(forward, gradient, [None, None])
        return d_sequences


class MaskedOutputNotCarried(BackwardPositionMaskedLSTM):
    """At a masked step the output repeats the previous one, but the rule drops the
    gradient that reaches the previous output that way (return_sequences)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        keep = ops.cast(self.layer.position_mask(input), gradient.dtype)[..., None]
        return super().call_on_reshaped_gradient(gradient * keep, input)


# ------------------------------------------------------------------- wrong cell steps
def _lstm_step_vjp(math, d_output, d_states, cache, *, forget_factor=True,
                   forget_derivative=True):
    """The LSTM step's vjp, with one of its factors optionally left out."""
    h, c, z_i, z_f, z_c, z_o, i, f, candidate, o, new_c, activated_c = cache
    d_h = d_output + d_states[0]
    d_c = d_states[1] + math._activation_vjp(d_h * o, new_c)
    d_f = d_c * c
    d_z = ops.concatenate([
        math._gate_vjp(d_c * candidate, z_i),
        math._gate_vjp(d_f, z_f) if forget_derivative else d_f,
        math._activation_vjp(d_c * i, z_c),
        math._gate_vjp(d_h * activated_c, z_o),
    ], axis=-1)
    recurrent = ops.cast(math.cell.recurrent_kernel, d_z.dtype)
    d_h_previous = ops.einsum("...o,io->...i", d_z, recurrent)
    return d_z, [d_h_previous, d_c * f if forget_factor else d_c]


class _LSTMForgetFactorDropped(LSTMCellMath):
    def step_vjp(self, d_output, d_states, cache):
        return _lstm_step_vjp(self, d_output, d_states, cache, forget_factor=False)


class LSTMForgetFactorDropped(BackwardLSTM):
    """The carry's gradient passes to the previous step without the forget gate's factor."""

    def _cell_math(self, layer):
        return _LSTMForgetFactorDropped(layer.cell)


class _LSTMForgetDerivativeDropped(LSTMCellMath):
    def step_vjp(self, d_output, d_states, cache):
        return _lstm_step_vjp(self, d_output, d_states, cache, forget_derivative=False)


class LSTMForgetDerivativeDropped(BackwardLSTM):
    """``d z_f = d c * c`` without the recurrent activation's derivative."""

    def _cell_math(self, layer):
        return _LSTMForgetDerivativeDropped(layer.cell)


class _SimpleRNNTransposed(SimpleRNNCellMath):
    def step_vjp(self, d_output, d_states, cache):
        d_pre = self._activation_vjp(d_output + d_states[0], cache)
        recurrent = ops.cast(self.cell.recurrent_kernel, d_pre.dtype)
        return d_pre, [ops.einsum("...o,oi->...i", d_pre, recurrent)]


class SimpleRNNRecurrentTransposed(BackwardSimpleRNN):
    """``d h = d a U`` instead of ``d a U^T`` (the recurrent kernel is square)."""

    def _cell_math(self, layer):
        return _SimpleRNNTransposed(layer.cell)


class _GRUResetProductDropped(GRUCellMath):
    """reset_after=False: the path ``h -> r * h -> U_h`` through ``r * h`` dropped."""

    def step_vjp(self, d_output, d_states, cache):
        h, a_z, a_r, a_h, z, r, candidate, _ = cache
        n = self.units
        kernel = ops.cast(self.cell.recurrent_kernel, h.dtype)
        d_new = d_output + d_states[0]
        d_a_h = self._activation_vjp(d_new * (1.0 - z), a_h)
        d_a_z = self._gate_vjp(d_new * (h - candidate), a_z)
        d_reset_h = ops.einsum("...o,io->...i", d_a_h, kernel[:, 2 * n:])
        d_a_r = self._gate_vjp(d_reset_h * h, a_r)
        d_inner = ops.concatenate([d_a_z, d_a_r], axis=-1)
        d_h = d_new * z + ops.einsum("...o,io->...i", d_inner, kernel[:, : 2 * n])
        return ops.concatenate([d_a_z, d_a_r, d_a_h], axis=-1), [d_h]


class GRUResetProductDropped(BackwardGRU):
    """GRU(reset_after=False): the term ``(d h~ U_h^T) * r`` of ``d h`` is missing."""

    def _cell_math(self, layer):
        return _GRUResetProductDropped(layer.cell)


class GRUTimeReversed(BackwardGRU):
    """The input's gradient left in processing order: right for ``go_backwards=False``,
    reversed in time for ``go_backwards=True``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        result = super().call_on_reshaped_gradient(gradient, input, mask=mask)
        return ops.flip(result, axis=1) if self.layer.go_backwards else result


class LSTMScaled(BackwardLSTM):
    """Right up to a factor ``1 + 1e-3``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return super().call_on_reshaped_gradient(gradient, input, mask=mask) * 1.001


class LSTMExtraAxesMixed(BackwardLSTM):
    """Repeats the input (tiled) instead of each example in turn when the gradient carries
    extra Jacobian axes: the rows meet the wrong example."""

    def call(self, inputs, training=None, mask=None):
        gradient, layer_input = inputs
        extra = tuple(gradient.shape[1:-len(self.output_dim_wo_batch)])
        if not extra:
            return super().call(inputs, training=training, mask=mask)
        n = 1
        for d in extra:
            n *= int(d)
        folded = ops.reshape(gradient, (-1, *gradient.shape[1 + len(extra):]))
        tiled = ops.tile(layer_input, (n, 1, 1))
        result = self.call_on_reshaped_gradient(folded, tiled)
        return ops.reshape(result, (-1, *extra, *result.shape[1:]))


# ------------------------------------------------------------------- wrappers and convs
class BidirectionalHalvesSwapped(BackwardBidirectional):
    """merge_mode='concat': the forward direction gets the backward half of ``g``."""

    def _merge_vjp(self, d_merged, y_forward, y_backward):
        first, second = super()._merge_vjp(d_merged, y_forward, y_backward)
        if self.layer.merge_mode == "concat":
            return second, first
        return first, second


class BidirectionalNotReflipped(BackwardBidirectional):
    """return_sequences: the backward direction's gradient is not reversed back in time."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        forward = self._forward.forward(ops.cast(input, gradient.dtype))
        backward = self._backward.forward(ops.cast(input, gradient.dtype))
        d_f, d_b = self._merge_vjp(gradient, forward.outputs, backward.outputs)
        d_seq_f, _ = self._forward.backward(forward, d_f, [None] * self._forward.n_states)
        d_seq_b, _ = self._backward.backward(backward, d_b, [None] * self._backward.n_states)
        return d_seq_f + d_seq_b


class TimeDistributedFoldOrder(BackwardTimeDistributed):
    """Folds the gradient time-major and the input batch-major: steps meet other examples'
    inputs (only visible with a batch and several steps)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        batch, steps = ops.shape(gradient)[0], ops.shape(gradient)[1]
        folded = ops.reshape(ops.swapaxes(gradient, 0, 1), (-1, *ops.shape(gradient)[2:]))
        folded_input = ops.reshape(input, (-1, *ops.shape(input)[2:]))
        result = self._inner_rule.call_on_reshaped_gradient(folded, input=folded_input)
        result = ops.reshape(result, (steps, batch, *ops.shape(result)[1:]))
        return ops.swapaxes(result, 0, 1)


class _ConvLSTMRecurrentNotFlipped(ConvLSTMCellMath):
    def _recurrent_vjp(self, d_z, h):
        # A correlation with the channel-swapped kernel, not flipped in space: the transposed
        # convolution without its flip.
        kernel = ops.cast(self.cell.recurrent_kernel, d_z.dtype)
        swapped = ops.swapaxes(kernel, -1, -2)
        return self._conv(d_z, swapped, recurrent=True)


class ConvLSTMRecurrentNotFlipped(BackwardConvLSTM):
    """The hidden state's gradient through the recurrent kernel not flipped in space."""

    def _cell_math(self, layer):
        return _ConvLSTMRecurrentNotFlipped(layer.cell)


# ------------------------------------------------------------------------------ layers
def _lstm():
    return L.LSTM(3)


def _lstm_sequences():
    return L.LSTM(3, return_sequences=True)


def _masked_lstm():
    return PositionMaskedLSTM(2, return_sequences=True)


def _masked_lstm_last():
    return PositionMaskedLSTM(2)


def _gru_reset_before():
    return L.GRU(3, reset_after=False)


def _gru_backwards():
    return L.GRU(2, go_backwards=True, return_sequences=True)


def _simple_rnn():
    return L.SimpleRNN(3)


def _bidirectional_concat():
    return L.Bidirectional(L.LSTM(2, return_sequences=True))


def _bidirectional_sum():
    return L.Bidirectional(L.GRU(2, return_sequences=True), merge_mode="sum")


def _time_distributed():
    return L.TimeDistributed(L.Dense(2, activation="tanh"))


def _conv_lstm1d():
    return L.ConvLSTM1D(2, 2, padding="same")


SEQUENCE = (4, 2)

CASES: list[Case] = [
    # ---------------------------------------------------------------- correct rules
    correct("lstm_correct", _lstm, SEQUENCE, BackwardLSTM, "registered rule, 3 units"),
    correct("gru_reset_before_correct", _gru_reset_before, SEQUENCE, BackwardGRU,
            "registered rule, reset_after=False"),
    correct("gru_backwards_correct", _gru_backwards, SEQUENCE, BackwardGRU,
            "registered rule, go_backwards, return_sequences"),
    correct("simple_rnn_correct", _simple_rnn, SEQUENCE, BackwardSimpleRNN, "registered rule"),
    correct("masked_lstm_correct", _masked_lstm, SEQUENCE, BackwardPositionMaskedLSTM,
            "registered LSTM rule given the layer's mask (step 1 masked)"),
    correct("bidirectional_correct", _bidirectional_concat, SEQUENCE, BackwardBidirectional,
            "registered rule, concat, return_sequences"),
    correct("time_distributed_correct", _time_distributed, SEQUENCE, BackwardTimeDistributed,
            "registered rule over Dense(tanh)"),
    correct("conv_lstm1d_correct", _conv_lstm1d, (3, 4, 2), BackwardConvLSTM,
            "registered rule, 'same' padding"),
    # ------------------------------------------------------------------ wrong rules
    wrong("lstm_forget_factor_dropped", _lstm, SEQUENCE, LSTMForgetFactorDropped, "fail",
          "chain_rule", "the carry's gradient reaches the previous step without the factor f"),
    wrong("lstm_forget_derivative_dropped", _lstm, SEQUENCE, LSTMForgetDerivativeDropped,
          "fail", "chain_rule", "the forget gate's sigmoid derivative is dropped"),
    wrong("simple_rnn_recurrent_transposed", _simple_rnn, SEQUENCE,
          SimpleRNNRecurrentTransposed, "fail", "transposed",
          "d h = d a U instead of d a U^T (U is 3 x 3)"),
    wrong("gru_reset_product_dropped", _gru_reset_before, SEQUENCE, GRUResetProductDropped,
          "fail", "chain_rule", "reset_after=False: the (d h~ U_h^T) * r term of d h missing"),
    wrong("gru_time_reversed", _gru_backwards, SEQUENCE, GRUTimeReversed, "fail",
          "configuration", "go_backwards: the input's gradient left reversed in time"),
    wrong("lstm_masked_steps_leak", _masked_lstm, SEQUENCE, MaskedStepsLeak, "fail",
          "mask_outside", "masked steps get gradient; the states' gradient crosses the cell"),
    wrong("lstm_masked_steps_leak_last", _masked_lstm_last, SEQUENCE, MaskedStepsLeak, "fail",
          "mask_outside", "as lstm_masked_steps_leak, last output only"),
    wrong("lstm_masked_output_not_carried", _masked_lstm, SEQUENCE, MaskedOutputNotCarried,
          "fail", "mask_outside", "a masked step's output gradient does not reach the output "
          "it repeats"),
    wrong("lstm_scaled", _lstm_sequences, SEQUENCE, LSTMScaled, "fail", "scale",
          "right up to a factor 1 + 1e-3"),
    wrong("lstm_extra_axes_mixed", _lstm, SEQUENCE, LSTMExtraAxesMixed, "fail", "extra_axes",
          "extra Jacobian axes: the input tiled instead of repeated per example"),
    wrong("bidirectional_halves_swapped", _bidirectional_concat, SEQUENCE,
          BidirectionalHalvesSwapped, "fail", "configuration",
          "concat: each direction gets the other's half of g"),
    wrong("bidirectional_not_reflipped", _bidirectional_sum, SEQUENCE,
          BidirectionalNotReflipped, "fail", "configuration",
          "return_sequences: the backward direction's gradient not reversed back in time"),
    wrong("time_distributed_fold_order", _time_distributed, SEQUENCE, TimeDistributedFoldOrder,
          "fail", "batch", "time-major gradient against a batch-major input"),
    wrong("conv_lstm1d_recurrent_not_flipped", _conv_lstm1d, (3, 4, 2),
          ConvLSTMRecurrentNotFlipped, "fail", "conv_kernel",
          "the hidden state's gradient through the recurrent kernel not flipped in space"),
]
