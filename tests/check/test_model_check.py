"""check_model: every call of a model checked in place, then the backward model end to end."""

import keras
import numpy as np
import pytest
from keras import layers as L

from jacverify import check_model
from jacverify.examples.tutorial import BackwardClip, BackwardClipCorrect, Clip


def _model(name="toy"):
    inp = keras.Input((6,))
    h = L.Dense(8, activation="relu", name="dense_in")(inp)
    h = Clip(0.0, 2.0, name="my_clip")(h)
    a = L.Dense(4, name="branch_a")(h)
    b = L.Dense(4, activation="tanh", name="branch_b")(h)
    m = L.Maximum(name="merge_max")([a, b])
    out = L.Dense(1, name="head")(m + 3.0)
    return keras.Model(inp, out, name=name)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return _model()


def test_correct_rules_pass_in_place_and_end_to_end(model):
    seen = []
    result = check_model(model, {Clip: BackwardClipCorrect}, examples=15, seed=0,
                         progress=lambda i, n, label: seen.append((i, n, label)))
    assert result.verdict == "pass", result.summary()
    names = [c.layer_name for c in result.layers]
    assert names[:5] == ["dense_in", "my_clip", "branch_a", "branch_b", "merge_max"]
    assert names[5].startswith("add") and names[6] == "head"  # the keras.ops call `m + 3.0`
    assert result.end_to_end is not None and result.end_to_end.verdict == "pass"
    assert result.end_to_end.reference.float64_clone  # the whole model ran in float64
    assert [s[2] for s in seen][-1] == "toy (end to end)" and seen[0][1] == 8
    assert result.first_failure is None


def test_broken_custom_rule_is_named_first(model):
    result = check_model(model, {Clip: BackwardClip}, examples=15, seed=0)
    assert result.verdict == "fail"
    assert result.first_failure is not None and result.first_failure.layer_name == "my_clip"
    assert result.first_failure.rule_class == "BackwardClip"
    # The other rules are right in place; the wrong one breaks the whole backward model.
    others = [c.verdict for c in result.layers if c.layer_name != "my_clip"]
    assert set(others) == {"pass"}
    assert result.end_to_end.verdict in ("fail", "boundary")
    assert "first failing layer: my_clip" in result.summary()


def test_same_seed_same_result(model):
    a = check_model(model, {Clip: BackwardClip}, examples=10, seed=3, end_to_end=False)
    b = check_model(model, {Clip: BackwardClip}, examples=10, seed=3, end_to_end=False)
    assert [c.verdict for c in a.layers] == [c.verdict for c in b.layers]
    ca, cb = a.first_failure.counterexample, b.first_failure.counterexample
    np.testing.assert_array_equal(ca.input, cb.input)
    assert ca.message == cb.message


def test_layers_are_checked_around_the_given_activations(model):
    x = np.full((2, 6), 0.25, dtype="float32")
    result = check_model(model, {Clip: BackwardClipCorrect}, inputs=x, examples=5, seed=0,
                         end_to_end=False)
    assert "2 inputs" in result.notes[0]
    with pytest.raises(ValueError, match="shape"):
        check_model(model, {Clip: BackwardClipCorrect}, inputs=np.zeros((2, 5)), seed=0)


def test_nested_models_and_shared_layers_get_qualified_names():
    keras.utils.set_random_seed(1)
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, L.Dense(4, activation="elu", name="d")(inner_in), name="block")
    inp = keras.Input((4,))
    shared = L.Dense(4, name="shared")
    out = L.Add(name="sum")([inner(shared(inp)), shared(inp)])
    result = check_model(keras.Model(inp, out), examples=8, seed=0)
    names = [c.layer_name for c in result.layers]
    assert "block/d" in names and "shared (call 2)" in names
    assert result.verdict == "pass", result.summary()


def test_integer_inputs_are_skipped_with_the_reason():
    keras.utils.set_random_seed(2)
    inp = keras.Input((3,), dtype="int32")
    h = L.Embedding(5, 4, name="embed")(inp)
    out = L.Dense(2, name="proj")(h)
    result = check_model(keras.Model(inp, out), examples=8, seed=0)
    embed = result.layers[0]
    assert embed.verdict == "skipped" and "not differentiable" in embed.reason
    assert result.layers[1].verdict == "pass"
    assert result.end_to_end.verdict == "skipped"


