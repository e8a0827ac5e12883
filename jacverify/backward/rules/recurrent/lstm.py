"""Rule for ``keras.layers.LSTM``."""

from __future__ import annotations

import keras

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.recurrent.base_recurrent import BackwardRecurrent


@register_backward(keras.layers.LSTM)
class BackwardLSTM(BackwardRecurrent):
    """Backward through time of the LSTM recurrence (states ``h`` and ``c``); Keras' fused
    and generic forward paths compute the same function."""
