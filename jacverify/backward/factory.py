"""Make the backward rule of one operation from its input and output shapes.

The one way a rule is made, by the builder (:func:`jacverify.clone_to_backward`) and the
checker (:func:`jacverify.check_layer`, ``check_model``, ``check_registry``) alike::

    rule = make_rule(keras.layers.ReLU(), [(4,)], [(4,)])          # the registered rule
    rule = make_rule(layer, [(4,)], [(4,)], rule=MyRule)           # a given rule class
    rule([gradient, x])                                            # g^T J, shaped like x

A rule class is called with the calling convention of :class:`jacverify.BackwardLayer`:
``rule_class(layer=operation, input_dim_wo_batch=..., output_dim_wo_batch=...)`` (one shape, or
a list of shapes for several inputs or outputs), plus ``call_arguments=`` for rules that read
their call's arguments and ``dtype=`` when given. Any callable written to that convention works,
whether or not it derives from jacverify's base classes; a callable that is not a class (a rule
object already made, a function) is returned as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jacverify.backward.registry import get_backward_rule

__all__ = [
    "RuleConstructionError",
    "describe_operation",
    "is_float_dtype",
    "make_rule",
    "refuse_non_rule",
    "rule_label",
    "widest_float_dtype",
]

#: What to pass as a rule, for the messages.
RULE_HINT = (
    "pass a class written to the calling convention of jacverify.BackwardLayer (a subclass "
    "of jacverify.BackwardNonLinearLayer or BackwardLinearLayer, see docs/writing_rules.md) "
    "or a rule object already made"
)


class RuleConstructionError(TypeError):
    """A rule class could not be constructed with the calling convention's arguments for an
    operation (the message names the operation, the rule and the original ``TypeError``,
    which is the ``__cause__``)."""


def describe_operation(operation: Any) -> str:
    """``layer 'dense' (Dense)`` or ``operation 'add' (Add)``: how messages name a call's
    operation."""
    import keras  # deferred: importing this module does not import Keras

    kind = "layer" if isinstance(operation, keras.layers.Layer) else "operation"
    name = getattr(operation, "checked_name", None) or getattr(operation, "name", "?")
    class_name = getattr(operation, "checked_class", None) or type(operation).__name__
    return f"{kind} '{name}' ({class_name})"


def _is_forward_class(cls: type, operation: Any) -> bool:
    """Whether ``cls`` is a forward layer class rather than a rule: the operation's own
    class, or a class Keras defines (Keras has no backward rules)."""
    import keras

    from jacverify.backward.base import BackwardLayer

    if not issubclass(cls, keras.layers.Layer) or issubclass(cls, BackwardLayer):
        return False
    own = getattr(operation, "operation", operation)  # through the checker's adapter
    return cls is type(own) or cls.__module__.split(".")[0] == "keras"


def refuse_non_rule(operation: Any, rule: Any) -> None:
    """Raise ``TypeError`` naming ``operation`` when ``rule`` cannot be its rule: it is not
    callable, or it is a forward layer class or instance (the operation's own, or Keras')."""
    where = describe_operation(operation)
    if not callable(rule):
        raise TypeError(
            f"The rule for {where} must be a rule class or a callable rule object, got "
            f"{type(rule).__name__} {str(rule)[:60]!r}: {RULE_HINT}"
        )
    cls = rule if isinstance(rule, type) else type(rule)
    if _is_forward_class(cls, operation):
        from jacverify.keras_internals import public_name

        what = "class" if isinstance(rule, type) else "instance"
        qualified = public_name(cls) or f"{cls.__module__}.{cls.__qualname__}"
        raise TypeError(
            f"The rule for {where} is the forward layer {what} {qualified}, not a backward "
            f"rule: {RULE_HINT}"
        )


def is_float_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` (a dtype, a dtype name, a tensor's dtype) is floating point."""
    return "float" in str(dtype)


def is_complex_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` (a dtype, a dtype name, a tensor's dtype) is complex."""
    return "complex" in str(dtype)


def widest_float_dtype(dtypes: Sequence[Any], default: Any = "float32") -> str:
    """The widest floating dtype among ``dtypes`` (``default`` when none is floating)."""
    floats = [str(d) for d in dtypes if is_float_dtype(d)]
    if not floats:
        return str(default)
    return max(floats, key=lambda d: int("".join(c for c in d if c.isdigit()) or 0))


def _dims(shapes: Sequence[Sequence[int]], what: str) -> list | list[list]:
    """One shape as a list, several as a list of lists (the convention's ``*_dim_wo_batch``)."""
    dims = [[None if d is None else int(d) for d in shape] for shape in shapes]
    if not dims:
        raise ValueError(f"make_rule() needs at least one {what} shape (without the batch axis)")
    return dims[0] if len(dims) == 1 else dims


def make_rule(
    operation: Any,
    input_shapes: Sequence[Sequence[int]],
    output_shapes: Sequence[Sequence[int]],
    *,
    rule: Any = None,
    mapping: Mapping | None = None,
    call_arguments: dict | None = None,
    dtype: Any = None,
) -> Any:
    """The backward rule of ``operation`` for inputs and outputs of the given shapes.

    Args:
        operation: the forward operation (a Keras layer, a model, a ``keras.ops`` operation).
        input_shapes: the shape of each input, without the batch axis (a list, one per input).
        output_shapes: the shape of each output, without the batch axis (a list, one per
            output).
        rule: the rule class (or any callable class written to the calling convention); a
            callable that is not a class is returned unchanged; ``None`` takes the rule of
            ``mapping`` or of the registry.
        mapping: ``{forward_class: rule_class}`` taking precedence over the registry.
        call_arguments: the call's arguments (``{"args": ..., "kwargs": ...}`` with
            ``{"__input__": i}`` placeholders), given to rules that set
            ``uses_call_arguments = True``.
        dtype: the rule's dtype (``None``: the rule's default, the operation's policy).

    Raises:
        MissingBackwardRuleError: ``rule`` is ``None`` and no rule is registered or mapped.
        TypeError: ``rule`` is not callable, or is a forward layer class or instance.
        Exception: what the rule class raises when constructed.
    """
    if rule is None:
        rule = get_backward_rule(operation, mapping)
    refuse_non_rule(operation, rule)
    if not isinstance(rule, type):
        return rule
    kwargs: dict = {}
    if call_arguments is not None and getattr(rule, "uses_call_arguments", False):
        kwargs["call_arguments"] = call_arguments
    if dtype is not None:
        kwargs["dtype"] = dtype
    return rule(
        layer=operation,
        input_dim_wo_batch=_dims(input_shapes, "input"),
        output_dim_wo_batch=_dims(output_shapes, "output"),
        **kwargs,
    )


def rule_label(rule: Any) -> str | None:
    """The name reports give a rule: its class's name; for a rule object its ``label``
    attribute, a function's name, or its class's name."""
    if rule is None:
        return None
    if isinstance(rule, type):
        return rule.__name__
    label = getattr(rule, "label", None)
    if isinstance(label, str) and label:
        return label
    name = getattr(rule, "__name__", None)
    return name if isinstance(name, str) else type(rule).__name__
