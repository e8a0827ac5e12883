"""Configurations of the ``keras.ops`` functions of the ``nn``, ``math``, ``linalg`` and
``core`` families with native rules: convolutions and pooling with their geometry (kernels as
seeded constant arrays), normalizations, rearrangements, dot-product attention,
crossentropies, special functions, norms, matrix functions.

Axis arguments count the batch axis (axis 0), as in a functional model. Each operation comes
wrapped in the checker's ``PackedCall`` adapter with the arguments of its call.
"""

from __future__ import annotations

import keras
import numpy as np
from hypothesis import strategies as st

from jacverify.backward.graph import INPUT_KEY
from jacverify.check.autograd_forward import det_forward
from jacverify.check.companions import CompanionInputs
from jacverify.check.layer_configs import elementwise_domains as domains
from jacverify.check.layer_configs._common import (
    data_formats,
    image_shape,
    inputs_template,
    layer_strategy,
    packed,
    sizes,
    weight_seeds,
)
from jacverify.keras_internals import is_continuous_axis
from jacverify.keras_internals import ops_core as kcore
from jacverify.keras_internals import ops_einops as keinops
from jacverify.keras_internals import ops_image as kimage
from jacverify.keras_internals import ops_linalg as klinalg
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_nn as knn

X = {INPUT_KEY: 0}


def _constant(draw, shape, low=-1.0, high=1.0) -> np.ndarray:
    """A seeded array (a kernel, weights, statistics) in Keras' default float type, the dtype
    of the layers the configurations build."""
    rng = np.random.default_rng(draw(weight_seeds))
    return rng.uniform(low, high, size=shape).astype(keras.config.floatx())


def _shape(draw, rank_low=1, rank_high=3, budget=24):
    rank = draw(st.integers(rank_low, rank_high))
    return draw(sizes(rank, budget=budget, high=4))


# ----------------------------------------------------------------- convolutions and pooling
@layer_strategy
def conv(draw, kind: str):
    """``conv`` / ``depthwise_conv`` / ``separable_conv`` on 1 or 2 spatial axes."""
    n = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
    strides = draw(st.integers(1, 2))
    dilation = 1 if strides > 1 else draw(st.integers(1, 2))
    padding = draw(st.sampled_from(["valid", "same"]))
    low = [(k - 1) * dilation + 1 for k in kernel]
    spatial = draw(sizes(n, low=low, budget=16 if n == 2 else 6, high=5))
    channels = draw(st.integers(1, 2))
    data_format = draw(data_formats)
    shape = image_shape(spatial, channels, data_format)
    options = {"strides": strides, "padding": padding, "data_format": data_format,
               "dilation_rate": dilation}
    if kind == "conv":
        weights = [_constant(draw, (*kernel, channels, draw(st.integers(1, 2))))]
        operation = knn.Conv(**options)
    elif kind == "depthwise":
        weights = [_constant(draw, (*kernel, channels, draw(st.integers(1, 2))))]
        operation = knn.DepthwiseConv(**options)
    else:
        multiplier = draw(st.integers(1, 2))
        weights = [_constant(draw, (*kernel, channels, multiplier)),
                   _constant(draw, (*(1,) * n, channels * multiplier, draw(st.integers(1, 2))))]
        operation = knn.SeparableConv(**options)
    return packed(operation, shape, args=[X, *weights])


@layer_strategy
def pool(draw, cls):
    n = draw(st.integers(1, 2))
    pool_size = tuple(draw(st.integers(1, 3)) for _ in range(n))
    strides = draw(st.sampled_from([None, 1, 2]))
    padding = draw(st.sampled_from(["valid", "same"]))
    spatial = draw(sizes(n, low=list(pool_size), budget=16 if n == 2 else 6, high=5))
    data_format = draw(data_formats)
    shape = image_shape(spatial, draw(st.integers(1, 2)), data_format)
    return packed(cls(pool_size, strides, padding, data_format), shape)


