"""Rule for ``keras.layers.SimpleRNN``."""

from __future__ import annotations

import keras

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.recurrent.base_recurrent import BackwardRecurrent


@register_backward(keras.layers.SimpleRNN)
class BackwardSimpleRNN(BackwardRecurrent):
    """Backward through time of ``h_t = activation(x_t W + b + h_{t-1} U)``."""
