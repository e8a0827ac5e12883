"""Rule for ``keras.layers.RNN`` with Keras' own cells."""

from __future__ import annotations

import keras

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.recurrent.base_recurrent import BackwardRecurrent


@register_backward(keras.layers.RNN)
class BackwardRNN(BackwardRecurrent):
    """Backward through time of ``RNN(cell)``: ``SimpleRNNCell``, ``LSTMCell``, ``GRUCell``,
    ``ConvLSTMCell`` and cells described with
    :func:`~jacverify.backward.rules.recurrent.cells.register_cell_math` by their own step;
    any other cell by tracing its ``call`` (the rules of its parts, see
    :mod:`~jacverify.backward.rules.recurrent.traced_cell`); stacks of them
    (``RNN([cell, ...])``). A cell that can be neither is refused with an error naming it."""
