"""Check results for the report tests: the tutorial's Clip model checked layer by layer with
check_layer (the wrong BackwardClip fails), with plot evidence, and a layer check whose names
are HTML."""

from __future__ import annotations

import dataclasses

import numpy as np

from jacverify import LayerCheck, ModelCheck, check_layer, get_backward_rule
from jacverify.check.evidence import collect_evidence
from jacverify.check.references import make_fd_model
from jacverify.examples.tutorial import BackwardClip, Clip, clip_model

HOSTILE = "<script>alert(1)</script>"


def checked(layer, rule_class, input_shape, *, seed=0, examples=12, evidence=True):
    """check_layer, plus evidence at the counterexample (or a random input) like a model
    check collects it."""
    check = check_layer(layer, rule_class, input_shape=input_shape, seed=seed,
                        examples=examples)
    if not evidence or check.verdict == "skipped":
        return check
    rule_class = rule_class or get_backward_rule(layer)
    rng = np.random.default_rng(seed)
    output_shape = tuple(layer(np.zeros((1, *input_shape), dtype="float32")).shape[1:])
    rule = rule_class(layer=layer, input_dim_wo_batch=list(input_shape),
                      output_dim_wo_batch=list(output_shape))
    fd = make_fd_model(layer, input_shape, rng)
    ce = check.counterexample
    if ce is not None:
        x, g = ce.input, ce.upstream_gradient
        direction = None if ce.direction is None else ce.direction.reshape(-1)
    else:
        x = rng.standard_normal((1, *input_shape)).astype("float32")
        g = rng.standard_normal((1, *output_shape)).astype("float32")
        direction = None
    check.evidence = collect_evidence(layer, rule, fd, x, g, direction)
    return check


def clip_model_check(seed: int = 0) -> ModelCheck:
    """The tutorial's Clip model with its wrong rule, checked layer by layer."""
    model = clip_model()
    # Fixed names, whatever Keras' name counter says in this process.
    for layer, name in zip(model.layers, ("dense", "clip", "activation", "dense_1")):
        layer.name = name
    shapes = [(10,), (2,), (2,), (2,)]
    layers = []
    for layer, shape in zip(model.layers, shapes):
        rule = BackwardClip if isinstance(layer, Clip) else None
        layers.append(checked(layer, rule, shape, seed=seed))
    # Stands in for the end-to-end check: the model fails where its Clip does.
    end_to_end = dataclasses.replace(layers[1], layer_name=model.name, layer_class="Sequential",
                                     rule_class="BackwardModel")
    return ModelCheck(model_name=model.name, layers=layers, end_to_end=end_to_end, seed=seed,
                      duration_s=sum(c.duration_s for c in layers),
                      notes=["assembled layer by layer for the report tests"])


def hostile_check() -> LayerCheck:
    """A failing layer check whose strings are HTML."""
    check = checked(Clip(0.0, 2.0), BackwardClip, (2,), seed=1)
    check.layer_name = HOSTILE
    check.layer_class = "<img src=x onerror=alert(2)>"
    check.rule_class = "Rule&<b>bold</b>"
    check.reason = HOSTILE + " reason"
    if check.counterexample is not None:
        check.counterexample.message = HOSTILE + " message"
        check.counterexample.kink = HOSTILE
    return check
