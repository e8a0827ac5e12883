"""Which calls of a model a model check checks: ``layers=`` (names or classes) and
``only="custom"`` (calls whose rule does not ship with jacverify)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jacverify.backward.graph import Step
from jacverify.backward.registry import is_custom_source, rule_source

#: Values of ``only``.
ONLY = (None, "custom")

__all__ = ["ONLY", "select_calls"]


def _names(step: Step, label: str) -> set[str]:
    return {step.operation.name, step.qualified_name, label}


def _matches(wanted: Any, step: Step, label: str) -> bool:
    if isinstance(wanted, type):
        return isinstance(step.operation, wanted)
    text = str(wanted)
    return text in _names(step, label) or type(step.operation).__name__ == text


def _unknown_error(unknown: list, model_name: str, labels: Sequence[str]) -> ValueError:
    shown = ", ".join(getattr(u, "__name__", str(u)) for u in unknown)
    calls = ", ".join(labels)
    return ValueError(
        f"layers= names no call of model '{model_name}': {shown}. Give layer names or classes "
        f"among its calls: {calls}"
    )


def select_calls(
    steps: Sequence[Step], labels: Sequence[str], *, model_name: str,
    layers: Sequence[Any] | None = None, only: str | None = None, mapping=None,
    without_rule: frozenset = frozenset(),
) -> list[bool]:
    """Whether each call (in ``steps`` order, labelled by ``labels``) is to be checked.

    ``layers``: names (a layer's name, its path in nested models, or the call's label such as
    ``"dense (call 2)"``), class names or classes (a class selects its instances and its
    subclasses' instances); ``None`` selects every call. ``only="custom"`` keeps the calls
    whose rule comes from the user or an installed package, and the calls without a rule
    (``without_rule``: the ``id`` of each differentiable step that has none).

    Raises:
        ValueError: a name or class matches no call of the model (the message lists its
            calls), or ``only`` is not ``None`` or ``"custom"``.
    """
    if only not in ONLY:
        raise ValueError(f"only must be None or 'custom', got {only!r}")
    chosen = [True] * len(steps)
    if layers is not None:
        wanted = [layers] if isinstance(layers, (str, type)) else list(layers)
        if not wanted:
            raise ValueError("layers= is empty: give layer names or classes, or None for all")
        unknown = [w for w in wanted
                   if not any(_matches(w, s, lab) for s, lab in zip(steps, labels))]
        if unknown:
            raise _unknown_error(unknown, model_name, labels)
        chosen = [any(_matches(w, s, lab) for w in wanted) for s, lab in zip(steps, labels)]
    if only == "custom":
        chosen = [
            keep and (id(s) in without_rule or is_custom_source(rule_source(s.operation, mapping)))
            for keep, s in zip(chosen, steps)
        ]
    return chosen
