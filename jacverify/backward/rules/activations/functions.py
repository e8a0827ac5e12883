"""Vector-Jacobian products of the functions in ``keras.activations``.

``activation_vjp(activation)`` returns ``vjp(gradient, x) -> gradient^T J(x)`` for an
activation function (as stored on a layer: a function, a name, a ``functools.partial``, an
operation object such as ``keras.src.activations.activations.ReLU``, a ``keras.ops`` function
or operation, or an activation layer), or ``None`` when the activation is the identity. Dense,
convolution and activation-layer rules share it.

Conventions (all analytic, no autograd):

* every derivative is computed in ``x``'s dtype and cast to the gradient's dtype;
* at a kink the value returned is a valid subgradient (between the one-sided derivatives), equal
  to torch autograd's value for Keras' forward op whenever torch's value is itself valid (e.g.
  ``relu'(0) = 0``, ``leaky_relu'(0) = negative_slope``, ``relu6'(6) = 0``, ``clip`` passes its
  boundary). Where torch's value is not a subgradient (``relu`` with ``negative_slope`` and
  ``max_value`` at 0: torch gives 0, outside ``[negative_slope, 1]``) the derivative of the
  piece Keras assigns the point to is used (``negative_slope``, as for ``leaky_relu``);
* at a jump (``threshold`` with ``default_value != threshold``, ``hard_shrink``, ``relu`` with
  ``threshold != 0``) no derivative exists; the derivative of the piece Keras assigns the point
  to is returned (the lower piece: Keras keeps ``x`` only for ``x > threshold``);
* axes are per example: an axis argument that names the batch axis (``axis=0`` or ``None`` for
  softmax, log_softmax, sparsemax, glu) raises ``ValueError``, since a rule's Jacobian cannot
  couple the examples of a batch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from keras import activations, layers, ops

from jacverify.keras_internals import OPS_FAMILY_MODULES, keras_activations

Vjp = Callable[[object, object], object]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_KAPPA = 0.044715
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ------------------------------------------------------------------------------ helpers
def _c(value, x):
    """``value`` as a 0-d tensor of ``x``'s dtype (python scalars would round to float32)."""
    return ops.convert_to_tensor(value, dtype=x.dtype)


def _mask(cond, x):
    return ops.cast(cond, x.dtype)


def _elementwise(derivative: Callable[[object], object]) -> Vjp:
    def vjp(gradient, x):
        return gradient * ops.cast(derivative(x), gradient.dtype)

    return vjp


def _canonical_axes(axis, ndim: int, what: str) -> tuple:
    """Non-negative axes of a per-example reduction; never the batch axis."""
    if axis is None:
        raise ValueError(
            f"{what} with axis=None reduces over every axis, the batch axis included: its "
            "Jacobian couples the examples of a batch, which a backward rule cannot express."
        )
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    if not axes:
        raise ValueError(f"{what}: empty axis {axis!r}.")
    result = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise ValueError(f"{what}: axis {a} is out of range for a tensor of rank {ndim}.")
        a %= ndim
        if a == 0:
            raise ValueError(
                f"{what} along axis {axis!r} includes the batch axis: its Jacobian couples the "
                "examples of a batch, which a backward rule cannot express."
            )
        result.append(a)
    if len(set(result)) != len(result):
        raise ValueError(f"{what}: repeated axes in {axis!r}.")
    return tuple(result)


def _check_axis_now(axis, what):
    """Reject at construction what no input rank makes valid: axis None, or axis 0."""
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    if axis is None or any(a is not None and int(a) == 0 for a in axes):
        raise ValueError(
            f"{what} along axis {axis!r} includes the batch axis: its Jacobian couples the "
            "examples of a batch, which a backward rule cannot express."
        )


def _softmax(x, axes: tuple):
    if len(axes) == 1:
        return ops.softmax(x, axis=axes[0])
    return ops.exp(x - ops.logsumexp(x, axis=axes, keepdims=True))


