"""Rules of the native keras.ops with several outputs (split, array_split, unstack, top_k),
inside functional models, against torch autograd of the same model."""

import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward
from tests.backward.model_reference import assert_model_matches_autograd, functional

SCALE = np.arange(1, 7, dtype="float32")


def _weighted(*pieces):
    """Every piece matters, with distinct weights (a sum would hide a permuted gradient)."""
    return [p * (i + 1.5) for i, p in enumerate(pieces)]


@pytest.mark.parametrize("sections, axis", [(2, 1), ([1, 4], 1), (3, -1), ([2], 2)])
def test_split(sections, axis, tmp_path):
    model = functional(
        lambda x: ops.concatenate(_weighted(*ops.split(ops.tanh(x), sections, axis=axis)),
                                  axis=axis),
        [(6, 6)],
    )
    assert_model_matches_autograd(model, save_to=tmp_path / "split.keras")


def test_split_with_an_unused_piece():
    model = functional(lambda x: ops.tanh(ops.split(x * x, 3, axis=1)[1]), [(6, 2)])
    assert_model_matches_autograd(model, extra_axes=(2, 2))


def test_array_split_unequal_pieces():
    model = functional(
        lambda x: ops.concatenate(_weighted(*ops.array_split(ops.tanh(x), 3, axis=1)), axis=1),
        [(7,)],
    )
    assert_model_matches_autograd(model)


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_unstack(axis, tmp_path):
    model = functional(
        lambda x: ops.stack(_weighted(*ops.unstack(ops.exp(x), axis=axis)), axis=1),
        [(3, 4)],
    )
    assert_model_matches_autograd(model, save_to=tmp_path / "unstack.keras")


@pytest.mark.parametrize("k", [1, 3])
def test_top_k_values(k, tmp_path):
    model = functional(lambda x: ops.top_k(x * SCALE, k)[0] ** 2, [(2, 6)])
    assert_model_matches_autograd(model, save_to=tmp_path / "top_k.keras", extra_axes=(2,))


def test_top_k_values_and_float_indices_used():
    """The integer indices are used (cast to float) downstream: they carry no gradient."""
    def fn(x):
        values, indices = ops.top_k(x, 2)
        return values * ops.cast(indices, "float32")
    assert_model_matches_autograd(functional(fn, [(5,)]))


def test_top_k_tie_gives_the_picked_position():
    """At a tie autograd and the rule route the gradient to the position top_k picked."""
    model = functional(lambda x: ops.top_k(x, 1)[0], [(4,)])
    x = np.array([[1.0, 3.0, 3.0, 0.0]], dtype="float32")
    assert_model_matches_autograd(model, [x], extra_axes=None)


def test_split_along_the_batch_axis_is_refused():
    model = functional(lambda x: ops.concatenate(ops.split(x, 2, axis=0), axis=1), [(3,)])
    with pytest.raises(ValueError, match="batch axis"):
        clone_to_backward(model)


def test_a_wrong_split_rule_is_caught():
    """The pieces' gradients concatenated in the wrong order: autograd disagrees."""
    from keras.src.ops import numpy as knp

    from jacverify.backward.rules.ops.split import BackwardSplitOp

    class ReversedSplit(BackwardSplitOp):
        def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
            return super().call_on_reshaped_gradient(gradient[::-1], input)

    model = functional(
        lambda x: ops.concatenate(_weighted(*ops.split(ops.tanh(x), 2, axis=1)), axis=1),
        [(4,)],
    )
    with pytest.raises(AssertionError):
        assert_model_matches_autograd(model, mapping={knp.Split: ReversedSplit})


@pytest.mark.parametrize("widths", [[(0, 0), (1, 2)], [(0, 0), (0, 1), (2, 0)]])
def test_pad_constant(widths):
    """ops.pad (constant mode): the rule crops the padded borders (keras_hub's pre-activation
    ResNet pads this way)."""
    shape = (5,) if len(widths) == 2 else (3, 4)
    model = functional(lambda x: ops.tanh(ops.pad(x * x, widths, constant_values=0.5)), [shape])
    assert_model_matches_autograd(model)


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
def test_pad_other_modes(mode):
    model = functional(lambda x: ops.tanh(ops.pad(x * x, [(0, 0), (1, 2)], mode=mode)), [(4,)])
    assert_model_matches_autograd(model)


def test_pad_of_the_batch_axis_is_refused():
    with pytest.raises(ValueError, match="batch"):
        clone_to_backward(functional(lambda x: ops.pad(x, [(1, 0), (1, 1)]), [(4,)]))
