"""Companion inputs: the inputs of a checked call that are not differentiated (integer labels,
lengths, indices) but, like the floating inputs, have a batch axis.

The checker draws one packed floating input per example and evaluates the call on batches of
rows: the example and its perturbations (finite differences), several examples at once
(grouped evaluation), the example with extra Jacobian axes. A companion input is fixed per
configuration: one array without the batch axis, repeated along whatever batch the call is
evaluated on, so every row of every evaluation sees the same labels, and a companion is never
perturbed. The rule under test receives the companions among its inputs, where the builder
would give them (``rule([g, [target, logits, target_length, output_length]])``), and the
gradients it returns for them are not judged (a companion has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import ops

from jacverify.backward.factory import is_float_dtype

__all__ = ["CompanionInputs"]


class CompanionInputs:
    """The non-differentiated inputs of a call, each fixed per configuration.

    Args:
        values: ``{position: array}``: the input at ``position`` among the call's inputs (in
            the order of the ``{"__input__": i}`` placeholders of its arguments) is ``array``
            (without the batch axis; an integer or boolean dtype), repeated along the batch.
        description: what the companions are, for reports (``"labels [[1, 2]], lengths
            [2] and [5]"``); default: their positions and values.

    Raises:
        ValueError: a position is negative, or a value is a floating array (a floating input
            is differentiated: draw it with the others).
    """

    def __init__(self, values: dict, description: str | None = None) -> None:
        arrays = {}
        for position, value in sorted(values.items()):
            array = np.asarray(value)
            if int(position) < 0:
                raise ValueError(f"companion input positions start at 0, got {position}")
            if is_float_dtype(str(array.dtype)):
                raise ValueError(
                    f"companion input {position} is a {array.dtype} array: floating inputs are "
                    "differentiated; give them to the checker as ordinary inputs"
                )
            arrays[int(position)] = array
        self.values = arrays
        self.description = description or "; ".join(
            f"input {i} = {a.tolist()} for every example" for i, a in arrays.items()
        )

    @property
    def positions(self) -> tuple:
        """The companions' positions among the call's inputs, in increasing order."""
        return tuple(self.values)

    def shapes(self) -> list[tuple]:
        """Each companion's shape without the batch axis, in position order."""
        return [tuple(int(d) for d in a.shape) for a in self.values.values()]

    def all_shapes(self, drawn_shapes: Sequence[Sequence[int]]) -> list[tuple]:
        """The shapes of all the call's inputs, in order, from the drawn inputs' shapes."""
        return self.merge([tuple(s) for s in drawn_shapes], lambda a: tuple(a.shape))

    def merge(self, drawn: Sequence[Any], companion: Any = None) -> list:
        """All the call's inputs in order: the drawn (floating) ones fill the positions the
        companions leave free. ``companion(array)`` makes each companion's entry (default:
        the array itself)."""
        total = len(drawn) + len(self.values)
        if any(p >= total for p in self.values):
            raise ValueError(
                f"companion inputs at positions {list(self.values)} for a call of {total} "
                "inputs: positions are counted among all the call's inputs"
            )
        make = companion or (lambda array: array)
        rest = iter(drawn)
        return [make(self.values[i]) if i in self.values else next(rest) for i in range(total)]

    def merge_batch(self, drawn: Sequence[Any], batch: int) -> list:
        """:meth:`merge` with each companion repeated along a batch of ``batch`` rows, as a
        tensor."""
        def repeated(array: np.ndarray) -> Any:
            tiled = np.broadcast_to(array, (int(batch), *array.shape))
            return ops.convert_to_tensor(np.ascontiguousarray(tiled))

        return self.merge(drawn, repeated)

    def drawn_only(self, every: Sequence[Any]) -> list:
        """The entries of ``every`` (one per input of the call) at the drawn inputs'
        positions."""
        return [v for i, v in enumerate(every) if i not in self.values]

    def __len__(self) -> int:
        return len(self.values)
