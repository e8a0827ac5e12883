"""The expensive evaluations of several examples of one check, made together.

Judging one example costs a few calls of the rule (its value, the batch reversed, the extra
Jacobian axis and its folded twin), an autograd call of the layer and the finite differences
of every direction. For a group of examples, :func:`group_calls` makes each of them once:

* the rule's four calls on the examples concatenated along the batch axis;
* torch autograd of the layer on the same concatenation;
* the finite differences of every (example, direction) pair through
  :func:`jacverify.check.references.directional_derivatives_many`.

Each example then gets its slices (an :class:`ExampleCalls`), which the per-example probes
judge exactly as they judge their own calls' results. Whatever cannot be evaluated together
makes :func:`group_calls` give up (return None) so that the caller evaluates those examples
one by one, which stays the reference: a rule or a layer that raises on the concatenation,
returns another shape, or whose rows depend on the other rows of the batch (the first
example's rows alone must equal its rows in the group, and the reversed group must give the
same rows). The extra-axis calls, autograd and finite differences, when they raise or differ
in shape together, are left out for each example to make on its own (it then reports what
went wrong exactly as it always does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jacverify.check.calls import call_rule
from jacverify.check.references import (
    FD_ORDER,
    JUMP_LADDER,
    ReferenceUnavailable,
    autograd_vjp,
    directional_derivatives_many,
    fd_steps,
)
from jacverify.check.strategies import Example

__all__ = ["ExampleCalls", "chunks", "group_calls", "group_size", "second_gradient"]

#: The float64 values the largest arrays of one group may hold (32 MB).
GROUP_VALUES = 2**22


@dataclass
class ExampleCalls:
    """One example's slices of the group's calls (None: not made together, the example makes
    it on its own)."""

    rule_out: np.ndarray  # the rule's output, shaped like the example's x
    swapped: np.ndarray | None = None  # the output with the batch reversed, in x's row order
    both: np.ndarray | None = None  # the output for the gradient with an extra axis
    folded: np.ndarray | None = None  # the same gradients given as a batch
    autograd: np.ndarray | None = None
    references: tuple | None = None  # (Directional, (step_left, step_right), at_kink)


def group_size(n_in: int, n_out: int, directions: int) -> int:
    """How many examples one group holds: the finite differences of an example evaluate
    about ``(2 L + 2 + 3 (order + 1)) k`` points of ``n_in`` values (and ``n_out`` outputs)
    at once, and a group's must fit :data:`GROUP_VALUES`."""
    per_point = (2 * len(JUMP_LADDER) + 2 + 3 * (FD_ORDER + 1)) * max(1, directions)
    return max(1, GROUP_VALUES // (per_point * max(1, n_in + n_out)))


def second_gradient(example: Example) -> np.ndarray:
    """The other upstream gradient of the extra-axis probe: ``(2, 2, *output_shape)``, the
    example's ``g`` and a random one per row."""
    g = example.g
    other = np.random.default_rng([example.spec.seed, 7]).standard_normal(g.shape)
    return np.stack([g, other.astype(g.dtype)], axis=1)


def _same(got: np.ndarray, expected: np.ndarray, eps: float) -> bool:
    """Two computations of the same values agree to rounding (NaN where the other is NaN)."""
    if got.shape != expected.shape:
        return False
    got, expected = got.astype(np.float64), expected.astype(np.float64)
    if not np.array_equal(np.isfinite(got), np.isfinite(expected)):
        return False
    finite = np.isfinite(got)
    size = np.abs(got[finite]) + np.abs(expected[finite])
    allowed = 64 * eps * (size + float(np.max(size, initial=0.0))) + 1e-300
    return bool(np.all(np.abs(got[finite] - expected[finite]) <= allowed))


def _rule_outputs(rule, examples: Sequence[Example], eps: float) -> tuple | None:
    """The rule's output on the concatenated examples and with the whole batch reversed (in
    the concatenation's row order); None unless the rows are independent of each other."""
    x = np.concatenate([e.x for e in examples])
    g = np.concatenate([e.g for e in examples])
    try:
        out = call_rule(rule, g, x)
        alone = call_rule(rule, examples[0].g, examples[0].x)
        swapped = call_rule(rule, g[::-1].copy(), x[::-1].copy())
    except Exception:  # noqa: BLE001 - evaluated one by one, where it is a finding
        return None
    rows = len(examples[0].x)
    if out.shape != x.shape or not _same(out[:rows], alone, eps):
        return None
    if swapped.shape != x.shape or not _same(swapped[::-1], out, eps):
        return None
    return out, swapped[::-1]


def _extra_axes_outputs(rule, examples: Sequence[Example]) -> tuple | None:
    """The rule's output for gradients with an extra axis, and for the same gradients as a
    batch with the inputs repeated; None when a call raises or has another shape."""
    x = np.concatenate([e.x for e in examples])
    stacked = np.concatenate([second_gradient(e) for e in examples])
    try:
        both = call_rule(rule, stacked, x)
        folded = call_rule(rule, stacked.reshape(-1, *stacked.shape[2:]),
                           np.repeat(x, 2, axis=0))
    except Exception:  # noqa: BLE001 - evaluated one by one, where it is a finding
        return None
    if both.shape != (x.shape[0], 2, *x.shape[1:]) or folded.shape != (2 * x.shape[0],
                                                                       *x.shape[1:]):
        return None
    return both, folded


def _autograd(layer, examples: Sequence[Example], eps: float) -> np.ndarray | None:
    """Autograd's ``g^T J`` of the concatenated examples; None when it is unavailable or the
    first example's rows depend on the others."""
    x = np.concatenate([e.x for e in examples])
    g = np.concatenate([e.g for e in examples])
    try:
        grads = autograd_vjp(layer, x, g)
        alone = autograd_vjp(layer, examples[0].x, examples[0].g)
    except ReferenceUnavailable:
        return None
    if grads.shape != x.shape or not _same(grads[: len(alone)], alone, eps):
        return None
    return grads


def _references(fd, kinks, examples: Sequence[Example], outputs: Sequence[np.ndarray]):
    """Every example's finite differences (None for an example whose rule output is not
    finite: it is judged without them; all None when they raise)."""
    wanted, lines, steps = [], [], []
    for i, (example, out) in enumerate(zip(examples, outputs, strict=True)):
        if not np.all(np.isfinite(out.astype(np.float64))):
            continue
        x0 = example.x[0].reshape(-1).astype(np.float64)
        g0 = example.g[0].reshape(-1).astype(np.float64)
        left, right, at_kink = fd_steps(x0, example.directions, kinks, fd.eps)
        wanted.append(i)
        lines.append((x0, g0, example.directions, left, right))
        steps.append(((left, right), at_kink))
    found: list = [None] * len(examples)
    try:
        directional = directional_derivatives_many(fd, lines)
    except Exception:  # noqa: BLE001 - computed again per example, which reports it
        return found
    for i, d, (pair, at_kink) in zip(wanted, directional, steps, strict=True):
        found[i] = (d, pair, at_kink)
    return found


def group_calls(
    rule, layer, fd, kinks, examples: Sequence[Example], *, eps: float,
    extra_axes: bool, autograd: bool,
) -> list[ExampleCalls] | None:
    """Each example's slices of the group's calls, or None when the group must be evaluated
    one example at a time (see the module's docstring). The extra-axis calls (with
    ``extra_axes``) and autograd (with ``autograd``) are left to each example when they cannot
    be made together."""
    if not examples or len({e.x.shape for e in examples}) != 1 or len(
        {e.g.shape for e in examples}
    ) != 1:
        return None
    outputs = _rule_outputs(rule, examples, eps)
    if outputs is None:
        return None
    out, swapped = outputs
    axes = _extra_axes_outputs(rule, examples) if extra_axes else None
    grads = _autograd(layer, examples, eps) if autograd else None
    rows = len(examples[0].x)
    sliced = [slice(i * rows, (i + 1) * rows) for i in range(len(examples))]
    calls = [ExampleCalls(rule_out=out[s], swapped=swapped[s]) for s in sliced]
    for i, (call, s) in enumerate(zip(calls, sliced, strict=True)):
        if axes is not None:
            call.both = axes[0][s]
            call.folded = axes[1][2 * i * rows: 2 * (i + 1) * rows]
        if grads is not None:
            call.autograd = grads[s]
    references = _references(fd, kinks, examples, [c.rule_out for c in calls])
    for call, found in zip(calls, references, strict=True):
        call.references = found
    return calls


def chunks(items: Sequence, size: int) -> list[Sequence]:
    """``items`` in consecutive chunks of at most ``size``."""
    size = max(1, int(size))
    return [items[i: i + size] for i in range(0, len(items), size)]
