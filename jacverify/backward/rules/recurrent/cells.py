"""One time step of Keras' recurrent cells and its vector-Jacobian product, in keras.ops.

Every cell is described by a :class:`CellMath`:

* ``project(x)``: the part of the step that depends on the input only (``x W + b``), applied to
  a whole sequence at once (any leading axes);
* ``project_vjp(d_projection, x)``: its vector-Jacobian product with respect to ``x``;
* ``step(projection_t, states)``: the cell's output, new states and what the backward step
  needs (the forward values at this step), as Keras' cell computes them at inference (dropout
  and recurrent dropout are the identity there);
* ``step_vjp(d_output, d_new_states, cache)``: the gradients with respect to the step's
  projection and its previous states.

The forward values are recomputed with the cell's own activation functions, so that a point on
a kink lands on the same side as in Keras' forward pass; the derivatives come from
:func:`jacverify.backward.rules.activations.functions.activation_vjp`. Everything runs in the
dtype of the tensors it is given (the weights are cast to it).
"""

from __future__ import annotations

import keras
from keras import activations, ops

from jacverify.backward.rules.activations.functions import activation_vjp
from jacverify.backward.rules.recurrent.cell_base import (  # noqa: F401 - re-exported
    CellMath,
    UnsupportedCellError,
    _dot,
    _dot_transposed,
)


def _identity_vjp(gradient, x):
    return gradient


def _vjp_of(activation, where: str):
    try:
        vjp = activation_vjp(activation)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return _identity_vjp if vjp is None else vjp


def _apply(activation, x):
    return x if activation is None else activation(x)


def _derivative_from_output(activation):
    """For ``sigmoid`` and ``tanh``: their derivative from their output ``y`` (``y (1 - y)``,
    ``1 - y^2``, as torch autograd computes it), which the forward step already holds;
    ``None`` for other activations (their derivative comes from the pre-activation)."""
    if activation is activations.sigmoid:
        return lambda y: y * (1.0 - y)
    if activation is activations.tanh:
        return lambda y: 1.0 - y * y
    return None


class _ActivationDerivative:
    """``g * activation'(pre)``, from the activation's output when it is ``sigmoid`` or
    ``tanh`` (elementwise, no recomputation), else by :func:`activation_vjp`."""

    def __init__(self, activation, where: str) -> None:
        self.from_output = _derivative_from_output(activation)
        self.vjp = _vjp_of(activation, where)

    def __call__(self, gradient, pre, post):
        if self.from_output is not None:
            return gradient * self.from_output(post)
        return self.vjp(gradient, pre)


def split_gates(z, count: int, axis: int = -1) -> list:
    """``z`` cut into ``count`` equal parts along ``axis`` (slices: cheaper than
    ``keras.ops.split`` on eager tensors)."""
    size = int(z.shape[axis]) // count
    lead = (slice(None),) * (axis % len(z.shape))
    return [z[(*lead, slice(k * size, (k + 1) * size))] for k in range(count)]


class SimpleRNNCellMath(CellMath):
    """``h' = activation(x W + b + h U)``; the output is ``h'``."""

    def __init__(self, cell):
        super().__init__(cell)
        self._activation_vjp = _vjp_of(cell.activation, f"cell of '{cell.name}'")

    def step(self, projection, states):
        (h,) = states
        pre = projection + _dot(h, self.weight("recurrent_kernel", h.dtype))
        new_h = _apply(self.cell.activation, pre)
        return new_h, [new_h], pre

    def step_vjp(self, d_output, d_states, cache):
        d_pre = self._activation_vjp(d_output + d_states[0], cache)
        recurrent = self.weight("recurrent_kernel", d_pre.dtype)
        return d_pre, [_dot_transposed(d_pre, recurrent)]


