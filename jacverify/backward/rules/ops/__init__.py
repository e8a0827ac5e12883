"""Backward rules for ``keras.ops`` operations recorded in functional models (``x + 3.0``,
``ops.reshape``, ``ops.mean``, ``x @ w``, ``ops.softmax``, ...), registered by operation
class."""

from jacverify.backward.rules.ops import (  # noqa: F401
    activations,
    arithmetic,
    attention,
    cast,
    concatenate,
    convolution,
    core,
    crossentropy,
    elementwise,
    get_item,
    linalg,
    normalization,
    pooling,
    rearrange,
    reduction,
    reshape,
    transpose,
)
