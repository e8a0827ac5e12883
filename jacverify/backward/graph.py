"""Flatten a Keras model into the list of operation calls the backward pass walks through.

Nested models (Sequential or functional models used as layers) are inlined: their inner layers
become steps of their own, called on the outer tensors. Top-level calls are reused as they are
(the backward model shares the forward graph's tensors); a call is replayed on new tensors only
when one of its inputs was produced by an inlined nested model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
from keras.src.models.functional import Functional
from keras.src.models.sequential import Sequential


@dataclass
class Step:
    """One call of an operation: its flattened input and output tensors."""

    operation: keras.Operation
    inputs: list
    outputs: list
    path: tuple = field(default_factory=tuple)  # names of the enclosing nested models

    @property
    def input_structure(self):
        """The input as a rule receives it: one tensor, or a list for several inputs."""
        return self.inputs[0] if len(self.inputs) == 1 else list(self.inputs)

    @property
    def qualified_name(self) -> str:
        return "/".join([*self.path, self.operation.name])


@dataclass
class Graph:
    inputs: list
    outputs: list
    steps: list


def _functional_of(model):
    if isinstance(model, Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError(
                f"Sequential model '{model.name}' is not built: give it an Input or call it "
                "on data once before building its backward model."
            )
        return functional
    if isinstance(model, Functional):
        return model
    raise TypeError(
        f"clone_to_backward() needs a Sequential or functional Keras model; got "
        f"{type(model).__name__} '{getattr(model, 'name', model)}'. Subclassed models have "
        "no graph to walk: wrap their layers in a functional model."
    )


def _is_model(operation) -> bool:
    return isinstance(operation, (Functional, Sequential))


def _nodes_in_order(functional):
    by_depth = functional._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        yield from by_depth[depth]


def trace(model) -> Graph:
    """The model's inputs, outputs and every operation call in topological order."""
    functional = _functional_of(model)
    tensor_map = {id(t): t for t in functional.inputs}
    steps: list[Step] = []
    _walk(functional, tensor_map, steps, path=())
    outputs = [tensor_map[id(t)] for t in functional.outputs]
    return Graph(inputs=list(functional.inputs), outputs=outputs, steps=steps)


def _walk(functional, tensor_map, steps, path):
    for node in _nodes_in_order(functional):
        if node.is_input or node.operation is None:
            continue
        operation = node.operation
        originals = list(node.arguments.keras_tensors)
        mapped = [tensor_map[id(t)] for t in originals]
        if _is_model(operation):
            inner = _functional_of(operation)
            inner_map = {id(i): m for i, m in zip(inner.inputs, mapped)}
            _walk(inner, inner_map, steps, path=(*path, operation.name))
            for outer, inner_out in zip(node.outputs, inner.outputs):
                tensor_map[id(outer)] = inner_map[id(inner_out)]
            continue
        if all(m is o for m, o in zip(mapped, originals)):
            outputs = list(node.outputs)
        else:
            args, kwargs = node.arguments.fill_in(tensor_map)
            outputs = keras.tree.flatten(operation(*args, **kwargs))
        for original, new in zip(node.outputs, outputs):
            tensor_map[id(original)] = new
        steps.append(Step(operation, mapped, outputs, path))
