"""Rule of ``keras.ops.nn.ctc_loss(target, output, target_length, output_length,
mask_index)``: the connectionist temporal classification loss of each example, ``-log p`` of
its label sequence under the per-step class distributions ``softmax(output)``.

Only ``output`` (the logits, ``(batch, time, classes)``) has a gradient; the labels and the
lengths are integers. With the forward variables ``alpha`` and the backward variables
``beta`` of the label sequence extended by blanks (``mask_index``) around every label, both
computed in log space over the example's ``output_length`` steps, the occupancy of class
``k`` at step ``t`` is ``occ[t, k] = sum_{s: ext[s] = k} alpha_t(s) beta_t(s) / (p y_t(k))``
and ``d(-log p)/d output[t] = softmax(output[t]) sum_k occ[t, k] - occ[t]`` for ``t <
output_length``, 0 after. Where no path fits (a label sequence too long for its steps) the
loss is ``inf`` and the gradient ``nan``, as torch's.
"""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._arguments import accumulate, optional_operand
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_nn as knn


def _shifted(values, by: int, fill):
    """``values[..., s - by]`` along the last axis (``fill`` where ``s - by`` is outside):
    ``by > 0`` looks back, ``by < 0`` ahead."""
    size = int(values.shape[-1])
    pad = ops.full((*values.shape[:-1], abs(by)), fill, dtype=values.dtype)
    if by > 0:
        return ops.concatenate([pad, values[..., : size - by]], axis=-1)
    return ops.concatenate([values[..., -by:], pad], axis=-1)


def _combine(*terms):
    return ops.logsumexp(ops.stack(terms, axis=0), axis=0)


class _Lattice:
    """The extended label sequences of a batch and their emissions (log space)."""

    def __init__(self, log_probs, target, target_length, blank: int):
        batch, labels = int(target.shape[0]), int(target.shape[1])
        steps = 2 * labels + 1
        blanks = ops.full((batch, labels), blank, dtype="int32")
        interleaved = ops.reshape(ops.stack([blanks, target], axis=-1), (batch, 2 * labels))
        self.ext = ops.concatenate([interleaved, blanks[:, :1]], axis=-1)  # (batch, steps)
        positions = ops.expand_dims(ops.arange(steps, dtype="int32"), 0)
        self.size = 2 * ops.expand_dims(target_length, -1) + 1  # per example
        self.valid = positions < self.size
        dtype = log_probs.dtype
        self.neg_inf = ops.convert_to_tensor(float("-inf"), dtype=dtype)
        gathered = ops.take_along_axis(
            log_probs, ops.repeat(ops.expand_dims(self.ext, 1), log_probs.shape[1], 1), axis=-1)
        self.emit = ops.where(ops.expand_dims(self.valid, 1), gathered, self.neg_inf)
        two_back = _shifted(self.ext, 2, -1)
        self.skip = ops.logical_and(
            ops.logical_and(positions >= 2, ops.not_equal(self.ext, blank)),
            ops.not_equal(self.ext, two_back))
        self.final = ops.logical_or(ops.equal(positions, self.size - 1),
                                    ops.equal(positions, self.size - 2))


def _forward(lattice: _Lattice, output_length) -> list:
    """``alpha_t`` for every step (frozen after the example's last step)."""
    steps = int(lattice.emit.shape[1])
    start = ops.expand_dims(ops.arange(int(lattice.ext.shape[1])), 0) < 2
    alpha = ops.where(start, lattice.emit[:, 0], lattice.neg_inf)
    alphas = [alpha]
    for t in range(1, steps):
        previous = alpha
        skipped = ops.where(lattice.skip, _shifted(previous, 2, float("-inf")), lattice.neg_inf)
        new = _combine(previous, _shifted(previous, 1, float("-inf")), skipped)
        alpha = ops.where(ops.expand_dims(t < output_length, -1), new + lattice.emit[:, t],
                          previous)
        alphas.append(alpha)
    return alphas


def _backward(lattice: _Lattice, output_length) -> list:
    """``beta_t`` for every step (``-inf`` after the example's last step)."""
    steps = int(lattice.emit.shape[1])
    ahead_skip = _shifted(lattice.skip, -2, False)
    beta = None
    betas = [None] * steps
    last = ops.expand_dims(output_length - 1, -1)
    for t in reversed(range(steps)):
        emit = lattice.emit[:, t]
        initial = ops.where(lattice.final, emit, lattice.neg_inf)
        if beta is None:
            recursed = ops.full(ops.shape(emit), float("-inf"), dtype=emit.dtype)
        else:
            skipped = ops.where(ahead_skip, _shifted(beta, -2, float("-inf")), lattice.neg_inf)
            recursed = _combine(beta, _shifted(beta, -1, float("-inf")), skipped) + emit
        beta = ops.where(t == last, initial, ops.where(t < last, recursed, lattice.neg_inf))
        betas[t] = beta
    return betas


def ctc_logits_vjp(gradient, logits, target, target_length, output_length, blank: int):
    """``g * d(ctc loss)/d logits``, ``gradient`` of shape ``(batch,)``."""
    log_probs = ops.log_softmax(logits, axis=-1)
    lattice = _Lattice(log_probs, target, target_length, blank)
    alphas = _forward(lattice, output_length)
    betas = _backward(lattice, output_length)
    alpha = ops.stack(alphas, axis=1)  # (batch, time, steps)
    beta = ops.stack(betas, axis=1)
    last_alpha = ops.take_along_axis(
        alpha, ops.reshape(output_length - 1, (-1, 1, 1)) * ops.ones_like(alpha[:, :1], "int32"),
        axis=1)[:, 0]
    log_p = ops.logsumexp(ops.where(lattice.final, last_alpha, lattice.neg_inf), axis=-1)
    occupied = ops.where(ops.expand_dims(lattice.valid, 1), alpha + beta - lattice.emit,
                         lattice.neg_inf)
    weights = ops.exp(occupied - ops.reshape(log_p, (-1, 1, 1)))
    classes = ops.one_hot(lattice.ext, int(logits.shape[-1]), dtype=logits.dtype)
    occupancy = ops.einsum("bts,bsc->btc", weights, classes)
    total = ops.sum(occupancy, axis=-1, keepdims=True)
    return ops.reshape(gradient, (-1, 1, 1)) * (ops.exp(log_probs) * total - occupancy)


@register_backward(knn.CTCLoss)
class BackwardCTCLossOp(BackwardOperation):
    """``ctc_loss(target, output, target_length, output_length)``: the gradient of the
    logits ``output`` by the forward-backward algorithm (see the module); the integer labels
    and lengths get none."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dtype = gradient.dtype
        inputs = self._inputs(input)
        target, _ = optional_operand(self, 0, "target", inputs, "int32")
        logits, io = optional_operand(self, 1, "output", inputs, dtype)
        target_length, _ = optional_operand(self, 2, "target_length", inputs, "int32")
        output_length, _ = optional_operand(self, 3, "output_length", inputs, "int32")
        results = [None] * len(inputs)
        accumulate(results, io, ctc_logits_vjp(
            gradient, logits, target, target_length, output_length, int(self.layer.mask_index)))
        results = [ops.zeros(ops.shape(x), dtype=dtype) if r is None else r
                   for r, x in zip(results, inputs, strict=True)]
        return self._pack(results)
