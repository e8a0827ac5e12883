"""The ways rules are usually tested, run on the same cases for comparison with jacverify.

* ``gradcheck``: ``torch.autograd.gradcheck`` on a ``torch.autograd.Function`` whose forward
  is the layer in float64 (Keras' float64 promotion to float32 switched off, as jacverify's
  float64 references do) and whose backward is the rule; default tolerances (``eps=1e-6``,
  ``atol=1e-5``, ``rtol=1e-3``), a batch of two standard normal inputs; ``fast_mode`` False
  (the full Jacobian) or True (one random projection).
* ``allclose``: the rule against torch autograd at one random input (batch of one, the
  layer's own dtype), compared with ``numpy.allclose`` at its default tolerances.

Each returns whether the rule was flagged, and a short note. An exception raised while
checking counts as flagged (that is what a user would see). A layer with several outputs is
presented to both as one output, as jacverify's checker presents it (its floating outputs
flattened and concatenated; the rule gets one gradient per output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import torch

import jacverify
from checks.case import Case
from jacverify.check.adapters import PackedCall, PackedRule, Packing, single_output
from jacverify.check.references import true_float64


@dataclass(frozen=True)
class BaselineResult:
    """Whether a baseline flagged the rule, and why (or why not)."""

    flagged: bool
    note: str = ""


def _build(layer: keras.layers.Layer, shapes: Sequence[tuple], multi: bool, dtype: str):
    zeros = [np.zeros((1, *s), dtype=dtype) for s in shapes]
    return layer(zeros if multi else zeros[0])


def make_layer(case: Case, seed: int, dtype: str | None = None) -> keras.layers.Layer:
    """The case's layer, built with the weights of ``seed``; a clone in ``dtype`` if given."""
    keras.utils.set_random_seed(seed)
    layer = case.layer()
    _build(layer, case.shapes, case.multi_input, str(layer.compute_dtype))
    if dtype is None or dtype == str(layer.compute_dtype):
        return single_output(layer, case.shapes)
    clone = type(layer).from_config({**layer.get_config(), "dtype": dtype})
    _build(clone, case.shapes, case.multi_input, dtype)
    for source, target in zip(layer.get_weights(), clone.weights, strict=True):
        target.assign(np.asarray(source).astype(target.dtype))
    return single_output(clone, case.shapes)


def make_rule(case: Case, layer: keras.layers.Layer, rule_class: type | None = None) -> Any:
    """An instance of the case's rule (or ``rule_class``) for ``layer``."""
    output = _build(layer, case.shapes, case.multi_input, str(layer.compute_dtype))
    outputs = layer.output_packing if isinstance(layer, PackedCall) else None
    if outputs is not None:  # several outputs, packed: the rule gets one gradient per output
        rule = jacverify.make_rule(layer.operation, case.shapes, list(outputs.shapes),
                                   rule=rule_class or case.rule)
        return PackedRule(rule, Packing(tuple(case.shapes)), outputs=outputs)
    return jacverify.make_rule(
        layer, case.shapes, [tuple(int(d) for d in output.shape[1:])],
        rule=rule_class or case.rule,
    )


def call_rule(rule: Any, gradient, inputs: list, multi: bool) -> list:
    """Call a rule as the builder does; always return a list of tensors."""
    if getattr(rule, "is_linear", False) and not multi:
        out = rule(gradient)
    else:
        out = rule([gradient, list(inputs) if multi else inputs[0]])
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _random_inputs(case: Case, seed: int, batch: int, dtype) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, 7])
    return [rng.standard_normal((batch, *s)).astype(dtype) for s in case.shapes]


def gradcheck_baseline(case: Case, seed: int, *, fast_mode: bool,
                       rule_class: type | None = None) -> BaselineResult:
    """``torch.autograd.gradcheck`` with the rule as the backward of the float64 layer."""
    try:
        with true_float64():
            layer = make_layer(case, seed, "float64")
            rule = make_rule(case, layer, rule_class)
            multi = case.multi_input

            class RuleFunction(torch.autograd.Function):
                @staticmethod
                def forward(ctx, *xs):
                    ctx.save_for_backward(*xs)
                    y = layer(list(xs) if multi else xs[0])
                    return torch.as_tensor(keras.ops.convert_to_tensor(y))

                @staticmethod
                def backward(ctx, g):
                    grads = call_rule(rule, g, list(ctx.saved_tensors), multi)
                    return tuple(keras.ops.convert_to_tensor(t) for t in grads)

            xs = tuple(
                torch.tensor(x, dtype=torch.float64, requires_grad=True)
                for x in _random_inputs(case, seed, 2, np.float64)
            )
            ok = torch.autograd.gradcheck(
                RuleFunction.apply, xs, fast_mode=fast_mode, raise_exception=False
            )
    except Exception as error:  # noqa: BLE001 - a raise is what the user sees: flagged
        return BaselineResult(True, f"raised {type(error).__name__}")
    return BaselineResult(not ok, "" if ok else "Jacobian mismatch")


def allclose_baseline(case: Case, seed: int, rule_class: type | None = None) -> BaselineResult:
    """The rule against torch autograd at one random input, ``numpy.allclose``."""
    try:
        layer = make_layer(case, seed)
        rule = make_rule(case, layer, rule_class)
        dtype = np.dtype(str(layer.compute_dtype))
        xs = [torch.tensor(x, requires_grad=True) for x in _random_inputs(case, seed, 1, dtype)]
        y = layer(xs if case.multi_input else xs[0])
        g = torch.as_tensor(np.random.default_rng([seed, 8]).standard_normal(tuple(y.shape)),
                            dtype=y.dtype)
        reference = torch.autograd.grad(y, xs, g)
        with torch.no_grad():
            got = call_rule(rule, g, [x.detach() for x in xs], case.multi_input)
        if len(got) != len(reference):
            return BaselineResult(True, f"{len(got)} gradients for {len(reference)} inputs")
        for ours, theirs in zip(got, reference, strict=True):
            ours = np.asarray(keras.ops.convert_to_numpy(ours))
            theirs = theirs.detach().cpu().numpy()
            if ours.shape != theirs.shape:
                return BaselineResult(True, f"shape {ours.shape} != {theirs.shape}")
            if not np.allclose(ours, theirs):
                return BaselineResult(True, "values differ")
    except Exception as error:  # noqa: BLE001 - a raise is what the user sees: flagged
        return BaselineResult(True, f"raised {type(error).__name__}")
    return BaselineResult(False)


#: name -> function(case, seed, rule_class=None) of every baseline, in table order.
BASELINES = {
    "gradcheck": lambda case, seed, rule_class=None: gradcheck_baseline(
        case, seed, fast_mode=False, rule_class=rule_class),
    "gradcheck_fast": lambda case, seed, rule_class=None: gradcheck_baseline(
        case, seed, fast_mode=True, rule_class=rule_class),
    "allclose": allclose_baseline,
}
