"""Backward rules for Keras recurrent layers: backward through time built from keras.ops."""

from jacverify.backward.rules.recurrent import (  # noqa: F401
    bidirectional,
    conv_lstm,
    gru,
    lstm,
    rnn,
    simple_rnn,
    time_distributed,
)
from jacverify.backward.rules.recurrent.cells import CellMath, register_cell_math  # noqa: F401
