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

__all__ = ["is_float_dtype", "make_rule", "rule_label", "widest_float_dtype"]


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
        TypeError: ``rule`` is not callable.
    """
    if rule is None:
        rule = get_backward_rule(operation, mapping)
    if not isinstance(rule, type):
        if not callable(rule):
            raise TypeError(
                f"rule must be a rule class or a callable rule object, got {rule!r}: pass a "
                "class written to the calling convention of jacverify.BackwardLayer"
            )
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
