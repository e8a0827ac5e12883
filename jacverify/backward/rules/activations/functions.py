"""Vector-Jacobian products of the functions in ``keras.activations``.

``activation_vjp(activation)`` returns ``vjp(gradient, x) -> gradient^T J(x)`` for an
activation function (as stored on a layer: a function, a name, or a configured callable), or
``None`` when the activation is the identity. Dense, convolution and Activation rules share it.
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import activations, ops
from keras.src.activations import activations as _keras_activations_impl

Vjp = Callable[[object, object], object]


def _relu_vjp(negative_slope=0.0, max_value=None, threshold=0.0) -> Vjp:
    def vjp(gradient, x):
        # Keras: x > threshold keeps x (slope 1), else negative_slope * (x - threshold) when
        # negative_slope != 0; the result is clipped to max_value.
        above = ops.greater(x, threshold)
        slope = ops.where(above, 1.0, negative_slope)
        if max_value is not None:
            slope = ops.where(ops.greater_equal(x, max_value), 0.0, slope)
        return gradient * ops.cast(slope, gradient.dtype)

    return vjp


def _elementwise(derivative: Callable[[object], object]) -> Vjp:
    def vjp(gradient, x):
        return gradient * ops.cast(derivative(x), gradient.dtype)

    return vjp


def _sigmoid_prime(x):
    s = ops.sigmoid(x)
    return s * (1.0 - s)


def _tanh_prime(x):
    t = ops.tanh(x)
    return 1.0 - t * t


def _softmax_vjp(axis=-1) -> Vjp:
    def vjp(gradient, x):
        s = ops.softmax(x, axis=axis)
        return s * (gradient - ops.sum(gradient * s, axis=axis, keepdims=True))

    return vjp


# Functions of keras.activations -> factory(**kwargs) returning a vjp.
_FACTORIES: dict[Callable, Callable[..., Vjp]] = {
    activations.relu: _relu_vjp,
    activations.sigmoid: lambda: _elementwise(_sigmoid_prime),
    activations.tanh: lambda: _elementwise(_tanh_prime),
    activations.softmax: _softmax_vjp,
}


def _resolve(activation):
    """(function, kwargs) for any form an activation takes on a Keras layer."""
    import functools

    if activation is None:
        return activations.linear, {}
    if isinstance(activation, str):
        return _resolve(activations.get(activation))
    if isinstance(activation, functools.partial):
        fn, kwargs = _resolve(activation.func)
        return fn, {**kwargs, **activation.keywords}
    relu_op = getattr(_keras_activations_impl, "ReLU", None)
    if relu_op is not None and isinstance(activation, relu_op):
        return activations.relu, {
            "negative_slope": activation.negative_slope,
            "max_value": activation.max_value,
            "threshold": activation.threshold,
        }
    return activation, {}


def is_linear_activation(activation) -> bool:
    """True for the identity activation (``None``, ``"linear"``, ``keras.activations.linear``)."""
    fn, _ = _resolve(activation)
    return fn is activations.linear


def activation_vjp(activation) -> Vjp | None:
    """The vector-Jacobian product of ``activation``, or ``None`` for the identity.

    Raises ValueError for an activation with no known derivative.
    """
    fn, kwargs = _resolve(activation)
    if fn is activations.linear:
        return None
    factory = _FACTORIES.get(fn)
    if factory is None:
        name = getattr(fn, "__name__", repr(fn))
        raise ValueError(
            f"No backward rule for activation '{name}'. Supported: "
            f"{', '.join(sorted(f.__name__ for f in _FACTORIES))}. Use a separate layer with "
            "a registered rule (jacverify.register_backward) for a custom activation."
        )
    return factory(**kwargs)


def activation_name(activation) -> str:
    fn, _ = _resolve(activation)
    return getattr(fn, "__name__", repr(fn))


__all__ = ["activation_vjp", "activation_name", "is_linear_activation"]

del keras