@layer_strategy
def adaptive_pool(draw, cls):
    n = draw(st.integers(1, 2))
    spatial = draw(sizes(n, budget=16 if n == 2 else 6, high=5))
    output = tuple(draw(st.integers(1, s)) for s in spatial)
    data_format = draw(data_formats)
    shape = image_shape(spatial, draw(st.integers(1, 2)), data_format)
    return packed(cls(output, data_format), shape)


# ------------------------------------------------------------------------- normalizations
def _axis(draw, rank):
    axis = draw(st.integers(1, rank - 1))
    return draw(st.sampled_from([axis, axis - rank]))


@layer_strategy
def batch_norm(draw):
    shape = _shape(draw)
    rank = len(shape) + 1
    axis = _axis(draw, rank)
    size = shape[axis % rank - 1]
    mean, offset = _constant(draw, (size,)), _constant(draw, (size,))
    variance, scale = _constant(draw, (size,), 0.25, 2.0), _constant(draw, (size,))
    operation = knn.BatchNorm(axis, epsilon=draw(st.sampled_from([1e-3, 1e-5])))
    return packed(operation, shape, args=[X, mean, variance, offset, scale])


def _trailing_axes(draw, rank):
    """The last axis or the last two: Keras' torch backend normalizes the trailing axes
    whatever the axes asked (see ``jacverify.backward.rules.ops.normalization``)."""
    if rank > 2 and draw(st.booleans()):
        return (rank - 2, rank - 1)
    return draw(st.sampled_from([rank - 1, -1]))


@layer_strategy
def layer_norm(draw):
    shape = _shape(draw)
    rank = len(shape) + 1
    axis = _trailing_axes(draw, rank)
    size = tuple(shape[-1:]) if isinstance(axis, int) else tuple(shape[-2:])
    rms_scaling = draw(st.booleans())
    operation = knn.LayerNorm(axis=axis, epsilon=draw(st.sampled_from([1e-3, 1e-5])),
                              rms_scaling=rms_scaling)
    gamma = _constant(draw, size) if draw(st.booleans()) else None
    beta = None if rms_scaling or not draw(st.booleans()) else _constant(draw, size)
    return packed(operation, shape, args=[X, gamma, beta])


@layer_strategy
def rms_norm(draw):
    """Trailing axes (torch's kernel), or any other set of axes given in any order and sign
    (Keras normalizes them as given when they are not continuous); the scale is broadcast
    against the trailing axes as Keras does (not reshaped to the normalized axes)."""
    shape = _shape(draw)
    rank = len(shape) + 1
    if rank > 2 and draw(st.booleans()):
        axes = sorted(draw(st.sets(st.integers(1, rank - 1), min_size=1)))
        axis = tuple(draw(st.sampled_from([a, a - rank])) for a in axes)
        if len(axis) > 1 and draw(st.booleans()):
            axis = axis[::-1]
        if is_continuous_axis(sorted(axis)):  # the kernel: the trailing axes
            axis = _trailing_axes(draw, rank)
    else:
        axis = _trailing_axes(draw, rank)
    count = 1 if isinstance(axis, int) else len(axis)
    if is_continuous_axis(sorted(axis) if count > 1 else axis):
        size = tuple(shape[-count:])  # the kernel's weight: exactly the trailing sizes
        scale = _constant(draw, size) if draw(st.booleans()) else None
    else:  # always a scale: how it broadcasts is what differs from the kernel's path
        trailing = draw(st.integers(1, len(shape)))
        size = tuple(s if draw(st.booleans()) else 1 for s in shape[-trailing:])
        scale = _constant(draw, size)
    operation = knn.RMSNorm(axis=axis, epsilon=draw(st.sampled_from([1e-3, 1e-6])))
    return packed(operation, shape, args=[X, scale])


