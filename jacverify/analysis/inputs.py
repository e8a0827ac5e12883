"""Validation of what the analyses are given: one clear error naming the argument and what to
do, as :class:`AnalysisInputError` (a ``ValueError``)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


class AnalysisInputError(ValueError):
    """An argument of an analysis does not fit the model (the message says how)."""


def single_input_and_output(model: keras.Model) -> tuple[tuple, tuple]:
    """The input and output shapes (without the batch axis) of a model with one of each."""
    inputs = getattr(model, "inputs", None)
    outputs = getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise AnalysisInputError(
            f"model '{getattr(model, 'name', model)}' is not built: build it on a keras.Input "
            "(a functional or Sequential model with an input shape)"
        )
    if len(inputs) != 1 or len(outputs) != 1:
        raise AnalysisInputError(
            f"model '{model.name}' has {len(inputs)} input(s) and {len(outputs)} output(s); "
            "the analyses take models with one input and one output"
        )
    return tuple(inputs[0].shape[1:]), tuple(outputs[0].shape[1:])


def input_batch(model: keras.Model, x: Any, name: str = "x") -> np.ndarray:
    """``x`` as an array of the model's input dtype, checked against its input shape."""
    expected, _ = single_input_and_output(model)
    dtype = str(model.inputs[0].dtype)
    try:
        array = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise AnalysisInputError(f"{name} is not an array of numbers: {error}") from None
    if array.ndim == len(expected) and _fits(array.shape, expected):
        raise AnalysisInputError(
            f"{name} has shape {array.shape}, one example of model '{model.name}': add a batch "
            f"axis (shape (1, *{array.shape}))"
        )
    if array.ndim != len(expected) + 1 or not _fits(array.shape[1:], expected):
        raise AnalysisInputError(
            f"{name} has shape {array.shape} but model '{model.name}' takes "
            f"(batch, {', '.join('?' if d is None else str(d) for d in expected)})"
        )
    if len(array) == 0:
        raise AnalysisInputError(f"{name} has no examples (batch size 0)")
    if not np.all(np.isfinite(array)):
        raise AnalysisInputError(f"{name} contains NaN or infinite values")
    return array


def _fits(shape: tuple, expected: tuple) -> bool:
    return len(shape) == len(expected) and all(
        e is None or int(e) == int(s) for s, e in zip(shape, expected, strict=True)
    )


def positive(value: Any, name: str) -> float:
    """``value`` as a float > 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnalysisInputError(f"{name} must be a number > 0, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise AnalysisInputError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise AnalysisInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def matching_count(array: Any, n: int, name: str) -> np.ndarray:
    """``array`` with one entry per example (``n`` of them)."""
    array = np.asarray(array)
    if array.ndim == 0 or len(array) != n:
        got = "a scalar" if array.ndim == 0 else f"{len(array)}"
        raise AnalysisInputError(f"{name}: got {got} for {n} examples; give one per example")
    return array


def classes_of(model: keras.Model) -> int:
    """The number of output units of a model with outputs ``(batch, units)``."""
    _, output = single_input_and_output(model)
    if len(output) != 1 or output[0] is None:
        raise AnalysisInputError(
            f"model '{model.name}' outputs (batch, *{output}); attributions take models with "
            "outputs (batch, units)"
        )
    return int(output[0])


def targets(model: keras.Model, target: Any, n: int, scores: np.ndarray) -> np.ndarray:
    """One class index per example: ``target`` (an int or one per example) or, when it is
    ``None``, the argmax of ``scores`` (the model's output); 0 for a model with one unit."""
    units = classes_of(model)
    if target is None:
        return np.zeros(n, dtype=np.int64) if units == 1 else np.argmax(scores, axis=-1)
    array = np.asarray(target)
    if array.ndim == 0:
        array = np.full(n, array)
    array = matching_count(array, n, "target").reshape(-1)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise AnalysisInputError("target must hold integer class indices")
        array = array.astype(np.int64)
    if np.any(array < 0) or np.any(array >= units):
        raise AnalysisInputError(
            f"target holds class indices outside [0, {units - 1}] (the model has {units} "
            "output units)"
        )
    return array.astype(np.int64)
