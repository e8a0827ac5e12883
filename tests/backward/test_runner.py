"""The graph runner of backward models: with direct calls (``call`` without ``__call__``) the
outputs equal Keras' own path (``direct_calls(False)``) bit for bit, on keras.applications
models, keras_hub backbones, float64 models and layers traced per input shape; calls that
need ``__call__`` (masks, mixed dtype policies, activity regularizers, torch hooks, training)
keep it; and the backward still equals torch autograd."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
from keras import ops

from checks.cases_traced_per_shape import WindowMix
from jacverify import clone_to_backward
from jacverify.backward.precision import float64_precision
from jacverify.backward.rules.pre_activation import forward_state
from jacverify.backward.rules.traced_per_shape import BackwardTracedPerShape
from jacverify.backward.runner import GraphRunner, direct_calls, direct_calls_enabled, runner_of
from jacverify.examples.applications import ARCHITECTURES, build_application
from tests.backward.model_reference import functional, model_autograd_vjp


@pytest.fixture
def direct_call_count(monkeypatch):
    """Counts the calls the runner makes directly (without ``__call__``)."""
    counter = {"direct": 0}
    original = GraphRunner._call_directly
    original_provided = GraphRunner._provided

    def counting(step, values):
        outputs = original(step, values)
        counter["direct"] += outputs is not None
        return outputs

    def counting_provided(self, step, values, training):
        counter["direct"] += 1  # made by its rule, without __call__
        return original_provided(self, step, values, training)

    monkeypatch.setattr(GraphRunner, "_call_directly", staticmethod(counting))
    monkeypatch.setattr(GraphRunner, "_provided", counting_provided)
    return counter


def _both_paths(backward, inputs, **kwargs):
    with torch.no_grad():
        direct = backward(inputs, **kwargs)
        with direct_calls(False):
            through_keras = backward(inputs, **kwargs)
    return direct, through_keras


def assert_bit_identical(got, expected) -> None:
    got, expected = keras.tree.flatten(got), keras.tree.flatten(expected)
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)
        assert torch.equal(a, b), float((a - b).abs().max())


def _assert_direct_equals_keras_path(backward, inputs, counter, min_direct=0.8) -> None:
    direct, through_keras = _both_paths(backward, inputs)
    assert_bit_identical(direct, through_keras)
    steps = runner_of(backward).steps
    assert counter["direct"] >= min_direct * len(steps), (counter["direct"], len(steps))


# ----------------------------------------------------------------------- keras.applications
APPLICATIONS_DEFAULT = ["MobileNetV3Small", "EfficientNetB0"]


def _check_application(name, counter):
    keras.utils.set_random_seed(0)
    model, size = build_application(name)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((2, size, size, 3)), dtype=torch.float32)
    g = torch.tensor(rng.standard_normal((2, *model.output_shape[1:])), dtype=torch.float32)
    _assert_direct_equals_keras_path(clone_to_backward(model), [x, g], counter)


@pytest.mark.parametrize("name", APPLICATIONS_DEFAULT)
def test_applications(name, direct_call_count):
    _check_application(name, direct_call_count)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(ARCHITECTURES) - set(APPLICATIONS_DEFAULT)))
def test_all_applications(name, direct_call_count):
    _check_application(name, direct_call_count)


# ------------------------------------------------------------------------ keras_hub backbones
HUB_IMAGE_DEFAULT = ["VGG"]
HUB_IMAGE = ["ViT", "DeiT", "DINOV2", "Swin", "MiT", "VGG", "ResNet", "ResNetPreActBottleneck",
             "DenseNet", "Xception"]


def _check_image_backbone(name, counter):
    hub = pytest.importorskip("keras_hub")
    del hub
    from jacverify.examples.keras_hub_backbones import build_backbone, image_model

    keras.utils.set_random_seed(0)
    model = image_model(build_backbone(name))
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((2, *model.inputs[0].shape[1:])), dtype=torch.float32)
    g = torch.tensor(rng.standard_normal((2, *model.outputs[0].shape[1:])), dtype=torch.float32)
    backward = clone_to_backward(model)
    _assert_direct_equals_keras_path(backward, [x, g], counter)
    return backward


@pytest.mark.parametrize("name", HUB_IMAGE_DEFAULT)
def test_keras_hub_image_backbones(name, direct_call_count):
    _check_image_backbone(name, direct_call_count)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in HUB_IMAGE if n not in HUB_IMAGE_DEFAULT])
def test_all_keras_hub_image_backbones(name, direct_call_count):
    backward = _check_image_backbone(name, direct_call_count)
    if name == "Swin":  # its blocks are traced per input shape: their forward is provided
        provided = [s for s in runner_of(backward).steps
                    if isinstance(s.provider, BackwardTracedPerShape)]
        assert len(provided) == 4
        assert all(at.reproduces for s in provided
                   for at in s.provider._backward_by_shape.values())


@pytest.mark.parametrize("name", ["BERT", pytest.param("GPT2", marks=pytest.mark.slow)])
def test_keras_hub_text_backbones_wrt_the_embedding(name, direct_call_count):
    pytest.importorskip("keras_hub")
    from jacverify.examples.keras_hub_backbones import build_backbone, text_inputs

    keras.utils.set_random_seed(0)
    backbone = build_backbone(name)
    output = backbone.output
    model = keras.Model(backbone.inputs,
                        output["sequence_output"] if isinstance(output, dict) else output)
    backward = clone_to_backward(model, wrt=backbone.get_layer("token_embedding"))
    inputs = [torch.tensor(a) for a in text_inputs(backbone, batch=2)]
    g = torch.tensor(np.random.default_rng(1).standard_normal((2, 8, 16)), dtype=torch.float32)
    _assert_direct_equals_keras_path(backward, [*inputs, g], direct_call_count)


# ---------------------------------------------------------------------------- float64 models
def _float64_model():
    x = keras.Input((6, 4), dtype="float64")
    h = keras.layers.Dense(8, activation="gelu", dtype="float64")(x)
    h = keras.layers.LayerNormalization(dtype="float64")(h)
    a = keras.layers.MultiHeadAttention(2, 4, dtype="float64")(h, h)
    h = keras.layers.Dropout(0.3, dtype="float64")(a + h)
    h = keras.layers.Conv1D(5, 3, padding="same", dtype="float64")(h)
    h = keras.layers.BatchNormalization(dtype="float64")(h)
    h = ops.sin(h) * 2.0 + ops.cumsum(h, axis=1)
    return keras.Model(x, keras.layers.Dense(3, dtype="float64")(h))


def test_float64_model(direct_call_count):
    keras.utils.set_random_seed(0)
    model = _float64_model()
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((3, 6, 4)), rng.standard_normal((3, 6, 3))
    backward = clone_to_backward(model)
    inputs = [torch.tensor(x), torch.tensor(g)]
    _assert_direct_equals_keras_path(backward, inputs, direct_call_count)
    with torch.no_grad():
        got = backward(inputs)
    assert got.dtype == torch.float64
    with float64_precision():
        (expected,) = model_autograd_vjp(model, x, g)
    error = np.max(np.abs(got.numpy() - expected)) / np.max(np.abs(expected))
    assert error < 1e-12


# --------------------------------------------------------------- layers traced per input shape
def test_layer_traced_per_shape_runs_its_forward_once(direct_call_count):
    """The per-shape rule provides the layer's forward from its traced graph and reuses the
    graph's activations: the same outputs as Keras' path, which runs the forward twice."""
    keras.utils.set_random_seed(0)
    # tanh's rule needs WindowMix's output: the backward model computes it.
    model = functional(lambda x: keras.layers.Dense(3, activation="tanh")(WindowMix()(x)),
                       [(4, 3)])
    backward = clone_to_backward(model)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3)).astype("float32")
    g = rng.standard_normal((2, 5, 3)).astype("float32")
    inputs = [torch.tensor(x), torch.tensor(g)]
    (step,) = [s for s in runner_of(backward).steps
               if isinstance(s.provider, BackwardTracedPerShape)]
    rule = step.provider
    calls = {"reused": 0}
    take = rule._take_activations

    def counting_take(values):
        known = take(values)
        calls["reused"] += known is not None
        return known

    object.__setattr__(rule, "_take_activations", counting_take)
    _assert_direct_equals_keras_path(backward, inputs, direct_call_count)
    assert calls["reused"] == 1  # the direct run reused; Keras' path recomputed
    assert [at.reproduces for at in rule._backward_by_shape.values()] == [True]
    assert rule._activations == {}  # nothing kept once the rule has run
    (expected,) = model_autograd_vjp(model, x, g)
    with torch.no_grad():
        got = backward(inputs).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


class TracedUnlikeCalled(WindowMix):
    """A per-shape layer whose call computes differently on concrete tensors than when
    traced: its traced graph does not reproduce its own output."""

    def call(self, x):
        y = super().call(x)
        return y if isinstance(x, keras.KerasTensor) else y + 1.0


def test_a_traced_graph_that_does_not_reproduce_the_layer_is_not_used_for_its_forward():
    keras.utils.set_random_seed(0)
    model = functional(
        lambda x: keras.layers.Dense(3, activation="tanh")(TracedUnlikeCalled()(x)), [(4, 3)])
    backward = clone_to_backward(model)
    rng = np.random.default_rng(0)
    inputs = [torch.tensor(rng.standard_normal((2, 4, 3)), dtype=torch.float32),
              torch.tensor(rng.standard_normal((2, 5, 3)), dtype=torch.float32)]
    direct, through_keras = _both_paths(backward, inputs)
    assert_bit_identical(direct, through_keras)
    (step,) = [s for s in runner_of(backward).steps
               if isinstance(s.provider, BackwardTracedPerShape)]
    assert [at.reproduces for at in step.provider._backward_by_shape.values()] == [False]
    with torch.no_grad():
        assert_bit_identical(backward(inputs), through_keras)  # later calls too


# ------------------------------------------------- layers with a built-in activation
def _fused_activation_model(dtype="float32"):
    x = keras.Input((6, 6, 3), dtype=dtype)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", dtype=dtype)(x)
    h = keras.layers.Conv2D(4, 2, strides=2, activation="tanh", dtype=dtype)(h)
    h = keras.layers.Dense(5, activation="gelu", dtype=dtype)(h)
    h = keras.layers.Dense(4, activation="relu6", dtype=dtype)(h)
    # The last layer's output is not computed in the backward model: its rule recomputes.
    return keras.Model(x, keras.layers.Dense(2, activation="tanh", dtype=dtype)(h))


def _count_pre_activations(backward) -> dict:
    """Counts each rule's computations of its pre-activation, by rule name."""
    counts = {}
    for step in runner_of(backward).steps:
        rule = step.provider
        if rule is None or isinstance(rule, BackwardTracedPerShape):
            continue
        counts[rule.name] = 0

        def counting(input, dtype, original=rule._pre_activation, name=rule.name):
            counts[name] += 1
            return original(input, dtype)

        object.__setattr__(rule, "_pre_activation", counting)
    return counts


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rules_reuse_the_pre_activation_of_the_forward_call(dtype, direct_call_count):
    """Dense and convolutions with an activation: the rule makes the layer's forward call and
    reuses its pre-activation (computed once per call instead of twice), with the outputs of
    Keras' path bit for bit, and equal to autograd."""
    keras.utils.set_random_seed(0)
    model = _fused_activation_model(dtype)
    backward = clone_to_backward(model)
    counts = _count_pre_activations(backward)
    assert len(counts) == 4
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((3, 6, 6, 3)), rng.standard_normal((3, 3, 3, 2))
    inputs = [torch.tensor(x, dtype=getattr(torch, dtype)),
              torch.tensor(g, dtype=getattr(torch, dtype))]
    with torch.no_grad():
        backward(inputs)  # the first call also checks the layers' own forward calls
        for name in counts:
            counts[name] = 0
        got = backward(inputs)
    assert counts == {name: 1 for name in counts}
    _assert_direct_equals_keras_path(backward, inputs, direct_call_count)
    with float64_precision():
        (expected,) = model_autograd_vjp(model, x.astype(dtype), g.astype(dtype))
    error = np.max(np.abs(got.numpy() - expected)) / np.max(np.abs(expected))
    assert error < (1e-12 if dtype == "float64" else 1e-5)


