"""A floor that keeps float64 precision, and the sampling rule that picks its cells with it: at
float64 coordinates within float32 rounding of an integer (where Keras' ``ops.floor`` outside
``float64_precision`` picks the next cell), against torch autograd of ``map_coordinates``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from keras import ops

from jacverify.backward.rules._rounding import exact_floor
from jacverify.backward.rules.ops import sampling

NEAR_INTEGERS = np.array([2.9999999999, -1e-323, 3.0000000001, -2.5, 4.0, 1e-300])


@pytest.mark.parametrize("as_torch", [True, False])
def test_exact_floor_in_float64(as_torch):
    x = torch.tensor(NEAR_INTEGERS) if as_torch else ops.convert_to_tensor(NEAR_INTEGERS)
    floor = ops.convert_to_numpy(exact_floor(x))
    assert floor.dtype == np.float64
    np.testing.assert_array_equal(floor, np.floor(NEAR_INTEGERS))
    # What the rules took before: Keras' float64 floor, computed in float32.
    assert ops.convert_to_numpy(ops.floor(torch.tensor(NEAR_INTEGERS)))[0] == 3.0


def _sampled(images, coordinate):
    return torch.stack([ops.image.map_coordinates(images[b], [coordinate[b]], order=1,
                                                  fill_mode="nearest")
                        for b in range(images.shape[0])])


def test_sampling_takes_the_cell_the_operation_takes(monkeypatch):
    """Linear interpolation at coordinates 1e-10 below and above an integer: the images' and the
    coordinates' gradients are autograd's; with Keras' float64 floor, the coordinates' are not
    (the slope of the next cell)."""
    images = torch.tensor([[0.0, 1.0, 3.0, 7.0, 2.0, -4.0]], dtype=torch.float64,
                          requires_grad=True)
    coordinate = torch.tensor([[2.9999999999, 1.5, 3.0000000001]], dtype=torch.float64,
                              requires_grad=True)
    g = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    expected = torch.autograd.grad(_sampled(images, coordinate), (images, coordinate), g)

    def vjp():
        got = sampling.sampling_vjp(images.detach(), [coordinate.detach()], g, order=1,
                                    fill_mode="nearest", fill_value=0.0, with_coordinates=True)
        return ops.convert_to_numpy(got[0]), ops.convert_to_numpy(got[1][0])

    g_images, g_coordinate = vjp()
    np.testing.assert_allclose(g_images, expected[0].numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(g_coordinate, expected[1].numpy(), rtol=1e-14, atol=1e-15)
    assert g_coordinate[0, 0] == 4.0  # 7 - 3: the cell [2, 3]
    monkeypatch.setattr(sampling, "exact_floor", ops.floor)
    wrong = vjp()[1]
    assert wrong[0, 0] == -5.0  # 2 - 7: the cell [3, 4]
