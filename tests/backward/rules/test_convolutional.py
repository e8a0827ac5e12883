"""Rules of the convolutional layers (Conv1D/2D/3D, DepthwiseConv1D/2D, SeparableConv1D/2D)
against torch autograd, over every option that changes the arithmetic; kinks of the activation;
the backend-generic path; dynamic shapes; and wrong rules rejected."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward, get_backward_rule, registered_rules
from tests.backward.reference import (
    assert_rule_matches_autograd,
    autograd_vjp,
    make_rule,
    model_autograd_vjp,
    rule_vjp,
)

# Load the native rules through the registry before importing rule modules by name.
registered_rules()

from checks.cases_families import Conv2DCropOnTheWrongSide  # noqa: E402 - the corpus's wrong rule
from jacverify.backward.rules.convolutional import _transpose  # noqa: E402

L = keras.layers
FORMATS = ["channels_last", "channels_first"]


def _x(spatial, channels, data_format, batch=2, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, *spatial, channels) if data_format == "channels_last" else (
        batch, channels, *spatial
    )
    return rng.standard_normal(shape).astype(dtype)


def _randomize_bias(layer, x, seed=1):
    """Build the layer and give it a non-zero bias (the default is zeros)."""
    layer(x)
    if getattr(layer, "bias", None) is not None:
        rng = np.random.default_rng(seed)
        layer.bias.assign(rng.standard_normal(layer.bias.shape).astype(layer.bias.dtype))
    return layer


# (kernel, stride, dilation): strides > 1 and dilation > 1 are exclusive in Keras.
GEOMETRY_1D = [
    (k, s, d)
    for k, (s, d) in itertools.product([1, 2, 3, 4], [(1, 1), (2, 1), (3, 1), (1, 2)])
]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("length", [7, 8])
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("kernel,stride,dilation", GEOMETRY_1D)
def test_conv1d_geometry(kernel, stride, dilation, padding, length, data_format):
    """Odd and even kernels and inputs, strides 1-3 (including stride > kernel), dilation,
    every padding (Keras' 'same' puts the extra zero on the right) and both data formats."""
    layer = L.Conv1D(3, kernel, strides=stride, dilation_rate=dilation, padding=padding,
                     data_format=data_format)
    x = _x((length,), 2, data_format)
    assert_rule_matches_autograd(layer, x, extra_axes=(2,))


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("kernel,stride,dilation", [(3, 1, 1), (2, 2, 1), (3, 1, 2), (1, 3, 1)])
@pytest.mark.parametrize("groups", [2, 4])
def test_conv1d_groups(groups, kernel, stride, dilation, padding, data_format):
    layer = L.Conv1D(8, kernel, strides=stride, dilation_rate=dilation, padding=padding,
                     data_format=data_format, groups=groups)
    x = _x((9,), 4, data_format, batch=3)
    assert_rule_matches_autograd(layer, x)


CONV2D = [
    # kernel, strides, dilation, spatial
    ((3, 3), (1, 1), (1, 1), (7, 8)),
    ((2, 2), (1, 1), (1, 1), (7, 8)),
    ((3, 2), (2, 2), (1, 1), (7, 8)),
    ((2, 3), (2, 1), (1, 1), (8, 7)),
    ((4, 4), (2, 2), (1, 1), (8, 9)),
    ((1, 1), (3, 3), (1, 1), (7, 8)),
    ((3, 3), (1, 1), (2, 1), (8, 7)),
    ((2, 3), (1, 1), (2, 2), (8, 9)),
]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("kernel,strides,dilation,spatial", CONV2D)
def test_conv2d_geometry(kernel, strides, dilation, spatial, groups, padding, data_format):
    layer = L.Conv2D(4, kernel, strides=strides, dilation_rate=dilation, padding=padding,
                     data_format=data_format, groups=groups)
    x = _x(spatial, 4, data_format)
    assert_rule_matches_autograd(layer, x, extra_axes=(2,))


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize(
    "kernel,strides,dilation,padding,groups",
    [
        ((2, 3, 1), (1, 1, 1), (1, 1, 1), "same", 1),
        ((3, 2, 2), (2, 1, 2), (1, 1, 1), "same", 2),
        ((2, 2, 3), (1, 2, 1), (1, 1, 1), "valid", 1),
        ((2, 2, 2), (1, 1, 1), (2, 1, 1), "valid", 2),
        ((1, 3, 2), (3, 1, 1), (1, 1, 1), "same", 1),
    ],
)
def test_conv3d(kernel, strides, dilation, padding, groups, data_format):
    layer = L.Conv3D(4, kernel, strides=strides, dilation_rate=dilation, padding=padding,
                     data_format=data_format, groups=groups)
    x = _x((5, 6, 4), 2 * groups, data_format)
    assert_rule_matches_autograd(layer, x)


# Non-overlapping windows (stride equal to the kernel, no dilation): patch embeddings and
# pointwise convolutions, whose rule is one matrix product (kernel, spatial, padding).
PATCHES = [
    ((2, 2), (8, 8), "valid"),
    ((2, 3), (7, 8), "valid"),  # a last row and column no window reads
    ((2, 3), (7, 8), "same"),  # padded on the right of each axis
    ((3, 3), (8, 7), "same"),  # padded on both sides
    ((1, 1), (5, 6), "valid"),  # pointwise
    ((4, 4), (4, 4), "valid"),  # one window
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("kernel,spatial,padding", PATCHES)
def test_conv2d_non_overlapping_windows(kernel, spatial, padding, data_format, dtype,
                                        monkeypatch):
    """Stride equal to the kernel: the rule is a matrix product (no transposed convolution is
    made) and equals autograd, with an activation and a non-zero bias."""
    import torch

    layer = L.Conv2D(5, kernel, strides=kernel, padding=padding, data_format=data_format,
                     activation="tanh", dtype=dtype)
    x = _x(spatial, 3, data_format, dtype=dtype)
    _randomize_bias(layer, x)

    def refused(*args, **kwargs):
        raise AssertionError("a transposed convolution was made")

    monkeypatch.setattr(torch.nn.functional, "conv_transpose2d", refused)
    rtol, atol = (1e-4, 1e-5) if dtype == "float32" else (1e-12, 1e-13)
    assert_rule_matches_autograd(layer, x, rtol=rtol, atol=atol)


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv3d_non_overlapping_windows(padding, data_format):
    layer = L.Conv3D(4, (2, 1, 3), strides=(2, 1, 3), padding=padding, data_format=data_format)
    x = _x((5, 3, 7), 2, data_format)
    assert_rule_matches_autograd(layer, x)


ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "softmax"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_activation_and_bias(rank, data_format, activation, use_bias, dtype):
    """The activation derivative at the recomputed pre-activation (softmax: over the last
    axis, whatever the data format), with and without bias, in float32 and float64."""
    conv = {1: L.Conv1D, 2: L.Conv2D, 3: L.Conv3D}[rank]
    layer = conv(4, 2, strides=2 if rank > 1 else 1, padding="same", activation=activation,
                 use_bias=use_bias, data_format=data_format, dtype=dtype)
    x = _x((5, 4, 3)[:rank], 3, data_format, dtype=dtype)
    _randomize_bias(layer, x)
    rule = make_rule(layer, x)
    assert rule.is_linear == (activation is None)
    assert_rule_matches_autograd(layer, x)


@pytest.mark.parametrize("activation", ["elu", "gelu", "silu", "relu6", "leaky_relu",
                                        "log_softmax", "glu", "softplus"])
@pytest.mark.parametrize("data_format", FORMATS)
def test_conv_other_activations(activation, data_format):
    """Any activation with a vjp in activations.functions (glu halves the last axis)."""
    layer = L.Conv2D(4, 3, padding="same", activation=activation, data_format=data_format)
    x = _x((5, 6), 3, data_format)
    _randomize_bias(layer, x)
    assert_rule_matches_autograd(layer, x)


def test_conv1d_causal_with_activation_recomputes_the_padded_forward():
    layer = L.Conv1D(3, 3, dilation_rate=2, padding="causal", activation="tanh")
    x = _x((9,), 2, "channels_last", batch=4)
    _randomize_bias(layer, x)
    assert_rule_matches_autograd(layer, x)


def test_conv_lora_kernel_is_used():
    layer = L.Conv2D(4, 3, padding="same", activation="tanh")
    x = _x((6, 6), 3, "channels_last")
    layer(x)
    layer.enable_lora(2)
    rng = np.random.default_rng(3)
    layer.lora_kernel_b.assign(rng.standard_normal(layer.lora_kernel_b.shape).astype("float32"))
    assert_rule_matches_autograd(layer, x)


# ------------------------------------------------------------------------------ depthwise
DEPTHWISE_GEOMETRY = [
    # kernel, stride, dilation, padding
    (3, 1, 1, "same"),
    (2, 1, 1, "same"),
    (4, 2, 1, "same"),
    (3, 2, 1, "valid"),
    (1, 3, 1, "same"),
    (2, 1, 2, "valid"),
    (3, 1, 2, "same"),
]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("depth_multiplier", [1, 3])
@pytest.mark.parametrize("kernel,stride,dilation,padding", DEPTHWISE_GEOMETRY)
@pytest.mark.parametrize("rank", [1, 2])
def test_depthwise_conv(rank, kernel, stride, dilation, padding, depth_multiplier, data_format):
    depthwise = {1: L.DepthwiseConv1D, 2: L.DepthwiseConv2D}[rank]
    layer = depthwise(kernel, strides=stride, dilation_rate=dilation, padding=padding,
                      depth_multiplier=depth_multiplier, data_format=data_format)
    x = _x((8, 7)[:rank], 3, data_format)
    assert_rule_matches_autograd(layer, x, extra_axes=(2,))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "softmax"])
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("rank", [1, 2])
def test_depthwise_conv_activation(rank, data_format, activation, dtype):
    depthwise = {1: L.DepthwiseConv1D, 2: L.DepthwiseConv2D}[rank]
    layer = depthwise(3, strides=2, padding="same", depth_multiplier=2, activation=activation,
                      data_format=data_format, dtype=dtype)
    x = _x((7, 6)[:rank], 3, data_format, dtype=dtype)
    _randomize_bias(layer, x)
    assert_rule_matches_autograd(layer, x)


