"""Building blocks of the configuration strategies: built layers with seeded random weights,
input shapes in either data format, and the small value sets the families share."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from hypothesis import strategies as st
from keras.ops import convert_to_tensor

from jacverify.backward.graph import INPUT_KEY
from jacverify.backward.rules._call_arguments import fill_in
from jacverify.check.adapters import PackedCall, Packing
from jacverify.check.autograd_forward import AutogradForward
from jacverify.check.companions import CompanionInputs
from jacverify.check.domain import DomainMap

#: A drawn configuration: a built layer and its input shape without the batch axis (a list of
#: shapes for a layer with several inputs).
Drawn = tuple

#: Seeds of the random weights; the simplest draw (0) is a valid seed too.
weight_seeds = st.integers(min_value=0, max_value=2**31 - 1)
data_formats = st.sampled_from(["channels_last", "channels_first"])
use_bias = st.booleans()
#: Activations with a native derivative that keep the output shape (``glu`` halves an axis,
#: ``threshold`` needs arguments).
ACTIVATIONS = (
    None, "relu", "tanh", "sigmoid", "softmax", "elu", "selu", "gelu", "silu", "softplus",
    "softsign", "relu6", "leaky_relu", "hard_sigmoid", "hard_silu", "hard_tanh", "log_softmax",
    "mish", "celu", "log_sigmoid", "squareplus", "sparse_plus", "sparse_sigmoid", "tanh_shrink",
    "hard_shrink", "soft_shrink", "exponential", "sparsemax", "linear",
)
#: Activations of layers whose output size may stay small (a few common ones first).
activations = st.sampled_from(ACTIVATIONS)

#: Batch size of the call that builds the layers (some augmentations mix two examples).
_BUILD_BATCH = 2


def is_multi(shape: Any) -> bool:
    """Whether ``shape`` is a list of shapes (a layer with several inputs)."""
    return bool(shape) and isinstance(shape[0], (list, tuple))


def build(layer, input_shape, call: Callable | None = None) -> None:
    """Build ``layer`` by calling it on zeros of ``input_shape`` (a list of shapes: a list of
    inputs), or with ``call(layer, inputs)`` for layers taking their inputs otherwise; where
    the call refuses zeros (``lu_factor`` of a singular matrix), on seeded normal values. The
    zeros are in the layer's compute dtype, or for a ``keras.ops`` operation (no dtype of its
    own) in Keras' default float type, that of the kernels its configuration draws."""
    dtype = getattr(layer, "compute_dtype", None) or keras.config.floatx()
    shapes = list(input_shape) if is_multi(input_shape) else [input_shape]

    def run(make) -> None:
        parts = [make((_BUILD_BATCH, *s)).astype(dtype) for s in shapes]
        inputs = parts if is_multi(input_shape) else parts[0]
        if call is not None:
            call(layer, inputs)
        else:
            layer(inputs)

    try:
        run(np.zeros)
    except Exception:  # noqa: BLE001 - any refusal of zeros: try values in general position
        run(np.random.default_rng(0).standard_normal)


def randomize_weights(layer, seed: int, positive: Sequence[str] = ("variance",)) -> None:
    """Give every float weight of ``layer`` values in [-1, 1) from ``seed`` (weights whose
    path contains a word of ``positive``: values in [0.25, 2))."""
    rng = np.random.default_rng(seed)
    for weight in getattr(layer, "weights", ()):
        if "float" not in str(weight.dtype):
            continue
        shape = tuple(weight.shape)
        if any(word in weight.path for word in positive):
            values = rng.uniform(0.25, 2.0, size=shape)
        else:
            values = rng.uniform(-1.0, 1.0, size=shape)
        weight.assign(values.astype(str(weight.dtype)))


def finish(layer, input_shape, weight_seed: int, call: Callable | None = None) -> Drawn:
    """Build ``layer`` on ``input_shape``, give it seeded random weights, and return the
    drawn pair ``(layer, input_shape)``."""
    shape = [tuple(s) for s in input_shape] if is_multi(input_shape) else tuple(input_shape)
    build(layer, shape, call)
    randomize_weights(layer, weight_seed)
    return layer, shape


def image_shape(spatial: Sequence[int], channels: int, data_format: str) -> tuple:
    """An input shape without batch: channels last or first."""
    spatial = tuple(int(s) for s in spatial)
    if data_format == "channels_first":
        return (int(channels), *spatial)
    return (*spatial, int(channels))


def spatial_of(shape: Sequence[int], data_format: str) -> tuple:
    """The spatial sizes of an input shape without batch."""
    return tuple(shape[1:]) if data_format == "channels_first" else tuple(shape[:-1])


