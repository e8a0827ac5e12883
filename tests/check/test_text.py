"""The one plain-text renderer: replay lines, the pytest session's lines, array previews,
each against text written out by hand."""

from __future__ import annotations

import pytest

from jacverify.check import text


@pytest.mark.parametrize("check,expected", [
    ({"rule_class": "BackwardClip", "seed": 3},
     "check_layer(layer, BackwardClip, seed=3)"),
    ({"rule_class": None, "seed": None, "input_shape": [5], "convention": "autograd"},
     "check_layer(layer, Rule, input_shape=(5,), convention='autograd', seed=None)"),
    ({"rule_class": "R", "seed": 1, "convention": "subgradient",
      "counterexample": {"replay": {"example": {"x": [1.5]}}}},
     'check_layer(layer, R, seed=1)\ncheck_example(layer, R, example={"x": [1.5]})'),
])
def test_layer_replay_code(check, expected):
    assert text.layer_replay_code(check) == expected


@pytest.mark.parametrize("options,expected", [
    ({}, "check_model(model, seed=7)"),
    ({"examples": 20, "convention": "autograd"},
     "check_model(model, seed=7, examples=20, convention='autograd')"),
    ({"model": "my model.keras", "rules": ["rules.py"], "examples": 5},
     "check_model(model, seed=7, examples=5)\n"
     "jacverify check 'my model.keras' --rules rules.py --seed 7 --examples 5"),
])
def test_model_replay_code(options, expected):
    assert text.model_replay_code({"seed": 7}, options) == expected


def test_replay_lines_name_only_what_is_given():
    assert text.replay_lines() == []
    assert text.replay_lines(call="f(x)", note="`layer` is the layer checked") == [
        "replay:", "  f(x)", "  (`layer` is the layer checked)"]
    assert text.replay_lines(command="pytest 't.py::a'", example_call="g(1)") == [
        "replay:", "  pytest 't.py::a'", "  g(1)  # this input alone (jacverify.check)"]


def test_pytest_command_flags():
    assert text.pytest_command("t.py::a") == "pytest 't.py::a'"
    assert text.pytest_command("t.py::a", seed=4, examples=30) == (
        "pytest 't.py::a' --jacverify-seed 4 --jacverify-examples 30")


def test_keyword_arguments():
    options = {"input_shape": [[2, 3], [3]], "convention": "subgradient", "inputs": [1],
               "threads": 1, "kinks": [0.5]}
    assert text.keyword_arguments(options, skip=("threads",)) == [
        "input_shape=((2, 3), (3,))", "inputs=...", "kinks=[0.5]"]
    assert text.call_text("Clip", ["vmin=0.0", "vmax=2.0"]) == "Clip(vmin=0.0, vmax=2.0)"
    assert text.is_literal([1, "a", (None, 2.5)])
    assert not text.is_literal([object()])


def test_session_lines():
    assert text.session_tally_line({"pass": 10, "fail": 2}) == (
        "12 checks of backward rules: 10 pass, 2 fail")
    assert text.session_tally_line({}) == "0 checks of backward rules: -"
    assert text.session_tally_line({"pass": 1}) == "1 check of backward rules: 1 pass"
    record = {"verdict": "fail", "accepted": False, "label": "t.py::a", "rule_class": None,
              "layer_name": "clip", "layer_class": "Clip"}
    assert text.session_check_line(record) == (
        "  FAIL         failed   t.py::a: - for 'clip' (Clip)")


def test_array_preview():
    assert text.array_preview([[1.0, None, 3.0]]) == "[1, nan, 3] (shape 1\u00d73)"
    assert text.array_preview(list(range(5)), limit=2) == "[0, 1, \u2026] (5 values, shape 5)"
    assert text.array_preview(None) == "-"