@layer_strategy
def normalize(draw):
    """The normalized axis has 2 to 4 entries: along an axis of one entry ``x / |x|`` is
    ``sign(x)``, whose Jacobian is exactly 0 while float32 autograd returns the rounding left
    by cancelling terms (``1e-8``), so that the references disagree (the rule's zero there is
    tested in tests/backward/rules/test_ops_nn.py)."""
    shape = list(_shape(draw))
    rank = len(shape) + 1
    axis = _axis(draw, rank)
    shape[axis % rank - 1] = max(shape[axis % rank - 1], 2)
    order = draw(st.sampled_from([2, 1, 3]))
    return packed(knn.Normalize(axis=axis, order=order), tuple(shape))


# ------------------------------------------------------------------------- rearrangements
@layer_strategy
def depth_to_space(draw):
    block = draw(st.integers(1, 2))
    data_format = draw(data_formats)
    spatial = draw(sizes(2, budget=6, high=3))
    shape = image_shape(spatial, block * block * draw(st.integers(1, 2)), data_format)
    return packed(knn.DepthToSpace(block, data_format), shape)


@layer_strategy
def space_to_depth(draw):
    block = draw(st.integers(1, 2))
    data_format = draw(data_formats)
    spatial = tuple(block * s for s in draw(sizes(2, budget=4, high=2)))
    shape = image_shape(spatial, draw(st.integers(1, 2)), data_format)
    return packed(knn.SpaceToDepth(block, data_format), shape)


# ------------------------------------------------------------------------------ attention
@layer_strategy
def attention(draw):
    heads = draw(st.sampled_from([(1, 1), (2, 2), (2, 1), (4, 2)]))
    q_len, kv_len, dim = (draw(st.integers(1, 3)) for _ in range(3))
    shapes = [(q_len, heads[0], dim), (kv_len, heads[1], dim), (kv_len, heads[1], dim)]
    kwargs = {}
    if draw(st.booleans()):
        kwargs["scale"] = draw(st.sampled_from([0.5, 2.0]))
    return packed(knn.DotProductAttention(is_causal=draw(st.booleans())), shapes,
                  args=inputs_template(3), kwargs=kwargs)


# ------------------------------------------------------------------------ crossentropies
@layer_strategy
def binary_crossentropy(draw):
    shape = _shape(draw, budget=12)
    return packed(knn.BinaryCrossentropy(from_logits=True), [shape, shape])


@layer_strategy
def categorical_crossentropy(draw):
    shape = list(_shape(draw, budget=12))
    shape[-1] = max(shape[-1], 2)
    return packed(knn.CategoricalCrossentropy(from_logits=True, axis=-1), [shape, shape])


@layer_strategy
def sparse_categorical_crossentropy(draw):
    """From logits on the last axis; the integer class indices are a companion input fixed
    for the configuration (see :mod:`jacverify.check.companions`)."""
    shape = list(_shape(draw, budget=12))
    shape[-1] = max(shape[-1], 2)
    rng = np.random.default_rng(draw(weight_seeds))
    target = rng.integers(0, shape[-1], size=shape[:-1]).astype("int32")
    companions = CompanionInputs({0: target}, description=f"target {target.tolist()} for "
                                 "every example")
    return packed(knn.SparseCategoricalCrossentropy(from_logits=True, axis=-1), tuple(shape),
                  companions=companions)