@st.composite
def sizes(draw, rank: int, low: Sequence[int] | int = 1, budget: int = 64, high: int = 6):
    """``rank`` sizes, each at least its ``low`` and at most ``high``, with a product at most
    ``budget`` (the smallest sizes when the lows already exceed it)."""
    lows = [int(low)] * rank if isinstance(low, int) else [int(v) for v in low]
    result = list(lows)
    for i in range(rank):
        rest = math.prod(result[:i] + result[i + 1:])
        top = max(lows[i], min(high, budget // max(1, rest)))
        result[i] = draw(st.integers(lows[i], max(lows[i], top)))
    return tuple(result)


def small_floats(low: float, high: float) -> st.SearchStrategy:
    """Floats in [low, high] rounded to 3 decimals (readable configurations)."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False).map(
        lambda v: round(v, 3)
    )


def layer_strategy(function: Callable) -> Callable[..., st.SearchStrategy]:
    """``st.composite`` for functions that create Keras layers.

    Keras draws default seeds from Python's ``random`` module when it creates a layer; the
    weights are replaced by :func:`randomize_weights` anyway, so the module's state is restored
    after each draw: drawing a configuration leaves the global state as it found it.
    """

    @functools.wraps(function)
    def keeping_random_state(draw, *args, **kwargs):
        state = random.getstate()
        try:
            return function(draw, *args, **kwargs)
        finally:
            random.setstate(state)

    return st.composite(keeping_random_state)


def inputs_template(n: int) -> list:
    """The placeholders of ``n`` inputs, as a call's arguments record them."""
    return [{INPUT_KEY: i} for i in range(n)]


def packed(
    operation, input_shape, weight_seed: int = 0, *, args=None, kwargs=None,
    domain: DomainMap | None = None, companions: CompanionInputs | None = None,
    autograd_forward: AutogradForward | None = None,
) -> Drawn:
    """Build ``operation`` as it is called (``args``/``kwargs``: the call's arguments with
    ``{"__input__": i}`` placeholders; default: the inputs as positional arguments), give it
    seeded weights, and return it wrapped in the checker's :class:`PackedCall` adapter (one
    packed input; layers taking ``training`` run at inference), with its input shape(s).
    ``domain``: a map of the drawn inputs (packed into one tensor as the checker packs them)
    into the operation's domain, applied before every call (see
    :mod:`jacverify.check.domain`). ``companions``: the call's inputs that are
    not differentiated (integer labels, lengths), fixed for the configuration; ``input_shape``
    then gives the shapes of the other inputs (see :mod:`jacverify.check.companions`).
    ``autograd_forward``: a differentiable forward equal to the operation's, which torch
    autograd differentiates in its place where torch's own derivative of the operation is
    wrong (see :mod:`jacverify.check.autograd_forward`).

    For calls check_layer cannot make by itself: ``keras.ops`` operations, layers taking
    several tensors as separate arguments, layers whose call defaults to ``training=True``.
    """
    multi = is_multi(input_shape)
    shapes = [tuple(s) for s in input_shape] if multi else [tuple(input_shape)]
    n_call = len(shapes) + (len(companions) if companions else 0)
    args = list(inputs_template(n_call) if args is None else args)
    kwargs = dict(kwargs or {})

    def call(op, inputs) -> None:
        # Tensors, not arrays: a keras.ops operation called directly (not through a layer)
        # does not convert its inputs (unstack calls the tensor's own methods).
        parts = [convert_to_tensor(p) for p in (list(inputs) if multi else [inputs])]
        if domain is not None:  # a map of the packed inputs
            packing = Packing(tuple(shapes))
            parts = packing.split(domain(packing.join(parts, 1)))
        if companions:
            parts = companions.merge_batch(parts, int(parts[0].shape[0]))
        op(*fill_in(args, parts), **fill_in(kwargs, parts))

    packed_shape = Packing(tuple(shapes)).shape
    if domain is not None and tuple(domain.shape) != packed_shape:
        raise ValueError(
            f"a domain map of shape {domain.shape} given for inputs {shapes}: it maps the "
            f"call's drawn inputs packed into one tensor of shape {packed_shape}, and keeps "
            "its shape"
        )
    finish(operation, shapes if multi else shapes[0], weight_seed, call=call)
    adapter = PackedCall(operation, shapes, args, kwargs, domain=domain, companions=companions,
                         autograd_forward=autograd_forward)
    return adapter, (shapes if multi else shapes[0])
