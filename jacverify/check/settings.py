"""The checker's options as one object, passed down instead of a dozen keyword arguments."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from jacverify.verdicts import Convention, check_convention

#: Inputs with at most this many values get the full Jacobian (basis directions).
MAX_FULL_JACOBIAN = 64

__all__ = ["MAX_FULL_JACOBIAN", "CheckSettings", "torch_threads"]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op threads set to ``threads`` (restored after;
    ``None`` keeps torch's setting)."""
    previous = torch.get_num_threads()
    if threads is not None and int(threads) != previous:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


@dataclass(frozen=True)
class CheckSettings:
    """How one rule is checked (see :func:`jacverify.check_layer` for each option).

    ``seed=None`` means "draw one": :meth:`with_seed` fixes it before a check starts, so the
    result always carries the seed that replays it.
    """

    examples: int = 100
    seed: int | None = None
    convention: str = Convention.SUBGRADIENT.value
    dtype: str | None = None
    kinks: tuple = ()
    random_directions: int | None = None
    max_full_jacobian: int = MAX_FULL_JACOBIAN
    shrink_budget: int | None = None
    threads: int | None = 1
    evidence: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "convention", check_convention(self.convention))
        object.__setattr__(self, "kinks", tuple(float(k) for k in (self.kinks or ())))
        if self.dtype is not None:
            object.__setattr__(self, "dtype", str(self.dtype))
        if int(self.examples) < 1:
            raise ValueError(f"examples must be at least 1, got {self.examples!r}")

    def with_seed(self) -> CheckSettings:
        """These settings with a seed: the given one, or a fresh random one."""
        if self.seed is not None:
            return dataclasses.replace(self, seed=int(self.seed))
        return dataclasses.replace(self, seed=int.from_bytes(os.urandom(4), "little"))

    @property
    def shrink_evaluations(self) -> int:
        """At most this many new evaluations while shrinking."""
        if self.shrink_budget is not None:
            return int(self.shrink_budget)
        return max(50, int(self.examples))

    def replace(self, **changes: Any) -> CheckSettings:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