def test_a_pre_activation_unlike_the_forward_is_not_used():
    """Where the rule's pre-activation does not give the layer's own output bit for bit, the
    forward call is the layer's and nothing is kept: the rule recomputes, as in Keras' path."""
    keras.utils.set_random_seed(0)
    model = _fused_activation_model()
    backward = clone_to_backward(model)
    rule = next(s.provider for s in runner_of(backward).steps if s.provider is not None)
    original = rule._pre_activation
    object.__setattr__(rule, "_pre_activation",
                       lambda input, dtype: original(input, dtype) * (1.0 + 1e-6))
    rng = np.random.default_rng(0)
    inputs = [torch.tensor(rng.standard_normal((3, 6, 6, 3)), dtype=torch.float32),
              torch.tensor(rng.standard_normal((3, 3, 3, 2)), dtype=torch.float32)]
    direct, through_keras = _both_paths(backward, inputs)
    assert_bit_identical(direct, through_keras)
    assert list(forward_state(rule)["reproduces"].values()) == [False]
    assert forward_state(rule)["kept"] == {}
    with torch.no_grad():
        assert_bit_identical(backward(inputs), through_keras)  # later calls too


@pytest.mark.parametrize("pool_kwargs,data_format", [
    ({}, "channels_last"),
    ({"pool_size": 3, "strides": 2, "padding": "same"}, "channels_last"),  # replicated pads
    ({"pool_size": 3, "strides": 1, "padding": "same"}, "channels_first"),  # implicit pads
])
def test_max_pooling_rule_reuses_the_indices_of_the_forward_call(pool_kwargs, data_format,
                                                                 direct_call_count):
    """The max pooling rule makes the layer's forward call from torch's pooling with indices
    and reuses them: one pooling per call instead of two, the outputs of Keras' path bit for
    bit, equal to autograd."""
    keras.utils.set_random_seed(0)
    x_in = keras.Input((7, 6, 3) if data_format == "channels_last" else (3, 7, 6))
    h = keras.layers.MaxPooling2D(data_format=data_format, name="pool", **pool_kwargs)(x_in)
    h = keras.layers.Conv2D(4, 2, activation="tanh", data_format=data_format)(h)
    model = keras.Model(x_in, keras.layers.Flatten()(h))
    backward = clone_to_backward(model)
    (rule,) = [s.provider for s in runner_of(backward).steps
               if s.provider is not None and s.provider.layer.name == "pool"]
    calls = {"pool": 0}
    original = rule._pool

    def counting(*args):
        calls["pool"] += 1
        return original(*args)

    object.__setattr__(rule, "_pool", counting)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *x_in.shape[1:])).astype("float32")
    x[0, :2, :2] = 1.0  # ties inside windows: the first maximum gets the gradient
    g = rng.standard_normal((3, *model.output_shape[1:])).astype("float32")
    inputs = [torch.tensor(x), torch.tensor(g)]
    with torch.no_grad():
        backward(inputs)  # the first call also checks the layer's own forward call
        calls["pool"] = 0
        got = backward(inputs)
    assert calls["pool"] == 1
    assert list(rule._forward_state["reproduces"].values()) == [True]
    assert rule._forward_state["kept"] == {}
    _assert_direct_equals_keras_path(backward, inputs, direct_call_count)
    (expected,) = model_autograd_vjp(model, x, g)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def _attention_model(**call_kwargs):
    x = keras.Input((5, 4))
    h = keras.layers.Dense(4)(x)  # the attention's forward is needed by the next rule
    h = keras.layers.MultiHeadAttention(2, 3, name="mha")(h, h, **call_kwargs)
    return keras.Model(x, keras.layers.Dense(2, activation="tanh")(h))


