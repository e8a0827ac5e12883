"""Backward rules for ``keras.ops`` operations recorded in functional models (``x + 3.0``,
``ops.reshape``, ``ops.mean``, ``x @ w``, ``ops.softmax``, ...), registered by operation
class."""

from jacverify.backward.rules.ops import (  # noqa: F401
    activations,
    arithmetic,
    cast,
    concatenate,
    cumulative,
    elementwise,
    exponential,
    get_item,
    linalg,
    piecewise,
    products,
    reduction,
    refused,
    reshape,
    selection,
    sorting,
    split,
    statistics,
    top_k,
    transpose,
    trigonometric,
    unstack,
    where,
)
