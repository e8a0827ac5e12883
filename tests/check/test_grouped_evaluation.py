"""Examples evaluated in groups are judged exactly as one by one.

The one-by-one path (``Evaluator.__call__``) is the reference. For right rules and wrong ones
from ``checks/`` (wrong in value, at kinks, in ties; mixing the batch; broken on extra Jacobian
axes; raising; returning the wrong shape), every explored example gets the same verdict,
headline probe, finding per probe, coordinate and direction verdicts both ways, and the
messages of findings that are not passes name the same places and figures (to the digits they
are printed with). The one allowance: when two directions are wrong by nearly the same ratio
to their tolerance (within 10 %), either may be the one named.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from checks.corpus import all_cases, by_name
from jacverify.check.example_group import group_calls, group_size
from jacverify.check.preparation import prepare
from jacverify.check.probes import Evaluator, search_label, search_severity
from jacverify.check.runner import search
from jacverify.check.settings import CheckSettings
from jacverify.check.strategies import example_specs, kink_sweep
from tests.check.tutorial_layers import BackwardClipCorrect, Clip

#: A fast selection: right and wrong rules of custom and native layers, one or two inputs.
FAST_CASES = (
    "clip_correct",
    "clip_wrong_at_vmax",
    "clip_tutorial",
    "linear_map_3x4_untransposed",
    "vee_correct",
    "pair_max_correct",
    "swish_batch_mean",
    "vee_first_example",
    "dense_relu_fold_order",
    "plus_constant_drops_extra_axes",
    "swish_attribute_typo",
    "vee_flattened",
    "relu_max0_no_extra_axes",
)

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _evaluator(case, seed: int = 0) -> Evaluator:
    keras.utils.set_random_seed(seed)
    settings = CheckSettings(examples=12, seed=seed, **case.options)
    setup = prepare(case.layer(), case.rule, settings, input_shape=case.input_shape)
    return Evaluator(setup)


def _explored_both_ways(evaluator: Evaluator, examples: int = 12, seed: int = 0):
    """Each explored spec's outcome one by one and in groups (as the search draws them)."""
    setup = evaluator.setup
    grouped: dict = {}

    def evaluate_many(specs):
        outcomes = evaluator.evaluate_many(specs)
        grouped.update(zip(specs, outcomes, strict=True))
        return outcomes

    search(example_specs(setup.n, len(setup.kinks)), evaluator, search_label,
           examples=examples, seed=seed, shrink_verdicts=(), severity=search_severity,
           shrink_budget=0, explicit=kink_sweep(len(setup.kinks), examples // 4),
           evaluate_many=evaluate_many)
    return [(spec, evaluator(spec), outcome) for spec, outcome in grouped.items()]


def _same_message(one: str, other: str) -> None:
    """The same sentence, naming the same places, with the same figures (to the 6 digits
    they are printed with, up to rounding), but for a tolerance: it holds scipy's error
    estimate, a difference of nearly equal extrapolations that rounding moves by up to its own
    size, so a tolerance may change by up to a factor of 2."""
    assert _NUMBER.sub("#", one) == _NUMBER.sub("#", other), (one, other)
    tolerances = {m.end() for m in re.finditer(r"tolerance ", one)}
    for match, b in zip(_NUMBER.finditer(one), _NUMBER.findall(other), strict=True):
        a = float(match.group())
        if match.start() in tolerances:
            assert 0.5 * a <= float(b) <= 2.0 * a, (one, other)
        else:
            np.testing.assert_allclose(a, float(b), rtol=1e-4, atol=0, err_msg=one)


def _near_tie(one, other) -> bool:
    """The value findings name different directions that are nearly tied: the direction the
    other evaluation names is, in this one, as wrong (same verdict) and within 10 % of the
    worst error-to-tolerance ratio. Tolerances hold finite-difference error estimates
    (differences of nearly equal extrapolations) that rounding moves by a few percent."""
    if one.worst is None or other.worst is None:
        return False
    named = one.judgements[other.worst.k]
    return named.verdict == one.worst.verdict and named.ratio >= 0.9 * one.worst.ratio


def _assert_same_outcome(one, other) -> None:
    assert (one.verdict, one.probe) == (other.verdict, other.probe)
    assert sorted(one.findings) == sorted(other.findings)
    for probe, finding in one.findings.items():
        twin = other.findings[probe]
        assert finding.verdict == twin.verdict, probe
        if probe == "value" and finding.coordinate != twin.coordinate and _near_tie(one, other):
            continue
        assert finding.coordinate == twin.coordinate, probe
        if finding.verdict not in ("pass", "unjudged"):
            # (A passing example names the direction closest to its tolerance, which among
            # errors of rounding size is any of them.)
            _same_message(finding.message, twin.message)
    assert [(j.location, j.verdict) for j in one.judgements] == [
        (j.location, j.verdict) for j in other.judgements
    ]
    for j, twin in zip(one.judgements, other.judgements, strict=True):
        # Rounding moves the rule (a float32 rule summing in another order) and the
        # references far less than the tolerance they are judged with.
        if np.isfinite(j.tolerance):
            for ours, theirs in ((j.rule, twin.rule), (j.reference, twin.reference)):
                same = ours == theirs or (np.isnan(ours) and np.isnan(theirs))
                assert same or abs(ours - theirs) <= 0.25 * j.tolerance, (j, twin)


@pytest.mark.parametrize("name", FAST_CASES)
def test_grouped_examples_are_judged_as_one_by_one(name):
    case = by_name(name)
    pairs = _explored_both_ways(_evaluator(case))
    assert len(pairs) >= 10
    for _spec, one, grouped in pairs:
        _assert_same_outcome(one, grouped)
    if case.wrong:  # the wrong rule is caught in the groups too
        assert any(o.verdict in case.accepted for _, _, o in pairs)
    else:
        assert all(o.verdict in ("pass", "unjudged") for _, _, o in pairs)


#: Known difference: next to a kink inside Richardson's steps (a Bidirectional LSTM's), two
#: directions of two examples are judged differently (one-sided estimates 5 to 10 % apart),
#: though every example's verdict is the same both ways. The estimate there moves as much with
#: rounding alone: one example's Richardson rows, evaluated one by one, give -0.06610 with the
#: ladder's cached values and -0.06695 without them (rounding-level differences of phi).
_KNOWN_DIFFERENCES = {"bidirectional_not_reflipped"}


def _corpus_params() -> list:
    return [
        pytest.param(c.name, marks=pytest.mark.xfail(
            reason="direction judgements differ next to a kink inside the steps"))
        if c.name in _KNOWN_DIFFERENCES else c.name
        for c in all_cases()
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", _corpus_params())
def test_every_corpus_case_is_judged_as_one_by_one(name):
    case = by_name(name)
    for _spec, one, grouped in _explored_both_ways(_evaluator(case)):
        _assert_same_outcome(one, grouped)


def test_a_rule_mixing_the_batch_is_evaluated_one_by_one():
    """The group's calls are refused when a rule's rows depend on the other rows: the rows of
    the first example alone differ from its rows in the group."""
    evaluator = _evaluator(by_name("swish_batch_mean"))
    examples = [evaluator.materialize(s) for s in _some_specs(evaluator, 4)]
    calls = group_calls(evaluator.rule, evaluator.layer, evaluator.setup.fd, evaluator.kinks,
                        examples, eps=evaluator.rule_eps, extra_axes=True, autograd=True)
    assert calls is None


def test_a_row_independent_rule_is_evaluated_in_groups():
    evaluator = _evaluator(by_name("clip_correct"))
    examples = [evaluator.materialize(s) for s in _some_specs(evaluator, 5)]
    calls = group_calls(evaluator.rule, evaluator.layer, evaluator.setup.fd, evaluator.kinks,
                        examples, eps=evaluator.rule_eps, extra_axes=True, autograd=True)
    assert calls is not None and len(calls) == 5
    for example, call in zip(examples, calls, strict=True):
        one = evaluator.evaluate(example)
        np.testing.assert_allclose(call.rule_out, one.rule_output, rtol=1e-6)
        np.testing.assert_allclose(call.autograd, one.autograd_output, rtol=1e-6)
        assert call.references is not None


def test_groups_fit_the_memory_bound():
    small = group_size(16, 16, 20)
    large = group_size(64 * 64 * 3, 64 * 64 * 3, 8)
    assert small >= 100
    assert 1 <= large < 10
    assert group_size(10**8, 1, 8) == 1


def test_a_clip_check_gives_the_same_result_grouped_and_one_by_one(monkeypatch):
    """The whole check: the same verdict, counterexample and tallies."""
    from jacverify import check_layer

    def check():
        keras.utils.set_random_seed(0)
        return check_layer(Clip(vmin=-1.0, vmax=1.0), BackwardClipCorrect, input_shape=(5,),
                           examples=20, seed=3, evidence=False)

    grouped = check()
    monkeypatch.setattr(Evaluator, "evaluate_many",
                        lambda self, specs: [self(spec) for spec in specs])
    one_by_one = check()
    assert grouped.verdict == one_by_one.verdict == "pass"
    assert [(f.probe, f.verdict, f.examples) for f in grouped.findings] == [
        (f.probe, f.verdict, f.examples) for f in one_by_one.findings
    ]


def _some_specs(evaluator: Evaluator, count: int) -> list:
    specs: list = []

    def keep(many):
        specs.extend(many)
        return [None] * len(many)

    setup = evaluator.setup
    search(example_specs(setup.n, len(setup.kinks)), evaluator, lambda outcome: "pass",
           examples=count, seed=1, shrink_verdicts=(), severity=lambda label: 0,
           shrink_budget=0, evaluate_many=keep)
    return specs[:count]
