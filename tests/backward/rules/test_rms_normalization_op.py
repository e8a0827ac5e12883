"""``keras.ops.rms_normalization`` over axis sets (trailing, continuous elsewhere, not
continuous, given in any order and sign) with scales broadcast as Keras broadcasts them,
against torch autograd of the same model (extra Jacobian axes included)."""

import numpy as np
import pytest
from keras import ops

from tests.backward.model_reference import assert_model_matches_autograd, functional

CASES = [
    # (input shape without batch, axis, scale shape or None)
    ((5,), -1, (5,)),
    ((3, 3), 1, (3,)),  # continuous as given: torch's kernel normalizes the last axis
    ((3, 4), (1, 2), (3, 4)),
    ((2, 3, 4), (2, 3), (3, 4)),
    ((2, 3, 2), (1, 3), (2,)),  # not continuous: the axes given, scale on the last axis
    ((2, 3, 2), (1, 3), (3, 2)),
    ((2, 3, 2), (3, 1), (2, 3, 2)),
    ((3, 2, 2), (1, 3), (3, 1, 2)),
    ((3, 4), (-1, 1), (4,)),
    ((2, 3, 4), (-1, 1), None),
]


@pytest.mark.parametrize("shape, axis, scale_shape", CASES,
                         ids=[f"{s}-{a}-{c}" for s, a, c in CASES])
def test_rms_normalization_matches_autograd(shape, axis, scale_shape):
    rng = np.random.default_rng(3)
    scale = None
    if scale_shape is not None:
        scale = rng.uniform(-2.0, 2.0, scale_shape).astype("float32")
    model = functional(
        lambda x: ops.rms_normalization(x, scale, axis=axis, epsilon=1e-6), [shape])
    assert_model_matches_autograd(model, extra_axes=(2,))


def test_keras_multiplies_by_the_scale_as_broadcast():
    """What the rule follows, by hand: on axes that are not continuous Keras broadcasts the
    scale against the trailing axes (a (3, 2) scale here), it does not reshape it to the
    normalized axes (sizes 2 and 2)."""
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 2)).astype("float32")
    scale = np.arange(1.0, 7.0, dtype="float32").reshape(3, 2)
    got = ops.convert_to_numpy(ops.rms_normalization(x, scale, axis=(1, 3)))
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=(1, 3), keepdims=True) + 1e-7)
    np.testing.assert_allclose(got, x / rms * scale, rtol=1e-5)  # broadcast as given