@pytest.mark.parametrize("call_kwargs,reused", [({}, True), ({"use_causal_mask": True}, False)],
                         ids=["no-mask", "causal"])
def test_attention_rule_reuses_the_projections_of_the_forward_call(call_kwargs, reused,
                                                                   direct_call_count):
    """MultiHeadAttention without masks: the rule makes the forward call and reuses its query,
    key and value projections; with a mask the layer's own call is made. Either way, the
    outputs of Keras' path bit for bit, and equal to autograd."""
    keras.utils.set_random_seed(0)
    model = _attention_model(**call_kwargs)
    backward = clone_to_backward(model)
    (rule,) = [s.provider for s in runner_of(backward).steps
               if s.provider is not None and s.provider.layer.name == "mha"]
    calls = {"projections": 0, "reused": 0}
    projections, kept = rule._projections_of, rule._kept_projections

    def counting_projections(*args):
        calls["projections"] += 1
        return projections(*args)

    def counting_kept(*args):
        found = kept(*args)
        calls["reused"] += found is not None
        return found

    object.__setattr__(rule, "_projections_of", counting_projections)
    object.__setattr__(rule, "_kept_projections", counting_kept)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4)).astype("float32")
    g = rng.standard_normal((3, 5, 2)).astype("float32")
    inputs = [torch.tensor(x), torch.tensor(g)]
    with torch.no_grad():
        backward(inputs)  # the first call also checks the layer's own forward call
        calls.update(projections=0, reused=0)
        got = backward(inputs)
    # Computed once either way: by the forward call (and reused), or by the rule.
    assert calls == {"projections": 1, "reused": int(reused)}
    state = rule._forward_state
    assert list(state["reproduces"].values()) == ([True] if reused else [])
    assert state["kept"] == {}
    _assert_direct_equals_keras_path(backward, inputs, direct_call_count)
    (expected,) = model_autograd_vjp(model, x, g)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ calls that keep __call__
