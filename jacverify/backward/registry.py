"""The registry mapping forward layer (or operation) classes to backward rule classes.

Three sources fill it, looked up in this order of precedence:

1. a per-call mapping (``clone_to_backward(..., mapping_keras2backward_classes={...})``);
2. rules the user registers with :func:`register_backward`;
3. rules shipped by installed packages through the ``jacverify.rules`` entry-point group (each
   entry point names a module that registers its rules with :func:`register_backward` on
   import, or a callable returning a ``{keras_class: rule_class}`` mapping);
4. the native rules shipped with jacverify.

Lookup is by exact class: a subclass of ``Dense`` that changes ``call`` must not silently
inherit Dense's rule.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TypeVar

ENTRY_POINT_GROUP = "jacverify.rules"
_NATIVE_PACKAGE = "jacverify.backward.rules"
#: Packages whose rules are native: the layer rules, and the rules of the per-example loss
#: layers of the analyses.
_NATIVE_PACKAGES = (_NATIVE_PACKAGE, "jacverify.analysis.losses")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleEntry:
    """One registered rule: the forward class, the rule class, and where it came from."""

    keras_class: type
    rule_class: type
    source: str  # "native", "user" or "package:<distribution>"
    #: What check_registry() checks the rule on: a layer, a ``(layer, input_shape)`` pair, a
    #: zero-argument callable returning either, or a Hypothesis strategy drawing either.
    example: object = None


# One table per source; lookup precedence is user > installed package > native, whatever the
# order in which they were filled.
_USER: dict[type, RuleEntry] = {}
_PACKAGE: dict[type, RuleEntry] = {}
_NATIVE: dict[type, RuleEntry] = {}
_native_loaded = False
_plugins_loaded = False
_current_source = "user"

R = TypeVar("R", bound=type)


class MissingBackwardRuleError(ValueError):
    """Raised when a layer of the model has no backward rule."""


class UntraceableLayerError(MissingBackwardRuleError):
    """Raised when a layer has no backward rule and its ``call()`` cannot be traced."""


def untraceable_message(name: str, keras_class: type, reason: str) -> str:
    """The one error for a layer without a rule whose call cannot be traced."""
    cls_name = keras_class.__name__
    return (
        f"No backward rule for layer '{name}' of class {cls_name} (module "
        f"{keras_class.__module__}), and its call() cannot be traced: {reason}. Either write "
        f"a rule for {cls_name} (see docs/writing_rules.md) and register it with "
        f"@jacverify.register_backward({cls_name}), or build with fallback='autograd' (torch "
        "autograd differentiates it; not a checked rule)."
    )


def _table(source: str) -> dict[type, RuleEntry]:
    if source == "native":
        return _NATIVE
    if source.startswith("package:"):
        return _PACKAGE
    return _USER


def register_backward(*keras_classes: type, example: object = None) -> Callable[[R], R]:
    """Class decorator registering a backward rule for one or more forward classes.

    A rule registered by the user takes precedence over rules shipped by installed packages,
    which take precedence over jacverify's native rules.

    ``example`` is what :func:`jacverify.check_registry` checks the rule on: a layer instance,
    a zero-argument callable returning one, or a Hypothesis strategy drawing layers; a layer
    that is not built comes as a ``(layer, input_shape)`` pair (input shape without the batch
    axis).

    >>> @register_backward(PlusConstant, example=(PlusConstant(2.0), (4,)))
    ... class BackwardPlusConstant(BackwardLinearLayer):
    ...     def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
    ...         return gradient
    """
    if not keras_classes:
        raise TypeError("register_backward() needs at least one forward class.")
    for keras_class in keras_classes:
        if not isinstance(keras_class, type):
            raise TypeError(f"register_backward() expects classes, got {keras_class!r}.")
    _check_example(example)

    def decorator(rule_class: R) -> R:
        source = _current_source
        if source == "user" and rule_class.__module__.startswith(
            tuple(package + "." for package in _NATIVE_PACKAGES)
        ):
            source = "native"  # a native rule module imported directly, before the registry
        table = _table(source)
        for keras_class in keras_classes:
            table[keras_class] = RuleEntry(keras_class, rule_class, source, example)
        return rule_class

    return decorator


def _check_example(example: object) -> None:
    """Refuse an ``example=`` that is none of the accepted forms."""
    if example is None or callable(example):  # layers and operations are callable too
        return
    if isinstance(example, tuple) and len(example) == 2 and callable(example[0]):
        return
    from hypothesis.strategies import SearchStrategy

    if isinstance(example, SearchStrategy):
        return
    raise TypeError(
        "register_backward(example=...) takes a layer, a (layer, input_shape) pair, a "
        f"zero-argument callable returning one, or a Hypothesis strategy; got {example!r}."
    )


def unregister_backward(keras_class: type) -> None:
    """Remove every rule registered for ``keras_class`` (no error if there is none)."""
    _ensure_loaded()
    for table in (_USER, _PACKAGE, _NATIVE):
        table.pop(keras_class, None)


def _ensure_loaded() -> None:
    global _native_loaded, _plugins_loaded, _current_source
    if not _native_loaded:
        _native_loaded = True
        _current_source = "native"
        try:
            for package in _NATIVE_PACKAGES:
                importlib.import_module(package)
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
                for keras_class, rule_class in dict(loaded() or {}).items():
                    _PACKAGE[keras_class] = RuleEntry(keras_class, rule_class, _current_source)
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
    """All registered rules, keyed by forward class (the entry that lookups use)."""
    _ensure_loaded()
    if _OPTIONAL_RULES:
        _load_optional_rules()
    return {**_NATIVE, **_PACKAGE, **_USER}


#: Rules for the layers of optional libraries: library module -> jacverify module registering
#: them, imported once the library itself has been imported (source "package:<library>").
_OPTIONAL_RULES = {"keras_hub": "jacverify.backward.rules.keras_hub"}


def _load_optional_rules() -> None:
    global _current_source
    for library, module in list(_OPTIONAL_RULES.items()):
        if library in sys.modules:
            del _OPTIONAL_RULES[library]
            _current_source = f"package:{library}"
            try:
                importlib.import_module(module)
            finally:
                _current_source = "user"


def _lookup(keras_class: type) -> RuleEntry | None:
    _ensure_loaded()
    if _OPTIONAL_RULES:
        _load_optional_rules()
    for table in (_USER, _PACKAGE, _NATIVE):
        if keras_class in table:
            return table[keras_class]
    return None


def has_backward_rule(layer_or_class, mapping: Mapping[type, type] | None = None) -> bool:
    """Whether a layer instance or class has a rule (in ``mapping`` or the registry)."""
    keras_class = layer_or_class if isinstance(layer_or_class, type) else type(layer_or_class)
    return bool(mapping and keras_class in mapping) or _lookup(keras_class) is not None


def get_backward_rule(
    layer_or_class, mapping: Mapping[type, type] | None = None
) -> type:
    """The rule class for a layer instance or class; raises :class:`MissingBackwardRuleError`."""
    keras_class = layer_or_class if isinstance(layer_or_class, type) else type(layer_or_class)
    if mapping and keras_class in mapping:
        return mapping[keras_class]
    entry = _lookup(keras_class)
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
        f"mapping_keras2backward_classes={{{cls_name}: YourRule}} to clone_to_backward() "
        "(see docs/writing_rules.md)."
    )


def rule_source(layer_or_class, mapping: Mapping[type, type] | None = None) -> str | None:
    """Where the rule of a layer instance or class comes from: ``"user"`` for a rule given in
    ``mapping`` or registered by the user, ``"package:<distribution>"`` for an installed
    package's, ``"native"`` for jacverify's own; ``None`` when it has no rule."""
    keras_class = layer_or_class if isinstance(layer_or_class, type) else type(layer_or_class)
    if mapping and keras_class in mapping:
        return "user"
    entry = _lookup(keras_class)
    return entry.source if entry is not None else None


def is_custom_source(source: str | None) -> bool:
    """Whether a rule source (see :func:`rule_source`) is not jacverify's own: the user's or
    an installed package's."""
    return source is not None and source != "native"