class LSTMCellMath(CellMath):
    """Gates ``i, f, c~, o`` from ``z = x W + b + h U`` (in that order);
    ``c' = f c + i c~``, ``h' = o activation(c')``; the output is ``h'``."""

    def __init__(self, cell):
        super().__init__(cell)
        where = f"cell of '{cell.name}'"
        self._activation_vjp = _vjp_of(cell.activation, where)
        self._gate_vjp = _vjp_of(cell.recurrent_activation, where)
        self._activation_derivative = _ActivationDerivative(cell.activation, where)
        self._gate_derivative = _ActivationDerivative(cell.recurrent_activation, where)
        # An elementwise gate activation runs once over the four gates' pre-activations.
        self._gates_at_once = cell.recurrent_activation in (activations.sigmoid,
                                                            activations.tanh)

    #: The axis of ``z`` holding the four gates (the units, or the channels of a ConvLSTM).
    gate_axis = -1

    def _recurrent(self, h):
        """``h U``: the recurrent part of the gates' pre-activation."""
        return _dot(h, self.weight("recurrent_kernel", h.dtype))

    def _recurrent_vjp(self, d_z, h):
        if len(d_z.shape) == 2:
            return d_z @ self.weight_transposed("recurrent_kernel", d_z.dtype)
        return _dot_transposed(d_z, self.weight("recurrent_kernel", d_z.dtype))

    def _gates(self, z):
        """``(z_i, z_f, z_c, z_o)`` and the activated ``(i, f, o)``."""
        cell = self.cell
        z_i, z_f, z_c, z_o = split_gates(z, 4, self.gate_axis)
        if self._gates_at_once:
            i, f, _, o = split_gates(cell.recurrent_activation(z), 4, self.gate_axis)
        else:
            i, f, o = (_apply(cell.recurrent_activation, a) for a in (z_i, z_f, z_o))
        return (z_i, z_f, z_c, z_o), (i, f, o)

    def step(self, projection, states):
        h, c = states
        cell = self.cell
        z = projection + self._recurrent(h)
        (z_i, z_f, z_c, z_o), (i, f, o) = self._gates(z)
        candidate = _apply(cell.activation, z_c)
        new_c = f * c + i * candidate
        activated_c = _apply(cell.activation, new_c)
        new_h = o * activated_c
        cache = (h, c, z_i, z_f, z_c, z_o, i, f, candidate, o, new_c, activated_c)
        return new_h, [new_h, new_c], cache

    def step_vjp(self, d_output, d_states, cache):
        h, c, z_i, z_f, z_c, z_o, i, f, candidate, o, new_c, activated_c = cache
        gate, activation = self._gate_derivative, self._activation_derivative
        d_h = d_output + d_states[0]
        d_c = d_states[1] + activation(d_h * o, new_c, activated_c)
        d_z = ops.concatenate(
            [
                gate(d_c * candidate, z_i, i),
                gate(d_c * c, z_f, f),
                activation(d_c * i, z_c, candidate),
                gate(d_h * activated_c, z_o, o),
            ],
            axis=self.gate_axis,
        )
        return d_z, [self._recurrent_vjp(d_z, h), d_c * f]


class GRUCellMath(CellMath):
    """Gates ``z, r`` and candidate ``h~`` (in that order in the kernels);
    ``h' = z h + (1 - z) h~``. With ``reset_after`` the reset gate multiplies ``h U_h + b_h``
    (the recurrent bias is the second row of ``bias``); without, it multiplies ``h`` before
    ``U_h``. The output is ``h'``."""

    def __init__(self, cell):
        super().__init__(cell)
        where = f"cell of '{cell.name}'"
        self._activation_vjp = _vjp_of(cell.activation, where)
        self._gate_vjp = _vjp_of(cell.recurrent_activation, where)
        self._activation_derivative = _ActivationDerivative(cell.activation, where)
        self._gate_derivative = _ActivationDerivative(cell.recurrent_activation, where)
        self.units = int(cell.units)

    def _input_bias(self, dtype):
        cell = self.cell
        if not cell.use_bias:
            return None
        bias = self.weight("bias", dtype)
        return bias[0] if cell.reset_after else bias

    def _recurrent_bias(self, dtype):
        cell = self.cell
        if not (cell.use_bias and cell.reset_after):
            return None
        return self.weight("bias", dtype)[1]

    def step(self, projection, states):
        (h,) = states
        cell, n = self.cell, self.units
        kernel = self.weight("recurrent_kernel", h.dtype)
        x_z, x_r, x_h = split_gates(projection, 3)
        if cell.reset_after:
            inner = _dot(h, kernel)
            bias = self._recurrent_bias(h.dtype)
            if bias is not None:
                inner = inner + bias
        else:
            inner = _dot(h, kernel[:, : 2 * n])
        a_z, a_r = x_z + inner[:, :n], x_r + inner[:, n : 2 * n]
        z = _apply(cell.recurrent_activation, a_z)
        r = _apply(cell.recurrent_activation, a_r)
        if cell.reset_after:
            recurrent_h = inner[:, 2 * n :]
            a_h = x_h + r * recurrent_h
        else:
            recurrent_h = None
            a_h = x_h + _dot(r * h, kernel[:, 2 * n :])
        candidate = _apply(cell.activation, a_h)
        new_h = z * h + (1.0 - z) * candidate
        return new_h, [new_h], (h, a_z, a_r, a_h, z, r, candidate, recurrent_h)

    def step_vjp(self, d_output, d_states, cache):
        h, a_z, a_r, a_h, z, r, candidate, recurrent_h = cache
        n = self.units
        kernel_t = self.weight_transposed("recurrent_kernel", h.dtype)  # (3n, units)
        gate = self._gate_derivative
        d_new = d_output + d_states[0]
        d_a_h = self._activation_derivative(d_new * (1.0 - z), a_h, candidate)
        d_a_z = gate(d_new * (h - candidate), a_z, z)
        d_h = d_new * z
        if self.cell.reset_after:
            d_a_r = gate(d_a_h * recurrent_h, a_r, r)
            d_inner = ops.concatenate([d_a_z, d_a_r, d_a_h * r], axis=-1)
            d_h = d_h + d_inner @ kernel_t
        else:
            d_reset_h = d_a_h @ kernel_t[2 * n :]
            d_a_r = gate(d_reset_h * h, a_r, r)
            d_inner = ops.concatenate([d_a_z, d_a_r], axis=-1)
            d_h = d_h + d_reset_h * r + d_inner @ kernel_t[: 2 * n]
        return ops.concatenate([d_a_z, d_a_r, d_a_h], axis=-1), [d_h]