def _token_model():
    tokens = keras.Input((5,), dtype="int32")
    embedded = keras.layers.Embedding(7, 4, mask_zero=True, name="embedding")(tokens)
    h = keras.layers.Dense(4, activation="tanh")(embedded)
    pooled = keras.layers.GlobalAveragePooling1D()(h)  # its call takes the mask
    return keras.Model(tokens, keras.layers.Dense(2, activation="tanh")(pooled))


def test_masked_calls_equal_keras_path():
    """Embedding(mask_zero=True) computes a Keras mask (its call keeps __call__) and the
    pooling takes it (an explicit argument of its call in the graph, which keeps __call__ too:
    its compute_mask is its own): the pooling averages over unmasked steps only, as in Keras'
    path."""
    keras.utils.set_random_seed(0)
    model = _token_model()
    backward = clone_to_backward(model, wrt=model.get_layer("embedding"))
    tokens = torch.tensor([[1, 2, 0, 0, 0], [3, 4, 5, 6, 0]], dtype=torch.int32)
    g = torch.tensor(np.random.default_rng(0).standard_normal((2, 2)), dtype=torch.float32)
    direct, through_keras = _both_paths(backward, [tokens, g])
    assert_bit_identical(direct, through_keras)
    assert torch.all(direct[0, 2:] == 0) and torch.all(direct[1, 4:] == 0)
    assert torch.all(direct[0, :2] != 0) and torch.all(direct[1, :4] != 0)


