"""Cases for calls with several outputs: a custom layer returning two tensors, ``keras.ops``
``split``/``unstack``/``top_k`` and an LSTM with ``return_state``. Their rules get one upstream
gradient per output; the wrong ones drop an output's gradient, give it to another output, or
route ``top_k``'s gradient to every tied position.

``check_layer`` packs a call's outputs into one (:class:`jacverify.check.adapters.
OutputPacking`), so these cases are judged like any other, and the reason names the output
whose gradient is wrong.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops
from keras.src.ops import core as kcore
from keras.src.ops import math as kmath
from keras.src.ops import numpy as knp

from checks.case import Case, correct, wrong
from jacverify import BackwardNonLinearLayer
from jacverify.backward.rules.ops.split import BackwardSplitOp
from jacverify.backward.rules.ops.top_k import BackwardTopKOp
from jacverify.backward.rules.ops.unstack import BackwardUnstackOp
from jacverify.backward.rules.recurrent.lstm import BackwardLSTM
from jacverify.check.layer_configs._common import finish, packed

L = keras.layers


# --------------------------------------------------------------- a custom two-output layer
@keras.saving.register_keras_serializable(package="jacverify_checks")
class SinAndHalfSquare(keras.layers.Layer):
    """Returns ``(sin(x), x^2 / 2)``."""

    def call(self, inputs):
        return ops.sin(inputs), 0.5 * ops.square(inputs)


class BackwardSinAndHalfSquare(BackwardNonLinearLayer):
    """``g_sin cos(x) + g_square x``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_sin, g_square = gradient
        return g_sin * ops.cos(input) + g_square * input


class SinAndHalfSquareSecondDropped(BackwardNonLinearLayer):
    """Forgets the second output: ``g_sin cos(x)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_sin, _ = gradient
        return g_sin * ops.cos(input)


class SinAndHalfSquareSwapped(BackwardNonLinearLayer):
    """Each output's derivative applied to the other output's gradient."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_sin, g_square = gradient
        return g_square * ops.cos(input) + g_sin * input


# -------------------------------------------------------------------- native, one bug each
class SplitSecondPieceDropped(BackwardSplitOp):
    """The second piece's gradient replaced by zeros."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        pieces = list(gradient)
        pieces[1] = ops.zeros_like(pieces[1])
        return super().call_on_reshaped_gradient(pieces, input)


class UnstackSlicesSwapped(BackwardUnstackOp):
    """The first two slices' gradients swapped (same shapes: only the values tell)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        slices = list(gradient)
        slices[0], slices[1] = slices[1], slices[0]
        return super().call_on_reshaped_gradient(slices, input)


class TopKTiesAll(BackwardTopKOp):
    """Each value's gradient goes to every position equal to it: at a tie the tied positions
    together get it twice (not a subgradient)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_values = gradient[0]
        values, _ = ops.top_k(input, self.layer.k, sorted=self.layer.sorted)
        hits = ops.equal(ops.expand_dims(input, -2), ops.expand_dims(values, -1))
        return ops.sum(ops.expand_dims(g_values, -1) * ops.cast(hits, g_values.dtype), axis=-2)


class LSTMFinalCellStateDropped(BackwardLSTM):
    """With ``return_state``: ignores the gradient of the final cell state (the third
    output)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        output, hidden, cell = gradient
        return super().call_on_reshaped_gradient(
            [output, hidden, ops.zeros_like(cell)], input, training, mask)


# ------------------------------------------------------------------------ configurations
def _custom():
    return SinAndHalfSquare()


def _packed(make, shape):
    return lambda: packed(make(), shape, int(np.random.randint(2**31)))[0]


def _lstm():
    return finish(L.LSTM(3, return_state=True), (3, 2), int(np.random.randint(2**31)))[0]


_SPLIT = _packed(lambda: knp.Split(2, axis=1), (4,))
_UNSTACK = _packed(lambda: kcore.Unstack(axis=1), (3, 2))
_TOP_K = _packed(lambda: kmath.TopK(2), (5,))

CASES: list[Case] = [
    correct("sin_and_half_square_correct", _custom, (4,), BackwardSinAndHalfSquare,
            "g_sin cos(x) + g_square x"),
    wrong("sin_and_half_square_second_dropped", _custom, (4,), SinAndHalfSquareSecondDropped,
          "fail", "several_outputs", "forgets the second output's gradient"),
    wrong("sin_and_half_square_swapped", _custom, (4,), SinAndHalfSquareSwapped, "fail",
          "several_outputs", "each output's derivative applied to the other's gradient"),
    correct("split_op_correct", _SPLIT, (4,), BackwardSplitOp,
            "keras.ops.split: the pieces' gradients concatenated (registered rule)"),
    wrong("split_op_second_piece_dropped", _SPLIT, (4,), SplitSecondPieceDropped, "fail",
          "several_outputs", "keras.ops.split: the second piece's gradient dropped"),
    wrong("unstack_op_slices_swapped", _UNSTACK, (3, 2), UnstackSlicesSwapped, "fail",
          "several_outputs", "keras.ops.unstack: the first two slices' gradients swapped"),
    correct("top_k_op_correct", _TOP_K, (5,), BackwardTopKOp,
            "keras.ops.top_k: each value's gradient to the position it was taken from"),
    wrong("top_k_op_ties_all", _TOP_K, (5,), TopKTiesAll, "boundary", "tie",
          "keras.ops.top_k: every tied position gets the value's gradient"),
    correct("lstm_return_state_correct", _lstm, (3, 2), BackwardLSTM,
            "LSTM(return_state=True): the registered rule, three upstream gradients"),
    wrong("lstm_return_state_cell_dropped", _lstm, (3, 2), LSTMFinalCellStateDropped, "fail",
          "several_outputs", "LSTM(return_state=True): the final cell state's gradient dropped"),
]
