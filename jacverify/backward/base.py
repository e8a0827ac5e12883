"""Base classes for backward rules.

A backward rule is a Keras layer that, given the upstream gradient ``g`` (shaped like the
forward layer's output) and, for non-linear layers, the forward layer's input ``x``, returns
``g^T J(x)`` shaped like the forward layer's input.

Calling convention (the checker relies on nothing else):

* ``rule([gradient, input])`` for every rule; a linear rule may also be called ``rule(gradient)``;
* for a layer with several inputs (a merge layer), ``input`` is the list of its inputs and the
  rule returns one gradient per input, as a list;
* ``gradient`` has shape ``(batch, *extra, *output_dim_wo_batch)``: the optional ``extra`` axes
  carry several upstream gradients per example (rows of a Jacobian). They are folded into the
  batch axis before ``call_on_reshaped_gradient`` runs (the input is repeated to match) and
  unfolded afterwards, so a rule author only ever sees one gradient per example (the call's
  masks are repeated like the input);
* for a layer with several outputs (``output_dim_wo_batch`` is a list of N shapes, in the
  order of ``keras.tree.flatten(outputs)``), the rule is always called
  ``rule([gradients, input])`` with ``gradients`` a list of N upstream gradients, one per
  output (the same extra axes on each), and ``call_on_reshaped_gradient`` receives that list.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from jacverify.backward.gradient_shapes import (
    expected_gradient_shapes,
    gradient_shapes_are_checked,
    verify_gradient_shapes,
)
from jacverify.backward.runner import returns_no_mask

Shape = list  # a shape without the batch axis, e.g. [10] or [28, 28, 3]


def _shape_wo_batch(shape) -> list:
    return [None if d is None else int(d) for d in tuple(shape)[1:]]


def _tensor_shapes_wo_batch(tensors):
    if isinstance(tensors, (list, tuple)):
        return [_shape_wo_batch(t.shape) for t in tensors]
    return _shape_wo_batch(tensors.shape)


def _is_multi(dims) -> bool:
    """True when ``dims`` is a list of shapes (several inputs) rather than one shape."""
    return bool(dims) and isinstance(dims[0], (list, tuple))


def _infer_dims(layer: keras.layers.Layer, which: str):
    """Shapes of a layer's input or output, read from its (single) call in a graph."""
    try:
        tensors = layer.input if which == "input" else layer.output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"Cannot infer the {which} shape of layer '{layer.name}' "
            f"({type(layer).__name__}): {error}. Pass {which}_dim_wo_batch= explicitly."
        ) from None
    return _tensor_shapes_wo_batch(tensors)


#: The Keras serialization package of jacverify's own rules (``"jacverify>BackwardDense"``).
NATIVE_SERIALIZATION_PACKAGE = "jacverify"


def serialization_package(rule_class: type) -> str:
    """The package a rule class is registered under with Keras serialization: ``"jacverify"``
    for classes defined in jacverify, the defining module's name for any other."""
    module = rule_class.__module__
    if module == NATIVE_SERIALIZATION_PACKAGE or module.startswith(
        NATIVE_SERIALIZATION_PACKAGE + "."
    ):
        return NATIVE_SERIALIZATION_PACKAGE
    return module


@functools.cache
def _ships_with_jacverify(rule_class: type) -> bool:
    """Whether a rule class is one of jacverify's own: their shapes are checked by the registry
    check, not again at each call of a backward model (as the builder's own check skips them)."""
    return serialization_package(rule_class) == NATIVE_SERIALIZATION_PACKAGE


def deserialize_forward_layer(serialized: Any) -> Any:
    """The forward layer (or operation) a rule's config holds, as it was serialized, build
    record included.

    Keras builds a layer that has no ``build()`` of its own (``ReLU``, ``Activation``,
    ``Softmax``, pooling...) when it is constructed, and then skips the ``build_config`` it was
    saved with: such a layer built with ``layer.build(shape)`` would come back without its
    build shapes, and the rule's config would change in a save and load. The record is given
    back to a layer that comes back built, without weights and without one.
    """
    build_config = serialized.get("build_config") if isinstance(serialized, dict) else None
    layer = keras.saving.deserialize_keras_object(serialized)
    if (
        build_config
        and isinstance(layer, keras.layers.Layer)
        and layer.built
        and not layer.weights
        and layer.get_build_config() is None
    ):
        layer.build_from_config(build_config)
    return layer