# ------------------------------------------------------------------------------ relu family
def relu_derivative(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Derivative of ``keras.activations.relu`` as ``ReLU.static_call`` computes it.

    Outside its ``leaky_relu`` shortcut (``negative_slope != 0``, no ``max_value``, no
    ``threshold``) Keras computes ``m(x) - negative_slope * relu(threshold - x)`` where ``m`` is
    ``where(x > threshold, x, 0)`` (``relu(x)`` when ``threshold == 0``, ``relu6(x)`` when also
    ``max_value == 6``), clipped to ``[0, max_value]`` when ``max_value`` is set (and is not
    the relu6 case). The derivative is 1 where ``m`` passes ``x`` through, ``negative_slope``
    at and below the threshold, 0 elsewhere.
    """
    one, slope = _c(1.0, x), _c(negative_slope, x)
    if negative_slope != 0.0 and max_value is None and threshold == 0:
        return ops.where(ops.greater(x, 0), one, slope)  # torch leaky_relu: slope at 0
    above = ops.greater(x, _c(threshold, x))
    keep = above
    if max_value is not None:
        if threshold == 0 and max_value == 6:
            # Keras uses relu6 (torch hardtanh: derivative 0 at 0 and 6) and skips the clip.
            keep = ops.logical_and(keep, ops.less(x, _c(6.0, x)))
        else:
            # torch.clip passes the gradient at both bounds; its lower bound (0) only matters
            # for a negative threshold, where m(x) = x on (threshold, 0).
            keep = ops.logical_and(keep, ops.less_equal(x, _c(max_value, x)))
            if threshold < 0:
                keep = ops.logical_and(keep, ops.greater_equal(x, _c(0.0, x)))
    if negative_slope == 0.0:
        return ops.cast(keep, x.dtype)  # a 0/1 mask (cheaper than where on large tensors)
    below = ops.where(above, _c(0.0, x), slope)  # the negative part: slope for x <= threshold
    return ops.where(keep, one, below)


def _relu_vjp(negative_slope=0.0, max_value=None, threshold=0.0) -> Vjp:
    return _elementwise(
        lambda x: relu_derivative(x, negative_slope, max_value, threshold)
    )


def _leaky_relu_vjp(negative_slope=0.2) -> Vjp:
    return _elementwise(
        lambda x: ops.where(ops.greater(x, 0), _c(1.0, x), _c(negative_slope, x))
    )


def _relu6_vjp() -> Vjp:
    # torch relu6 (hardtanh(0, 6)): 0 at both bounds.
    return _elementwise(
        lambda x: _mask(ops.logical_and(ops.greater(x, 0), ops.less(x, _c(6.0, x))), x)
    )


# ------------------------------------------------------------------------- exponential family
def elu_derivative(x, alpha=1.0):
    """``1`` for ``x > 0``, ``alpha * exp(x)`` otherwise (torch: ``alpha`` at 0)."""
    return ops.where(
        ops.greater(x, 0), _c(1.0, x), _c(alpha, x) * ops.exp(ops.minimum(x, 0.0))
    )


def _elu_vjp(alpha=1.0) -> Vjp:
    return _elementwise(lambda x: elu_derivative(x, alpha))


def _selu_vjp() -> Vjp:
    return _elementwise(lambda x: _c(_SELU_SCALE, x) * elu_derivative(x, _SELU_ALPHA))


def _celu_vjp(alpha=1.0) -> Vjp:
    # max(0, x) + min(0, alpha * (exp(x / alpha) - 1)): exp(x / alpha) for x <= 0.
    return _elementwise(
        lambda x: ops.where(
            ops.greater(x, 0), _c(1.0, x), ops.exp(ops.minimum(x, 0.0) / _c(alpha, x))
        )
    )


def _exponential_vjp() -> Vjp:
    return _elementwise(ops.exp)


# ---------------------------------------------------------------------------- sigmoid family
def _sigmoid_prime(x):
    # s(x) * s(-x) == s * (1 - s), without the cancellation of 1 - s for large x.
    return ops.sigmoid(x) * ops.sigmoid(-x)


def _tanh_prime(x):
    t = ops.tanh(x)
    return 1.0 - t * t


def _silu_prime(x):
    return ops.sigmoid(x) * (1.0 + x * ops.sigmoid(-x))


def _softplus_prime(x):
    return ops.sigmoid(x)


def _log_sigmoid_prime(x):
    return ops.sigmoid(-x)


def _softsign_prime(x):
    d = 1.0 + ops.abs(x)
    return 1.0 / (d * d)


def _tanh_shrink_prime(x):
    t = ops.tanh(x)
    return t * t


def _mish_prime(x):
    # x * tanh(softplus(x)): tanh(sp) + x * (1 - tanh(sp)^2) * sigmoid(x).
    t = ops.tanh(ops.softplus(x))
    return t + x * (1.0 - t * t) * ops.sigmoid(x)


def _gelu_vjp(approximate=False) -> Vjp:
    if approximate:

        def derivative(x):
            # 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + kappa x^3). The correction term vanishes
            # (tanh saturates) long before |x| = 1e4; clipping there avoids inf * 0.
            t = ops.tanh(_c(_SQRT_2_OVER_PI, x) * (x + _c(_GELU_KAPPA, x) * x * x * x))
            xc = ops.clip(x, -1e4, 1e4)
            du = _c(_SQRT_2_OVER_PI, x) * (1.0 + _c(3.0 * _GELU_KAPPA, x) * xc * xc)
            return 0.5 * (1.0 + t) + 0.5 * xc * (1.0 - t * t) * du

    else:

        def derivative(x):
            # Phi(x) + x phi(x), Phi written with erfc to keep accuracy for x << 0.
            cdf = 0.5 * ops.erfc(-x * _c(_INV_SQRT_2, x))
            pdf = _c(_INV_SQRT_2PI, x) * ops.exp(-0.5 * x * x)
            return cdf + x * pdf

    return _elementwise(derivative)


def _squareplus_vjp(b=4) -> Vjp:
    if b == 0:
        # (x + |x|) / 2 is relu: 1/2 at 0 (in [0, 1]; torch's autograd gives NaN there).
        return _elementwise(lambda x: 0.5 * (1.0 + ops.sign(x)))

    def derivative(x):
        # (x + sqrt(x^2 + b)) / 2 -> (1 + x / h) / 2 with h = sqrt(x^2 + b) (hypot does not
        # overflow). For x < 0 that cancels (1 - 0.9999...); there it is b / (2 h (h - x)).
        h = ops.hypot(x, ops.sqrt(_c(b, x)))
        negative = 0.5 * _c(b, x) / (h * (h - x))
        return ops.where(ops.less(x, 0), negative, 0.5 * (1.0 + x / h))

    return _elementwise(derivative)


# ----------------------------------------------------------------------- piecewise linear ones
def _hard_sigmoid_vjp() -> Vjp:
    # torch hardsigmoid = relu6(x + 3) / 6: 1/6 on (-3, 3), 0 at the bounds.
    return _elementwise(lambda x: _mask(ops.less(ops.abs(x), _c(3.0, x)), x) / 6.0)


def _hard_silu_vjp() -> Vjp:
    # torch hardswish: 0 for x <= -3, 1 for x >= 3, x / 3 + 1/2 in between (both bound values
    # are one-sided derivatives: at -3 left 0 / right -1/2, at 3 left 3/2 / right 1).
    def derivative(x):
        inner = x / 3.0 + 0.5
        return ops.where(
            ops.less_equal(x, _c(-3.0, x)),
            _c(0.0, x),
            ops.where(ops.greater_equal(x, _c(3.0, x)), _c(1.0, x), inner),
        )

    return _elementwise(derivative)


def _hard_tanh_vjp() -> Vjp:
    return _elementwise(lambda x: _mask(ops.less(ops.abs(x), _c(1.0, x)), x))


def _shrink_vjp(threshold=0.5) -> Vjp:
    # hard_shrink and soft_shrink (torch: 0 at +-threshold). With threshold <= 0 both are the
    # identity (torch's 0 at x == 0 would not be a subgradient of it): derivative 1.
    if threshold <= 0:
        return _elementwise(ops.ones_like)
    return _elementwise(lambda x: _mask(ops.greater(ops.abs(x), _c(threshold, x)), x))


def _threshold_vjp(threshold, default_value) -> Vjp:
    # x for x > threshold, default_value otherwise: 1 above, 0 at and below (torch).
    del default_value  # the derivative does not depend on it (it decides only the jump)
    return _elementwise(lambda x: _mask(ops.greater(x, _c(threshold, x)), x))


def _sparse_plus_vjp() -> Vjp:
    # 0 for x <= -1, (x + 1)^2 / 4 in between, x for x >= 1: derivative clip((x + 1) / 2, 0, 1).
    return _elementwise(lambda x: ops.clip((x + 1.0) * 0.5, 0.0, 1.0))


def _sparse_sigmoid_vjp() -> Vjp:
    # 0 for x <= -1, (x + 1) / 2 in between, 1 for x >= 1: torch gives 0 at +-1.
    return _elementwise(lambda x: _mask(ops.less(ops.abs(x), _c(1.0, x)), x) * 0.5)


# ------------------------------------------------------------------------ along an axis
def softmax_vjp_on(gradient, x, axes: tuple):
    """``s * (g - <g, s>)`` along ``axes`` (non-negative, per example)."""
    s = ops.cast(_softmax(x, axes), gradient.dtype)
    return s * (gradient - ops.sum(gradient * s, axis=axes, keepdims=True))


def _softmax_vjp(axis=-1) -> Vjp:
    _check_axis_now(axis, "softmax")

    def vjp(gradient, x):
        return softmax_vjp_on(gradient, x, _canonical_axes(axis, len(x.shape), "softmax"))

    return vjp


def _log_softmax_vjp(axis=-1) -> Vjp:
    _check_axis_now(axis, "log_softmax")

    def vjp(gradient, x):
        axes = _canonical_axes(axis, len(x.shape), "log_softmax")
        s = ops.cast(_softmax(x, axes), gradient.dtype)
        return gradient - s * ops.sum(gradient, axis=axes, keepdims=True)

    return vjp


def _glu_vjp(axis=-1) -> Vjp:
    _check_axis_now(axis, "glu")

    def vjp(gradient, x):
        (ax,) = _canonical_axes(axis, len(x.shape), "glu")
        a, b = ops.split(x, 2, axis=ax)
        s = ops.cast(ops.sigmoid(b), gradient.dtype)
        a = ops.cast(a, gradient.dtype)
        s_prime = s * ops.cast(ops.sigmoid(-b), gradient.dtype)
        return ops.concatenate([gradient * s, gradient * a * s_prime], axis=ax)

    return vjp


@functools.cache
def _keras_sparsemax_sums_cumsums() -> bool:
    """Whether the installed Keras computes sparsemax's threshold from the sum of the
    cumulative sums over the support (keras-team/keras#23425, fixed by #23469) instead of the
    textbook ``(cumsum[k] - 1) / k``. The rule differentiates what the forward computes."""
    import numpy as np

    y = ops.convert_to_numpy(ops.sparsemax(np.array([[0.0, 0.5, 1.0]]), axis=-1))
    return not np.allclose(y, [[0.0, 0.25, 0.75]], atol=1e-6)


def _sparsemax_vjp(axis=-1) -> Vjp:
    _check_axis_now(axis, "sparsemax")
    if isinstance(axis, (list, tuple)):
        raise ValueError(f"sparsemax takes one integer axis, got {axis!r}.")

    sums_cumsums = _keras_sparsemax_sums_cumsums()  # probed now, eagerly (not in a trace)

    def vjp(gradient, x):
        (ax,) = _canonical_axes(axis, len(x.shape), "sparsemax")
        n = int(x.shape[ax])
        # tau exactly as Keras computes it (same ops, same rounding).
        z = -ops.sort(-x, axis=ax)  # descending
        cs = ops.cumsum(z, axis=ax)
        r_shape = [1] * len(x.shape)
        r_shape[ax] = n
        r = ops.reshape(ops.arange(1, n + 1, dtype=x.dtype), r_shape)
        support = ops.greater(z - (cs - 1.0) / r, 0)
        k = ops.sum(ops.cast(support, x.dtype), axis=ax, keepdims=True)
        g = gradient
        if sums_cumsums:
            # tau = (sum_{j<=k} cs_j - 1) / k = (sum_{j<=k} (k - j + 1) z_j - 1) / k: the
            # element of descending rank j (1-based) weighs (k - j + 1) / k for j <= k.
            tau = (ops.sum(ops.where(support, cs, _c(0.0, x)), axis=ax, keepdims=True) - 1.0) / k
            rank = ops.argsort(ops.argsort(-x, axis=ax), axis=ax)  # 0-based descending rank
            rank = ops.cast(rank, x.dtype)
            weight = ops.where(ops.less(rank, k), (k - rank) / k, _c(0.0, x))
            active = ops.cast(ops.greater(x - tau, 0), g.dtype)
            ga = g * active
            weight = ops.cast(weight, g.dtype)
            return ga - ops.sum(ga, axis=ax, keepdims=True) * weight
        # Textbook sparsemax: tau = (sum of the support - 1) / k, vjp on the support
        # S = {x > tau}: g - mean_S(g). Elements exactly at tau (output 0) are left out of S,
        # which is one of the two limiting Jacobians there.
        tau = (ops.sum(ops.where(support, z, _c(0.0, x)), axis=ax, keepdims=True) - 1.0) / k
        active = ops.cast(ops.greater(x - tau, 0), g.dtype)
        size = ops.maximum(ops.sum(active, axis=ax, keepdims=True), 1.0)
        return active * (g - ops.sum(g * active, axis=ax, keepdims=True) / size)

    return vjp


# ------------------------------------------------------------------------------ the tables
_ELEMENTWISE = {
    "sigmoid": _sigmoid_prime,
    "tanh": _tanh_prime,
    "silu": _silu_prime,
    "softplus": _softplus_prime,
    "log_sigmoid": _log_sigmoid_prime,
    "softsign": _softsign_prime,
    "tanh_shrink": _tanh_shrink_prime,
    "mish": _mish_prime,
}

# Functions of keras.activations -> factory(**kwargs) returning a vjp.
_FACTORIES: dict[Callable, Callable[..., Vjp]] = {
    **{
        getattr(activations, name): (lambda d=d: _elementwise(d))
        for name, d in _ELEMENTWISE.items()
    },
    activations.relu: _relu_vjp,
    activations.leaky_relu: _leaky_relu_vjp,
    activations.relu6: _relu6_vjp,
    activations.elu: _elu_vjp,
    activations.selu: _selu_vjp,
    activations.celu: _celu_vjp,
    activations.exponential: _exponential_vjp,
    activations.gelu: _gelu_vjp,
    activations.squareplus: _squareplus_vjp,
    activations.hard_sigmoid: _hard_sigmoid_vjp,
    activations.hard_silu: _hard_silu_vjp,
    activations.hard_tanh: _hard_tanh_vjp,
    activations.hard_shrink: _shrink_vjp,
    activations.soft_shrink: _shrink_vjp,
    activations.threshold: _threshold_vjp,
    activations.sparse_plus: _sparse_plus_vjp,
    activations.sparse_sigmoid: _sparse_sigmoid_vjp,
    activations.softmax: _softmax_vjp,
    activations.log_softmax: _log_softmax_vjp,
    activations.glu: _glu_vjp,
    activations.sparsemax: _sparsemax_vjp,
}

# keras.ops functions usable as activations: (activation it computes, its own defaults).
_OPS_FUNCTIONS: dict[Callable, tuple] = {}
for _name in (
    "relu", "relu6", "sigmoid", "sparse_sigmoid", "softplus", "softsign", "soft_shrink",
    "sparse_plus", "silu", "squareplus", "log_sigmoid", "leaky_relu", "hard_sigmoid",
    "hard_silu", "elu", "selu", "gelu", "celu", "glu", "tanh_shrink", "hard_tanh",
    "hard_shrink", "threshold", "softmax", "log_softmax", "sparsemax", "tanh",
):
    _op, _fn = getattr(ops, _name, None), getattr(activations, _name, None)
    if _op is not None and _fn is not None and _op is not _fn:
        _OPS_FUNCTIONS[_op] = (_fn, {})
del _name, _op, _fn
_OPS_FUNCTIONS[ops.gelu] = (activations.gelu, {"approximate": True})  # ops' default
_OPS_FUNCTIONS[ops.exp] = (activations.exponential, {})

# keras.ops operation classes: (activation, attributes holding its arguments).
_OPS_CLASSES: dict[str, tuple] = {
    "Relu": ("relu", ()), "Relu6": ("relu6", ()), "Sigmoid": ("sigmoid", ()),
    "SparseSigmoid": ("sparse_sigmoid", ()), "Softplus": ("softplus", ()),
    "Softsign": ("softsign", ()), "SoftShrink": ("soft_shrink", ("threshold",)),
    "SparsePlus": ("sparse_plus", ()), "Silu": ("silu", ()), "Squareplus": ("squareplus", ("b",)),
    "LogSigmoid": ("log_sigmoid", ()), "LeakyRelu": ("leaky_relu", ("negative_slope",)),
    "HardSigmoid": ("hard_sigmoid", ()), "HardSilu": ("hard_silu", ()),
    "Elu": ("elu", ("alpha",)), "Selu": ("selu", ()), "Gelu": ("gelu", ("approximate",)),
    "Celu": ("celu", ("alpha",)), "Glu": ("glu", ("axis",)), "TanhShrink": ("tanh_shrink", ()),
    "HardTanh": ("hard_tanh", ()), "HardShrink": ("hard_shrink", ("threshold",)),
    "Threshold": ("threshold", ("threshold", "default_value")),
    "Softmax": ("softmax", ("axis",)), "LogSoftmax": ("log_softmax", ("axis",)),
    "Sparsemax": ("sparsemax", ("axis",)), "Tanh": ("tanh", ()), "Exp": ("exponential", ()),
}
_OPS_MODULES = (OPS_FAMILY_MODULES["nn"], OPS_FAMILY_MODULES["numpy"])


def _resolve(activation):
    """(function of keras.activations, kwargs) for any form an activation takes on a layer."""
    if activation is None:
        return activations.linear, {}
    if isinstance(activation, (str, dict)):
        return _resolve(activations.get(activation))
    if isinstance(activation, functools.partial):
        if activation.args:
            raise ValueError(
                f"Cannot read the arguments of {activation!r}: give them as keywords "
                "(functools.partial(fn, name=value))."
            )
        fn, kwargs = _resolve(activation.func)
        return fn, {**kwargs, **activation.keywords}
    if isinstance(activation, keras_activations.ReLU):
        return activations.relu, {
            "negative_slope": activation.negative_slope,
            "max_value": activation.max_value,
            "threshold": activation.threshold,
        }
    mish_op = getattr(keras_activations, "Mish", None)
    if mish_op is not None and isinstance(activation, mish_op):
        return activations.mish, {}
    if isinstance(activation, layers.Layer):
        return _resolve_layer(activation)
    cls = type(activation)
    if cls.__module__ in _OPS_MODULES and cls.__name__ in _OPS_CLASSES:
        name, attributes = _OPS_CLASSES[cls.__name__]
        return getattr(activations, name), {a: getattr(activation, a) for a in attributes}
    try:
        if activation in _OPS_FUNCTIONS:
            fn, kwargs = _OPS_FUNCTIONS[activation]
            return fn, dict(kwargs)
    except TypeError:  # unhashable callable
        pass
    return activation, {}


def _resolve_layer(layer):
    """Activation layers used as a layer's ``activation`` (``Dense(activation=ReLU(...))``)."""
    if type(layer) is layers.Activation:
        return _resolve(layer.activation)
    if type(layer) is layers.ReLU:
        return activations.relu, {
            "negative_slope": layer.negative_slope,
            "max_value": layer.max_value,
            "threshold": layer.threshold,
        }
    if type(layer) is layers.LeakyReLU:
        return activations.leaky_relu, {"negative_slope": layer.negative_slope}
    if type(layer) is layers.ELU:
        return activations.elu, {"alpha": layer.alpha}
    if type(layer) is layers.Softmax:
        # Called without a mask; a tuple of several axes is a softmax over all of them.
        return activations.softmax, {"axis": layer.axis}
    return layer, {}


def is_linear_activation(activation) -> bool:
    """True for the identity activation (``None``, ``"linear"``, ``keras.activations.linear``)."""
    fn, _ = _resolve(activation)
    return fn is activations.linear


def activation_vjp(activation) -> Vjp | None:
    """The vector-Jacobian product of ``activation``, or ``None`` for the identity.

    Raises ValueError for an activation with no known derivative, or one whose Jacobian
    couples the examples of a batch (a softmax over the batch axis).
    """
    fn, kwargs = _resolve(activation)
    if fn is activations.linear:
        return None
    factory = _FACTORIES.get(fn) if _hashable(fn) else None
    if factory is None:
        name = getattr(fn, "__name__", repr(fn))
        raise ValueError(
            f"No backward rule for activation '{name}'. Supported: "
            f"{', '.join(supported_activations())}. Use a separate layer with "
            "a registered rule (jacverify.register_backward) for a custom activation."
        )
    return factory(**kwargs)


def supported_activations() -> list:
    """Names of the ``keras.activations`` functions with a vjp (``linear`` has none: it is
    the identity)."""
    return sorted({f.__name__ for f in _FACTORIES} | {"linear"})


def activation_name(activation) -> str:
    fn, _ = _resolve(activation)
    return getattr(fn, "__name__", repr(fn))


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


__all__ = [
    "activation_name",
    "activation_vjp",
    "elu_derivative",
    "is_linear_activation",
    "relu_derivative",
    "softmax_vjp_on",
    "supported_activations",
]