@layer_strategy
def ctc_loss(draw):
    """``ctc_loss(target, output, target_length, output_length, mask_index)``: the logits
    ``output`` are drawn; the labels and both lengths are companion inputs fixed for the
    configuration (see :mod:`jacverify.check.companions`), with repeated labels (which need a
    blank between them) and output lengths from the shortest that fits the labels up."""
    classes = draw(st.integers(2, 4))
    blank = draw(st.sampled_from([0, classes - 1]))
    labels = [c for c in range(classes) if c != blank]
    steps = draw(st.integers(2, 6))
    width = draw(st.sampled_from([3, 2, 1]))
    target = np.array([draw(st.sampled_from(labels)) for _ in range(width)], "int32")
    # The labels used (all of them first), cut to a length some path of ``steps`` steps can
    # emit.
    length = draw(st.sampled_from(list(range(width, 0, -1))))
    while length and length + int(np.sum(target[1:length] == target[: length - 1])) > steps:
        length -= 1
    needed = length + int(np.sum(target[1:length] == target[: max(length - 1, 0)]))
    output_length = draw(st.integers(max(needed, 1), steps))
    companions = CompanionInputs(
        {0: target, 2: np.array(length, "int32"), 3: np.array(output_length, "int32")},
        description=f"target {target.tolist()}, target_length {length}, output_length "
        f"{output_length} for every example",
    )
    return packed(knn.CTCLoss(mask_index=blank), (steps, classes), companions=companions)


# ------------------------------------------------------------------ math, linalg, core
@layer_strategy
def unary(draw, cls):
    return packed(cls(), _shape(draw))


@layer_strategy
def logsumexp(draw):
    shape = _shape(draw)
    rank = len(shape) + 1
    return packed(kmath.Logsumexp(axis=_axis(draw, rank), keepdims=draw(st.booleans())), shape)


@layer_strategy
def extract_sequences(draw):
    length = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    shape = (*draw(sizes(draw(st.integers(0, 1)), budget=3, high=3)),
             draw(st.integers(length, 8)))
    return packed(kmath.ExtractSequences(length, stride), shape)


@layer_strategy
def cdist(draw):
    p, r, m = (draw(st.integers(1, 3)) for _ in range(3))
    return packed(kmath.CDist(), [(p, m), (r, m)])


@layer_strategy
def norm(draw):
    if draw(st.booleans()):
        shape = draw(sizes(2, low=[2, 2], budget=9, high=3))
        order = draw(st.sampled_from([None, "fro"]))
        return packed(klinalg.Norm(ord=order, axis=(1, 2), keepdims=draw(st.booleans())),
                      shape)
    shape = _shape(draw)
    rank = len(shape) + 1
    order = draw(st.sampled_from([None, 2, 1, 3, float("inf"), float("-inf")]))
    return packed(klinalg.Norm(ord=order, axis=_axis(draw, rank),
                               keepdims=draw(st.booleans())), shape)


@layer_strategy
def square_matrix(draw, cls, **arguments):
    n = draw(st.integers(1, 3))
    return packed(cls(**arguments), (n, n))


@layer_strategy
def det(draw):
    """``det`` of ``n x n`` matrices (``n`` from 1 to 3), singular ones included (the
    checker draws ties): torch's derivative is 0 at a singular matrix, so autograd
    differentiates the Leibniz formula."""
    n = draw(st.integers(1, 3))
    return packed(klinalg.Det(), (n, n), autograd_forward=det_forward())


@layer_strategy
def solve_triangular(draw, cls, **arguments):
    n, k = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    return packed(cls(**arguments), [(n, n), (n, k)])


@layer_strategy
def saturate_cast(draw):
    return packed(kcore.SaturateCast("float32"), _shape(draw))


@layer_strategy
def identity_like(draw, cls):
    return packed(cls(), _shape(draw))


# ------------------------------------------------------------------------------- images
@layer_strategy
def resize(draw):
    data_format = draw(data_formats)
    spatial = draw(sizes(2, budget=16, high=5))
    size = tuple(draw(st.integers(1, 5)) for _ in range(2))
    interpolation = draw(st.sampled_from(["bilinear", "nearest", "bicubic"]))
    # Not pad_to_aspect_ratio: Keras 3.15 computes a different function for numpy inputs
    # (which finite differences use) than for tensors; the rule is tested on tensors.
    aspect = draw(st.sampled_from([None, "crop_to_aspect_ratio"]))
    options = {aspect: True} if aspect else {}
    # Not antialias to a width of 1: torch's forward then repeats the first output row while
    # its autograd interpolates (the references disagree); the rule follows the forward
    # (see repeats_first_row), tested in tests/backward/rules/test_ops_image.py.
    antialias = interpolation != "nearest" and size[1] > 1 and draw(st.booleans())
    operation = kimage.Resize(size, interpolation=interpolation, antialias=antialias,
                              data_format=data_format, **options)
    return packed(operation, image_shape(spatial, draw(st.integers(1, 2)), data_format))