def _dense_model(**dense_kwargs):
    x = keras.Input((4,))
    h = keras.layers.Dense(5, activation="tanh", name="special", **dense_kwargs)(x)
    # the second tanh's rule needs the first layer's output: the backward model calls it
    return keras.Model(x, keras.layers.Dense(2, activation="tanh")(h))


@pytest.mark.parametrize("dense_kwargs", [{"dtype": "mixed_bfloat16"},
                                          {"activity_regularizer": "l2"}],
                         ids=["mixed-policy", "activity-regularizer"])
def test_layers_that_need_call_keep_it(dense_kwargs, direct_call_count):
    keras.utils.set_random_seed(0)
    model = _dense_model(**dense_kwargs)
    backward = clone_to_backward(model)
    layer = model.get_layer("special")
    (forward,) = [s for s in runner_of(backward).steps if s.operation is layer]
    assert forward.direct is None
    inputs = [torch.randn(3, 4), torch.randn(3, 2)]
    direct, through_keras = _both_paths(backward, inputs)
    assert_bit_identical(direct, through_keras)
    assert direct_call_count["direct"] > 0  # the other calls are direct


def test_a_torch_hook_added_after_the_first_call_still_runs():
    keras.utils.set_random_seed(0)
    model = _dense_model()
    backward = clone_to_backward(model)
    inputs = [torch.randn(3, 4), torch.randn(3, 2)]
    with torch.no_grad():
        backward(inputs)  # the plan is made
    seen = []
    handle = model.get_layer("special").register_forward_hook(
        lambda module, args, output: seen.append(output.shape))
    try:
        with torch.no_grad():
            backward(inputs)
    finally:
        handle.remove()
    assert seen == [(3, 5)]


def test_training_and_the_switch_take_keras_path(direct_call_count):
    keras.utils.set_random_seed(0)
    backward = clone_to_backward(_dense_model())
    inputs = [torch.randn(3, 4), torch.randn(3, 2)]
    with torch.no_grad():
        trained = backward(inputs, training=True)
        assert direct_call_count["direct"] == 0
        with direct_calls(False):
            assert not direct_calls_enabled()
            with direct_calls(True):
                assert direct_calls_enabled()
            assert not direct_calls_enabled()
            plain = backward(inputs)
        assert direct_call_count["direct"] == 0
        assert direct_calls_enabled()
        direct = backward(inputs)
    assert direct_call_count["direct"] > 0
    assert_bit_identical(direct, plain)
    assert_bit_identical(trained, plain)  # no layer here depends on training
