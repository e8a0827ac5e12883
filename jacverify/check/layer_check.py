"""``check_layer``: decide whether a backward rule is right for one layer.

The rule is called exactly as the builder calls it (``rule([gradient, input])``, or
``rule(gradient)`` for a linear rule) on a batch of two inputs, and its ``g^T J`` is compared,
direction by direction, with finite differences on a float64 clone of the layer and with torch
autograd (see :mod:`jacverify.check.compare`), at inputs from Hypothesis that hunt kinks (see
:mod:`jacverify.check.strategies`). The worst failure is shrunk and reported with what replays
it.
"""

from __future__ import annotations

import math
import os
import re
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import torch

from jacverify.backward.graph import INPUT_KEY
from jacverify.backward.registry import MissingBackwardRuleError, get_backward_rule
from jacverify.check.adapters import (
    PackedCall,
    PackedRule,
    Packing,
    RuleFactory,
    RuleOutputError,
    accepts_training,
)
from jacverify.check.compare import (
    CONVENTIONS,
    DirectionJudgement,
    judge_directions,
    machine_eps,
    severity,
    worst_judgement,
    worst_verdict,
)
from jacverify.check.kinks import (
    KinkValue,
    config_kinks,
    describe_coordinate,
    format_index,
    index_tuple,
    near_kink_mask,
)
from jacverify.check.references import (
    FDModel,
    ReferenceUnavailable,
    autograd_vjp,
    clone_layer,
    directional_derivatives,
    effective_eps,
    fd_steps,
    kink_slope_range,
    make_fd_model,
    rounding_sensitivity,
)
from jacverify.check.results import Counterexample, LayerCheck, ReferenceInfo, Replay
from jacverify.check.runner import search
from jacverify.check.strategies import (
    KINDS,
    Example,
    ExampleSpec,
    example_specs,
    kink_sweep,
    materialize,
)

#: Inputs with at most this many values get the full Jacobian (basis directions).
MAX_FULL_JACOBIAN = 64
#: A check where fewer examples than this fraction could be judged is inconclusive.
MIN_JUDGED_FRACTION = 0.2
#: Classes whose input is not floating point (indices, strings): their rules are skipped.
_NON_FLOAT_INPUT_CLASSES = frozenset(
    {"Embedding", "IntegerLookup", "StringLookup", "Hashing", "CategoryEncoding",
     "TextVectorization"}
)


@dataclass
class ExampleOutcome:
    """Everything evaluated at one example."""

    example: Example | None
    verdict: str  # "pass", "fail", "boundary", "error", "inconclusive", "unjudged"
    message: str
    judgements: list
    worst: DirectionJudgement | None = None
    rule_output: np.ndarray | None = None
    autograd_output: np.ndarray | None = None
    autograd_note: str = ""
    fd_vjp: np.ndarray | None = None  # row 0, from the basis directions

    @property
    def kind(self) -> str:
        return self.example.kind if self.example is not None else "random"


def call_rule(rule: Any, gradient: np.ndarray, layer_input: np.ndarray) -> np.ndarray:
    """Call a rule as the builder does and return its output as an array.

    Raises whatever the rule raises, and :class:`RuleOutputError` for a structure other than
    one tensor (or a list of one).
    """
    g = keras.ops.convert_to_tensor(gradient)
    if getattr(rule, "is_linear", False):
        out = rule(g)
    else:
        out = rule([g, keras.ops.convert_to_tensor(layer_input)])
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise RuleOutputError(
                f"the rule returned a list of {len(out)} tensors for a layer with one input"
            )
        out = out[0]
    return np.asarray(keras.ops.convert_to_numpy(out))


