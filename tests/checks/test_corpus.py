"""The fault corpus (checks/): its structure, its scoring, and a fast subset of its cases.

The whole corpus over five seeds is ``python -m checks`` (or ``pytest -m slow``)."""

from __future__ import annotations

from collections import Counter

import pytest

from checks.case import CATEGORIES, DETECTED, Case, correct, wrong
from checks.corpus import all_cases, by_name, select
from checks.layers import BackwardSwish, Swish
from checks.metrics import summarize
from checks.outcomes import Run, run_case
from checks.run import main
from jacverify import registered_rules

#: Representative cases: every verdict, single- and two-input layers, custom and native rules,
#: a tie, a kink, batch mixing and extra Jacobian axes. One seed, few examples: fast.
FAST = [
    "clip_correct",
    "pair_max_correct",
    "clip_tutorial",
    "clip_wrong_at_vmax",
    "linear_map_untransposed",
    "conv1d_kernel_flipped",
    "vee_first_example",
    "dense_relu_fold_order",
    "max_pool_ties_all",
    "pair_max_tie_both",
    "swish_overflow",
    "vee_flattened",
    "plus_constant_not_implemented",
    "elu_half_alpha_no_extra_axes",
    "maximum_callable_correct",
]
FAST_EXAMPLES = 20
#: The corpus has no custom convolution: this category is native only.
NATIVE_ONLY = {"conv_kernel"}


def _is_custom(case: Case) -> bool:
    """A layer whose rule does not ship with jacverify (Keras' layers and jacverify's own
    loss layers have native rules)."""
    layer = case.layer()
    layer = getattr(layer, "operation", layer)  # a keras.ops call through the adapter
    entry = registered_rules().get(type(layer))
    return entry is None or entry.source != "native"


# ------------------------------------------------------------------------------ structure
def test_corpus_has_at_least_40_wrong_rules_with_unique_names():
    cases = all_cases()
    assert len({c.name for c in cases}) == len(cases)
    assert sum(c.wrong for c in cases) >= 40


def test_every_category_has_several_cases_over_custom_and_native_layers():
    cases = all_cases()
    counts = Counter(c.category for c in cases)
    for category in CATEGORIES:
        assert counts[category] >= 3, f"{category}: {counts[category]} cases"
        kinds = {_is_custom(c) for c in cases if c.category == category}
        if category not in NATIVE_ONLY:
            assert kinds == {True, False}, f"{category} is not spread over custom and native"


def test_every_custom_layer_has_a_correct_rule():
    cases = all_cases()
    custom = {type(c.layer()) for c in cases if _is_custom(c)}
    with_correct = {type(c.layer()) for c in cases if _is_custom(c) and not c.wrong}
    assert custom and custom == with_correct, custom - with_correct


def test_cases_declare_consistent_verdicts():
    for case in all_cases():
        assert case.expected in case.accepted
        if case.wrong:
            assert case.accepted <= DETECTED
        else:
            assert case.accepted == {"pass"} and case.category == "correct"
        assert case.description


def test_a_wrong_case_cannot_expect_pass_nor_a_correct_one_fail():
    with pytest.raises(ValueError):
        wrong("x", Swish, (3,), BackwardSwish, "pass", "sign", "a wrong rule expecting pass")
    with pytest.raises(ValueError):
        Case("x", Swish, (3,), BackwardSwish, "fail", "correct", "correct, expecting fail")
    with pytest.raises(ValueError):
        wrong("x", Swish, (3,), BackwardSwish, "fail", "no_such_category", "bad category")
    assert correct("x", Swish, (3,), BackwardSwish, "ok").accepted == {"pass"}


def test_select_matches_names_and_categories():
    assert {c.name for c in select("clip_tu")} == {"clip_tutorial"}
    assert {c.category for c in select("tie")} == {"tie"}
    assert len(select("*")) == len(all_cases())
    assert by_name("clip_tutorial").expected == "fail"


# -------------------------------------------------------------------------------- scoring
def _run(name: str, verdict: str) -> Run:
    return Run(by_name(name), 0, verdict, "", 1.0, baselines={"allclose": verdict != "pass"})


def test_summary_counts_misses_false_alarms_and_inexact_verdicts():
    runs = [
        _run("clip_tutorial", "fail"),
        _run("clip_thin_band", "fail"),  # detected, legitimate, not the exact verdict
        _run("clip_wrong_at_vmax", "pass"),  # missed
        _run("vee_thin_band", "skipped"),  # not detected either
        _run("clip_correct", "boundary"),  # false alarm
        _run("vee_correct", "inconclusive"),  # not a false alarm, but not pass
    ]
    summary = summarize(runs)
    assert (summary.detection.hits, summary.detection.total) == (2, 4)
    assert (summary.exact.hits, summary.accepted.hits) == (1, 2)
    assert (summary.false_alarms.hits, summary.false_alarms.total) == (1, 2)
    assert summary.correct_not_pass == Counter({"boundary": 1, "inconclusive": 1})
    assert summary.baseline_detection["allclose"].hits == 3  # flagged unless "pass"
    assert not summary.perfect
    assert summarize([_run("clip_tutorial", "error"), _run("clip_correct", "pass")]).perfect


# ------------------------------------------------------------------------- the fast subset
@pytest.mark.parametrize("name", FAST)
def test_fast_subset_reaches_the_declared_verdict(name):
    case = by_name(name)
    run = run_case(case, 0, examples=FAST_EXAMPLES)
    assert run.verdict == case.expected, run.reason


def test_command_exits_zero_when_every_case_is_right(capsys):
    code = main(["--only", "plus_constant_negated", "--seeds", "1", "--examples", "10",
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "plus_constant_negated" in out and "detection" in out and "1/1 (100.0%)" in out


def test_command_exits_nonzero_when_a_correct_rule_is_flagged(monkeypatch, capsys):
    import checks.run as run_module

    def flag_everything(case, seed, *, examples, baselines=False):
        return Run(case, seed, "fail", "flagged", 0.0)

    monkeypatch.setattr(run_module, "run_case", flag_everything)
    assert main(["--only", "clip_correct", "--seeds", "2", "--quiet"]) == 1
    assert "FALSE ALARM" in capsys.readouterr().out


# ------------------------------------------------------------------ the whole corpus (slow)
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", [c.name for c in all_cases()])
def test_whole_corpus(name, seed):
    case = by_name(name)
    run = run_case(case, seed, examples=100)
    assert run.ok, f"{run.verdict}: {run.reason}"
