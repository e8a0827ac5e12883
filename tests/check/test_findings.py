"""Findings: every property probed on its own, the value first; rules made from the layer's
shapes; the checker's settings and vocabulary."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from keras import ops

from checks.cases_two_bugs import (
    CallableMaximum,
    CallableMaximumTiesFull,
    ELUIgnoresAlphaNoExtraAxes,
    SwishMissingBetaInFloat64,
)
from checks.layers import Swish
from jacverify import MissingBackwardRuleError, check_layer, make_rule
from jacverify.backward.rules.activations.elu import BackwardELU
from jacverify.backward.rules.activations.relu import BackwardReLU
from jacverify.check import CheckSettings, Finding, Probe, Verdict
from jacverify.check.aggregate import config_finding
from jacverify.check.probes import headline, search_severity
from jacverify.verdicts import VERDICTS, severity, worst_verdict

L = keras.layers
EXAMPLES = 25


# ------------------------------------------------------------------------------ headline
def _f(probe, verdict):
    return Finding(probe=probe, verdict=verdict, message=f"{probe} {verdict}")


@pytest.mark.parametrize(
    ("findings", "expected"),
    [
        ([("value", "fail"), ("extra_axes", "error")], ("value", "fail")),
        ([("value", "boundary"), ("structure", "error"), ("batch", "fail")],
         ("value", "boundary")),
        ([("value", "pass"), ("extra_axes", "error"), ("batch", "fail")],
         ("extra_axes", "error")),
        ([("value", "pass"), ("batch", "fail")], ("batch", "fail")),
        ([("value", "inconclusive"), ("dtype", "pass")], ("value", "inconclusive")),
        ([("value", "pass"), ("config", "skipped")], ("value", "pass")),
        ([("structure", "error")], ("structure", "error")),
    ],
)
def test_the_headline_is_the_value_when_it_is_wrong(findings, expected):
    top = headline({probe: _f(probe, verdict) for probe, verdict in findings})
    assert (top.probe, top.verdict) == expected


def test_the_search_ranks_a_wrong_value_before_any_other_finding():
    labels = ["extra_axes error", "value boundary", "value fail", "batch fail", "value pass"]
    assert sorted(labels, key=search_severity) == [
        "value fail", "value boundary", "extra_axes error", "batch fail", "value pass"
    ]


def test_verdicts_are_one_vocabulary():
    assert Verdict.FAIL == "fail" and str(Verdict.NO_RULE) == "no rule"
    assert "no rule" in VERDICTS
    assert severity("error") < severity("no rule") < severity("inconclusive")
    assert worst_verdict(["pass", "no rule", "inconclusive"]) == "no rule"
    assert json.dumps({"v": Verdict.BOUNDARY}) == '{"v": "boundary"}'


# ------------------------------------------------------------------- value AND another bug
def test_a_rule_wrong_in_value_and_raising_on_extra_axes_gets_the_value_verdict():
    check = check_layer(L.ELU(alpha=0.5), ELUIgnoresAlphaNoExtraAxes, input_shape=(6,),
                        seed=0, examples=EXAMPLES)
    assert check.verdict == "fail", check.summary()
    assert check.headline.probe == "value" and "x[0, " in check.reason
    extra = check.finding(Probe.EXTRA_AXES)
    assert extra.verdict == "error" and "RuntimeError" in extra.message
    assert "also extra_axes: error" in check.summary()


def test_the_same_rule_without_its_value_bug_is_an_error_for_its_extra_axes():
    class ELUNoExtraAxes(ELUIgnoresAlphaNoExtraAxes):
        call_on_reshaped_gradient = BackwardELU.call_on_reshaped_gradient

    check = check_layer(L.ELU(alpha=0.5), ELUNoExtraAxes, input_shape=(6,), seed=0,
                        examples=EXAMPLES)
    assert check.verdict == "error" and "extra Jacobian axis" in check.reason, check.summary()
    assert check.finding(Probe.VALUE).verdict == "pass"


def test_a_rule_wrong_in_value_and_in_dtype_gets_the_value_verdict():
    check = check_layer(Swish(beta=2.0), SwishMissingBetaInFloat64, input_shape=(5,), seed=0,
                        examples=EXAMPLES)
    assert check.verdict == "fail", check.summary()
    assert check.finding(Probe.DTYPE).verdict == "error"
    assert "float64" in check.finding(Probe.DTYPE).message


def test_every_probe_has_a_finding_in_json():
    check = check_layer(L.ReLU(), BackwardReLU, input_shape=(4,), seed=0, examples=10)
    data = json.loads(json.dumps(check.to_dict(), allow_nan=False))
    assert [f["probe"] for f in data["findings"]][0] == "value"
    assert {f["probe"] for f in data["findings"]} == {p.value for p in Probe}
    assert all(f["verdict"] in ("pass", "skipped") for f in data["findings"]), data["findings"]


# ----------------------------------------------------------------- any callable, any shape
def test_a_plain_callable_rule_without_its_shapes_is_checked_with_the_layer_shapes():
    right = check_layer(L.Maximum(), CallableMaximum, input_shape=[(4,), (4,)], seed=0,
                        examples=EXAMPLES)
    assert right.verdict == "pass", right.summary()
    assert right.rule_class == "CallableMaximum"
    assert right.finding(Probe.CONFIG).verdict == "skipped"
    wrong = check_layer(L.Maximum(), CallableMaximumTiesFull, input_shape=[(4,), (4,)],
                        seed=0, examples=EXAMPLES)
    assert wrong.verdict == "boundary", wrong.summary()


def test_a_rule_object_already_made_is_used_as_it_is():
    class Half:
        label = "half relu"

        def __call__(self, inputs):
            gradient, x = inputs
            return gradient * ops.cast(ops.greater(x, 0), gradient.dtype) * 0.5

    check = check_layer(L.ReLU(), Half(), input_shape=(4,), seed=0, examples=10)
    assert check.verdict == "fail" and check.rule_class == "half relu", check.summary()


# ------------------------------------------------------------------------------ make_rule
def test_make_rule_makes_the_registered_rule_from_shapes():
    layer = L.Dense(3)
    layer.build((None, 4))
    rule = make_rule(layer, [(4,)], [(3,)])
    assert rule.input_dim_wo_batch == [4] and rule.output_dim_wo_batch == [3]
    g = np.ones((2, 3), dtype="float32")
    out = keras.ops.convert_to_numpy(rule(g))
    np.testing.assert_allclose(out, g @ keras.ops.convert_to_numpy(layer.kernel).T, rtol=1e-6)


def test_make_rule_takes_several_shapes_as_lists():
    rule = make_rule(L.Maximum(), [(4,), (4,)], [(4,)])
    assert rule.input_dim_wo_batch == [[4], [4]] and rule.output_dim_wo_batch == [4]


def test_make_rule_returns_a_rule_object_unchanged_and_refuses_what_is_not_callable():
    obj = CallableMaximum(L.Maximum())
    assert make_rule(L.Maximum(), [(4,), (4,)], [(4,)], rule=obj) is obj
    with pytest.raises(TypeError, match="calling convention"):
        make_rule(L.ReLU(), [(4,)], [(4,)], rule=42)


def test_make_rule_says_when_there_is_no_rule():
    class Unknown(keras.layers.Layer):
        def call(self, x):
            return x

    with pytest.raises(MissingBackwardRuleError):
        make_rule(Unknown(), [(4,)], [(4,)])


# ------------------------------------------------------------------------------ settings
def test_settings_hold_the_options_and_refuse_bad_ones():
    settings = CheckSettings(examples=10, kinks=[1, 2.5])
    assert settings.kinks == (1.0, 2.5) and settings.shrink_evaluations == 50
    assert settings.with_seed().seed is not None
    assert settings.replace(seed=3).with_seed().seed == 3
    with pytest.raises(ValueError, match="convention must be one of"):
        CheckSettings(convention="jax")


def test_config_round_trip_finding():
    layer = L.ReLU()
    rule = make_rule(layer, [(4,)], [(4,)])
    assert config_finding(rule).verdict == "pass"
    assert config_finding(CallableMaximum(L.Maximum())).verdict == "skipped"

    class BrokenConfig(BackwardReLU):
        def get_config(self):
            raise RuntimeError("no config")

    broken = make_rule(layer, [(4,)], [(4,)], rule=BrokenConfig)
    finding = config_finding(broken)
    assert finding.verdict == "error" and "no config" in finding.message


def test_config_round_trip_of_a_wrapper_rule_passes():
    """Keras' Wrapper.from_config consumes its config dict: the probe must judge a copy, so the
    registered TimeDistributed rule (right, and saved fine) is not reported broken."""
    layer = L.TimeDistributed(L.Dense(2, activation="tanh"))
    layer.build((None, 3, 4))
    rule = make_rule(layer, [(3, 4)], [(3, 2)])
    config = rule.get_config()
    assert config_finding(rule).verdict == "pass"
    assert rule.get_config() == config