def test_depthwise_conv_single_channel_has_one_group():
    layer = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")
    assert_rule_matches_autograd(layer, _x((6, 5), 1, "channels_last"))


# ------------------------------------------------------------------------------ separable
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("depth_multiplier", [1, 2])
@pytest.mark.parametrize("kernel,stride,dilation,padding", DEPTHWISE_GEOMETRY)
@pytest.mark.parametrize("rank", [1, 2])
def test_separable_conv(rank, kernel, stride, dilation, padding, depth_multiplier, data_format):
    separable = {1: L.SeparableConv1D, 2: L.SeparableConv2D}[rank]
    layer = separable(5, kernel, strides=stride, dilation_rate=dilation, padding=padding,
                      depth_multiplier=depth_multiplier, data_format=data_format)
    x = _x((8, 7)[:rank], 3, data_format)
    assert_rule_matches_autograd(layer, x, extra_axes=(2,))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "softmax"])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("rank", [1, 2])
def test_separable_conv_activation(rank, data_format, use_bias, activation, dtype):
    separable = {1: L.SeparableConv1D, 2: L.SeparableConv2D}[rank]
    layer = separable(4, 2, strides=2, padding="same", depth_multiplier=2, use_bias=use_bias,
                      activation=activation, data_format=data_format, dtype=dtype)
    x = _x((7, 6)[:rank], 3, data_format, dtype=dtype)
    _randomize_bias(layer, x)
    assert_rule_matches_autograd(layer, x)


