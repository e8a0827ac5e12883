"""The rule shared by every recurrent layer driven by one cell (``SimpleRNN``, ``LSTM``,
``GRU``, ``RNN(cell)``, ``ConvLSTM*``).

The rule recomputes the forward states from the layer's input and weights, then runs the
adjoint recurrence backwards (:mod:`.through_time`). Its input is the sequence, or
``[sequence, *initial_states]`` when the layer was called with ``initial_state=``; it returns
one gradient per input. A layer with ``return_state=True`` has several outputs (the output,
then each final state), and its rule receives one upstream gradient per output.
"""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.rules.recurrent.cells import CellMath, cell_math
from jacverify.backward.rules.recurrent.through_time import (
    RecurrentOptions,
    run_backward,
    run_forward,
)


def check_recurrent_layer(layer) -> None:
    """Refuse what a backward rule cannot describe: a stateful layer (its initial state is a
    variable carried over from the previous batch, not a function of the input)."""
    if getattr(layer, "stateful", False):
        raise ValueError(
            f"jacverify: layer '{layer.name}' ({type(layer).__name__}) is stateful "
            "(stateful=True): its output depends on the states left by the previous batch, "
            "which no backward rule of this call can see. Build the backward model of the "
            "same layer with stateful=False, passing the carried states as initial_state= "
            "inputs if they matter."
        )


def check_static_time_steps(layer, input_dims) -> None:
    """Refuse sequences whose number of steps is unknown (the loop over time is unrolled)."""
    sequence_dims = input_dims[0] if _several(input_dims) else input_dims
    if not sequence_dims or sequence_dims[0] is None:
        raise ValueError(
            f"jacverify: layer '{layer.name}' ({type(layer).__name__}) reads sequences of "
            "unknown length; its backward rule loops over a fixed number of time steps. Give "
            "the model's Input a fixed length, e.g. keras.Input((steps, features))."
        )


def _several(dims) -> bool:
    return bool(dims) and isinstance(dims[0], (list, tuple))


def sequence_mask(mask):
    """The ``(batch, time)`` mask of the sequence among what reaches a rule as ``mask``: the
    builder passes the layer's call mask; a rule called by hand inside a Keras graph may get
    the Keras masks of its ``[gradient, input]`` (the first mask found is the sequence's)."""
    for candidate in keras.tree.flatten(mask) if mask is not None else []:
        if candidate is not None:
            return candidate
    return None


def repeat_mask_to(mask, batch_tensor):
    """The sequence's mask (see :func:`sequence_mask`), repeated along the batch axis when the
    base class folded extra Jacobian axes into it (each example repeated consecutively)."""
    mask = sequence_mask(mask)
    if mask is None:
        return None
    repeats = int(batch_tensor.shape[0]) // int(mask.shape[0])
    return mask if repeats == 1 else ops.repeat(mask, repeats, axis=0)


def step_input_dims(input_dims) -> list:
    """One time step's input shape (without batch) from the layer's input dims."""
    sequence_dims = input_dims[0] if _several(input_dims) else input_dims
    return list(sequence_dims[1:])


def split_gradients(gradient, n_states: int, return_state: bool):
    """``(gradient of the output, [gradient of each final state])``."""
    if not return_state:
        return gradient, [None] * n_states
    gradients = list(gradient)
    return gradients[0], gradients[1 : 1 + n_states]


class RecurrentPass:
    """One recurrent layer's cell and options, run forward and backward on a batch."""

    def __init__(self, layer, math: CellMath | None = None, step_input_dims=None) -> None:
        check_recurrent_layer(layer)
        self.layer = layer
        self.math = math if math is not None else cell_math(layer.cell, step_input_dims)
        self.options = RecurrentOptions.of(layer)

    @property
    def n_states(self) -> int:
        return len(self.math.state_sizes)

    def forward(self, sequences, initial_states=None, mask=None):
        """The layer's forward pass recomputed at ``sequences`` (zero initial states unless
        given), with every step's values kept for :meth:`backward`."""
        dtype = sequences.dtype
        if not initial_states:
            initial_states = self.math.zero_states(ops.shape(sequences)[0], dtype)
        else:
            initial_states = [ops.cast(s, dtype) for s in initial_states]
        return run_forward(self.math, sequences, initial_states, mask, self.options)

    def backward(self, forward, d_output, d_final_states):
        """Gradients with respect to the sequence and the initial states, from the gradients
        of the layer's output and final states (``None`` for those nothing uses)."""
        return run_backward(
            self.math, forward, d_output, d_final_states, self.options,
            output_shape=self._step_output_shape(forward),
        )

    def _step_output_shape(self, forward):
        output = forward.outputs
        if self.options.return_sequences:
            return (*ops.shape(output)[:1], *ops.shape(output)[2:])
        return ops.shape(output)


class BackwardRecurrent(BackwardNonLinearLayer):
    """Rule of a Keras recurrent layer with one cell (see the module docstring)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        check_static_time_steps(layer, self.input_dim_wo_batch)
        self._pass = RecurrentPass(layer, self._cell_math(layer))

    def _cell_math(self, layer) -> CellMath:
        return cell_math(layer.cell, step_input_dims(self.input_dim_wo_batch))

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = list(input) if isinstance(input, (list, tuple)) else [input]
        dtype = (gradient[0] if isinstance(gradient, (list, tuple)) else gradient).dtype
        sequences = ops.cast(inputs[0], dtype)
        d_output, d_states = split_gradients(
            gradient, self._pass.n_states, bool(self.layer.return_state)
        )
        forward = self._pass.forward(
            sequences, inputs[1:], repeat_mask_to(mask, sequences)
        )
        d_sequences, d_initial = self._pass.backward(forward, d_output, d_states)
        if len(inputs) == 1:
            return d_sequences
        return [d_sequences, *d_initial]