def _exception_text(error: BaseException) -> str:
    """``RuntimeError: message (file.py:12 in method)``, without Keras' wrapping."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("Exception encountered when calling"):
        lines = [
            line for line in lines[1:]
            if not line.startswith(("Arguments received", "•"))
        ] or lines[:1]
    message = lines[0][:300] if lines else ""
    where = ""
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        where = f" ({os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    return f"{type(error).__name__}" + (f": {message}" if message else "") + where


def _is_float_dtype(dtype: Any) -> bool:
    return "float" in str(dtype)


def _static_shape(shape: Any, layer_name: str) -> tuple:
    dims = tuple(shape)
    if any(d is None for d in dims):
        raise ValueError(
            f"Layer '{layer_name}' has an input of shape {dims} with unknown sizes: pass "
            "input_shape= (without the batch axis)."
        )
    return tuple(int(d) for d in dims)


def _input_shapes(layer: keras.layers.Layer, input_shape: Sequence | None) -> list[tuple]:
    """The shape of each input of ``layer`` without the batch axis: one for most layers,
    several for merges and attention."""
    name = getattr(layer, "name", "?")
    if input_shape is not None:
        shape = list(input_shape)
        if shape and isinstance(shape[0], (list, tuple)):
            return [_static_shape(s, name) for s in shape]
        return [_static_shape(shape, name)]
    if not layer.built:
        raise ValueError(
            f"Layer '{name}' is not built: pass input_shape= (without the batch axis; a list "
            "of shapes for a layer with several inputs)."
        )
    try:
        tensor = layer.input
    except (AttributeError, ValueError):
        tensor = None
    if isinstance(tensor, (list, tuple)):
        return [_static_shape(t.shape[1:], name) for t in tensor]
    if tensor is not None:
        return [_static_shape(tensor.shape[1:], name)]
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    if len(shapes) == 1:
        (shape,) = shapes.values()
        if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
            try:
                return [_static_shape(tuple(s)[1:], name) for s in shape]
            except ValueError:
                pass
        elif shape is not None and all(s is not None for s in tuple(shape)[1:]):
            return [tuple(int(s) for s in tuple(shape)[1:])]
    raise ValueError(
        f"Cannot tell the input shape of layer '{name}': pass input_shape= (without the batch "
        "axis; a list of shapes for a layer with several inputs)."
    )


def _non_float_reason(layer: keras.layers.Layer) -> str | None:
    name = type(layer).__name__
    if name in _NON_FLOAT_INPUT_CLASSES:
        return f"{name} takes integer or string inputs: its output is not differentiable in them"
    try:
        dtype = layer.input.dtype
    except (AttributeError, ValueError):
        return None
    if not _is_float_dtype(dtype):
        return f"the layer's input is {dtype}, not floating point"
    return None


class _Evaluator:
    """Evaluates examples for one (layer, rule) pair."""

    def __init__(
        self,
        layer: keras.layers.Layer,
        rule: Any,
        fd: FDModel,
        kinks: Sequence[KinkValue],
        input_shape: tuple,
        output_shape: tuple,
        *,
        convention: str,
        random_directions: int,
        basis: bool,
        base_rows: np.ndarray | None = None,
        jacobian_scale: float = 0.0,
    ) -> None:
        self.layer = layer
        self.base_rows = base_rows
        self.jacobian_scale = jacobian_scale
        self.rule = rule
        self.fd = fd
        self.kinks = list(kinks)
        self.input_shape = input_shape
        self.output_shape = output_shape
        self.dtype = str(layer.compute_dtype)
        self.rule_eps = effective_eps(self.dtype)
        self.convention = convention
        self.random_directions = random_directions
        self.basis = basis

    def coordinate(self, flat: int, x0: np.ndarray) -> str:
        return describe_coordinate(flat, float(x0[flat]), self.input_shape, self.kinks, self.dtype)

    def __call__(self, spec: ExampleSpec) -> ExampleOutcome:
        try:
            example = materialize(
                spec, self.input_shape, self.output_shape, self.dtype, self.kinks,
                n_random_directions=self.random_directions, basis=self.basis,
                forward64=self.fd.forward, fd_eps=self.fd.eps, base=self.base_rows,
            )
        except Exception as error:  # the layer itself failed on this input
            return ExampleOutcome(
                None, "inconclusive", f"building the example raised {error!r}", []
            )
        return self.evaluate(example)

    def evaluate(self, example: Example) -> ExampleOutcome:
        x, g = example.x, example.g
        x0 = x[0].reshape(-1).astype(np.float64)
        try:
            rule_out = call_rule(self.rule, g, x)
        except RuleOutputError as error:
            return ExampleOutcome(example, "error", str(error), [])
        except Exception as error:  # noqa: BLE001 - any exception of the rule is a verdict
            return ExampleOutcome(example, "error", f"the rule raised {_exception_text(error)}", [])
        if rule_out.shape != x.shape:
            return ExampleOutcome(
                example, "error",
                f"the rule returned shape {tuple(rule_out.shape)}, but the layer's input (the "
                f"shape of g^T J) is {tuple(x.shape)}",
                [], rule_output=rule_out,
            )
        mixing = self.batch_mixing(example, rule_out)
        if mixing is not None:
            return ExampleOutcome(example, "fail", mixing, [], rule_output=rule_out)
        extra = self.extra_axes(example)
        if extra is not None:
            return ExampleOutcome(example, extra[0], extra[1], [], rule_output=rule_out)
        autograd, autograd_note = None, ""
        try:
            autograd = autograd_vjp(self.layer, x, g)
        except ReferenceUnavailable as error:
            autograd_note = f"autograd unavailable: {error}"
        rule_out64 = rule_out.astype(np.float64)
        finite_rule = np.isfinite(rule_out64)
        if not np.all(finite_rule):
            finite_ref = (
                np.isfinite(autograd) if autograd is not None else np.ones(x.shape, dtype=bool)
            )
            bad = np.argwhere(~finite_rule & finite_ref)
            if bad.size:
                row, *rest = (int(i) for i in bad[0])
                value = rule_out64[tuple(bad[0])]
                value = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
                where = self._where(example, row, rest)
                refs = "autograd is" if autograd is not None else "the references are"
                return ExampleOutcome(
                    example, "error",
                    f"the rule returned {value} at {where} where {refs} finite",
                    [], rule_output=rule_out, autograd_output=autograd,
                )
            return ExampleOutcome(
                example, "unjudged", "the references are not finite either", [],
                rule_output=rule_out, autograd_output=autograd,
            )
        try:
            step_left, step_right, at_kink = fd_steps(
                x0, example.directions, self.kinks, self.fd.eps
            )
            g0 = g[0].reshape(-1).astype(np.float64)
            directional = directional_derivatives(
                self.fd, x0, g0, example.directions, step_left, step_right
            )
        except Exception as error:  # noqa: BLE001
            return ExampleOutcome(
                example, "inconclusive", f"finite differences raised {error!r}", [],
                rule_output=rule_out, autograd_output=autograd,
            )
        a0 = None if autograd is None else autograd[0].reshape(-1).astype(np.float64)
        sensitivity = None
        if autograd is not None:
            sensitivity = rounding_sensitivity(
                self.fd, x0, g0, self.rule_eps, np.random.default_rng([example.spec.seed, 5]),
                forward_rounding=self.forward(x[:1])[0] - directional.output,
            )

        def widen(k: int, value: float, tol: float) -> tuple[float, float]:
            half = 0.25 * float(min(step_left[k], step_right[k]))
            rng = np.random.default_rng([example.spec.seed, 99, k])
            return kink_slope_range(
                self.fd, x0, g0, example.directions[k], half, rng, target=(value, tol)
            )

        try:
            judgements = judge_directions(
                rule_out64[0].reshape(-1), a0, g0, example.directions, example.n_basis,
                directional, rule_eps=self.rule_eps, fd_eps=self.fd.eps,
                near_mask=near_kink_mask(x0, self.kinks), convention=self.convention,
                widen=widen, at_kink=at_kink, sensitivity=sensitivity,
                jacobian_scale=self.jacobian_scale,
            )
        except Exception as error:  # noqa: BLE001 - a failing reference must not end the check
            return ExampleOutcome(
                example, "inconclusive", f"judging the example raised {error!r}", [],
                rule_output=rule_out, autograd_output=autograd,
            )
        fd_vjp = None
        if example.n_basis:
            fd_vjp = np.array(
                [j.reference if j.location in ("smooth", "kink") else np.nan
                 for j in judgements[: example.n_basis]]
            )
        worst = worst_judgement(judgements)
        verdict = worst.verdict if worst is not None else "unjudged"
        outcome = ExampleOutcome(
            example, verdict, "", judgements, worst=worst, rule_output=rule_out,
            autograd_output=autograd, autograd_note=autograd_note, fd_vjp=fd_vjp,
        )
        outcome.message = self.describe(outcome)
        return outcome

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The layer's own output (its dtype), flat rows as float64."""
        with torch.no_grad():
            y = keras.ops.convert_to_numpy(self.layer(x))
        return np.asarray(y, dtype=np.float64).reshape(x.shape[0], -1)

    def batch_mixing(self, example: Example, rule_out: np.ndarray) -> str | None:
        """Call the rule on the batch in reverse order: each example's result must not
        depend on the others (nor on its position)."""
        try:
            swapped = call_rule(self.rule, example.g[::-1].copy(), example.x[::-1].copy())
        except Exception:  # noqa: BLE001 - the first call worked; this one is only a probe
            return None
        if swapped.shape != rule_out.shape:
            return None
        swapped = swapped[::-1].astype(np.float64)
        ours = rule_out.astype(np.float64)
        bad = self._mismatch(swapped, ours, nan_counts=False)
        if bad is None:
            return None
        row, *rest = bad
        return (
            f"the rule mixes the examples of a batch: at {self._where(example, row, rest)} it "
            f"gives {ours[(row, *rest)]:.6g} in the batch and {swapped[(row, *rest)]:.6g} when "
            "the batch is reversed"
        )

    def _mismatch(
        self, got: np.ndarray, expected: np.ndarray, *, nan_counts: bool
    ) -> tuple | None:
        """The first index where two computations of the same values differ by more than
        rounding (and, with ``nan_counts``, where ``got`` is not finite but ``expected`` is)."""
        finite = np.isfinite(got) & np.isfinite(expected)
        size = np.abs(expected) + np.abs(got)
        allowed = 64 * self.rule_eps * (size + float(np.max(size, initial=0.0))) + 1e-300
        with np.errstate(invalid="ignore", over="ignore"):
            bad = finite & (np.abs(got - expected) > allowed)
        if nan_counts:
            bad |= np.isfinite(expected) & ~np.isfinite(got)
        if not np.any(bad):
            return None
        return tuple(int(i) for i in np.argwhere(bad)[0])

    def _where(self, example: Example, row: int, rest: Sequence[int]) -> str:
        flat = int(np.ravel_multi_index(tuple(rest), self.input_shape)) if len(rest) else 0
        return describe_coordinate(
            flat, float(example.x[row].reshape(-1)[flat]), self.input_shape, self.kinks,
            self.dtype,
        ).replace("x[0", f"x[{row}", 1)

    def extra_axes(self, example: Example) -> tuple[str, str] | None:
        """Call the rule with a gradient carrying an extra Jacobian axis (two upstream
        gradients per example, as backward models built with ``gradient=keras.Input((k,
        *output_shape))`` pass them): each slice must give what the rule gives for the same
        gradients as a batch, with the inputs repeated. ``(verdict, message)`` when it does
        not, raises, or returns the wrong shape."""
        if not getattr(self.rule, "supports_extra_axes", True):
            return None
        g = example.g
        other = np.random.default_rng([example.spec.seed, 7]).standard_normal(g.shape)
        other = other.astype(g.dtype)
        stacked = np.stack([g, other], axis=1)
        expected_shape = (g.shape[0], 2, *example.x.shape[1:])
        context = (
            f"when the upstream gradient carries an extra Jacobian axis (shape "
            f"{tuple(stacked.shape)}, as in backward models built with gradient=keras.Input("
            f"(k, *output_shape)))"
        )
        try:
            both = call_rule(self.rule, stacked, example.x)
        except Exception as error:  # noqa: BLE001 - any exception of the rule is a verdict
            return "error", f"the rule raised {_exception_text(error)} {context}"
        if both.shape != expected_shape:
            return "error", (
                f"the rule returned shape {tuple(both.shape)} {context}; expected "
                f"{expected_shape}"
            )
        # The same gradients as a batch (each example's input repeated, as the base class
        # folds extra axes): the same batch size, so the same rounding at kinks.
        try:
            folded = call_rule(
                self.rule, stacked.reshape(-1, *g.shape[1:]),
                np.repeat(example.x, 2, axis=0),
            )
        except Exception:  # noqa: BLE001 - only a probe; the main call worked
            return None
        if folded.shape != (2 * g.shape[0], *example.x.shape[1:]):
            return None
        expected = folded.reshape(both.shape).astype(np.float64)
        got = both.astype(np.float64)
        bad = self._mismatch(got, expected, nan_counts=True)
        if bad is None:
            return None
        row, k, *rest = bad
        return "fail", (
            f"the rule gives {got[(row, k, *rest)]:.6g} at {self._where(example, row, rest)} "
            f"for gradient {k} {context}, and {expected[(row, k, *rest)]:.6g} for the same "
            "gradients given as a batch"
        )

    # ----------------------------------------------------------------- explanations
    def describe(self, outcome: ExampleOutcome) -> str:
        """One sentence on the worst direction of an outcome."""
        j = outcome.worst
        example = outcome.example
        if j is None or example is None:
            locations = Counter(jd.location for jd in outcome.judgements)
            return "nothing could be judged here (" + ", ".join(
                f"{n} {loc}" for loc, n in locations.items()
            ) + ")"
        x0 = example.x[0].reshape(-1).astype(np.float64)
        ref_name = f"finite differences ({self.fd.dtype})"
        if j.basis_index is not None:
            where = "at " + self.coordinate(j.basis_index, x0)
            what = "the rule gives"
        else:
            blamed = ", ".join(self.coordinate(i, x0) for i in j.responsible[:3])
            blame = (
                f" (the rule differs from autograd most at {blamed})"
                if j.autograd is not None else f" (through {blamed})"
            )
            where = "along a random direction d" + (blame if blamed else "")
            what = "the rule's <g^T J, d> is"
        if j.verdict == "pass":
            return f"{where}, {what} {j.rule:.6g}, as expected"
        if j.verdict == "inconclusive":
            return (
                f"{where}, the references disagree at a smooth point: finite differences "
                f"give {j.reference:.6g}, autograd {j.autograd:.6g} (the rule {j.rule:.6g}; "
                f"tolerance {j.tolerance:.3g})"
            )
        if j.location == "kink":
            if self.convention == "autograd" and j.autograd is not None:
                return (
                    f"{where}, on a kink, {what} {j.rule:.6g} where autograd gives "
                    f"{j.autograd:.6g} (convention='autograd'; tolerance {j.tolerance:.3g})"
                )
            lo, hi = sorted((j.left, j.right))
            widened = (
                f", or the range [{j.low:.6g}, {j.high:.6g}] of a compound kink"
                if (j.low, j.high) != (lo, hi) else ""
            )
            versus = "autograd" if j.autograd is not None else ref_name
            away = (
                f"; it differs from {versus} at coordinates away from every candidate kink"
                if j.verdict == "fail" else ""
            )
            return (
                f"{where}, on a kink, {what} {j.rule:.6g}, outside the one-sided "
                f"derivatives [{lo:.6g}, {hi:.6g}]{widened} (tolerance {j.tolerance:.3g}){away}"
            )
        place = "next to a kink" if j.verdict == "boundary" else "a smooth point"
        return (
            f"{where} ({place}), {what} {j.rule:.6g} where {ref_name} give "
            f"{j.reference:.6g} (tolerance {j.tolerance:.3g})"
        )

    def jump_texts(self, outcome: ExampleOutcome) -> list[str]:
        texts = []
        if outcome.example is None:
            return texts
        x0 = outcome.example.x[0].reshape(-1).astype(np.float64)
        for j in outcome.judgements:
            if j.location != "jump":
                continue
            if j.basis_index is not None:
                texts.append(f"{self.coordinate(j.basis_index, x0)}: {j.note}")
            elif outcome.example.marks:
                marked = ", ".join(
                    self.coordinate(i, x0) for i in list(outcome.example.marks)[:2]
                )
                texts.append(f"along a random direction through {marked}: {j.note}")
        return texts

    def counterexample(
        self, outcome: ExampleOutcome, spec: ExampleSpec, seed: int, blob: str | None
    ) -> Counterexample:
        example = outcome.example
        replay = Replay(seed=seed, reproduce_failure=blob, example=spec.to_dict())
        if example is None:
            return Counterexample(
                message=outcome.message, location="", input=np.zeros((1, *self.input_shape)),
                upstream_gradient=np.zeros((1, *self.output_shape)), rule_output=None,
                reference_output=None, reference_name="", replay=replay,
            )
        x0 = example.x[0].reshape(-1).astype(np.float64)
        rule0 = None if outcome.rule_output is None else outcome.rule_output[:1]
        auto0 = None if outcome.autograd_output is None else outcome.autograd_output[:1]
        if outcome.fd_vjp is not None:
            reference = outcome.fd_vjp.reshape(1, *self.input_shape)
            reference_name = f"finite differences ({self.fd.dtype})"
            if auto0 is not None:
                reference = np.where(np.isfinite(reference), reference, auto0)
        else:
            reference, reference_name = auto0, "autograd (torch)"
        j = outcome.worst
        coords: list[int] = []
        if j is not None and j.verdict != "pass":
            coords = list(j.responsible)
        if rule0 is not None and reference is not None and rule0.shape == reference.shape:
            diff = np.abs(rule0.astype(np.float64) - reference).reshape(-1)
            diff = np.where(np.isfinite(diff), diff, np.inf)
            order = [int(i) for i in np.argsort(-diff, kind="stable")[:5] if diff[i] > 0]
            coords = coords + [i for i in order if i not in coords]
        elif rule0 is not None and rule0.shape == (1, *self.input_shape):
            bad = np.flatnonzero(~np.isfinite(rule0.reshape(-1)))
            coords = coords + [int(i) for i in bad[:5] if int(i) not in coords]
        worst_coordinates = []
        for i in coords[:5]:
            worst_coordinates.append(
                {
                    "index": index_tuple(i, self.input_shape),
                    "label": self.coordinate(i, x0),
                    "x": float(x0[i]),
                    "rule": None if rule0 is None or rule0.shape != (1, *self.input_shape)
                    else float(rule0.reshape(-1)[i]),
                    "reference": None if reference is None
                    else float(np.asarray(reference).reshape(-1)[i]),
                    "autograd": None if auto0 is None else float(auto0.reshape(-1)[i]),
                }
            )
        kink = None
        for i in coords[:5]:
            if i in example.marks or self.coordinate(i, x0).count("=") > 1:
                kink = self.coordinate(i, x0)
                break
        if kink is None and example.kind == "numeric_kink" and j is not None and (
            j.location == "kink"
        ):
            kink = example.note
        direction = None
        direction_name = ""
        if j is not None:
            direction = example.directions[j.k].reshape(1, *self.input_shape)
            direction_name = (
                f"the basis vector of {format_index(j.basis_index, self.input_shape)}"
                if j.basis_index is not None
                else "a random direction"
            )
        location = ""
        if j is not None and outcome.verdict != "error":
            location = {"kink": "kink"}.get(j.location, "")
            if j.location == "smooth":
                location = "next to a kink" if j.verdict == "boundary" else "smooth"
        return Counterexample(
            message=outcome.message,
            location=location,
            input=example.x[:1],
            upstream_gradient=example.g[:1],
            rule_output=rule0,
            reference_output=reference,
            reference_name=reference_name,
            autograd_output=auto0,
            direction=direction,
            direction_name=direction_name,
            rule_directional=None if j is None else j.rule,
            reference_directional=None if j is None else j.reference,
            one_sided=None if j is None or j.location != "kink" else (j.left, j.right),
            tolerance=None if j is None else j.tolerance,
            worst_coordinates=worst_coordinates,
            kink=kink,
            kind=example.kind,
            companion_input=example.x[1:],
            replay=replay,
        )


