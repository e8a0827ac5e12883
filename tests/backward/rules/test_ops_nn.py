"""Rules of the ``keras.ops.nn`` functions (convolutions, pooling, normalizations,
rearrangements, attention, crossentropies) in functional graphs, against torch autograd of
the same graph in float32 and float64, with extra Jacobian axes and through save/load."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward
from tests.backward.model_reference import functional
from tests.backward.rules._ops_cases import check_case

RNG = np.random.default_rng(0)


def _array(*shape):
    return RNG.standard_normal(shape).astype("float32")


def c(array, like):
    """A constant in the dtype of the model tensor ``like`` (float32 or float64 cases)."""
    return np.asarray(array).astype(like.dtype)


K2 = _array(3, 3, 3, 4)
K1 = _array(3, 2, 3)
K_DEPTH = _array(3, 3, 3, 2)
K_POINT = _array(1, 1, 6, 4)
K_T = _array(3, 3, 5, 3)
GAMMA = _array(5) + 1.0
BETA = _array(5)
MEAN = _array(3)
VARIANCE = np.abs(_array(3)) + 0.5

CASES = {
    "conv_max_pool": (lambda x: ops.max_pool(ops.conv(x, c(K2, x), padding="same"), 2),
                      [(8, 8, 3)]),
    "conv_strided_dilated": (lambda x: ops.conv(x, c(K2, x), strides=2, padding="valid"),
                             [(7, 8, 3)]),
    "conv_dilated_same": (lambda x: ops.conv(x, c(K2, x), dilation_rate=2, padding="same"),
                          [(6, 6, 3)]),
    "conv1d": (lambda x: ops.conv(x, c(K1, x), strides=2, padding="same"), [(7, 2)]),
    "conv_channels_first": (lambda x: ops.conv(x, c(K2, x), data_format="channels_first"),
                            [(3, 6, 5)]),
    "depthwise_conv": (lambda x: ops.depthwise_conv(x, c(K_DEPTH, x), strides=2,
                                                    padding="same"),
                       [(6, 5, 3)]),
    "separable_conv": (lambda x: ops.separable_conv(x, c(K_DEPTH, x), c(K_POINT, x),
                                                    padding="same"),
                       [(5, 5, 3)]),
    "max_pool_same_strided": (lambda x: ops.max_pool(x, 3, strides=2, padding="same"),
                              [(7, 6, 2)]),
    "max_pool_1d": (lambda x: ops.max_pool(x, 2), [(6, 3)]),
    "average_pool": (lambda x: ops.average_pool(x, (2, 3), strides=1, padding="same"),
                     [(5, 6, 2)]),
    "average_pool_channels_first": (lambda x: ops.average_pool(
        x, 2, data_format="channels_first"), [(2, 4, 6)]),
    # channels_first: Keras 3.15 declares a wrong symbolic shape for channels_last.
    "adaptive_average_pool": (lambda x: ops.adaptive_average_pool(
        x, (2, 3), data_format="channels_first"), [(2, 5, 7)]),
    "adaptive_max_pool": (lambda x: ops.adaptive_max_pool(x, (3,), data_format="channels_first"),
                          [(2, 7)]),
    "batch_normalization": (lambda x: ops.batch_normalization(
        x, c(MEAN, x), c(VARIANCE, x), axis=-1, offset=c(MEAN, x), scale=c(VARIANCE, x),
        epsilon=1e-3), [(4, 3)]),
    "batch_normalization_axis1": (lambda x: ops.batch_normalization(
        x, c(MEAN, x), c(VARIANCE, x), axis=1), [(3, 4)]),
    "layer_normalization": (lambda x: ops.layer_normalization(x, c(GAMMA, x), c(BETA, x),
                                                             epsilon=1e-5),
                            [(3, 5)]),
    "layer_normalization_axes": (lambda x: ops.layer_normalization(x, axis=(1, 2)),
                                 [(3, 4)]),
    "layer_normalization_rms_scaling": (lambda x: ops.layer_normalization(
        x, c(GAMMA, x), axis=-1, rms_scaling=True), [(2, 5)]),
    "layer_normalization_middle_axis_torch_kernel": (lambda x: ops.layer_normalization(
        x, axis=1), [(3, 3)]),
    "rms_normalization_middle_axis_torch_kernel": (lambda x: ops.rms_normalization(x, axis=1),
                                                   [(2, 2)]),
    "rms_normalization": (lambda x: ops.rms_normalization(x, c(GAMMA, x), epsilon=1e-6), [(3, 5)]),
    "normalize_l2": (lambda x: ops.normalize(x, axis=-1), [(3, 4)]),
    "normalize_l1": (lambda x: ops.normalize(x, axis=1, order=1), [(4, 3)]),
    "normalize_l3": (lambda x: ops.normalize(x, axis=-1, order=3), [(4,)]),
    "depth_to_space": (lambda x: ops.depth_to_space(x, 2), [(2, 3, 8)]),
    "space_to_depth": (lambda x: ops.space_to_depth(x, 2), [(4, 6, 3)]),
    "depth_to_space_channels_first": (lambda x: ops.depth_to_space(
        x, 2, data_format="channels_first"), [(8, 2, 3)]),
    "unfold": (lambda x: ops.unfold(x, 2, stride=1, padding=1, dilation=1), [(2, 4, 5)]),
    "unfold_strided": (lambda x: ops.unfold(x, (2, 3), stride=2, dilation=(1, 2)), [(2, 6, 7)]),
    "fold": (lambda x: ops.fold(x, (4, 5), 2, stride=1), [(8, 12)]),
    "attention": (lambda q, k, v: ops.dot_product_attention(q, k, v),
                  [(4, 2, 3), (5, 2, 3), (5, 2, 3)]),
    "attention_self_causal_scaled": (lambda x: ops.dot_product_attention(
        x, x, x, scale=0.7, is_causal=True), [(4, 2, 3)]),
    "attention_bias_tensor": (lambda q, k, v, b: ops.dot_product_attention(q, k, v, bias=b),
                              [(3, 2, 4), (5, 2, 4), (5, 2, 4), (2, 3, 5)]),
    "attention_grouped_heads": (lambda q, k, v: ops.dot_product_attention(q, k, v),
                                [(3, 4, 2), (4, 2, 2), (4, 2, 2)]),
    "attention_single_kv_head": (lambda q, k, v: ops.dot_product_attention(q, k, v),
                                 [(3, 3, 2), (4, 1, 2), (4, 1, 2)]),
    "attention_mask": (lambda q, k, v: ops.dot_product_attention(
        q, k, v, mask=np.tril(np.ones((3, 4), bool), 1)), [(3, 2, 2), (4, 2, 2), (4, 2, 2)]),
    "binary_crossentropy_logits": (lambda t, z: ops.binary_crossentropy(
        ops.sigmoid(t), z, from_logits=True), [(4,), (4,)]),
    "binary_crossentropy_probabilities": (lambda t, z: ops.binary_crossentropy(
        ops.stop_gradient(ops.sigmoid(t)), ops.sigmoid(z)), [(4,), (4,)]),
    "categorical_crossentropy_logits": (lambda t, z: ops.categorical_crossentropy(
        ops.softmax(t), z, from_logits=True), [(2, 5), (2, 5)]),
    "categorical_crossentropy_probabilities": (lambda t, z: ops.categorical_crossentropy(
        ops.softmax(t), ops.exp(z)), [(2, 5), (2, 5)]),
    "sparse_categorical_crossentropy_logits": (lambda t, z: ops.sparse_categorical_crossentropy(
        t, z, from_logits=True), [(3,), (3, 4)], ["int32", "float"]),
    "sparse_categorical_crossentropy_probabilities": (
        lambda t, z: ops.sparse_categorical_crossentropy(t, ops.softmax(z)),
        [(3, 1), (3, 4)], ["int32", "float"]),
}

# Keras' float64 conv_transpose/separable_conv/depthwise_conv on torch compute in float64 too,
# but the float32 constants of these cases are cast: nothing to skip.
SAVED = {"conv_max_pool", "attention_bias_tensor", "layer_normalization",
         "sparse_categorical_crossentropy_logits", "unfold"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_nn_op_rule_matches_autograd(name, tmp_path):
    check_case(CASES[name], "float32", save_to=tmp_path / f"{name}.keras" if name in SAVED
               else None)


#: Keras 3.15's float64 forward of these functions on torch rounds through float32 (a float32
#: epsilon or scale, a float32 kernel path): torch autograd of it is float32-precise.
KERAS_FLOAT32_INSIDE = ("attention", "layer_normalization", "rms_normalization", "normalize")


@pytest.mark.parametrize("name", sorted(CASES))
def test_nn_op_rule_float64(name):
    check_case(CASES[name], "float64",
               keras_float32_inside=name.startswith(KERAS_FLOAT32_INSIDE))


def test_binary_crossentropy_target_gradient_equals_the_formula():
    """Torch autograd has no derivative of binary_cross_entropy with respect to the target:
    compare with the same loss written with log/log1p."""
    model = functional(lambda t, p: ops.binary_crossentropy(t, ops.sigmoid(p)), [(4,), (4,)])
    twin = functional(lambda t, p: -(t * ops.log(ops.sigmoid(p))
                                     + (1.0 - t) * ops.log1p(-ops.sigmoid(p))), [(4,), (4,)])
    xs = [RNG.uniform(0, 1, (3, 4)).astype("float32"), _array(3, 4)]
    g = _array(3, 4)
    got = clone_to_backward(model)(xs + [g])
    import torch

    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    (expected,) = torch.autograd.grad(twin(ts), [ts[0]], torch.tensor(g))
    np.testing.assert_allclose(ops.convert_to_numpy(got[0]), expected.numpy(), rtol=1e-5,
                               atol=1e-5)


def test_kernel_given_as_a_model_tensor_is_refused():
    from keras.src.ops import nn as knn

    from jacverify.backward.rules.ops.convolution import BackwardConvOp

    rule = BackwardConvOp(
        layer=knn.Conv(padding="same", data_format="channels_last"),
        input_dim_wo_batch=[[5, 5, 2], [3, 3, 2, 2]], output_dim_wo_batch=[5, 5, 2],
        call_arguments={"args": [{"__input__": 0}, {"__input__": 1}], "kwargs": {}},
    )
    x, k = np.ones((1, 5, 5, 2), "float32"), np.ones((1, 3, 3, 2, 2), "float32")
    with pytest.raises(ValueError, match="'kernel' argument .* tensor of the model"):
        rule([np.ones((1, 5, 5, 2), "float32"), [x, k]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("arguments", [
    {"strides": 2, "padding": "same"},
    {"strides": (2, 1), "padding": "valid", "output_padding": 1},
    {"strides": 1, "padding": "valid", "dilation_rate": 2},
    {"strides": 3, "padding": "same", "output_padding": (2, 0)},
])
def test_conv_transpose_rule_matches_autograd(arguments, dtype):
    """``ops.conv_transpose`` cannot run in a functional graph in Keras 3.15 (its operation
    passes ``output_padding`` where the backend expects ``padding``): the rule is checked on the
    eager function, with the call arguments a graph would record."""
    from keras.src.ops import nn as knn

    from jacverify.backward.rules.ops.convolution import BackwardConvTransposeOp
    from tests.backward.reference import autograd_vjp

    kernel = K_T.astype(dtype)
    operation = knn.ConvTranspose(data_format="channels_last", **arguments)
    x = RNG.standard_normal((2, 4, 5, 3)).astype(dtype)
    eager = ops.convert_to_numpy(ops.conv_transpose(x, kernel, data_format="channels_last",
                                                    **arguments))
    rule = BackwardConvTransposeOp(
        layer=operation, input_dim_wo_batch=[4, 5, 3],
        output_dim_wo_batch=list(eager.shape[1:]),
        call_arguments={"args": [{"__input__": 0}, kernel], "kwargs": {}}, dtype=dtype,
    )
    g = RNG.standard_normal(eager.shape).astype(dtype)

    class Eager:
        def __call__(self, t):
            return ops.conv_transpose(t, kernel, data_format="channels_last", **arguments)

    (expected,) = autograd_vjp(Eager(), x, g)
    got = ops.convert_to_numpy(rule(g))
    tolerance = 1e-11 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", ["DepthToSpace", "SpaceToDepth"])
def test_block_size_one_is_the_identity(name):
    """The operation classes accept ``block_size=1`` (the identity; the functions refuse it):
    the rule passes the gradient through."""
    from keras.src.ops import nn as knn

    from jacverify import get_backward_rule

    operation = getattr(knn, name)(1)
    x = RNG.standard_normal((2, 3, 2, 4)).astype("float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(operation(x)), x)
    rule = get_backward_rule(operation)(layer=operation, input_dim_wo_batch=[3, 2, 4],
                                        output_dim_wo_batch=[3, 2, 4])
    np.testing.assert_array_equal(ops.convert_to_numpy(rule(x)), x)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_normalize_along_an_axis_of_one_entry_has_a_zero_jacobian(order):
    """Along an axis of one entry ``normalize`` is ``sign(x)`` away from 0: the hand
    computation of its Jacobian is 0 (the registry's configurations leave this case out,
    where float32 autograd returns cancellation noise)."""
    model = functional(lambda x: ops.normalize(x, axis=-1, order=order), [(3, 1)],
                       dtype="float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 1))
    g = rng.standard_normal((2, 3, 1))
    # Keras computes the norm of order 3 in float32 (KERAS_FLOAT32_INSIDE): float32 rounding.
    np.testing.assert_allclose(np.asarray(model(x)), np.sign(x), rtol=1e-6)
    got = np.asarray(clone_to_backward(model)([x, g]))
    np.testing.assert_allclose(got, 0.0, atol=1e-5 * np.max(np.abs(g / x)))


@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_over_equal_keys_and_values_has_exactly_zero_query_gradient(is_causal):
    """Where every key and value is equal, attention returns the value whatever the query:
    the query and key gradients are exactly 0, as torch autograd gives them, not float32
    rounding of a cancelled sum (``sum(dp * p)`` computed from the probabilities)."""
    from tests.backward.reference import autograd_vjp

    def attention(q, k, v):
        return ops.dot_product_attention(q, k, v, scale=2.0, is_causal=is_causal)

    model = functional(attention, [(3, 2, 1)] * 3)
    xs = [np.full((1, 3, 2, 1), 1.99999797, dtype="float32") for _ in range(3)]
    g = np.array([0.533354, 1.24225, 0.181877, 0.218654, 0.567932, 0.232724],
                 dtype="float32").reshape(1, 3, 2, 1)
    got = [ops.convert_to_numpy(t) for t in clone_to_backward(model)(xs + [g])]
    expected = autograd_vjp(model, xs, g)
    for name, rule, reference in zip(("query", "key"), got[:2], expected[:2], strict=True):
        np.testing.assert_array_equal(reference, 0.0, err_msg=f"autograd, {name}")
        np.testing.assert_array_equal(rule, 0.0, err_msg=f"rule, {name}")
    np.testing.assert_allclose(got[2], expected[2], rtol=1e-6)
