"""Rules of the ``keras.ops.image`` functions (``resize``, ``crop_images``, ``pad_images``,
``rgb_to_grayscale``) in functional graphs against torch autograd, float32 and float64, with
extra Jacobian axes."""

from __future__ import annotations

import pytest
from keras import ops

from tests.backward.rules._ops_cases import check_case

CASES = {
    "resize_bilinear": (lambda x: ops.image.resize(x, (5, 3)), [(4, 6, 2)]),
    "resize_nearest_channels_first": (lambda x: ops.image.resize(
        x, (3, 5), interpolation="nearest", data_format="channels_first"), [(2, 4, 3)]),
    "resize_bicubic_antialias": (lambda x: ops.image.resize(
        x, (2, 3), interpolation="bicubic", antialias=True), [(5, 7, 1)]),
    "resize_crop_to_aspect_ratio": (lambda x: ops.image.resize(
        x, (3, 3), crop_to_aspect_ratio=True), [(4, 6, 2)]),
    "resize_pad_to_aspect_ratio": (lambda x: ops.image.resize(
        x, (4, 4), pad_to_aspect_ratio=True, fill_value=1.0), [(3, 6, 1)]),
    "crop_images": (lambda x: ops.image.crop_images(x, 1, 2, target_height=3, target_width=2),
                    [(5, 6, 2)]),
    "crop_images_channels_first": (lambda x: ops.image.crop_images(
        x, bottom_cropping=1, right_cropping=2, target_height=3, target_width=3,
        data_format="channels_first"), [(2, 5, 6)]),
    "pad_images": (lambda x: ops.image.pad_images(x, 1, 2, target_height=6, target_width=7),
                   [(3, 4, 2)]),
    "pad_images_channels_first": (lambda x: ops.image.pad_images(
        x, bottom_padding=2, right_padding=1, target_height=6, target_width=4,
        data_format="channels_first"), [(1, 3, 2)]),
    "rgb_to_grayscale": (lambda x: ops.image.rgb_to_grayscale(x), [(3, 4, 3)]),
    "rgb_to_grayscale_channels_first": (lambda x: ops.image.rgb_to_grayscale(
        x, data_format="channels_first"), [(3, 2, 4)]),
    "gaussian_blur": (lambda x: ops.image.gaussian_blur(x, (3, 3), (1.0, 0.7)), [(5, 6, 2)]),
    "gaussian_blur_channels_first": (lambda x: ops.image.gaussian_blur(
        x, (5, 5), (1.5, 0.8), data_format="channels_first"), [(2, 6, 7)]),
    "extract_patches": (lambda x: ops.image.extract_patches(x, 2), [(4, 6, 2)]),
    "extract_patches_strided_same": (lambda x: ops.image.extract_patches(
        x, (2, 3), strides=(1, 2), padding="same"), [(4, 5, 1)]),
    "sobel_edges": (lambda x: ops.image.sobel_edges(x), [(4, 5, 2)]),
    "sobel_edges_channels_first": (lambda x: ops.image.sobel_edges(
        x, data_format="channels_first"), [(2, 4, 3)]),
    "grayscale_of_one_channel": (lambda x: ops.image.rgb_to_grayscale(x), [(3, 4, 1)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_image_op_rule_matches_autograd(name, dtype, tmp_path):
    save = tmp_path / f"{name}.keras" if name in {"crop_images", "resize_bilinear"} else None
    # Keras builds the blur kernel from float32 sigmas: its float64 forward is float32-precise.
    check_case(CASES[name], dtype, save_to=save if dtype == "float32" else None,
               keras_float32_inside=name.startswith("gaussian_blur"))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_resize_to_one_column_with_antialias_follows_the_forward(interpolation, data_format):
    """Torch's anti-aliased resize to a width of 1 repeats the first output row (its autograd
    interpolates each row): the rule is the derivative of the forward as computed, compared
    with float64 central differences of it (the op is linear: exact up to rounding)."""
    import numpy as np

    from jacverify import clone_to_backward
    from tests.backward.model_reference import functional, linear_model_vjp

    shape = (5, 2, 2) if data_format == "channels_last" else (2, 5, 2)
    resize = lambda x: ops.image.resize(  # noqa: E731
        x, (4, 1), interpolation=interpolation, antialias=True, crop_to_aspect_ratio=True,
        data_format=data_format)
    model = functional(resize, [shape], dtype="float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *shape))
    g = rng.standard_normal(tuple(model(x).shape))
    got = np.asarray(clone_to_backward(model)([x, g]))
    np.testing.assert_allclose(got, linear_model_vjp(model, x, g), rtol=1e-10, atol=1e-10)