def _failure_reason(verdict: str, outcome: ExampleOutcome) -> str:
    """One sentence for a failed check, from its (shrunk) worst example."""
    message = outcome.message
    if verdict == "error":
        return message[:1].upper() + message[1:] + "."
    if verdict == "fail" and outcome.worst is None:
        return f"The rule is wrong: {message}."
    if verdict == "fail" and outcome.worst.location == "kink":
        return f"The rule is wrong away from the kinks: {message}."
    if verdict == "fail":
        return f"The rule is wrong at a smooth point: {message}."
    if verdict == "boundary":
        return f"The rule is wrong only at or next to kinks: {message}."
    return f"The references disagree or are too noisy to judge: {message}."


def _pass_reason(
    n_judged: int,
    locations: Counter,
    ratio: float | None,
    fd_dtype: str,
    autograd: bool,
    convention: str,
) -> str:
    """One sentence for a passed check."""
    n_kink = locations.get("kink", 0)
    text = f"The rule matches finite differences ({fd_dtype})"
    text += " and autograd" if autograd else ""
    text += f" at {n_judged} examples"
    if n_kink and convention == "subgradient":
        text += f", and lies between the one-sided derivatives at {n_kink} kink directions"
    elif n_kink:
        text += f", and matches autograd at {n_kink} kink directions"
    if locations.get("jump"):
        text += f"; {locations['jump']} directions crossing jumps were not judged"
    if ratio is not None:
        text += f"; worst error is {ratio:.2g} of the tolerance"
    return text + "."


