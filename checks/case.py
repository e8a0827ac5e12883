"""How a corpus case is declared: a layer, a rule, and the verdict the checker must reach."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras

#: Fault categories (key -> what is wrong with the rule); "correct" marks right rules.
CATEGORIES: dict[str, str] = {
    "sign": "sign flipped",
    "mask_outside": "mask wrong outside a range",
    "mask_at_kink": "mask wrong exactly at a kink or in a thin band next to it",
    "tie": "tie handling that is not a subgradient",
    "chain_rule": "missing chain-rule factor (activation derivative dropped)",
    "output_not_input": "derivative evaluated at the output instead of the input",
    "transposed": "transposed weights on a square kernel",
    "conv_kernel": "convolution kernel flipped or shifted by one",
    "configuration": "wrong only for one configuration (data format, padding, stride...)",
    "batch": "wrong only for batch > 1 (examples mixed)",
    "extra_axes": "wrong only when the gradient carries extra Jacobian axes",
    "scale": "small scale error (x (1 + 1e-3))",
    "nan_inf": "NaN or Inf returned",
    "shape": "wrong shape returned",
    "raises": "the rule raises",
    "two_bugs": "wrong in value and broken in another property (the value verdict wins)",
    "several_outputs": "a call with several outputs: an output's gradient dropped or given to "
                       "another output",
    "correct": "correct rule (must pass)",
}

#: Verdicts that show a rule wrong.
DETECTED = frozenset({"fail", "boundary", "error"})

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Case:
    """One rule of one layer, with the verdict ``check_layer`` must reach.

    ``layer`` builds a fresh layer (called after the run's random seed is set, so weights vary
    with the seed); ``input_shape`` has no batch axis (a list of shapes for a layer with several
    inputs). ``expected`` is the exact verdict; ``accepted`` the set of verdicts that are also
    legitimate (it always contains ``expected``). ``options`` go to ``check_layer`` unchanged.
    """

    name: str
    layer: Callable[[], keras.layers.Layer]
    input_shape: Shape | list[Shape]
    rule: type
    expected: str
    category: str
    description: str
    accepted: frozenset[str] = field(default_factory=frozenset)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"case {self.name}: unknown category {self.category!r}")
        allowed = DETECTED | {"pass"}
        if self.expected not in allowed:
            raise ValueError(f"case {self.name}: expected verdict {self.expected!r}")
        if (self.expected == "pass") != (self.category == "correct"):
            raise ValueError(f"case {self.name}: only correct rules may expect 'pass'")
        accepted = frozenset(self.accepted) | {self.expected}
        if self.expected != "pass" and not accepted <= DETECTED:
            raise ValueError(f"case {self.name}: a wrong rule may only accept {sorted(DETECTED)}")
        object.__setattr__(self, "accepted", accepted)

    @property
    def wrong(self) -> bool:
        """True for a deliberately wrong rule."""
        return self.expected != "pass"

    @property
    def multi_input(self) -> bool:
        """True when the layer takes several inputs."""
        return bool(self.input_shape) and isinstance(self.input_shape[0], (list, tuple))

    @property
    def shapes(self) -> list[Shape]:
        """The input shapes, as a list of one shape per input."""
        if self.multi_input:
            return [tuple(s) for s in self.input_shape]
        return [tuple(self.input_shape)]


def wrong(
    name: str,
    layer: Callable[[], keras.layers.Layer],
    input_shape: Shape | list[Shape],
    rule: type,
    expected: str,
    category: str,
    description: str,
    *,
    also: tuple[str, ...] = (),
    **options: Any,
) -> Case:
    """A deliberately wrong rule; ``also`` lists other legitimate verdicts."""
    return Case(name, layer, input_shape, rule, expected, category, description,
                frozenset(also), dict(options))


def correct(
    name: str,
    layer: Callable[[], keras.layers.Layer],
    input_shape: Shape | list[Shape],
    rule: type,
    description: str,
    **options: Any,
) -> Case:
    """A correct rule: the checker must pass it."""
    return Case(name, layer, input_shape, rule, "pass", "correct", description,
                frozenset(), dict(options))
