"""Backward through time for one recurrent layer, built from a cell's :class:`CellMath`.

:func:`run_forward` recomputes the layer's forward pass from its input sequence (the states of
every step, kept for the backward pass); :func:`run_backward` runs the adjoint recurrence from
the last step to the first. Both follow Keras' ``backend.rnn`` exactly:

* with ``go_backwards`` the sequence (and its mask) is read from the last step to the first,
  and the output sequence comes out in that processing order;
* at a masked step the states are carried over unchanged, and the output is the previous
  step's output (zeros before the first step), or zeros with ``zero_output_for_mask``;
* the last output is the output of the last processed step (so, with a mask, the output of
  the last unmasked step).

The loop over time is a Python loop over the static number of steps; the batch and the units
are vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keras import ops

from jacverify.backward.rules.recurrent.cells import CellMath


@dataclass
class RecurrentOptions:
    """How a recurrent layer runs its cell over a sequence."""

    go_backwards: bool = False
    return_sequences: bool = False
    zero_output_for_mask: bool = False

    @classmethod
    def of(cls, layer) -> RecurrentOptions:
        return cls(
            go_backwards=bool(layer.go_backwards),
            return_sequences=bool(layer.return_sequences),
            zero_output_for_mask=bool(getattr(layer, "zero_output_for_mask", False)),
        )


@dataclass
class ForwardPass:
    """The recomputed forward pass: per-step caches and masks (processing order), the
    layer's output (sequence or last), and its final states."""

    sequences: object
    caches: list = field(default_factory=list)
    masks: list = field(default_factory=list)  # per step: (batch, 1, ...) floats, or None
    outputs: object = None
    final_states: list = field(default_factory=list)


def _time_major_steps(tensor):
    return [tensor[:, t] for t in range(int(tensor.shape[1]))]


def _prepare_mask(mask, dtype, go_backwards):
    if mask is None:
        return None
    if isinstance(mask, (list, tuple)):
        mask = mask[0]
    if mask is None:
        return None
    mask = ops.cast(mask, dtype)
    if len(mask.shape) > 2:  # (batch, time, 1)
        mask = ops.reshape(mask, ops.shape(mask)[:2])
    if go_backwards:
        mask = ops.flip(mask, axis=1)
    return mask


def run_forward(
    math: CellMath, sequences, initial_states, mask, options: RecurrentOptions
) -> ForwardPass:
    """The forward pass of the layer at ``sequences`` (``(batch, time, ...)``)."""
    dtype = sequences.dtype
    math.begin_run()
    if options.go_backwards:
        sequences = ops.flip(sequences, axis=1)
    projections = math.project(sequences)
    step_masks = _prepare_mask(mask, dtype, False if mask is None else options.go_backwards)
    states = list(initial_states)
    result = ForwardPass(sequences=sequences)
    previous_output, outputs = None, []
    for t, projection in enumerate(_time_major_steps(projections)):
        output, new_states, cache = math.step(projection, states)
        step_mask = None
        if step_masks is not None:  # (batch, 1, ...): broadcasts against the output
            step_mask = ops.reshape(step_masks[:, t], (-1, *[1] * (len(output.shape) - 1)))
        if step_mask is not None:
            kept = step_mask > 0
            if options.zero_output_for_mask or previous_output is None:
                fallback = ops.zeros_like(output)
            else:
                fallback = previous_output
            output = ops.where(kept, output, fallback)
            new_states = [ops.where(kept, n, s) for n, s in zip(new_states, states, strict=True)]
        result.caches.append(cache)
        result.masks.append(step_mask)
        outputs.append(output)
        previous_output, states = output, new_states
    result.outputs = ops.stack(outputs, axis=1) if options.return_sequences else outputs[-1]
    result.final_states = states
    return result


def run_backward(
    math: CellMath,
    forward: ForwardPass,
    d_outputs,
    d_final_states,
    options: RecurrentOptions,
    output_shape,
):
    """Gradients with respect to the input sequence and the initial states.

    ``d_outputs``: the gradient of the layer's output (a sequence in processing order, or the
    last output), or ``None``; ``d_final_states``: one gradient (or ``None``) per final state;
    ``output_shape``: the shape of one step's output, ``(batch, ...)``.
    """
    dtype = forward.sequences.dtype
    steps = len(forward.caches)
    d_states = [
        d if d is not None else ops.zeros_like(s)
        for d, s in zip(d_final_states, forward.final_states, strict=True)
    ]
    d_carried = None  # gradient reaching the previous step's output through a masked step
    d_projections = [None] * steps
    for t in reversed(range(steps)):
        d_output = _step_output_gradient(d_outputs, t, steps, options)
        if d_carried is not None:
            d_output = d_carried if d_output is None else d_output + d_carried
        if d_output is None:
            d_output = ops.zeros(output_shape, dtype=dtype)
        step_mask = forward.masks[t]
        d_kept_states = None
        if step_mask is not None:
            skipped = 1.0 - step_mask
            d_carried = None if options.zero_output_for_mask else d_output * skipped
            d_kept_states = [d * skipped for d in d_states]
            d_output = d_output * step_mask
            d_states = [d * step_mask for d in d_states]
        d_projections[t], d_states = math.step_vjp(d_output, d_states, forward.caches[t])
        if d_kept_states is not None:
            d_states = [a + b for a, b in zip(d_states, d_kept_states, strict=True)]
    d_sequences = math.project_vjp(ops.stack(d_projections, axis=1), forward.sequences)
    if options.go_backwards:
        d_sequences = ops.flip(d_sequences, axis=1)
    return d_sequences, d_states


def _step_output_gradient(d_outputs, t, steps, options):
    if d_outputs is None:
        return None
    if options.return_sequences:
        return d_outputs[:, t]
    return d_outputs if t == steps - 1 else None
