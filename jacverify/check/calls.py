"""Calling a rule as the builder does, and saying in one line what went wrong when it raised.

The lowest layer of the checker: probes, explanations and plot data all call rules through
:func:`call_rule`; nothing here imports another checker module but the adapters' error type
and :mod:`jacverify.check.direct_calls` (which skips Keras' per-call bookkeeping when that
changes nothing).
"""

from __future__ import annotations

import os
import re
import traceback
from typing import Any

import keras
import numpy as np

from jacverify.check.adapters import RuleOutputError
from jacverify.check.direct_calls import invoke

__all__ = ["RuleOutputError", "call_rule", "exception_text", "short_error"]


def call_rule(rule: Any, gradient: np.ndarray, layer_input: np.ndarray) -> np.ndarray:
    """Call a rule as the builder does and return its output as an array.

    Raises whatever the rule raises, and :class:`RuleOutputError` for a structure other than
    one tensor (or a list of one). A built Keras rule is called through its ``call`` method
    once that has been shown to give what Keras' ``__call__`` gives
    (:func:`jacverify.check.direct_calls.invoke`).
    """
    g = keras.ops.convert_to_tensor(gradient)
    if getattr(rule, "is_linear", False):
        out = invoke(rule, g)
    else:
        out = invoke(rule, [g, keras.ops.convert_to_tensor(layer_input)])
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise RuleOutputError(
                f"the rule returned a list of {len(out)} tensors for a layer with one input"
            )
        out = out[0]
    return np.asarray(keras.ops.convert_to_numpy(out))


def _message_lines(error: BaseException) -> list[str]:
    """The lines of an exception's message, without Keras' "Exception encountered when
    calling" wrapping and without terminal colours."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("Exception encountered when calling"):
        lines = [
            line for line in lines[1:] if not line.startswith(("Arguments received", "\u2022"))
        ] or lines[:1]
    return lines


def exception_text(error: BaseException) -> str:
    """``RuntimeError: message (file.py:12 in method)``, without Keras' wrapping."""
    lines = _message_lines(error)
    message = lines[0][:300] if lines else ""
    where = ""
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        where = f" ({os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    return f"{type(error).__name__}" + (f": {message}" if message else "") + where


def short_error(error: BaseException) -> str:
    """``RuntimeError: message``: :func:`exception_text` without the place."""
    lines = _message_lines(error)
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__
