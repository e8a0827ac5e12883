"""The registry mapping forward layer (or operation) classes to backward rule classes.

Three sources fill it, looked up in this order of precedence:

1. a per-call mapping (``clone_to_backward(..., mapping_keras2backward_classes={...})``);
2. registrations made with :func:`register_backward` (by the user, or by a package's module);
3. the native rules shipped with jacverify, and rules shipped by installed packages through
   the ``jacverify.rules`` entry-point group (each entry point names a module that registers
   its rules on import, or a callable returning a ``{keras_class: rule_class}`` mapping).

Lookup is by exact class: a subclass of ``Dense`` that changes ``call`` must not silently
inherit Dense's rule.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Mapping, TypeVar

ENTRY_POINT_GROUP = "jacverify.rules"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleEntry:
    """One registered rule: the forward class, the rule class, and where it came from."""

    keras_class: type
    rule_class: type
    source: str  # "native", "user" or "package:<distribution>"


_RULES: dict[type, RuleEntry] = {}
_native_loaded = False
_plugins_loaded = False
_current_source = "user"

R = TypeVar("R", bound=type)


class MissingBackwardRuleError(ValueError):
    """Raised when a layer of the model has no backward rule."""


def register_backward(*keras_classes: type, override: bool = True) -> Callable[[R], R]:
    """Class decorator registering a backward rule for one or more forward classes.

    >>> @register_backward(PlusConstant)
    ... class BackwardPlusConstant(BackwardLinearLayer):
    ...     def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
    ...         return gradient
    """
    if not keras_classes:
        raise TypeError("register_backward() needs at least one forward class.")

    def decorator(rule_class: R) -> R:
        for keras_class in keras_classes:
            if not isinstance(keras_class, type):
                raise TypeError(
                    f"register_backward() expects classes, got {keras_class!r}."
                )
            # Native and package rules never replace a rule the user registered first.
            if keras_class in _RULES and (not override or _current_source != "user"):
                continue
            _RULES[keras_class] = RuleEntry(keras_class, rule_class, _current_source)
        return rule_class

    return decorator


def unregister_backward(keras_class: type) -> None:
    """Remove the rule registered for ``keras_class`` (no error if there is none)."""
    _ensure_loaded()
    _RULES.pop(keras_class, None)


def _ensure_loaded() -> None:
    global _native_loaded, _plugins_loaded, _current_source
    if not _native_loaded:
        _native_loaded = True
        _current_source = "native"
        try:
            importlib.import_module("jacverify.backward.rules")
        finally:
            _current_source = "user"
    if not _plugins_loaded:
        _plugins_loaded = True
        _load_entry_points()


def _load_entry_points() -> None:
    global _current_source
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(entry_point.dist, "name", None) or entry_point.value
        _current_source = f"package:{dist}"
        try:
            loaded = entry_point.load()
            if callable(loaded) and not isinstance(loaded, type):
                mapping = loaded()
                if mapping:
                    for keras_class, rule_class in dict(mapping).items():
                        _RULES.setdefault(
                            keras_class, RuleEntry(keras_class, rule_class, _current_source)
                        )
        except Exception as error:  # a broken plugin must not break the rest
            _log.warning(
                "jacverify: could not load backward rules from entry point '%s' (%s): %s",
                entry_point.name,
                dist,
                error,
            )
        finally:
            _current_source = "user"


def registered_rules() -> dict[type, RuleEntry]:
    """All registered rules, keyed by forward class."""
    _ensure_loaded()
    return dict(_RULES)


def get_backward_rule(
    layer_or_class, mapping: Mapping[type, type] | None = None
) -> type:
    """The rule class for a layer instance or class; raises :class:`MissingBackwardRuleError`."""
    keras_class = layer_or_class if isinstance(layer_or_class, type) else type(layer_or_class)
    if mapping and keras_class in mapping:
        return mapping[keras_class]
    _ensure_loaded()
    entry = _RULES.get(keras_class)
    if entry is not None:
        return entry.rule_class
    name = getattr(layer_or_class, "name", None)
    what = f"layer '{name}' of class" if name and not isinstance(layer_or_class, type) else "class"
    cls_name = keras_class.__name__
    raise MissingBackwardRuleError(
        f"No backward rule for {what} {cls_name} (module {keras_class.__module__}). "
        f"Write one by subclassing jacverify.BackwardLinearLayer (if its Jacobian does not "
        f"depend on the input) or jacverify.BackwardNonLinearLayer, then register it with "
        f"@jacverify.register_backward({cls_name}) or pass "
        f"mapping_keras2backward_classes={{{cls_name}: YourRule}} to clone_to_backward()."
    )