# ----------------------------------------------------------------------------------- kinks
def _integer_layer(layer, x, seed=4):
    """Integer weights (and a zero bias) so that, on integer inputs, many pre-activations are
    exactly 0: relu's kink."""
    layer(x)
    rng = np.random.default_rng(seed)
    for weight in layer.trainable_weights:
        values = rng.integers(-1, 2, size=weight.shape) if "bias" not in weight.path else (
            np.zeros(weight.shape)
        )
        weight.assign(values.astype(weight.dtype))
    return layer


KINK_LAYERS = [
    lambda: L.Conv1D(3, 2, padding="causal", activation="relu"),
    lambda: L.Conv2D(4, 3, strides=2, padding="same", groups=2, activation="relu"),
    lambda: L.Conv2D(3, 2, padding="same", data_format="channels_first", activation="relu"),
    lambda: L.DepthwiseConv2D(2, depth_multiplier=2, padding="same", activation="relu"),
    lambda: L.SeparableConv1D(3, 3, padding="same", activation="relu"),
]


@pytest.mark.parametrize("make_layer", KINK_LAYERS)
def test_relu_kink_at_zero_pre_activation(make_layer):
    """At a pre-activation exactly 0 the rule returns torch's relu'(0) = 0 (a valid
    subgradient) and elsewhere the exact derivative."""
    layer = make_layer()
    rng = np.random.default_rng(5)
    channels_first = getattr(layer, "data_format", "") == "channels_first"
    spatial = (6,) if "1D" in type(layer).__name__ else (5, 6)
    shape = (3, 4, *spatial) if channels_first else (3, *spatial, 4)
    x = rng.integers(-1, 2, size=shape).astype("float32")
    _integer_layer(layer, x)
    rule = make_rule(layer, x)
    pre_activation = ops.convert_to_numpy(rule._pre_activation(x, "float32"))
    n_kinks = int(np.sum(pre_activation == 0))
    assert 3 <= n_kinks < pre_activation.size  # kinks and smooth points
    assert_rule_matches_autograd(layer, x, rtol=0, atol=1e-6)


