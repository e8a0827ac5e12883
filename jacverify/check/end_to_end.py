"""The end-to-end check of a model: the whole backward model against the whole model.

:class:`EndToEndTask` is that check as a task that can travel to a worker process (see
:mod:`jacverify.check.parallel`), so that in a model check it runs beside the in-place checks
of the calls instead of after them: it is the longest single check of a model (every example
evaluates the whole model). It carries the model (pickled by Keras as its configuration and
weights), the rule mapping and the model inputs; where it runs without the backward model
built by the caller, it builds it again from the model, as ``check_model`` built it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from jacverify.backward.clone import clone_to_backward
from jacverify.backward.factory import is_float_dtype
from jacverify.backward.graph import INPUT_KEY, trace
from jacverify.check.adapters import PackedCall
from jacverify.check.layer_check import check_layer
from jacverify.check.parallel import operation_from_state, operation_state
from jacverify.check.results import LayerCheck

__all__ = ["END_TO_END_EXAMPLES", "BackwardModelRule", "EndToEndTask", "build_backward",
           "check_end_to_end"]

#: The end-to-end check judges at most this many examples (each evaluates the whole model).
END_TO_END_EXAMPLES = 20


class BackwardModelRule:
    """The whole backward model, called with the rule convention ``rule([g, x])``."""

    is_linear = False
    label = "BackwardModel"  # the rule's name in results
    #: The backward model was built for gradients shaped like the output, without extra axes.
    supports_extra_axes = False

    def __init__(self, backward: keras.Model, n_inputs: int, output_shape: Sequence[int]):
        self.backward = backward
        self.n_inputs = n_inputs
        self.output_dim_wo_batch = list(output_shape)

    def __call__(self, inputs):
        gradient, x = inputs
        xs = list(x) if self.n_inputs > 1 else [x]
        return self.backward([*xs, gradient], training=False)


def build_backward(model: keras.Model, mapping: dict | None, fallback: str | None
                   ) -> keras.Model:
    """The backward model a model check checks (the autograd fallback's calls are listed as
    not checked, so its warnings are silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return clone_to_backward(model, mapping, fallback=fallback)


def _model_row(model: keras.Model, verdict: str, reason: str) -> LayerCheck:
    return LayerCheck(verdict=verdict, reason=reason, layer_name=model.name,
                      layer_class=type(model).__name__, rule_class="BackwardModel")


def check_end_to_end(
    model: keras.Model, backward: keras.Model, graph: Any, model_inputs: list[np.ndarray], *,
    examples: int, seed: int, convention: str,
) -> LayerCheck:
    """Check ``backward`` (the backward model of ``model``, traced as ``graph``) as the rule
    of the whole model, around ``model_inputs``; ``skipped`` for a model with several outputs
    or integer inputs."""
    if len(graph.outputs) != 1:
        return _model_row(model, "skipped", f"the model has {len(graph.outputs)} outputs; the "
                          "end-to-end check takes models with one output")
    if not all(is_float_dtype(t.dtype) for t in graph.inputs):
        return _model_row(model, "skipped",
                          "the model takes integer inputs: it is not differentiable in them")
    shapes = [tuple(int(d) for d in a.shape[1:]) for a in model_inputs]
    n = len(shapes)
    args = ([{INPUT_KEY: i} for i in range(n)],) if n > 1 else ({INPUT_KEY: 0},)
    adapter = PackedCall(model, shapes, args, label=model.name)
    adapter.checked_class = type(model).__name__
    output_shape = [int(d) for d in graph.outputs[0].shape[1:]]
    rule = BackwardModelRule(backward, n, output_shape)
    return check_layer(
        adapter, rule, input_shape=shapes if n > 1 else shapes[0],
        inputs=model_inputs if n > 1 else model_inputs[0],
        examples=min(examples, END_TO_END_EXAMPLES), seed=seed, convention=convention,
    )


@dataclass
class EndToEndTask:
    """The end-to-end check of a model as a task (see the module doc)."""

    label: str  # what progress shows
    model: keras.Model
    mapping: dict | None
    fallback: str | None
    model_inputs: list  # arrays, one per model input
    examples: int
    seed: int
    convention: str
    #: The backward model and the traced graph, built by the caller; they never travel (a
    #: worker builds its own from the model).
    backward: keras.Model | None = field(default=None, repr=False)
    graph: Any = field(default=None, repr=False)
    #: Expected seconds (every example runs the whole model: about what its calls' checks
    #: cost together), by which tasks are ordered longest first.
    estimate: float = 0.0

    def estimated_seconds(self) -> float:
        """What the check is expected to take (see :attr:`estimate`)."""
        return self.estimate

    def run(self) -> LayerCheck:
        """The end-to-end check; ``inconclusive`` when it cannot run."""
        try:
            backward = self.backward
            if backward is None:
                backward = build_backward(self.model, self.mapping, self.fallback)
            graph = self.graph if self.graph is not None else trace(self.model, self.mapping)
            return check_end_to_end(self.model, backward, graph, self.model_inputs,
                                    examples=self.examples, seed=self.seed,
                                    convention=self.convention)
        except Exception as error:  # noqa: BLE001 - the per-layer checks stand on their own
            return self.failed(error)

    def failed(self, error: BaseException) -> LayerCheck:
        """``inconclusive``: the check could not run, and why."""
        return _model_row(self.model, "inconclusive", "The end-to-end check could not run: "
                          f"{type(error).__name__}: {error}")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "model": operation_state(self.model), "backward": None,
                "graph": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**state, "model": operation_from_state(state["model"])})