@layer_strategy
def crop_images(draw):
    data_format = draw(data_formats)
    height, width = draw(sizes(2, low=[2, 2], budget=16, high=5))
    top, left = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
    target = (draw(st.integers(1, height - top)), draw(st.integers(1, width - left)))
    operation = kimage.CropImages(top, left, None, None, *target, data_format=data_format)
    return packed(operation, image_shape((height, width), draw(st.integers(1, 2)),
                                         data_format))


@layer_strategy
def pad_images(draw):
    data_format = draw(data_formats)
    height, width = draw(sizes(2, budget=9, high=3))
    top, left = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    target = (height + top + draw(st.integers(0, 2)), width + left + draw(st.integers(0, 2)))
    operation = kimage.PadImages(top, left, None, None, *target, data_format=data_format)
    return packed(operation, image_shape((height, width), draw(st.integers(1, 2)),
                                         data_format))


@layer_strategy
def rgb_to_grayscale(draw):
    data_format = draw(data_formats)
    spatial = draw(sizes(2, budget=9, high=3))
    channels = draw(st.sampled_from([1, 3]))
    return packed(kimage.RGBToGrayscale(data_format=data_format),
                  image_shape(spatial, channels, data_format))


@layer_strategy
def gaussian_blur(draw):
    data_format = draw(data_formats)
    k = draw(st.sampled_from([1, 3]))
    spatial = draw(sizes(2, low=[k, k], budget=16, high=4))
    sigma = (draw(st.sampled_from([0.5, 1.0, 2.0])), draw(st.sampled_from([0.5, 1.0])))
    return packed(kimage.GaussianBlur((k, k), sigma, data_format=data_format),
                  image_shape(spatial, draw(st.integers(1, 2)), data_format))


@layer_strategy
def extract_patches(draw):
    data_format = draw(data_formats)
    size = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    strides = draw(st.sampled_from([None, 1, 2]))
    padding = draw(st.sampled_from(["valid", "same"]))
    spatial = draw(sizes(2, low=list(size), budget=16, high=4))
    operation = kimage.ExtractPatches(size, strides=strides, padding=padding,
                                      data_format=data_format)
    return packed(operation, image_shape(spatial, draw(st.integers(1, 2)), data_format))


@layer_strategy
def sobel_edges(draw):
    data_format = draw(data_formats)
    spatial = draw(sizes(2, budget=12, high=4))
    return packed(kimage.SobelEdges(data_format=data_format),
                  image_shape(spatial, draw(st.integers(1, 2)), data_format))


@layer_strategy
def irfft(draw):
    """The pair (real, imag) of ``m`` frequencies, ``fft_length`` default, shorter or
    longer than ``2 (m - 1)``."""
    frequencies = draw(st.integers(1, 5))
    fft_length = draw(st.sampled_from([None, 1, 2, 3, 4, 6, 8, 9]))
    if fft_length is None and frequencies == 1:
        fft_length = 2
    shape = (*draw(sizes(draw(st.integers(0, 1)), budget=3, high=3)), frequencies)
    return packed(kmath.IRFFT(fft_length=fft_length), [shape, shape],
                  args=[({INPUT_KEY: 0}, {INPUT_KEY: 1})])