# ------------------------------------------------------------------- the generic keras path
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("kernel,stride,dilation,length", [
    (3, 1, 1, 7), (2, 1, 1, 8), (3, 2, 1, 8), (2, 2, 1, 7), (1, 3, 1, 8), (2, 1, 2, 7),
    (4, 3, 1, 9),
])
def test_keras_ops_path_is_the_adjoint(kernel, stride, dilation, length, padding, data_format):
    """The path other backends use (``keras.ops.conv_transpose``, no groups), run on torch."""
    layer = L.Conv1D(3, kernel, strides=stride, dilation_rate=dilation, padding=padding,
                     data_format=data_format)
    x = _x((length,), 2, data_format)
    y = ops.convert_to_numpy(layer(x))
    g = np.random.default_rng(1).standard_normal(y.shape).astype("float32")
    got = _transpose.conv_input_gradient(
        g, layer.kernel, in_sizes=[length], padding=padding, strides=layer.strides,
        dilations=layer.dilation_rate, data_format=data_format, implementation="keras",
    )
    np.testing.assert_allclose(ops.convert_to_numpy(got), autograd_vjp(layer, x, g)[0],
                               rtol=1e-5, atol=1e-5)


def test_keras_ops_path_refuses_groups():
    layer = L.Conv1D(4, 3, groups=2)
    x = _x((6,), 4, "channels_last")
    g = ops.convert_to_numpy(layer(x))
    with pytest.raises(NotImplementedError, match="grouped"):
        _transpose.conv_input_gradient(
            g, layer.kernel, in_sizes=[6], padding="valid", strides=(1,), dilations=(1,),
            data_format="channels_last", groups=2, implementation="keras",
        )


