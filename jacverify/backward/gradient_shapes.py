"""The shape contract of a rule's result: ``g^T J`` has the shape of the layer's input.

A rule's output shape is declared by :meth:`BackwardLayer.compute_output_shape` (the layer's
input shape with the gradient's batch and extra axes), and that declaration is all Keras reads
when it builds a backward model on symbolic tensors. A rule whose ``call`` returns another
shape (``(batch, 1)`` for ``(batch, n)``, an extra axis, transposed axes) would then run
without a complaint and be broadcast where contributions are added. The builder refuses it:

- when it builds the backward model, by running each rule that does not ship with jacverify
  on ``meta`` tensors (shapes without data, nothing computed); a rule that cannot run there
  is left to the next check;
- when the backward model runs (:func:`gradient_shapes_checked`, entered by backward
  models), after every call of such a rule, on the shapes of the actual tensors (jacverify's
  own rules are checked by the registry check instead, and cost nothing here).

Either way the error is a :class:`GradientShapeError` naming the layer, the rule class, the
shape returned and the shape expected.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import torch
from keras import tree

_CHECKED = contextvars.ContextVar("jacverify_gradient_shapes_checked", default=False)

#: Sizes given to unknown dimensions when a rule runs on ``meta`` tensors; a result dimension
#: that differs between the two runs is unknown (``None``).
_PROBE_SIZES = (83, 89)

Shape = tuple


class GradientShapeError(ValueError):
    """A backward rule returned a gradient whose shape is not the shape of its layer's input
    (with the upstream gradient's batch and extra axes)."""


@contextlib.contextmanager
def gradient_shapes_checked() -> Iterator[None]:
    """Within the block (in this thread or task), every call of a
    :class:`~jacverify.backward.base.BackwardLayer` checks the shapes of the gradients it
    returns and raises :class:`GradientShapeError` on a mismatch."""
    token = _CHECKED.set(True)
    try:
        yield
    finally:
        _CHECKED.reset(token)


def gradient_shapes_are_checked() -> bool:
    """Whether rule calls check their results' shapes here (see
    :func:`gradient_shapes_checked`)."""
    return _CHECKED.get()


def expected_gradient_shapes(
    lead: Sequence, input_dims: Sequence[Sequence], inputs: Sequence | None
) -> list[Shape]:
    """The shape of each gradient a rule must return: ``lead`` (the gradient's batch and extra
    axes) then the input's shape without its batch axis, read from the input tensor when
    there is one (its batch size then replaces the gradient's), else from ``input_dims``."""
    expected = []
    for index, dims in enumerate(input_dims):
        tensor = inputs[index] if inputs is not None else None
        if tensor is None:
            expected.append((*lead, *dims))
        else:
            shape = _dims(tensor.shape)
            expected.append((shape[0], *lead[1:], *shape[1:]))
    return expected


def verify_gradient_shapes(rule: Any, returned: Sequence, expected: Sequence[Shape],
                           layer_name: str | None = None) -> None:
    """Raise :class:`GradientShapeError` unless the rule returned one gradient per input,
    each of the ``expected`` shape (an unknown size, ``None``, matches any size).

    ``returned`` holds the rule's results (tensors, or shapes). ``layer_name`` names the call
    (its path inside traced blocks); the rule's layer's name by default."""
    layer_name = layer_name or rule.layer.name
    if len(returned) != len(expected):
        raise GradientShapeError(
            f"{_who(rule, layer_name)} returned {len(returned)} gradient(s) for a layer with "
            f"{len(expected)} input(s). {_what_to_do(rule)}"
        )
    for index, (result, shape) in enumerate(zip(returned, expected, strict=True)):
        got = _shape_of(result)
        if got is None or _same_shape(got, shape):
            continue
        which = "the input" if len(expected) == 1 else f"input {index}"
        raise GradientShapeError(
            f"{_who(rule, layer_name)} returned shape {got} for {which}, whose gradient has "
            f"shape {tuple(shape)} (the input's shape, with the upstream gradient's batch and "
            f"extra axes). {_what_to_do(rule)}"
        )


def symbolic_result_shapes(rule: Any, args: tuple, kwargs: dict) -> list[Shape] | None:
    """The shapes of the gradients ``rule.call(*args, **kwargs)`` returns for symbolic
    arguments (Keras tensors), found by running it on ``meta`` tensors (no data, nothing
    computed); ``None`` where a size depends on an unknown input size. ``None`` altogether
    when the rule cannot run on ``meta`` tensors."""
    flat = [t for t in tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
    unknown = any(d is None for t in flat for d in t.shape)
    runs = []
    for size in _PROBE_SIZES[: 2 if unknown else 1]:
        try:
            with keras.device("meta"), torch.no_grad():
                meta_args, meta_kwargs = tree.map_structure(
                    lambda t, size=size: _meta_tensor(t, size), (args, kwargs))
                result = rule.call(*meta_args, **meta_kwargs)
        except Exception:  # noqa: BLE001 - the rule cannot run on meta tensors
            return None
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        if not all(isinstance(r, torch.Tensor) for r in results):
            return None
        runs.append([tuple(int(d) for d in r.shape) for r in results])
    first = runs[0]
    if len(runs) == 1:
        return first
    return [tuple(a if a == b else None for a, b in zip(s1, s2, strict=True))
            if len(s1) == len(s2) else s1 for s1, s2 in zip(first, runs[1], strict=True)]


def _meta_tensor(value: Any, size: int) -> Any:
    if not isinstance(value, keras.KerasTensor):
        return value
    shape = [size if d is None else int(d) for d in value.shape]
    dtype = keras.backend.standardize_dtype(value.dtype)
    return torch.empty(shape, dtype=getattr(torch, dtype), device="meta")


def _dims(shape) -> Shape:
    return tuple(None if d is None else int(d) for d in tuple(shape))


def _shape_of(result: Any) -> Shape | None:
    """The shape of a returned gradient (a tensor, or a shape already); ``None`` when the
    result carries none (no gradient for that input)."""
    if isinstance(result, tuple) and all(d is None or isinstance(d, int) for d in result):
        return result
    shape = getattr(result, "shape", None)
    return None if shape is None else _dims(shape)


def _same_shape(got: Shape, expected: Shape) -> bool:
    return len(got) == len(expected) and all(
        a is None or b is None or a == b for a, b in zip(got, expected, strict=True))


def _who(rule: Any, layer_name: str) -> str:
    return (f"Backward rule {type(rule).__name__} ('{rule.name}') of layer '{layer_name}' "
            f"({type(rule.layer).__name__})")


def _what_to_do(rule: Any) -> str:
    return (
        "A rule returns g^T J shaped like the layer's input (a list, one per input, for a "
        "layer with several inputs); Keras would broadcast another shape where gradients add "
        f"up and give wrong numbers. Fix {type(rule).__name__}.call_on_reshaped_gradient; "
        f"jacverify.check_layer(layer, {type(rule).__name__}, input_shape=...) reports it "
        "with a counterexample (see docs/writing_rules.md, 'What a rule returns')."
    )
