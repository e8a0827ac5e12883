"""Directions where a lower-precision derivative cannot be judged: the layer's own derivative,
computed in the rule's dtype, is as far from the float64 references as the rule is.

A float32 derivative is only known to its rounding, and at some inputs the checker draws on
purpose that rounding is far larger than the tolerance model's estimate: attention scores of
``1e6`` (queries and keys of magnitude 1000), whose float32 ulp of 0.06 moves the softmax
weights by percents; ``x / |x|_3`` at ``x = (a, 0, 0, 0)``, whose derivative 0 is the
difference of two terms of size ``1 / a``. There torch autograd in float32 and a correct
float32 rule agree with each other and not with finite differences, while autograd of the
float64 clone agrees with finite differences.

That disagreement is a measurement: autograd in the rule's dtype against the float64
references (finite differences, and autograd of the float64 clone agreeing with them) is how
far the rule's dtype moves the layer's own derivative along that direction at that input. A
direction where the rule is no farther from the float64 references than that (plus the
direction's tolerance) is not judged (``noisy``): neither a pass nor a fail, and the note says
why. The checker thus asks a float32 rule to be as accurate as the backend's own float32
derivative, not more. A rule farther off keeps its judgement (a rule whose cancellation is
worse than torch's own is still caught); a rule right everywhere else but wrong only by less
than float32 rounding at such inputs cannot be told apart from a right one in float32, by any
reference.

A float64 layer can be in the same position: Keras on torch computes some float64 operations
in float32 (``matmul``, ``dot``, ``tensordot``, ``norm``: its type promotion turns 64-bit
results into 32-bit ones, see :mod:`jacverify.backward.precision`), so torch autograd of a
float64 ``Attention``, ``Dot`` or ``Normalize`` is only float32-precise, while the finite
differences and autograd of the float64 clone run within
:func:`jacverify.check.references.true_float64`. :func:`autograd_less_precise` says when
autograd of the layer is the lower-precision one, whatever the layer's dtype is called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jacverify.check.compare import DirectionJudgement
from jacverify.check.references import effective_eps
from jacverify.verdicts import Verdict

_WRONG = (Verdict.FAIL.value, Verdict.BOUNDARY.value)
_DECIDED = (Verdict.PASS.value, Verdict.UNJUDGED.value)


def autograd_less_precise(layer_dtype: str, fd_dtype: str, fd_eps: float) -> bool:
    """Whether torch autograd of a layer computing in ``layer_dtype`` is less precise than
    finite differences computed in ``fd_dtype`` to ``fd_eps``: a lower dtype (float32 against
    the float64 clone), or float64 that Keras computes partly in float32 on this backend
    (while the finite differences are float64-precise)."""
    return layer_dtype != fd_dtype or effective_eps(layer_dtype) > fd_eps


def autograd_precision(layer_dtype: str) -> str:
    """How reports name the precision of torch autograd of a layer of ``layer_dtype``:
    ``"float32"``, or ``"float64 (Keras' float32 products)"`` where Keras computes some
    float64 operations in float32."""
    try:
        exact = float(np.finfo(np.dtype(layer_dtype)).eps) == effective_eps(layer_dtype)
    except (TypeError, ValueError):
        exact = True
    return layer_dtype if exact else f"{layer_dtype} (Keras' float32 products)"


def references_disagree(judgement: DirectionJudgement) -> bool:
    """Whether a direction is undecided because autograd disagrees with finite differences:
    ``inconclusive``, or ``fail``/``boundary`` while the two references disagree (the rule
    may then be closer to finite differences than autograd is)."""
    return judgement.verdict == Verdict.INCONCLUSIVE.value or (
        judgement.verdict in _WRONG and judgement.refs_agree is False
    )


def within_rounding(
    first: DirectionJudgement, again: DirectionJudgement
) -> bool:
    """Whether the rule is no farther from the float64 references along a direction than
    autograd in the rule's dtype is (plus the direction's tolerance). ``first``: the
    direction judged with autograd in the rule's dtype (the references disagreed, see
    :func:`references_disagree`); ``again``:
    judged with autograd of the float64 clone (which agreed with finite differences, and the
    rule did not)."""
    if not references_disagree(first) or again.verdict not in _WRONG:
        return False
    if first.autograd is None or again.autograd is None or again.refs_agree is False:
        return False
    autograd_off = abs(first.autograd - again.reference)
    return abs(again.rule - again.reference) <= autograd_off + first.tolerance


def rounding_unjudged(
    first: Sequence[DirectionJudgement], again: Sequence[DirectionJudgement]
) -> list[DirectionJudgement]:
    """The directions judged again with autograd of the float64 clone: those the first
    judgement decided (passed, or left unjudged) keep it; those :func:`within_rounding` are
    ``noisy`` (unjudged), the measured rounding in their note; the others take the second
    judgement."""
    result = []
    for one, two in zip(first, again, strict=True):
        if one.verdict in _DECIDED:
            two = one
        elif within_rounding(one, two):
            rounding = abs(one.autograd - two.autograd)
            two = dataclasses.replace(
                two, location="noisy", verdict=Verdict.UNJUDGED.value, error=0.0,
                rel_error=0.0,
                note=(f"not judged: the layer's own derivative moves by {rounding:.3g} under "
                      f"the rule's rounding here (autograd {one.autograd:.6g} in the rule's "
                      f"dtype, {two.autograd:.6g} in float64), and the rule is "
                      f"{abs(two.rule - two.reference):.3g} from the float64 references"),
            )
        result.append(two)
    return result