# ------------------------------------------------------------------ models, shapes, saving
def test_dynamic_spatial_sizes_with_strides():
    """With unknown spatial sizes and strides, the input decides the input size (several
    sizes give one output size): the rule asks for it; with stride 1 it does not."""
    inp = keras.Input((None, 3))
    h = L.Conv1D(4, 3, strides=2, padding="same", name="strided")(inp)
    h = L.DepthwiseConv1D(2, strides=2, padding="valid", depth_multiplier=2, name="dw")(h)
    h = L.SeparableConv1D(4, 3, padding="same", activation="tanh", name="sep")(h)
    out = L.Conv1D(2, 3, padding="causal", groups=2, name="causal")(h)
    model = keras.Model(inp, out)
    backward = clone_to_backward(model)
    rules = {layer.name: layer for layer in backward.layers}
    assert not rules["strided_backward"].is_linear
    assert not rules["dw_backward"].is_linear
    assert rules["causal_backward"].is_linear  # stride 1: the output size gives the input's
    rng = np.random.default_rng(0)
    for length in [9, 10, 11, 12]:
        x = rng.standard_normal((2, length, 3)).astype("float32")
        g = rng.standard_normal(tuple(model(x).shape)).astype("float32")
        got = ops.convert_to_numpy(backward([x, g]))
        np.testing.assert_allclose(got, model_autograd_vjp(model, x, g)[0], rtol=1e-4,
                                   atol=1e-5)


def test_linear_rule_with_unknown_size_and_stride_one_needs_no_input():
    rule_class = get_backward_rule(L.Conv1D)
    layer = L.Conv1D(2, 3, padding="valid")
    layer.build((None, None, 3))
    rule = rule_class(layer, input_dim_wo_batch=[None, 3], output_dim_wo_batch=[None, 2])
    assert rule.is_linear
    x = _x((9,), 3, "channels_last")
    g = np.random.default_rng(2).standard_normal((2, 7, 2)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(rule(g)), autograd_vjp(layer, x, g)[0],
                               rtol=1e-5, atol=1e-6)
    strided = L.Conv1D(2, 3, strides=2)
    strided.build((None, None, 3))
    assert not rule_class(strided, input_dim_wo_batch=[None, 3],
                          output_dim_wo_batch=[None, 2]).is_linear


