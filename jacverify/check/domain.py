"""Checking a rule inside its operation's domain: a differentiable map of the drawn inputs.

The checker draws its own inputs and hunts the places where rules break (zeros, ties, values
next to 0, large magnitudes). Some operations are defined, or differentiable, only on part of
their input space: ``eigh`` on symmetric matrices with distinct eigenvalues, ``svd`` at
distinct non-zero singular values, ``qr`` and ``lu_factor`` at full rank. A configuration of
such an operation carries a :class:`DomainMap`: a small functional Keras model ``m`` that takes
every drawn input into the domain (``eigh``: ``D + s tanh(x + x^T)`` with well separated
diagonal ``D``). The checker then judges the composition ``x -> op(m(x))``:

* the forward references (finite differences, torch autograd) differentiate the composition;
* the rule under test is called on ``m(x)``, exactly as the builder calls it, and its gradient
  is pulled back through ``m`` by the backward model of ``m`` that
  :func:`jacverify.clone_to_backward` builds from the registered rules of ``m``'s operations
  (themselves checked by ``check_registry``).

A wrong rule therefore shows as a wrong composition wherever ``m``'s Jacobian does not hide the
error (a map that is locally invertible hides nothing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import ops

from jacverify.backward.clone import clone_to_backward
from jacverify.check.adapters import clone_model_to_dtype


class DomainMap:
    """A map of the checker's drawn inputs (packed, without the batch axis: ``shape``) into
    an operation's domain, as a functional Keras model of the same input and output shape.

    ``description`` says, for reports, what the map does and why (``"D + 0.2 tanh(x + x^T):
    symmetric, eigenvalues apart"``).
    """

    def __init__(self, model: keras.Model, description: str) -> None:
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError(
                f"a domain map takes one tensor and returns one: model '{model.name}' has "
                f"{len(model.inputs)} inputs and {len(model.outputs)} outputs"
            )
        shape_in = tuple(model.inputs[0].shape[1:])
        shape_out = tuple(model.outputs[0].shape[1:])
        if shape_in != shape_out:
            raise ValueError(
                f"a domain map keeps the shape of its input: model '{model.name}' maps "
                f"{shape_in} to {shape_out}"
            )
        self.model = model
        self.description = description
        self._backward: keras.Model | None = None

    @property
    def shape(self) -> tuple:
        """The shape of the inputs it maps, without the batch axis."""
        return tuple(int(d) for d in self.model.inputs[0].shape[1:])

    def __call__(self, x: Any) -> Any:
        return self.model(x)

    def clone_to_dtype(self, dtype: str) -> DomainMap:
        """The same map computing in ``dtype``."""
        return DomainMap(clone_model_to_dtype(self.model, dtype), self.description)

    def backward(self) -> keras.Model:
        """The map's backward model (inputs ``[x, gradient]``), built once from the registered
        rules of its operations."""
        if self._backward is None:
            self._backward = clone_to_backward(self.model)
        return self._backward

    def pull_back(self, x: Any, gradient: Any) -> Any:
        """``gradient^T J_m(x)``: the gradient of ``m``'s output (``(batch, *lead, *shape)``,
        with extra Jacobian axes ``lead`` or none) as a gradient of its input ``x``
        (``(batch, *shape)``)."""
        shape = self.shape
        gradient = ops.convert_to_tensor(gradient)
        x = ops.convert_to_tensor(x)
        batch = int(gradient.shape[0])
        lead = tuple(int(d) for d in gradient.shape[1 : len(gradient.shape) - len(shape)])
        copies = math.prod(lead)
        if lead:
            x = ops.repeat(x, copies, axis=0)
            gradient = ops.reshape(gradient, (batch * copies, *shape))
        result = self.backward()([x, gradient])
        return ops.reshape(result, (batch, *lead, *shape)) if lead else result


def domain_map(
    shape: Sequence[int], function: Callable[[Any], Any], description: str,
    dtype: str | None = None,
) -> DomainMap:
    """The :class:`DomainMap` of ``function`` (written with ``keras.ops`` on a symbolic input of
    ``shape``, without the batch axis; its output has the same shape), computing in ``dtype``
    (by default Keras' default float type, that of the layers the configurations build)."""
    x = keras.Input(tuple(int(d) for d in shape), dtype=dtype or keras.config.floatx(),
                    name="drawn")
    return DomainMap(keras.Model(x, function(x), name="domain_map"), description)