def _labels(layer: Any) -> tuple[str, str]:
    """The name and class a check reports: the checked operation's, through adapters."""
    return (
        getattr(layer, "checked_name", None) or getattr(layer, "name", "?"),
        getattr(layer, "checked_class", None) or type(layer).__name__,
    )


def _rule_label(rule: Any) -> str | None:
    if rule is None:
        return None
    return getattr(rule, "__name__", None) or getattr(rule, "name", None) or str(rule)


def _skipped(layer, rule_class, reason: str, start: float, **kwargs) -> LayerCheck:
    name, class_name = _labels(layer)
    return LayerCheck(
        verdict="skipped",
        reason=reason,
        layer_name=name,
        layer_class=class_name,
        rule_class=_rule_label(rule_class),
        duration_s=time.perf_counter() - start,
        **kwargs,
    )


@dataclass
class _Setup:
    """Everything check_layer needs once the layer, the rule and the references are ready."""

    evaluator: _Evaluator
    fd: FDModel
    base: dict
    notes: list
    n: int
    basis: bool
    kinks: list
    autograd_note: str = ""  # why autograd is unavailable, "" when it works


def _jacobian_scale(
    layer: Any, shape: tuple, output_shape: tuple, dtype: str, rng: np.random.Generator
) -> float:
    """The layer's usual ``|J^T g| / |g|``: the median over a few random normal inputs and
    gradients (0 when autograd gives nothing finite)."""
    x = rng.standard_normal((4, *shape)).astype(dtype)
    g = rng.standard_normal((4, *output_shape)).astype(dtype)
    try:
        v = autograd_vjp(layer, x, g)
    except ReferenceUnavailable:
        return 0.0
    v = np.asarray(v, dtype=np.float64).reshape(4, -1)
    norms = np.linalg.norm(g.astype(np.float64).reshape(4, -1), axis=1)
    ratios = np.linalg.norm(v, axis=1) / np.where(norms > 0, norms, np.inf)
    ratios = ratios[np.isfinite(ratios)]
    return float(np.median(ratios)) if ratios.size else 0.0