class Mystery(keras.layers.Layer):
    """No rule, and it cannot be traced (it calls torch directly)."""

    def call(self, x):
        import torch

        return torch.tanh(x)


def _mystery_model():
    """A layer without a rule between a Dense and the tutorial's Clip (rules given)."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((3,))
    h = L.Dense(3, name="embed")(inp)
    h = Mystery(name="mystery")(h)
    out = Clip(-0.2, 0.2, name="clip")(h)
    return keras.Model(inp, out, name="custom")


def test_a_call_without_a_rule_is_reported_and_the_others_are_checked():
    result = check_model(_mystery_model(), {Clip: BackwardClipCorrect}, examples=6, seed=0)
    verdicts = {c.layer_name: c.verdict for c in result.layers}
    assert verdicts == {"embed": "pass", "mystery": "no rule", "clip": "pass"}
    mystery = result.layers[1]
    assert mystery.rule_class is None and "Mystery" in mystery.reason
    assert "docs/writing_rules.md" in mystery.reason
    assert [c.layer_name for c in result.without_rule] == ["mystery"]
    assert result.verdict == "no rule" and result.first_failure is None
    assert result.end_to_end.verdict == "skipped"
    assert "no backward rule (mystery)" in result.end_to_end.reason
    assert result.to_dict()["without_rule"] == ["mystery"]


def test_a_wrong_rule_is_still_found_next_to_a_call_without_one():
    result = check_model(_mystery_model(), {Clip: BackwardClip}, examples=20, seed=0)
    assert [c.verdict for c in result.layers] == ["pass", "no rule", "fail"]
    assert result.first_failure.layer_name == "clip"


def test_the_autograd_fallback_lists_its_calls_as_not_checked():
    result = check_model(_mystery_model(), {Clip: BackwardClipCorrect}, examples=6, seed=0,
                         fallback="autograd")
    mystery = result.layers[1]
    assert mystery.verdict == "skipped" and mystery.rule_class == "AutogradFallback"
    assert "not checked" in mystery.reason
    assert result.end_to_end.verdict == "pass"  # the backward model was built and checked
    with pytest.raises(ValueError, match="fallback"):
        check_model(_mystery_model(), fallback="jax")


def test_the_replay_call_meets_the_counterexample_again(model):
    first = check_model(model, {Clip: BackwardClip}, examples=15)  # a drawn seed
    failing = first.first_failure
    assert failing.replay_command == (
        f"check_model(model, mapping_keras2backward_classes, examples=15, seed={first.seed})"
    )
    assert f"replay: {failing.replay_command}" in failing.summary()
    again = eval(failing.replay_command, {"check_model": check_model, "model": model,
                                          "mapping_keras2backward_classes": {Clip: BackwardClip}})
    replayed = next(c for c in again.layers if c.layer_name == failing.layer_name)
    assert replayed.verdict == failing.verdict
    np.testing.assert_array_equal(replayed.counterexample.input, failing.counterexample.input)
    np.testing.assert_array_equal(replayed.counterexample.rule_output,
                                  failing.counterexample.rule_output)


def test_a_network_with_many_calls_starts_the_worker_server_before_preparing(monkeypatch):
    from jacverify.check import model_check
    from jacverify.check.parallel import EARLY_SERVER_TASKS

    keras.utils.set_random_seed(0)
    x = keras.Input((4,))
    h = x
    for i in range(EARLY_SERVER_TASKS):
        h = L.ReLU(name=f"relu_{i}")(h)
    network = keras.Model(x, h, name="deep")
    requests = []
    monkeypatch.setattr(model_check, "prepare_workers",
                        lambda jobs, tasks: requests.append((jobs, tasks)))
    kwargs = dict(examples=2, seed=0, end_to_end=False, layers=["relu_0"])
    check_model(network, jobs=2, **kwargs)
    assert requests == [(2, EARLY_SERVER_TASKS)]
