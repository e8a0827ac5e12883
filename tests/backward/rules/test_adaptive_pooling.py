"""Rules of the adaptive pooling layers against torch autograd (overlapping and uneven
windows, up- and downsampling, both data formats, float64); ties split equally; a wrong rule
rejected."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from jacverify import BackwardLinearLayer, registered_rules
from tests.backward.reference import assert_rule_matches_autograd, make_rule

registered_rules()

from jacverify.backward.rules.pooling.adaptive_pooling import windows  # noqa: E402

L = keras.layers
CASES = [
    ("AdaptiveAveragePooling1D", (7, 3), 3), ("AdaptiveAveragePooling1D", (4, 2), 6),
    ("AdaptiveAveragePooling2D", (7, 5, 3), (3, 2)), ("AdaptiveAveragePooling2D", (4, 4, 2), 4),
    ("AdaptiveAveragePooling3D", (5, 4, 6, 2), (2, 3, 4)),
    ("AdaptiveMaxPooling1D", (7, 3), 3), ("AdaptiveMaxPooling1D", (4, 3), 6),
    ("AdaptiveMaxPooling2D", (7, 5, 3), (3, 2)), ("AdaptiveMaxPooling2D", (5, 5, 2), (5, 1)),
    ("AdaptiveMaxPooling3D", (5, 4, 6, 2), (2, 3, 4)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name,shape,output_size", CASES, ids=str)
def test_adaptive_pooling(name, shape, output_size, data_format, dtype):
    layer = getattr(L, name)(output_size, data_format=data_format, dtype=dtype)
    if data_format == "channels_first":
        shape = (shape[-1], *shape[:-1])
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(dtype)
    assert make_rule(layer, x).is_linear == ("Average" in name)
    tolerances = {"rtol": 1e-10, "atol": 1e-12} if dtype == "float64" else {}
    assert_rule_matches_autograd(layer, x, **tolerances)


def test_windows_overlap_like_torch():
    assert windows(5, 3) == [(0, 2), (1, 4), (3, 5)]
    assert windows(4, 6) == [(0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4)]


def test_max_ties_are_split_equally():
    layer = L.AdaptiveMaxPooling1D(1)
    x = np.array([[[1.0], [3.0], [3.0], [0.0]]], "float32")
    g = np.array([[[2.0]]], "float32")
    got = keras.ops.convert_to_numpy(make_rule(layer, x)([g, x]))
    np.testing.assert_allclose(got[0, :, 0], [0.0, 1.0, 1.0, 0.0])


class _AverageIgnoringOverlap(BackwardLinearLayer):
    """Assigns each position to one window (``floor(j o / n)``), as if windows did not
    overlap."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        n = self.input_dim_wo_batch[0]
        o = self.output_dim_wo_batch[0]
        owner = np.floor(np.arange(n) * o / n).astype(int)
        matrix = np.zeros((o, n))
        for i in range(o):
            matrix[i, owner == i] = 1.0 / np.sum(owner == i)
        return keras.ops.einsum("boc,on->bnc", gradient,
                                keras.ops.convert_to_tensor(matrix, dtype=gradient.dtype))


def test_reference_rejects_non_overlapping_windows():
    layer = L.AdaptiveAveragePooling1D(3)
    x = np.random.default_rng(0).standard_normal((2, 7, 2)).astype("float32")
    assert_rule_matches_autograd(layer, x)
    with pytest.raises(AssertionError, match="Not equal"):
        assert_rule_matches_autograd(layer, x, rule_class=_AverageIgnoringOverlap)
