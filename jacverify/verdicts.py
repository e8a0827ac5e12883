"""Verdicts, kink conventions and probe names: the checker's vocabulary, in one place.

Every enum here is a ``str`` enum, so ``Verdict.FAIL == "fail"`` and JSON carries the plain
strings; code compares against the members, documents and user code may keep the strings.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Verdict(str, enum.Enum):
    """The verdict on a rule (or on one example, one direction, one probe)."""

    PASS = "pass"
    FAIL = "fail"  # wrong value at a smooth point
    BOUNDARY = "boundary"  # wrong value only at or next to a kink
    ERROR = "error"  # raised, wrong structure, shape or dtype, broken serialization
    NO_RULE = "no rule"  # a model call the builder has no rule for (reported by check_model)
    INCONCLUSIVE = "inconclusive"  # the references disagree or are too noisy
    SKIPPED = "skipped"  # not differentiable in its input, or not checkable at all
    UNJUDGED = "unjudged"  # internal: nothing was judged (an example, a direction)

    def __str__(self) -> str:
        return self.value


class Convention(str, enum.Enum):
    """What a rule must return at a kink."""

    SUBGRADIENT = "subgradient"  # anything between the one-sided derivatives
    AUTOGRAD = "autograd"  # torch autograd's own value

    def __str__(self) -> str:
        return self.value


class Probe(str, enum.Enum):
    """The properties of a rule the checker probes, each with its own finding."""

    STRUCTURE = "structure"  # the rule runs and returns one tensor per input, of its shape
    VALUE = "value"  # g^T J at smooth points and kinks, against the references
    DTYPE = "dtype"  # the rule computes in the layer's dtype (float64 in, float64 out)
    BATCH = "batch"  # each example's result is independent of the rest of the batch
    EXTRA_AXES = "extra_axes"  # gradients with extra Jacobian axes give one product each
    CONFIG = "config"  # the rule survives its get_config / from_config round trip

    def __str__(self) -> str:
        return self.value


#: Verdicts a check reports, in the order reports list them.
VERDICTS = tuple(
    v.value for v in (Verdict.PASS, Verdict.FAIL, Verdict.BOUNDARY, Verdict.ERROR,
                      Verdict.NO_RULE, Verdict.INCONCLUSIVE, Verdict.SKIPPED)
)
#: Severity order of verdicts, worst first.
SEVERITY = tuple(
    v.value for v in (Verdict.ERROR, Verdict.FAIL, Verdict.BOUNDARY, Verdict.NO_RULE,
                      Verdict.INCONCLUSIVE, Verdict.PASS, Verdict.SKIPPED, Verdict.UNJUDGED)
)
#: Verdicts that show a rule wrong.
WRONG_VERDICTS = (Verdict.FAIL.value, Verdict.BOUNDARY.value, Verdict.ERROR.value)
#: Verdicts that count as a failure for an exit status (a missing rule is one).
FAILING_VERDICTS = (*WRONG_VERDICTS, Verdict.NO_RULE.value)
#: The verdicts of a wrong value (the headline of a check whenever the value probe finds one).
VALUE_VERDICTS = (Verdict.FAIL.value, Verdict.BOUNDARY.value)
CONVENTIONS = tuple(c.value for c in Convention)
PROBES = tuple(p.value for p in Probe)


def severity(verdict: str) -> int:
    """Lower is worse: ``error`` 0, ``fail`` 1, ``boundary`` 2, ``no rule`` 3, ..."""
    return SEVERITY.index(str(verdict))


def worst_verdict(verdicts: Iterable[str]) -> str:
    """The most severe verdict of ``verdicts`` (``pass`` for none); ``unjudged`` counts as
    nothing, and ``skipped`` only wins when everything was skipped."""
    judged = [str(v) for v in verdicts if str(v) != Verdict.UNJUDGED]
    if not judged:
        return Verdict.PASS.value
    non_skipped = [v for v in judged if v != Verdict.SKIPPED]
    if not non_skipped:
        return Verdict.SKIPPED.value
    return min(non_skipped, key=severity)


def check_convention(convention: str) -> str:
    """``convention`` as a plain string; one clear error when it is not a convention."""
    if str(convention) not in CONVENTIONS:
        raise ValueError(
            f"convention must be one of {CONVENTIONS}, got {convention!r}: 'subgradient' "
            "accepts any value between the one-sided derivatives at a kink, 'autograd' "
            "requires torch autograd's value"
        )
    return str(convention)
