"""The time step of a user's recurrent cell, from the rules of its parts.

A cell without a :class:`~jacverify.backward.rules.recurrent.cells.CellMath` of its own is
called once on symbolic inputs (one step's input and one tensor per state), which gives a
functional model ``[x_t, *states] -> [output, *new_states]``; ``clone_to_backward`` builds
that model's backward from its parts (the cell's own layers and ``keras.ops`` calls, traced
by the builder). Each time step then runs the cell model forward and its backward model on
the step's values.
"""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.rules.recurrent.cell_base import CellMath, UnsupportedCellError


def _state_sizes(cell) -> list:
    size = cell.state_size
    sizes = list(size) if isinstance(size, (list, tuple)) else [size]
    if not all(isinstance(s, int) for s in sizes):
        raise UnsupportedCellError(
            f"the recurrent cell '{cell.name}' ({type(cell).__name__}) has states of size "
            f"{size!r}; traced cells need one integer size per state"
        )
    return sizes


class TracedCellMath(CellMath):
    """The step of any cell whose ``call(inputs, states)`` the builder can trace."""

    def __init__(self, cell, step_input_dims) -> None:
        super().__init__(cell)
        from jacverify.backward.clone import clone_to_backward

        sizes = _state_sizes(cell)
        dtype = cell.compute_dtype
        x = keras.Input(tuple(step_input_dims), dtype=dtype, name="step_input")
        states = [keras.Input((s,), dtype=dtype, name=f"state_{i}") for i, s in
                  enumerate(sizes)]
        output, new_states = cell(x, states)
        new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [
            new_states]
        self._sizes = sizes
        self.model = keras.Model([x, *states], [output, *new_states],
                                 name=f"{cell.name}_step")
        try:
            self.backward = clone_to_backward(self.model, name=f"{cell.name}_step_backward")
        except ValueError as error:
            raise UnsupportedCellError(
                f"the step of the recurrent cell '{cell.name}' ({type(cell).__name__}) has no "
                f"backward: {error}"
            ) from None

    @property
    def state_sizes(self) -> list:
        return list(self._sizes)

    def project(self, x):
        return x

    def project_vjp(self, d_projection, x=None):
        return d_projection

    def step(self, projection, states):
        outputs = self.model([projection, *states])
        return outputs[0], list(outputs[1:]), (projection, list(states))

    def step_vjp(self, d_output, d_states, cache):
        x, states = cache
        gradients = self.backward([x, *states, d_output, *d_states])
        return gradients[0], [ops.cast(g, d_output.dtype) for g in gradients[1:]]
