"""Native backward rules, one folder per Keras layer family (as in ``keras/src/layers``).

Importing this package registers every native rule.
"""

from jacverify.backward.rules import (  # noqa: F401
    activations,
    applications,
    attention,
    convolutional,
    core,
    merging,
    normalization,
    ops,
    pooling,
    preprocessing,
    recurrent,
    regularization,
    reshaping,
)