def test_backward_model_of_every_conv_layer_saves_and_loads(tmp_path):
    inp = keras.Input((9, 8, 4))
    h = L.Conv2D(6, 3, strides=2, padding="same", groups=2, activation="relu")(inp)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(h)
    h = L.SeparableConv2D(3, 2, strides=2, activation="tanh")(h)
    h = L.Conv2D(2, 1, data_format="channels_first")(h)
    model = keras.Model(inp, h)
    backward = clone_to_backward(model)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 9, 8, 4)).astype("float32")
    g = rng.standard_normal((3, *model.output.shape[1:])).astype("float32")
    expected = model_autograd_vjp(model, x, g)[0]
    np.testing.assert_allclose(ops.convert_to_numpy(backward([x, g])), expected, rtol=1e-4,
                               atol=1e-5)
    backward.save(tmp_path / "backward.keras")
    loaded = keras.saving.load_model(tmp_path / "backward.keras")
    np.testing.assert_allclose(ops.convert_to_numpy(loaded([x, g])), expected, rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("layer_class,rule_name", [
    (L.Conv1D, "BackwardConv"), (L.Conv2D, "BackwardConv"), (L.Conv3D, "BackwardConv"),
    (L.DepthwiseConv1D, "BackwardDepthwiseConv"),
    (L.DepthwiseConv2D, "BackwardDepthwiseConv"),
    (L.SeparableConv1D, "BackwardSeparableConv"),
    (L.SeparableConv2D, "BackwardSeparableConv"),
])
def test_registered_natively(layer_class, rule_name):
    entry = registered_rules()[layer_class]
    assert entry.rule_class.__name__ == rule_name
    assert entry.source == "native"


# ----------------------------------------------------------------- wrong rules are rejected
BackwardConv = get_backward_rule(L.Conv2D)
BackwardDepthwiseConv = get_backward_rule(L.DepthwiseConv2D)
BackwardSeparableConv = get_backward_rule(L.SeparableConv1D)


class _NotFlipped(BackwardConv):
    """A correlation with the same kernel instead of the transposed convolution."""

    def _linear_backward(self, gradient, in_sizes):
        kernel = ops.transpose(ops.cast(self.layer.kernel, gradient.dtype), (0, 1, 3, 2))
        return ops.conv(gradient, kernel, padding="same")


class _DroppedActivation(BackwardConv):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return self._linear_backward(gradient, self._input_sizes(input, gradient))


class _DepthMultiplierOrder(BackwardDepthwiseConv):
    """Reads the depthwise kernel's (channel, multiplier) axes in the wrong order."""

    def _linear_backward(self, gradient, in_sizes):
        from jacverify.backward.rules.convolutional.depthwise_conv import (
            depthwise_input_gradient,
        )

        layer = self.layer
        kernel = ops.cast(layer.kernel, gradient.dtype)
        k = tuple(kernel.shape)
        swapped = ops.reshape(ops.transpose(kernel, (0, 1, 3, 2)), k)
        return depthwise_input_gradient(
            gradient, swapped, in_sizes=in_sizes, padding=layer.padding,
            strides=layer.strides, dilations=layer.dilation_rate, data_format=layer.data_format,
        )


class _PatchTapsScrambled(BackwardConv):
    """Wrong: reads the kernel's taps in the order of its transpose (a 2x3 window put back
    as if it were 3x2), as a patch reassembly with its axes mixed up would."""

    def _linear_backward(self, gradient, in_sizes):
        layer = self.layer
        kernel = ops.cast(layer.kernel, gradient.dtype)
        scrambled = ops.reshape(ops.transpose(kernel, (1, 0, 2, 3)), tuple(kernel.shape))
        return _transpose.conv_input_gradient(
            gradient, scrambled, in_sizes=in_sizes, padding=layer.padding,
            strides=layer.strides, dilations=layer.dilation_rate, data_format=layer.data_format,
        )


class _PointwiseNotTransposed(BackwardSeparableConv):
    def _pointwise_backward(self, gradient):
        pointwise = ops.cast(self.layer.pointwise_kernel, gradient.dtype)
        return ops.matmul(gradient, ops.reshape(pointwise, tuple(pointwise.shape)[-2:]))


WRONG_RULES = [
    ("crop on the wrong side", Conv2DCropOnTheWrongSide,
     lambda: L.Conv2D(3, 2, padding="same"), (7, 6), 2),
    ("kernel not flipped", _NotFlipped, lambda: L.Conv2D(3, 3, padding="same"), (6, 6), 2),
    ("activation dropped", _DroppedActivation,
     lambda: L.Conv2D(3, 3, padding="same", activation="tanh"), (6, 6), 2),
    ("depth multiplier order", _DepthMultiplierOrder,
     lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (6, 6), 3),
    ("patch taps scrambled", _PatchTapsScrambled,
     lambda: L.Conv2D(3, (2, 3), strides=(2, 3)), (4, 6), 2),
    ("pointwise not transposed", _PointwiseNotTransposed,
     lambda: L.SeparableConv1D(6, 3, depth_multiplier=2, padding="same"), (7,), 3),
]


@pytest.mark.parametrize("name,rule_class,make_layer,spatial,channels", WRONG_RULES,
                         ids=[w[0] for w in WRONG_RULES])
def test_wrong_rules_are_rejected(name, rule_class, make_layer, spatial, channels):
    layer = make_layer()
    x = _x(spatial, channels, "channels_last")
    assert_rule_matches_autograd(layer, x)  # the native rule passes ...
    rule = make_rule(layer, x, rule_class)
    assert rule_vjp(rule, x, ops.convert_to_numpy(layer(x)))[0].shape == x.shape  # same shape
    with pytest.raises(AssertionError):  # ... and the wrong one is caught on values
        assert_rule_matches_autograd(layer, x, rule_class=rule_class)
