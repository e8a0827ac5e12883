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
    distances,
    elementwise,
    get_item,
    image,
    linalg,
    matrix,
    normalization,
    pooling,
    rearrange,
    reduction,
    refused,
    reshape,
    signal,
    special,
    transpose,
)
