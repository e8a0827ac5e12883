"""Rule for ``keras.layers.GRU``."""

from __future__ import annotations

import keras

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.recurrent.base_recurrent import BackwardRecurrent


@register_backward(keras.layers.GRU)
class BackwardGRU(BackwardRecurrent):
    """Backward through time of the GRU recurrence, ``reset_after`` True or False."""