def _base_rows(inputs: Any, packing: Packing, name: str) -> np.ndarray | None:
    """User-given inputs as packed flat float64 rows, checked against the layer's shapes."""
    if inputs is None:
        return None
    parts = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if len(parts) != len(packing.shapes):
        raise ValueError(
            f"inputs= gives {len(parts)} array(s) for layer '{name}', which takes "
            f"{len(packing.shapes)} input(s)"
        )
    arrays = []
    for part, shape in zip(parts, packing.shapes, strict=True):
        array = np.asarray(keras.ops.convert_to_numpy(part), dtype=np.float64)
        if array.shape[1:] != tuple(shape):
            raise ValueError(
                f"inputs= has shape {array.shape} for layer '{name}', whose input is "
                f"(batch, *{tuple(shape)})"
            )
        arrays.append(array)
    rows = packing.join_array(arrays).reshape(len(arrays[0]), -1)
    if not len(rows):
        raise ValueError(f"inputs= for layer '{name}' has no rows")
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"inputs= for layer '{name}' holds NaN or infinite values")
    return rows


def _prepare(
    layer: keras.layers.Layer,
    rule: Any,
    *,
    input_shape: Sequence | None,
    seed: int,
    convention: str,
    dtype: str | None,
    kinks: Sequence[float] | None,
    random_directions: int | None,
    max_full_jacobian: int,
    start: float,
    inputs: Any = None,
) -> _Setup | LayerCheck:
    """Resolve the rule, build the layer (or its dtype clone), instantiate the rule and the
    references; a LayerCheck instead when the check ends before any example.

    ``rule`` is a rule class, ``None`` (the registered one), or a
    :class:`~jacverify.check.adapters.RuleFactory` (how check_model passes the rule the
    builder made for one call of a model)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    name, class_name = _labels(layer)
    rule_class = rule
    if rule_class is None:
        try:
            rule_class = get_backward_rule(
                layer.operation if isinstance(layer, PackedCall) else layer
            )
        except MissingBackwardRuleError as error:
            return _skipped(layer, None, f"no rule given and none registered: {error}", start,
                            seed=seed, convention=convention)
    non_float = _non_float_reason(layer)
    if non_float is not None:
        return _skipped(layer, rule_class, f"not differentiable in its input: {non_float}",
                        start, seed=seed, convention=convention)
    if input_shape is None and inputs is not None and not layer.built:
        parts = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        input_shape = [tuple(np.shape(p)[1:]) for p in parts]
        input_shape = input_shape if len(parts) > 1 else input_shape[0]
    shapes = _input_shapes(layer, input_shape)
    layer_dtype = str(layer.compute_dtype)
    if not _is_float_dtype(layer_dtype):
        return _skipped(layer, rule_class, f"the layer computes in {layer_dtype}", start,
                        seed=seed, convention=convention)
    if not layer.built:
        zeros = [np.zeros((1, *s), dtype=layer_dtype) for s in shapes]
        layer(zeros if len(shapes) > 1 else zeros[0])

    rng = np.random.default_rng(seed)
    notes: list[str] = []
    target = layer
    if len(shapes) > 1 and not isinstance(layer, PackedCall):
        target = PackedCall(layer, shapes, ([{INPUT_KEY: i} for i in range(len(shapes))],))
    elif not isinstance(layer, PackedCall) and accepts_training(layer):
        # Called with training=False, as backward models run their layers: random
        # augmentation layers default to training mode.
        target = PackedCall(layer, shapes)
    packing = target.packing if isinstance(target, PackedCall) else Packing((shapes[0],))
    shape = packing.shape
    base_rows = _base_rows(inputs, packing, name)
    if packing.description:
        notes.append(packing.description)
    if dtype is not None and str(dtype) != layer_dtype:
        try:
            target = clone_layer(target, str(dtype), shape)
        except Exception as error:  # noqa: BLE001
            return LayerCheck(
                verdict="inconclusive",
                reason=f"could not run the layer in {dtype}: {type(error).__name__}: {error}",
                layer_name=name, layer_class=class_name,
                rule_class=_rule_label(rule_class), convention=convention, dtype=str(dtype),
                input_shape=list(shape), seed=seed, duration_s=time.perf_counter() - start,
            )
        notes.append(f"the layer and the rule ran on a {dtype} clone of the layer")
    run_dtype = str(target.compute_dtype)
    if effective_eps(run_dtype) > machine_eps(run_dtype):
        notes.append(
            f"Keras computes {run_dtype} operations in float32 on this backend: the rule is "
            "held to float32 precision"
        )
    base = dict(
        layer_name=name, layer_class=class_name, rule_class=_rule_label(rule_class),
        convention=convention, dtype=run_dtype, input_shape=list(shape), seed=seed,
    )
    short = {k: v for k, v in base.items() if k not in ("layer_name", "layer_class", "rule_class")}

    out = target(np.zeros((1, *shape), dtype=run_dtype))
    if isinstance(out, (list, tuple)):
        return _skipped(layer, rule_class, "the layer returns several tensors", start, **short)
    if not _is_float_dtype(out.dtype):
        return _skipped(layer, rule_class, f"the layer's output is {out.dtype}", start, **short)
    output_shape = tuple(int(s) for s in out.shape[1:])

    operation = target.operation if isinstance(target, PackedCall) else target
    in_dims = [list(s) for s in packing.shapes]
    try:
        if isinstance(rule_class, RuleFactory):
            rule_instance = rule_class.make(operation)
        else:
            rule_instance = rule_class(
                layer=operation,
                input_dim_wo_batch=in_dims if len(in_dims) > 1 else in_dims[0],
                output_dim_wo_batch=list(output_shape),
            )
    except Exception as error:  # noqa: BLE001
        return LayerCheck(
            verdict="error",
            reason=f"Constructing the rule raised {_exception_text(error)}.",
            duration_s=time.perf_counter() - start, **base,
        )
    if isinstance(target, PackedCall):
        rule_instance = PackedRule(rule_instance, packing)

    fd = make_fd_model(target, shape, rng)
    autograd_note = ""
    try:
        autograd_vjp(
            target, np.zeros((1, *shape), dtype=run_dtype),
            np.ones((1, *output_shape), dtype=run_dtype),
        )
    except ReferenceUnavailable as error:
        autograd_note = f"autograd unavailable: {error}"
    candidate_kinks = config_kinks(target, dtype=run_dtype, extra=kinks)
    n = int(math.prod(shape))
    basis = n <= max_full_jacobian
    k_random = random_directions if random_directions is not None else (4 if basis else 8)
    evaluator = _Evaluator(
        target, rule_instance, fd, candidate_kinks, shape, output_shape,
        convention=convention, random_directions=max(1, int(k_random)), basis=basis,
        base_rows=base_rows,
        jacobian_scale=_jacobian_scale(
            target, shape, output_shape, run_dtype, np.random.default_rng([seed, 11])
        ) if not autograd_note else 0.0,
    )
    return _Setup(evaluator, fd, base, notes, n, basis, candidate_kinks, autograd_note)


def _evidence(
    evaluator: _Evaluator,
    fd: FDModel,
    counterexample: Counterexample | None,
    outcomes: Sequence[ExampleOutcome],
    max_jacobian: int,
    notes: list,
) -> dict | None:
    """Plot data through the counterexample, or (small layers) at the first example."""
    from jacverify.check.evidence import collect_evidence

    if counterexample is not None and counterexample.rule_output is not None:
        x, g = counterexample.input, counterexample.upstream_gradient
        direction = (
            None if counterexample.direction is None
            else np.asarray(counterexample.direction, dtype=np.float64).reshape(-1)
        )
        kink = 0.0 if counterexample.location == "kink" else None
    elif counterexample is None and evaluator.basis:
        example = next((o.example for o in outcomes if o.example is not None), None)
        if example is None:
            return None
        x, g, direction, kink = example.x[:1], example.g[:1], None, None
    else:
        return None
    try:
        return collect_evidence(
            evaluator.layer, evaluator.rule, fd, x, g, direction, kink_position=kink,
            max_jacobian=max_jacobian,
        )
    except Exception as error:  # noqa: BLE001 - plots must never change a verdict
        notes.append(f"no plot data: {type(error).__name__}: {error}")
        return None


def check_example(
    layer: keras.layers.Layer,
    rule: type | None = None,
    example: ExampleSpec | dict | None = None,
    *,
    input_shape: Sequence | None = None,
    convention: str = "subgradient",
    dtype: str | None = None,
    kinks: Sequence[float] | None = None,
    random_directions: int | None = None,
    max_full_jacobian: int = MAX_FULL_JACOBIAN,
    inputs: Any = None,
) -> ExampleOutcome:
    """Evaluate one example exactly as :func:`check_layer` does: replay a counterexample from
    ``check.counterexample.replay.example`` (pass the same options as to check_layer)."""
    if example is None:
        raise ValueError("check_example() needs an example (an ExampleSpec or its dict)")
    spec = example if isinstance(example, ExampleSpec) else ExampleSpec.from_dict(example)
    setup = _prepare(
        layer, rule, input_shape=input_shape, seed=0, convention=convention, dtype=dtype,
        kinks=kinks, random_directions=random_directions, max_full_jacobian=max_full_jacobian,
        start=time.perf_counter(), inputs=inputs,
    )
    if isinstance(setup, LayerCheck):
        raise ValueError(f"nothing to evaluate: {setup.reason}")
    return setup.evaluator(spec)


def check_layer(
    layer: keras.layers.Layer,
    rule: type | None = None,
    *,
    input_shape: Sequence | None = None,
    inputs: Any = None,
    examples: int = 100,
    seed: int | None = None,
    convention: str = "subgradient",
    dtype: str | None = None,
    kinks: Sequence[float] | None = None,
    random_directions: int | None = None,
    max_full_jacobian: int = MAX_FULL_JACOBIAN,
    shrink_budget: int | None = None,
    threads: int | None = 1,
    evidence: bool = True,
) -> LayerCheck:
    """Check the backward rule ``rule`` of one ``layer``.

    Args:
        layer: a Keras layer instance, built or not.
        rule: the rule class (written to the calling convention of
            :class:`jacverify.BackwardLayer`); ``None`` takes the registered one.
        input_shape: the layer's input shape without the batch axis (required when the layer
            is not built and its shape cannot be read from a graph); a list of shapes for a
            layer with several inputs (``Add``, ``Maximum``, ``Dot`` ...), whose rule returns
            one gradient per input.
        inputs: inputs to build the examples around (an array ``(m, *input_shape)``, a list
            of them for several inputs), such as the activations that reach the layer in a
            model; ``None``: random normal inputs at several scales.
        examples: how many Hypothesis examples to judge (more are evaluated while shrinking).
        seed: Hypothesis' seed; ``None`` draws one (reported in the result: pass it to replay).
        convention: at kinks, ``"subgradient"`` accepts any value between the one-sided
            derivatives; ``"autograd"`` requires torch autograd's value.
        dtype: run the layer and the rule in this dtype (a clone of the layer); ``None`` keeps
            the layer's own.
        kinks: extra candidate kink values of the input coordinates (besides 0 and the
            numbers of the layer's config).
        random_directions: signed random directions per example (default 4 with the full
            Jacobian, 8 without).
        max_full_jacobian: inputs with at most this many values also get every basis direction.
        shrink_budget: at most this many new evaluations while shrinking (default: examples).
        threads: torch's intra-op threads while the check runs (restored after). The checker
            makes many small batched calls, which one thread runs fastest, and 50 times slower
            with two threads on busy cores; ``None`` keeps torch's setting.
        evidence: gather plot data for reports (``LayerCheck.evidence``): a line through the
            counterexample, and for inputs of at most ``max_full_jacobian`` values both full
            Jacobians (the rule's and the reference's).

    Returns:
        A :class:`LayerCheck`; its ``verdict`` is ``pass``, ``fail`` (wrong at a smooth point),
        ``boundary`` (wrong only at or next to a kink), ``error`` (the rule raised, returned
        NaN/Inf or the wrong shape), ``inconclusive`` or ``skipped``.
    """
    if threads is not None and threads != torch.get_num_threads():
        previous = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            return check_layer(
                layer, rule, input_shape=input_shape, inputs=inputs, examples=examples, seed=seed,
                convention=convention, dtype=dtype, kinks=kinks,
                random_directions=random_directions, max_full_jacobian=max_full_jacobian,
                shrink_budget=shrink_budget, threads=None, evidence=evidence,
            )
        finally:
            torch.set_num_threads(previous)
    start = time.perf_counter()
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    seed = int(seed)
    setup = _prepare(
        layer, rule, input_shape=input_shape, seed=seed, convention=convention, dtype=dtype,
        kinks=kinks, random_directions=random_directions, max_full_jacobian=max_full_jacobian,
        start=start, inputs=inputs,
    )
    if isinstance(setup, LayerCheck):
        return setup
    evaluator, fd, base, notes = setup.evaluator, setup.fd, setup.base, setup.notes
    n, basis, candidate_kinks = setup.n, setup.basis, setup.kinks
    found = search(
        example_specs(n, len(candidate_kinks)),
        evaluator,
        lambda outcome: outcome.verdict,
        examples=examples,
        seed=seed,
        shrink_verdicts=("error", "fail", "boundary", "inconclusive"),
        severity=severity,
        shrink_budget=shrink_budget if shrink_budget is not None else max(50, int(examples)),
        explicit=kink_sweep(len(candidate_kinks), int(examples) // 4),
    )
    notes.extend(found.notes)
    outcomes = list(found.explored.values())

    reference = ReferenceInfo(
        autograd=not setup.autograd_note,
        autograd_note=setup.autograd_note
        or next((o.autograd_note for o in outcomes if o.autograd_note), ""),
        finite_differences=True,
        fd_dtype=fd.dtype,
        float64_clone=fd.clone_ok,
        clone_note=fd.note,
        full_jacobian=basis,
        random_directions=evaluator.random_directions,
    )
    by_kind = {kind: 0 for kind in KINDS}
    verdicts_by_kind: dict = {}
    locations: Counter = Counter()
    judged: list[DirectionJudgement] = []
    jumps: list[str] = []
    for outcome in outcomes:
        by_kind[outcome.kind] = by_kind.get(outcome.kind, 0) + 1
        per_kind = verdicts_by_kind.setdefault(outcome.kind, {})
        per_kind[outcome.verdict] = per_kind.get(outcome.verdict, 0) + 1
        for j in outcome.judgements:
            locations[j.location] += 1
            if j.verdict != "unjudged":
                judged.append(j)
        for text in evaluator.jump_texts(outcome):
            if text not in jumps and len(jumps) < 5:
                jumps.append(text)

    stats: dict = {}
    if judged:
        worst_ratio = max(judged, key=lambda j: j.ratio)
        stats = dict(
            max_abs_error=max(j.error for j in judged),
            max_rel_error=max(j.rel_error for j in judged),
            tolerance=worst_ratio.tolerance,
            margin=worst_ratio.tolerance - worst_ratio.error,
            error_to_tolerance=worst_ratio.ratio,
        )

    verdict = worst_verdict([o.verdict for o in outcomes])
    n_judged = sum(1 for o in outcomes if o.worst is not None)
    counterexample = None
    if found.minimal is not None and verdict in ("error", "fail", "boundary", "inconclusive"):
        counterexample = evaluator.counterexample(
            found.minimal, found.minimal_spec, seed, found.reproduce_failure
        )
        reason = _failure_reason(verdict, found.minimal)
    elif verdict == "pass" and n_judged < MIN_JUDGED_FRACTION * max(1, len(outcomes)):
        verdict = "inconclusive"
        where = ", ".join(f"{n} {loc}" for loc, n in locations.items())
        reason = (
            f"Only {n_judged} of {len(outcomes)} examples could be judged (directions: "
            f"{where}): too few to call the rule right."
        )
    else:
        reason = _pass_reason(
            n_judged, locations, stats.get("error_to_tolerance"), fd.dtype,
            reference.autograd, convention,
        )
    unjudged = len(outcomes) - n_judged
    if unjudged and verdict == "pass":
        notes.append(f"{unjudged} examples could not be judged (jumps, noise)")
    plot_data = None
    if evidence:
        plot_data = _evidence(evaluator, fd, counterexample, outcomes, max_full_jacobian, notes)
    return LayerCheck(
        evidence=plot_data,
        verdict=verdict,
        reason=reason,
        examples=len(outcomes),
        examples_by_kind=by_kind,
        directions_by_location=dict(locations),
        verdicts_by_kind=verdicts_by_kind,
        reference=reference,
        counterexample=counterexample,
        jumps=jumps,
        notes=notes,
        shrink_evaluations=found.shrink_evaluations,
        duration_s=time.perf_counter() - start,
        **stats,
        **base,
    )
