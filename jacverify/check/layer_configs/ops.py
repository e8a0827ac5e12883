"""Configurations of the ``keras.ops`` operation classes with native rules: element-wise and
activation operations with their arguments, reductions, reshapes and transposes (axes that
leave the batch axis alone), and the operations of several tensors (arithmetic with
broadcasting, matmul, einsum, concatenate, stack).

Axis arguments count the batch axis (axis 0), as in a functional model. Each operation comes
wrapped in the checker's ``PackedCall`` adapter with the arguments of its call (check_layer
checks layers).
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from jacverify.backward.graph import INPUT_KEY
from jacverify.check.layer_configs import elementwise_domains as domains
from jacverify.check.layer_configs._common import (
    inputs_template,
    layer_strategy,
    packed,
    sizes,
    small_floats,
)
from jacverify.keras_internals import ops_core as kcore
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_nn as knn
from jacverify.keras_internals import ops_numpy as knp


def _shape(rank_low: int = 1, rank_high: int = 3, budget: int = 24) -> st.SearchStrategy:
    return st.integers(rank_low, rank_high).flatmap(
        lambda rank: sizes(rank, budget=budget, high=4)
    )


@layer_strategy
def unary(draw, make, rank_low: int = 1):
    """``make(draw, rank)`` builds the operation for an input of ``rank`` (batch included)."""
    shape = draw(_shape(rank_low))
    return packed(make(draw, len(shape) + 1), shape)


def _axis(draw, rank: int):
    axis = draw(st.integers(1, rank - 1))
    return draw(st.sampled_from([axis, axis - rank]))


def _axes(draw, rank: int):
    """One non-batch axis or a tuple of several."""
    if rank > 2 and draw(st.booleans()):
        return tuple(sorted(draw(st.sets(st.integers(1, rank - 1), min_size=2))))
    return _axis(draw, rank)


def _no_args(cls):
    return lambda: unary(lambda draw, rank: cls())


_ACTIVATION_ARGUMENTS = {
    "Celu": lambda draw, rank: {"alpha": draw(st.sampled_from([1.0, 0.5, 2.0]))},
    "Elu": lambda draw, rank: {"alpha": draw(st.sampled_from([1.0, 0.5, 2.0]))},
    "Gelu": lambda draw, rank: {"approximate": draw(st.booleans())},
    "HardShrink": lambda draw, rank: {"threshold": draw(st.sampled_from([0.5, 0.0, 1.0]))},
    "SoftShrink": lambda draw, rank: {"threshold": draw(st.sampled_from([0.5, 0.0, 1.0]))},
    "LeakyRelu": lambda draw, rank: {"negative_slope": draw(st.sampled_from([0.2, 0.01, 1.5]))},
    "Squareplus": lambda draw, rank: {"b": draw(st.sampled_from([4, 0, 1]))},
    "Threshold": lambda draw, rank: {
        "threshold": draw(st.sampled_from([0.0, 0.5, -1.0])),
        "default_value": draw(st.sampled_from([0.0, 2.0, -0.5])),
    },
    "Softmax": lambda draw, rank: {"axis": _axis(draw, rank)},
    "LogSoftmax": lambda draw, rank: {"axis": _axis(draw, rank)},
    "Sparsemax": lambda draw, rank: {"axis": _axis(draw, rank)},
}


@layer_strategy
def activation_op(draw, cls):
    """An activation operation with its arguments (``Glu``: an even size along its axis)."""
    shape = list(draw(_shape()))
    rank = len(shape) + 1
    if cls.__name__ == "Glu":
        axis = _axis(draw, rank)
        shape[axis % rank - 1] = 2 * draw(st.integers(1, 2))
        return packed(cls(axis=axis), shape)
    arguments = _ACTIVATION_ARGUMENTS.get(cls.__name__, lambda draw, rank: {})(draw, rank)
    if "axis" in arguments and shape[arguments["axis"] % rank - 1] == 1:
        shape[arguments["axis"] % rank - 1] = 2  # a softmax over one value is constant
    return packed(cls(**arguments), shape)


@layer_strategy
def clip(draw):
    low = draw(small_floats(-2.0, 1.0))
    high = low + draw(st.sampled_from([0.0, 0.5, 2.0]))
    return packed(knp.Clip(low, high), draw(_shape()))


@layer_strategy
def reduction(draw, cls):
    shape = draw(_shape())
    rank = len(shape) + 1
    return packed(cls(axis=_axes(draw, rank), keepdims=draw(st.booleans())), shape)


@layer_strategy
def expand_dims(draw):
    shape = draw(_shape(1, 2))
    rank = len(shape) + 2  # the output's rank
    return packed(knp.ExpandDims(_axis(draw, rank)), shape)


@layer_strategy
def squeeze(draw):
    shape = list(draw(_shape(2, 3)))
    axis = draw(st.integers(1, len(shape)))
    shape[axis - 1] = 1
    return packed(knp.Squeeze(axis=axis), shape)


@layer_strategy
def reshape(draw):
    shape = draw(_shape())
    n = math.prod(shape)
    first = draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
    target = (-1, first, n // first) if draw(st.booleans()) else (-1, n)
    return packed(knp.Reshape(target), shape)


@layer_strategy
def transpose(draw):
    shape = draw(_shape(2, 3))
    rest = draw(st.permutations(list(range(1, len(shape) + 1))))
    return packed(knp.Transpose(axes=(0, *rest)), shape)


@layer_strategy
def swapaxes(draw):
    shape = draw(_shape(2, 3))
    rank = len(shape) + 1
    a, b = draw(st.lists(st.integers(1, rank - 1), min_size=2, max_size=2, unique=True))
    return packed(knp.Swapaxes(a, b), shape)


@layer_strategy
def moveaxis(draw):
    shape = draw(_shape(2, 3))
    rank = len(shape) + 1
    source = draw(st.integers(1, rank - 1))
    destination = draw(st.integers(1, rank - 1))
    return packed(knp.Moveaxis(source, destination), shape)


@layer_strategy
def cast(draw):
    return packed(kcore.Cast(draw(st.sampled_from(["float32", "float64"]))), draw(_shape()))



#: Constants an operand of a binary operation may be (``x + 3.0``, ``2.0 - x``): per class, or
#: ``None`` for any of the defaults.
_CONSTANTS = {
    "Power": {0: (2.0, 0.5), 1: (2.0, 3.0, 0.0, -1.0)},  # base > 0, or integer exponents
}
_DEFAULT_CONSTANTS = (3.0, -0.5, 0.0, 1.0)


@layer_strategy
def binary(draw, cls):
    """Two tensors of the same rank (the batch axis included), some axes broadcast; or one
    tensor and a constant, on either side."""
    full = draw(_shape(1, 3, budget=12))
    constant_side = draw(st.sampled_from([None, None, 0, 1]))
    if constant_side is None:
        shapes = [
            tuple(1 if draw(st.integers(0, 3)) == 0 else n for n in full) for _ in range(2)
        ]
        domain = domains.positive_base(shapes) if cls.__name__ == "Power" else None
        return packed(cls(), shapes, domain=domain)
    choices = _CONSTANTS.get(cls.__name__, {}).get(constant_side, _DEFAULT_CONSTANTS)
    constant = draw(st.sampled_from(choices))
    if cls.__name__ in ("Divide", "TrueDivide") and constant_side == 1 and constant == 0.0:
        constant = 4.0
    args = [{INPUT_KEY: 0}, {INPUT_KEY: 0}]
    args[constant_side] = constant
    return packed(cls(), full, args=args)


@layer_strategy
def matmul(draw):
    """Batched matrix products ``(..., m, k) @ (..., k, n)``."""
    m, k, n = (draw(st.integers(1, 3)) for _ in range(3))
    return packed(knp.Matmul(), [(m, k), (k, n)])


_EINSUM = (
    ("bij,bjk->bik", lambda a, b, c: [(a, b), (b, c)]),
    ("bij,bk->bi", lambda a, b, c: [(a, b), (c,)]),
    ("bi,bi->b", lambda a, b, c: [(a,), (a,)]),
    ("bij,bij->bji", lambda a, b, c: [(a, b), (a, b)]),
)


@layer_strategy
def einsum(draw):
    subscripts, shapes = draw(st.sampled_from(_EINSUM))
    sizes_ = (draw(st.integers(1, 3)) for _ in range(3))
    return packed(knp.Einsum(subscripts), shapes(*sizes_))



@layer_strategy
def concatenate(draw):
    base = list(draw(_shape(1, 3, budget=12)))
    rank = len(base) + 1
    axis = draw(st.integers(1, rank - 1))
    shapes = []
    for _ in range(draw(st.integers(2, 3))):
        shape = list(base)
        shape[axis - 1] = draw(st.integers(1, 3))
        shapes.append(tuple(shape))
    return packed(knp.Concatenate(axis=axis), shapes, args=[inputs_template(len(shapes))])


@layer_strategy
def stack(draw):
    shape = draw(_shape(1, 2, budget=12))
    axis = draw(st.integers(1, len(shape) + 1))
    shapes = [shape] * draw(st.integers(2, 3))
    return packed(knp.Stack(axis=axis), shapes, args=[inputs_template(len(shapes))])


_ACTIVATION_CLASSES = tuple(
    getattr(knn, name) for name in (
        "Celu", "Elu", "Gelu", "Glu", "HardShrink", "HardSigmoid", "HardSilu", "HardTanh",
        "LeakyRelu", "LogSigmoid", "LogSoftmax", "Relu", "Relu6", "Selu", "Sigmoid", "Silu",
        "SoftShrink", "Softmax", "Softplus", "Softsign", "SparsePlus", "SparseSigmoid",
        "Sparsemax", "Squareplus", "TanhShrink", "Threshold",
    ) if hasattr(knn, name)
)

STRATEGIES = {
    **{cls: (lambda cls=cls: activation_op(cls)) for cls in _ACTIVATION_CLASSES},
    **{cls: _no_args(cls) for cls in (
        knp.Abs, knp.Absolute, knp.Exp, knp.Negative, knp.Reciprocal, knp.Square, knp.Tanh,
    )},
    **{cls: domains.strategy(cls, domains.positive) for cls in (knp.Log, knp.Sqrt, kmath.Rsqrt)},
    knp.Clip: clip,
    **{cls: (lambda cls=cls: reduction(cls)) for cls in (knp.Sum, knp.Mean, knp.Max, knp.Min)},
    knp.ExpandDims: expand_dims,
    knp.Squeeze: squeeze,
    knp.Reshape: reshape,
    knp.Transpose: transpose,
    knp.Swapaxes: swapaxes,
    knp.Moveaxis: moveaxis,
    kcore.Cast: cast,
    **{cls: (lambda cls=cls: binary(cls)) for cls in (
        knp.Add, knp.Subtract, knp.Multiply, knp.Divide, knp.TrueDivide, knp.Maximum,
        knp.Minimum, knp.Power,
    )},
    knp.Matmul: matmul,
    knp.Einsum: einsum,
    knp.Concatenate: concatenate,
    knp.Stack: stack,
}
UNSUPPORTED = {
    knp.GetItem: "GetItem's index is a call argument (x[key]), not part of the operation: "
    "check it inside a model",
}
