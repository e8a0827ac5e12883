"""Rules of the ``keras.ops`` that copy elements (pad, tile, repeat, roll, flip, rot90, take,
take_along_axis, diagonal, tril/triu, broadcast_to, append, stacks) and of where/select,
against torch autograd, float32 and float64, with extra Jacobian axes and through save/load;
operations mixing the examples of a batch refused; wrong twins rejected."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops
from keras.src.ops import numpy as knp

from jacverify import clone_to_backward, registered_rules
from tests.backward.model_reference import assert_model_matches_autograd, functional
from tests.backward.op_cases import check_case

registered_rules()

from jacverify.backward.rules.ops.selection import GatherPlan, probe_sources  # noqa: E402

CASES = {
    "pad_constant": (lambda x: ops.pad(x, [[0, 0], [1, 2], [0, 1]]), [(3, 2)]),
    "pad_value": (lambda x: ops.pad(x, [[0, 0], [2, 0]], constant_values=3.0), [(4,)]),
    "pad_reflect": (lambda x: ops.pad(x, [[0, 0], [2, 1]], mode="reflect"), [(4,)]),
    "pad_symmetric": (lambda x: ops.pad(x, [[0, 0], [2, 3], [1, 0]], mode="symmetric"),
                      [(3, 2)]),
    "tile": (lambda x: ops.tile(x, (1, 2, 3)), [(2, 2)]),
    "repeat": (lambda x: ops.repeat(x, 3, axis=2), [(2, 2)]),
    "roll": (lambda x: ops.roll(x, 2, axis=1), [(5,)]),
    "flip": (lambda x: ops.flip(x, axis=-1) + ops.fliplr(x), [(3, 3)]),
    "rot90": (lambda x: ops.rot90(x, k=3, axes=(1, 2)), [(3, 4)]),
    "take": (lambda x: ops.take(x, [0, 2, 2, -1], axis=1), [(3, 4)]),
    "take_along_axis": (lambda x: ops.take_along_axis(
        x, np.array([[[0, 2], [1, 1], [2, 0]]]), axis=2), [(3, 3)]),
    "diagonal": (lambda x: ops.diagonal(x, offset=1, axis1=1, axis2=2), [(3, 4)]),
    "tril_triu": (lambda x: ops.tril(x, k=-1) + ops.triu(x, k=1) * 2.0, [(3, 3)]),
    "broadcast_to": (lambda x: ops.broadcast_to(x, (3, 3, 4)), [(1, 4)]),
    "append": (lambda x, y: ops.append(x, y, axis=1), [(3,), (2,)]),
    "hstack": (lambda x, y: ops.hstack([x, y]), [(2, 2), (3, 2)]),
    "dstack": (lambda x, y: ops.dstack([x, y]), [(2, 2), (2, 2)]),
    "where": (lambda x, y: ops.where(x > 0, x, y), [(3, 4), (1, 4)]),
    "where_constant": (lambda x: ops.where(x > 0.2, x * 2.0, 0.5), [(5,)]),
    "where_float_condition": (lambda x, c: ops.where(c, x, -x), [(4,), (4,)]),
    "select": (lambda x, y: ops.select([x > 0, y > 0], [x, y], x * 3.0), [(5,), (5,)]),
    # the functional graph of keras.ops of issue 12
    "sin_cos_cumsum_where_pad_take_arctan_log1p_power": (lambda x: ops.arctan(ops.log1p(
        ops.power(ops.take(ops.pad(ops.cumsum(ops.where(x > 0, ops.sin(x), ops.cos(x)), axis=1),
                                   [[0, 0], [1, 2]]), [0, 2, 3, 5, 6], axis=1), 2.0))), [(5,)]),
}
# Keras types these results float32 for float64 inputs (where with a Python constant, the
# multiplications by Python floats): the model, the reference, is float32-precise there.
FLOAT32_FORWARD = {"where_constant", "select", "tril_triu",
                   "sin_cos_cumsum_where_pad_take_arctan_log1p_power"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_autograd_float32(name, tmp_path):
    save = tmp_path / f"{name}.keras" if name in {"pad_reflect", "take", "where"} else None
    check_case(CASES[name], "float32", save_to=save)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_autograd_float64(name):
    from tests.backward.op_cases import TOLERANCES

    loose = TOLERANCES["float32"] if name in FLOAT32_FORWARD else None
    check_case(CASES[name], "float64", tolerances=loose)


def test_take_along_axis_with_indices_of_the_model():
    """Indices computed in the model (an integer tensor, per example), negative ones too."""
    model = functional(lambda x, i: ops.take_along_axis(x, i, axis=1), [(4,), (6,)],
                       input_dtypes=["float32", "int32"])
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((3, 4)).astype("float32"),
          rng.integers(-4, 4, (3, 6)).astype("int32")]
    assert_model_matches_autograd(model, xs)


def test_probe_reads_the_sources():
    """``flip`` of 3 values: output 0 copies input 2, ...; ``pad`` writes constants (-1)."""
    (source,) = probe_sources(knp.Flip(axis=1), [{"__input__": 0}], {}, [[3]])
    np.testing.assert_array_equal(source, [2, 1, 0])
    (source,) = probe_sources(knp.Pad([[0, 0], [1, 1]]), [{"__input__": 0}], {}, [[2]])
    np.testing.assert_array_equal(source, [-1, 0, 1, -1])


@pytest.mark.parametrize("operation,dims", [
    (knp.Pad([[0, 0], [1, 2], [0, 1]]), [3, 2]),  # zeros read by no input element
    (knp.Tile((1, 2, 3)), [2, 2]),  # every element copied 6 times
    (knp.Repeat(2, axis=1), [3]),
    (knp.Diagonal(offset=1, axis1=1, axis2=2), [3, 4]),  # elements with no copy
])
def test_gather_plan_sums_the_copies(operation, dims):
    """The plan's gather (torch's functions on torch tensors, keras.ops on others) equals the
    product with the copy matrix built from the sources by hand."""
    import torch

    (source,) = probe_sources(operation, [{"__input__": 0}], {}, [dims])
    n_in = int(np.prod(dims))
    matrix = np.zeros((source.size, n_in))
    matrix[np.nonzero(source >= 0)[0], source[source >= 0]] = 1.0
    rng = np.random.default_rng(0)
    g = rng.standard_normal((3, source.size))
    expected = (g @ matrix).reshape(3, *dims)
    plan = GatherPlan(source, n_in)
    for gradient in (torch.tensor(g), g):  # (the sums of copies in another order: 1 ulp)
        np.testing.assert_allclose(ops.convert_to_numpy(plan.gather(gradient, dims)),
                                   expected, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("fn,shapes", [
    (lambda x: ops.flipud(x), [(3,)]),
    (lambda x: ops.flip(x), [(3,)]),
    (lambda x: ops.ravel(x), [(3,)]),
    (lambda x: ops.roll(x, 1), [(3,)]),
    (lambda x: ops.tril(x), [(3,)]),
    (lambda x, y: ops.vstack([x, y]), [(3,), (3,)]),
])
def test_operations_mixing_the_batch_are_refused(fn, shapes):
    model = functional(fn, shapes)
    with pytest.raises(ValueError, match="batch"):
        clone_to_backward(model)


def test_take_with_indices_of_the_model_is_refused():
    model = functional(lambda x, i: ops.take(x, i, axis=1), [(3,), (2,)],
                       input_dtypes=["float32", "int32"])
    with pytest.raises(ValueError, match="batch"):
        clone_to_backward(model)


def test_wrong_twin_is_rejected():
    """A rule that gathers the padded gradient one position off is caught."""
    from jacverify.backward.rules.ops.selection import BackwardSelectionOp

    class Shifted(BackwardSelectionOp):
        def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
            return gradient[:, 0:4]

    case = (lambda x: ops.pad(x, [[0, 0], [1, 2]]), [(4,)])
    check_case(case, "float32")
    with pytest.raises(AssertionError):
        check_case(case, "float32", mapping={knp.Pad: Shifted}, extra_axes=())