class BackwardLayer(keras.layers.Layer):
    """A backward rule for one Keras layer: maps an upstream gradient to ``g^T J``.

    Subclasses override :meth:`call_on_reshaped_gradient` or set ``self.layer_backward`` to a
    Keras layer applied to the gradient. ``self.layer`` is the forward layer;
    ``self.input_dim_wo_batch`` and ``self.output_dim_wo_batch`` its input and output shapes
    without the batch axis (lists of shapes for layers with several inputs).
    """

    #: Whether the rule's result is independent of the forward input (a linear layer).
    #: Rules may override it per instance (a Dense layer is linear only without activation).
    is_linear: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register every rule class with Keras serialization, so backward models holding it
        save and load without a ``@keras.saving.register_keras_serializable`` decorator.

        The package is ``"jacverify"`` for jacverify's own rules and the defining module's
        name for any other class (``"my_rules>BackwardClip"``). An explicit decorator on the
        class still works and its name wins.
        """
        super().__init_subclass__(**kwargs)
        keras.saving.register_keras_serializable(package=serialization_package(cls))(cls)

    def __init__(
        self,
        layer: keras.layers.Layer,
        input_dim_wo_batch: Sequence | None = None,
        output_dim_wo_batch: Sequence | None = None,
        **kwargs: Any,
    ) -> None:
        if "dtype" not in kwargs:  # keras.ops operations have no dtype policy
            kwargs["dtype"] = getattr(layer, "dtype_policy", None)
        kwargs.setdefault("name", f"{layer.name}_backward")
        super().__init__(**kwargs)
        self.layer = layer
        if input_dim_wo_batch is None:
            input_dim_wo_batch = _infer_dims(layer, "input")
        if output_dim_wo_batch is None:
            output_dim_wo_batch = _infer_dims(layer, "output")
        self.input_dim_wo_batch = _as_dims(input_dim_wo_batch)
        self.output_dim_wo_batch = _as_dims(output_dim_wo_batch)
        self.layer_backward = None
        self.built = True

    # ----------------------------------------------------------------------------- the rule
    def call_on_reshaped_gradient(
        self, gradient, input=None, training=None, mask=None
    ):  # noqa: A002 - the name is part of the public calling convention
        """Return ``g^T J(input)`` for one upstream gradient per example.

        ``gradient`` has shape ``(batch, *output_dim_wo_batch)`` and ``input`` (``None`` for a
        linear rule called without it) ``(batch, *input_dim_wo_batch)``.
        """
        if self.layer_backward is not None:
            return self.layer_backward(gradient)
        raise NotImplementedError(
            f"{type(self).__name__} must override call_on_reshaped_gradient() "
            "or set self.layer_backward."
        )

    # ------------------------------------------------------------------------ the plumbing
    def _split_inputs(self, inputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) == 2:
                return inputs[0], inputs[1]
            if len(inputs) == 1:
                return inputs[0], None
            raise ValueError(
                f"{type(self).__name__} expects [gradient, input] or gradient, "
                f"got a list of {len(inputs)} items."
            )
        return inputs, None

    @property
    def has_several_outputs(self) -> bool:
        """Whether the forward layer returns several tensors (one upstream gradient each)."""
        return _is_multi(self.output_dim_wo_batch)

    def call(self, inputs, training=None, mask=None):
        gradient, layer_input = self._split_inputs(inputs)
        if layer_input is None and not self.is_linear:
            raise ValueError(
                f"{type(self).__name__} is the rule of a non-linear layer "
                f"('{self.layer.name}'): call it as rule([gradient, input])."
            )
        gradients = self._gradient_list(gradient)
        out_dims = self.output_dim_wo_batch if self.has_several_outputs else [
            self.output_dim_wo_batch]
        n_extra = len(gradients[0].shape) - 1 - len(out_dims[0])
        for grad, dims in zip(gradients, out_dims, strict=True):
            if len(grad.shape) - 1 - len(dims) != n_extra or n_extra < 0:
                raise ValueError(
                    f"{type(self).__name__}: a gradient has shape {tuple(grad.shape)} but "
                    f"layer '{self.layer.name}' outputs (batch, *{tuple(dims)})"
                    + (" (the same extra axes on every output)." if n_extra > 0 else ".")
                )
        if n_extra == 0:
            result = self.call_on_reshaped_gradient(
                gradient, input=layer_input, training=training, mask=mask
            )
        else:
            result = self._call_with_extra_axes(gradients, n_extra, layer_input, training, mask)
        if gradient_shapes_are_checked() and not _ships_with_jacverify(type(self)):
            self._verify_result_shapes(result, gradients[0], n_extra, layer_input)
        return result

    def _call_with_extra_axes(self, gradients, n_extra, layer_input, training, mask):
        """The rule's result for gradients with ``n_extra`` extra axes after the batch axis:
        folded into the batch axis (the input and masks repeated to match), then unfolded."""
        grad_shape = ops.shape(gradients[0])
        extra = [int(d) for d in grad_shape[1 : 1 + n_extra]]
        n_rep = math.prod(extra)
        folded = [ops.reshape(g, [-1] + list(ops.shape(g)[1 + n_extra :])) for g in gradients]
        if layer_input is not None:
            layer_input = _map_structure(lambda t: ops.repeat(t, n_rep, axis=0), layer_input)
        mask = _repeat_masks(mask, n_rep)
        result = self.call_on_reshaped_gradient(
            folded if self.has_several_outputs else folded[0],
            input=layer_input, training=training, mask=mask,
        )
        return _map_structure(
            lambda t: ops.reshape(t, [-1] + extra + list(ops.shape(t)[1:])), result
        )

    def _verify_result_shapes(self, result, gradient, n_extra: int, layer_input) -> None:
        """Raise :class:`~jacverify.backward.gradient_shapes.GradientShapeError` unless
        ``result`` holds one gradient per input, shaped like it (with the gradient's batch
        and ``n_extra`` extra axes)."""
        if self._shape_is_right(result, gradient, n_extra, layer_input):
            return
        several = _is_multi(self.input_dim_wo_batch)
        dims = self.input_dim_wo_batch if several else [self.input_dim_wo_batch]
        inputs = None
        if layer_input is not None:
            inputs = list(layer_input) if several else [layer_input]
            if len(inputs) != len(dims):
                inputs = None
        lead = tuple(gradient.shape)[: 1 + n_extra]
        returned = list(result) if isinstance(result, (list, tuple)) else [result]
        verify_gradient_shapes(self, returned, expected_gradient_shapes(lead, dims, inputs))

    def _shape_is_right(self, result, gradient, n_extra: int, layer_input) -> bool:
        """A few comparisons that settle the common case, one input and one gradient of the
        right shape (``False``: look closer)."""
        shape = getattr(result, "shape", None)
        if shape is None or isinstance(result, (list, tuple)) or _is_multi(
                self.input_dim_wo_batch):
            return False
        if layer_input is not None and not isinstance(layer_input, (list, tuple)):
            batch, tail = layer_input.shape[0], tuple(layer_input.shape[1:])
        else:
            batch, tail = gradient.shape[0], tuple(self.input_dim_wo_batch)
        return (len(shape) == 1 + n_extra + len(tail) and shape[0] == batch
                and tuple(shape[1:1 + n_extra]) == tuple(gradient.shape[1:1 + n_extra])
                and tuple(shape[1 + n_extra:]) == tail)

    def _gradient_list(self, gradient) -> list:
        """The upstream gradients as a list (one per forward output)."""
        if not self.has_several_outputs:
            if isinstance(gradient, (list, tuple)):
                raise ValueError(
                    f"{type(self).__name__}: layer '{self.layer.name}' has one output; call "
                    "the rule as rule([gradient, input]) with one gradient tensor."
                )
            return [gradient]
        n = len(self.output_dim_wo_batch)
        if not isinstance(gradient, (list, tuple)) or len(gradient) != n:
            raise ValueError(
                f"{type(self).__name__}: layer '{self.layer.name}' has {n} outputs; call the "
                f"rule as rule([gradients, input]) with a list of {n} gradients, one per "
                "output (zeros for an output nothing uses)."
            )
        return list(gradient)

    @returns_no_mask
    def compute_mask(self, inputs, previous_mask=None):
        return None  # gradients carry no Keras mask

    def compute_output_shape(self, input_shape):
        first = input_shape
        if isinstance(first, (list, tuple)) and first and _is_shape_structure(first[0]):
            first = first[0]  # [gradient(s), input]
        if self.has_several_outputs:
            grad_shape, out_dims = tuple(first[0]), self.output_dim_wo_batch[0]
        else:
            grad_shape, out_dims = tuple(first), self.output_dim_wo_batch
        n_extra = len(grad_shape) - 1 - len(out_dims)
        prefix = grad_shape[: 1 + max(n_extra, 0)]
        if _is_multi(self.input_dim_wo_batch):
            return [prefix + tuple(d) for d in self.input_dim_wo_batch]
        return prefix + tuple(self.input_dim_wo_batch)

    # ---------------------------------------------------------------------- serialization
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "layer": keras.saving.serialize_keras_object(self.layer),
                "input_dim_wo_batch": self.input_dim_wo_batch,
                "output_dim_wo_batch": self.output_dim_wo_batch,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        layer = deserialize_forward_layer(config.pop("layer"))
        if not getattr(layer, "built", True):  # keras.ops operations need no build
            shape = config["input_dim_wo_batch"]
            if _is_multi(shape):
                layer.build([(None, *s) for s in shape])
            else:
                layer.build((None, *shape))
        return cls(layer=layer, **config)


class BackwardLinearLayer(BackwardLayer):
    """Rule of a layer whose Jacobian does not depend on its input (Dense without
    activation, convolutions, pooling by averages, reshapes, additions...)."""

    is_linear = True


class BackwardNonLinearLayer(BackwardLayer):
    """Rule of a layer whose Jacobian depends on its input (activations, max pooling...)."""

    is_linear = False


def _as_dims(dims):
    if _is_multi(dims):
        return [list(d) for d in dims]
    return list(dims)


def _repeat_masks(mask, n_rep: int):
    """The call's masks (one, a list or a dict of them) repeated along the batch axis like the
    input, so that a rule sees masks with the folded batch size."""
    if mask is None:
        return None
    if isinstance(mask, dict):
        return {k: _repeat_masks(v, n_rep) for k, v in mask.items()}
    if isinstance(mask, (list, tuple)):
        return [_repeat_masks(m, n_rep) for m in mask]
    return ops.repeat(mask, n_rep, axis=0)


def _is_shape_structure(value) -> bool:
    """Whether ``value`` is a shape or a list of shapes (not a dimension)."""
    return isinstance(value, (list, tuple))


def _map_structure(fn, value):
    if isinstance(value, (list, tuple)):
        return [fn(v) for v in value]
    return fn(value)
