"""The backward models the analyses run, built once per model (and loss) and reused.

Everything goes through :func:`jacverify.clone_to_backward`, so that the analyses use the
registered (and checkable) rules, custom layers and user rules included.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import torch

from jacverify.backward.clone import clone_to_backward

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached(model: keras.Model, key: Any, build: Callable[[], keras.Model]) -> keras.Model:
    """The model ``build()`` returns for ``(model, key)``, built on first use."""
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        per_model[key] = build()
    return per_model[key]


def input_gradient_model(model: keras.Model) -> keras.Model:
    """``clone_to_backward(model)``: inputs ``[x, g]``, output ``g^T J(x)``."""
    return cached(model, "input_gradient", lambda: clone_to_backward(model))


def run(model: keras.Model, inputs: Any) -> np.ndarray | list:
    """Call ``model`` at inference, without recording an autograd graph; numpy out."""
    with torch.no_grad():
        outputs = model(inputs, training=False)
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outputs]
    return np.asarray(keras.ops.convert_to_numpy(outputs))