@layer_strategy
def istft(draw):
    """Frames of a pair (real, imag): torch's istft (``sequence_length == fft_length``,
    centred, a window) or Keras' own, cut to a length or not."""
    fft_length = draw(st.sampled_from([4, 6, 8]))
    sequence_length = draw(st.sampled_from([fft_length, fft_length - 2]))
    frames = draw(st.integers(2, 4))
    # Keras needs stride >= fft_length / frames; torch's envelope must not vanish inside.
    stride = draw(st.integers(-(-fft_length // frames), fft_length // 2))
    center = draw(st.booleans())
    window = draw(st.sampled_from(["hann", "hamming"]))
    total = fft_length + stride * (frames - 1) - (2 * (fft_length // 2) if center else 0)
    length = draw(st.sampled_from([None, max(1, total - 1)]))
    shape = (frames, fft_length // 2 + 1)
    operation = kmath.ISTFT(sequence_length, stride, fft_length, length=length, window=window,
                            center=center)
    return packed(operation, [shape, shape], args=[({INPUT_KEY: 0}, {INPUT_KEY: 1})])


@layer_strategy
def color_conversion(draw, cls):
    data_format = draw(data_formats)
    spatial = draw(sizes(2, budget=9, high=3))
    return packed(cls(data_format=data_format), image_shape(spatial, 3, data_format))


@layer_strategy
def perspective_transform(draw):
    """Corner points scaled and shifted by dyadic amounts (a homography whose coordinates
    float32 and float64 compute alike: the forward solves for it in float32, so a general
    homography's coordinates differ between the float32 call and its float64 clone by more
    than the checker's tolerance), bilinear or nearest."""
    data_format = draw(data_formats)
    height, width = draw(sizes(2, low=[2, 2], budget=16, high=5))
    end = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]],
                   dtype="float32")
    scale = draw(st.sampled_from([1.0, 0.5, 0.75]))
    shift = np.array([draw(st.sampled_from([-0.75, -0.25, 0.0, 0.5])) for _ in range(2)])
    start = (end * scale + shift).astype("float32")
    operation = kimage.PerspectiveTransform(
        interpolation=draw(st.sampled_from(["bilinear", "nearest"])),
        fill_value=draw(st.sampled_from([0.0, 0.5])), data_format=data_format)
    shape = image_shape((height, width), draw(st.integers(1, 2)), data_format)
    return packed(operation, shape, args=[X, start, end])


STRATEGIES = {
    kmath.IRFFT: irfft,
    kmath.ISTFT: istft,
    kimage.HSVToRGB: lambda: color_conversion(kimage.HSVToRGB),
    kimage.PerspectiveTransform: perspective_transform,
    kimage.SobelEdges: sobel_edges,
    kimage.GaussianBlur: gaussian_blur,
    kimage.ExtractPatches: extract_patches,
    kimage.Resize: resize,
    kimage.CropImages: crop_images,
    kimage.PadImages: pad_images,
    kimage.RGBToGrayscale: rgb_to_grayscale,
    knn.Conv: lambda: conv("conv"),
    knn.DepthwiseConv: lambda: conv("depthwise"),
    knn.SeparableConv: lambda: conv("separable"),
    knn.MaxPool: lambda: pool(knn.MaxPool),
    knn.AveragePool: lambda: pool(knn.AveragePool),
    knn.AdaptiveMaxPool: lambda: adaptive_pool(knn.AdaptiveMaxPool),
    knn.AdaptiveAveragePool: lambda: adaptive_pool(knn.AdaptiveAveragePool),
    knn.BatchNorm: batch_norm,
    knn.LayerNorm: layer_norm,
    knn.RMSNorm: rms_norm,
    knn.Normalize: normalize,
    knn.DepthToSpace: depth_to_space,
    knn.SpaceToDepth: space_to_depth,
    knn.DotProductAttention: attention,
    knn.BinaryCrossentropy: binary_crossentropy,
    knn.CategoricalCrossentropy: categorical_crossentropy,
    knn.CTCLoss: ctc_loss,
    knn.SparseCategoricalCrossentropy: sparse_categorical_crossentropy,
    kmath.Erf: lambda: unary(kmath.Erf),
    kmath.Erfc: lambda: unary(kmath.Erfc),
    kmath.Erfinv: domains.strategy(kmath.Erfinv, domains.inside_unit_interval),
    kmath.Logsumexp: logsumexp,
    kmath.ExtractSequences: extract_sequences,
    kmath.CDist: cdist,
    klinalg.Norm: norm,
    klinalg.Det: det,
    klinalg.SolveTriangular: lambda: solve_triangular(klinalg.SolveTriangular, lower=True),
    kcore.SaturateCast: saturate_cast,
    kcore.ConvertToTensor: lambda: identity_like(kcore.ConvertToTensor),
}

_DOMAIN = ("the forward raises on the matrices the checker draws (zero, singular, not positive "
           "definite); the rule is tested in models on valid matrices")

UNSUPPORTED = {
    kimage.ScaleAndTranslate: "its output_shape argument names the batch size, which the "
    "checker varies; the rule is tested in models at a fixed batch size",
    keinops.Rearrange: "Keras 3.15 traces rearrange only at a known batch size (its symbolic "
    "shape multiplies the batch axis's size), which the checker varies; the rule is tested in "
    "models at a fixed batch size",
    kimage.SSIM: "Keras 3.15 computes ssim in float32 even for float64 images (its "
    "result_type(float64, float) is float32), so the checker's float64 finite differences "
    "carry float32 noise through the variances' cancellation; the rule is tested against "
    "torch autograd and a float64 reference in tests/backward/rules",
    kimage.RGBToHSV: "the hue jumps from 0 to 1 where a red maximum has green = blue (it "
    "wraps around the colour circle), and the checker's ties and near-kink points straddle "
    "that jump; the rule is tested in models and at ties in "
    "tests/backward/rules/test_ops_image_color.py",
    klinalg.Pinv: "pinv jumps where the rank of the matrix changes, and the checker draws "
    "matrices of every rank (zero, repeated rows); the rule holds at locally constant rank "
    "and is tested in models on full-rank matrices",
    kimage.AffineTransform: "its transform must be a constant with one row per image (Keras "
    "3.15's torch backend needs (batch, 8) and rewrites a tensor transform in place), which "
    "fixes the batch size the checker varies; the rule is tested in models",
    klinalg.Solve: _DOMAIN,
    kcore.StopGradient: "Keras 3.15's torch stop_gradient takes tensors only (the checker "
    "calls it on arrays); the rule is tested in models",
    knn.Unfold: "Keras 3.15's torch unfold takes torch tensors only (the checker calls it on "
    "arrays); the rule is tested in models",
    knn.Fold: "Keras 3.15's torch fold takes torch tensors only (the checker calls it on "
    "arrays); the rule is tested in models",
    knn.ConvTranspose: "keras.ops.conv_transpose's operation passes output_padding where the "
    "backend expects padding (Keras 3.15): it cannot be called as an operation; the rule is "
    "tested on the eager function",
    kcore.Slice: "its shape argument fixes the batch size: check it inside a model",
    kcore.SliceUpdate: "its start indices and update shape fix the batch size: check it "
    "inside a model",
    **{cls: "refused when the backward model is built (see "
       "jacverify.backward.rules.ops.refused)" for cls in (
        klinalg.Lstsq, klinalg.Eig, kimage.MapCoordinates, kimage.ElasticTransform, knn.Polar,
        kmath.ViewAsComplex, kmath.ViewAsReal,
    )},
    **{cls: "its rule refuses it (the Jacobian couples the examples of a batch)" for cls in (
        kcore.Scatter, kcore.ScatterUpdate, kmath.SegmentSum, kmath.SegmentMax,
        kmath.SegmentMin, kmath.SegmentProd, knn.PSNR,
    )},
}
