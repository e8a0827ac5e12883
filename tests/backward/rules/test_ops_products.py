"""Rules of ``tensordot``, ``dot``, ``inner``, ``kron``, ``cross`` and ``trace`` against torch
autograd, float32 and float64, with extra Jacobian axes; products that would mix the examples
of a batch refused; a wrong twin rejected."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from keras import ops
from keras.src.ops import numpy as knp

from jacverify import clone_to_backward, registered_rules
from tests.backward.model_reference import functional
from tests.backward.op_cases import TOLERANCES, check_case, check_rule_float64

registered_rules()

from jacverify.backward.rules.ops.products import BackwardTraceOp  # noqa: E402

W = np.arange(12, dtype="float64").reshape(3, 4) / 7.0 - 0.5


def _w(dtype):
    return W.astype(dtype)


def cases(dtype):
    w = _w(dtype)
    return {
        "tensordot": (lambda x: ops.tensordot(x, w, axes=1), [(2, 3)]),
        "tensordot_pairs": (lambda x: ops.tensordot(x, w, axes=([1], [0])), [(3,)]),
        "tensordot_two_axes": (lambda x: ops.tensordot(x, w, axes=([1, 2], [0, 1])),
                               [(3, 4)]),
        "dot_matrix": (lambda x: ops.dot(x, w), [(2, 3)]),
        "dot_vector": (lambda x: ops.dot(x, w[:, 0]), [(4, 3)]),
        "inner": (lambda x: ops.inner(x, w), [(2, 4)]),
        "kron": (lambda x: ops.kron(x, w[None, :2, :2]), [(2, 3)]),
        "kron_left": (lambda x: ops.kron(w[None, :1, :2], x), [(2, 3)]),
        "cross": (lambda x, y: ops.cross(x, y), [(2, 3), (2, 3)]),
        "cross_broadcast": (lambda x, y: ops.cross(x, y), [(2, 3), (1, 3)]),
        "trace": (lambda x: ops.trace(x, offset=1, axis1=1, axis2=2), [(3, 4)]),
        "trace_reversed_axes": (lambda x: ops.trace(x, offset=-1, axis1=2, axis2=1),
                                [(3, 4, 2)]),
    }


NAMES = sorted(cases("float32"))
# Keras computes cross and tensordot of float64 tensors in float32, and dot/inner through
# matmul (float32 on torch): the model, the reference, is float32-precise there.
FLOAT32_FORWARD = {"cross", "cross_broadcast", "tensordot", "tensordot_pairs",
                   "tensordot_two_axes", "dot_matrix", "dot_vector", "inner"}


@pytest.mark.parametrize("name", NAMES)
def test_rule_matches_autograd_float32(name, tmp_path):
    save = tmp_path / f"{name}.keras" if name in {"kron", "trace"} else None
    # torch.cross picks the first axis of size 3 when no axis is given (Keras passes none):
    # a batch of 3 would be crossed along the batch axis.
    check_case(cases("float32")[name], "float32", batch=2, save_to=save)


@pytest.mark.parametrize("name", NAMES)
def test_rule_matches_autograd_float64(name):
    loose = TOLERANCES["float32"] if name in FLOAT32_FORWARD else None
    check_case(cases("float64")[name], "float64", batch=2, tolerances=loose)


def test_cross_rule_is_float64_precise():
    check_rule_float64(knp.Cross(), lambda a, b: torch.linalg.cross(a, b), [(2, 3), (2, 3)],
                       batch=2)


@pytest.mark.parametrize("fn", [
    lambda x, y: ops.inner(x, y),
    lambda x, y: ops.tensordot(x, y, axes=1),
    lambda x, y: ops.kron(x, y),
])
def test_products_of_two_batched_tensors_are_refused(fn):
    with pytest.raises(ValueError, match="batch"):
        clone_to_backward(functional(fn, [(3,), (3,)]))


class _TraceOffByOne(BackwardTraceOp):
    """Puts the gradient on the main diagonal whatever the offset."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        shape = self._mask.shape
        self._mask = np.eye(shape[1], shape[2]).reshape(shape)


def test_wrong_twin_is_rejected():
    case = cases("float32")["trace"]
    with pytest.raises(AssertionError):
        check_case(case, "float32", mapping={knp.Trace: _TraceOffByOne}, extra_axes=())