class StackedCellsMath(CellMath):
    """``StackedRNNCells``: each cell's output is the next cell's input; the states are the
    cells' states in order (flattened); the output is the last cell's output."""

    def __init__(self, cell, step_input_dims=None):
        super().__init__(cell)
        self.parts = []
        dims = step_input_dims
        for part in cell.cells:
            self.parts.append(cell_math(part, dims))
            size = output_size(part)
            dims = None if size is None else [size]

    @property
    def state_sizes(self) -> list:
        return [s for part in self.parts for s in part.state_sizes]

    def begin_run(self) -> None:
        for part in self.parts:
            part.begin_run()

    def _split(self, states):
        groups, start = [], 0
        for part in self.parts:
            count = len(part.state_sizes)
            groups.append(list(states[start : start + count]))
            start += count
        return groups

    def project(self, x):
        return x

    def project_vjp(self, d_projection, x=None):
        return d_projection

    def step(self, projection, states):
        x, new_states, caches = projection, [], []
        for part, part_states in zip(self.parts, self._split(states), strict=True):
            part_projection = part.project(x)
            x, part_new, cache = part.step(part_projection, part_states)
            new_states.extend(part_new)
            caches.append((x, cache))
        return x, new_states, caches

    def step_vjp(self, d_output, d_states, cache):
        d_previous_states = []
        d_x = d_output
        for part, part_d_states, (_, part_cache) in reversed(
            list(zip(self.parts, self._split(d_states), cache, strict=True))
        ):
            d_projection, d_part_states = part.step_vjp(d_x, part_d_states, part_cache)
            d_x = part.project_vjp(d_projection)
            d_previous_states = d_part_states + d_previous_states
        return d_x, d_previous_states


_MATHS = {
    keras.layers.SimpleRNNCell: SimpleRNNCellMath,
    keras.layers.LSTMCell: LSTMCellMath,
    keras.layers.GRUCell: GRUCellMath,
    keras.layers.StackedRNNCells: StackedCellsMath,
}


def register_cell_math(cell_class: type, math_class: type) -> None:
    """Teach the recurrent rules the time step of another cell class (a :class:`CellMath`
    subclass); ``RNN(cell)`` layers with such cells then get an analytic rule."""
    _MATHS[cell_class] = math_class


def cell_math(cell, step_input_dims=None) -> CellMath:
    """The :class:`CellMath` of a Keras cell. A cell of another class is traced (its step
    built from the rules of its parts, see :mod:`.traced_cell`) when ``step_input_dims`` (one
    step's input shape without the batch axis) is given; :class:`UnsupportedCellError` when it
    cannot be."""
    math_class = _MATHS.get(type(cell))
    if math_class is StackedCellsMath:
        return StackedCellsMath(cell, step_input_dims)
    if math_class is not None:
        return math_class(cell)
    name = getattr(cell, "name", repr(cell))
    reason = "jacverify does not know its step"
    if step_input_dims is not None:
        from jacverify.backward.rules.recurrent.traced_cell import TracedCellMath

        try:
            return TracedCellMath(cell, step_input_dims)
        except UnsupportedCellError as error:
            reason = str(error)
    raise UnsupportedCellError(
        f"No backward step for the recurrent cell '{name}' ({type(cell).__name__}): "
        f"{reason}. Native steps: {', '.join(sorted(c.__name__ for c in _MATHS))}. Describe "
        "its step with jacverify.backward.rules.recurrent.register_cell_math(CellClass, "
        "YourCellMath), write a rule for the RNN layer, or build with fallback='autograd'."
    )


def output_size(cell) -> int | None:
    """The size of a cell's output (``output_size``, else its first state's size)."""
    size = getattr(cell, "output_size", None)
    if size is None:
        state = cell.state_size
        size = state[0] if isinstance(state, (list, tuple)) else state
    return size if isinstance(size, int) else None
