"""local_lipschitz: the spectral norm of a linear map; on a nonlinear model, a lower bound
(below the product of the layers' spectral norms) at least the largest singular value of
the autograd Jacobian at the example itself."""

from __future__ import annotations

import numpy as np
import torch

from jacverify.analysis import local_lipschitz
from tests.analysis.models import linear, mlp

RNG = np.random.default_rng(3)


def test_linear_map_gives_its_spectral_norm():
    for shape in ((6, 4), (5, 9)):
        matrix = RNG.standard_normal(shape)
        x = RNG.standard_normal((3, shape[0])).astype("float32")
        bound = local_lipschitz(linear(matrix), x, radius=0.5, seed=0)
        spectral = np.linalg.norm(matrix.astype("float32"), 2)
        assert bound.shape == (3,)
        np.testing.assert_allclose(bound, spectral, rtol=0.01)
        assert np.all(bound <= spectral * (1 + 1e-5))


def test_nonlinear_model_gets_a_lower_bound():
    model = mlp(units=3)
    x = RNG.standard_normal((4, 6)).astype("float32")
    bound = local_lipschitz(model, x, radius=0.3, steps=30, seed=0)
    kernels = [layer.get_weights()[0] for layer in model.layers]
    upper = np.prod([np.linalg.norm(k, 2) for k in kernels])  # tanh is 1-Lipschitz
    assert np.all(bound <= upper)
    for i in range(len(x)):
        jacobian = torch.autograd.functional.jacobian(
            lambda v: model(v[None])[0], torch.tensor(x[i])
        ).numpy()
        assert bound[i] >= 0.99 * np.linalg.norm(jacobian, 2)


def test_a_vanishing_jacobian_at_the_example_does_not_end_the_search():
    import keras

    # relu(x - 1): the Jacobian is 0 at x = 0.5 (every unit off), 1 on a unit once x_i > 1.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, use_bias=True),
                              keras.layers.ReLU()])
    model.layers[0].set_weights([np.eye(3, dtype="float32"), np.full(3, -1.0, "float32")])
    x = np.full((1, 3), 0.5, dtype="float32")
    assert local_lipschitz(model, x, radius=0.1, seed=0)[0] == 0.0
    bound = local_lipschitz(model, x, radius=2.0, steps=40, seed=0)[0]
    assert 0.5 < bound <= 1.0 + 1e-6
