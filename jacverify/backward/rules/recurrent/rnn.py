"""Rule for ``keras.layers.RNN`` with Keras' own cells."""

from __future__ import annotations

import keras

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.recurrent.base_recurrent import BackwardRecurrent


@register_backward(keras.layers.RNN)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardRNN(BackwardRecurrent):
    """Backward through time of ``RNN(cell)`` for ``SimpleRNNCell``, ``LSTMCell``,
    ``GRUCell``, ``StackedRNNCells`` of them (``RNN([cell, ...])``), and cells described with
    :func:`~jacverify.backward.rules.recurrent.cells.register_cell_math`. Other cells are
    refused with an error naming the cell."""
