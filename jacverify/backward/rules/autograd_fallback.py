"""The autograd fallback: a rule that differentiates the forward call with torch autograd.

``clone_to_backward(model, fallback="autograd")`` gives this rule to every layer or operation
that has no registered rule, instead of raising ``MissingBackwardRuleError``. It is a stopgap
for building a backward model of a model whose rules are not all written yet, not a backward
rule in jacverify's sense.
"""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer, _is_multi
from jacverify.backward.rules._call_arguments import CallArgumentsMixin, fill_in


class AutogradFallback(CallArgumentsMixin, BackwardNonLinearLayer):
    """``g^T J(x)`` by torch autograd of the forward call (``torch.autograd.grad``).

    When the backward model runs, the rule calls the forward layer or operation again on its
    input (with the call's recorded arguments and masks, at inference: ``training=False``),
    then asks torch autograd for the vector-Jacobian product.

    What this means:

    * **torch only.** The backward model runs on the torch backend only (building or loading it
      on another backend raises); a saved backward model needs the forward layer's class to
      load (``register_keras_serializable`` or ``custom_objects``) like any model.
    * **Not an analytic rule.** It is autograd's answer, with torch's conventions at kinks
      (which are not always valid subgradients, e.g. ``relu`` with ``max_value`` and
      ``negative_slope`` at 0), so checking it against autograd proves nothing about it.
    * **Costs a forward call.** The forward call is recomputed with an autograd graph each time,
      as autograd would, inside a model that otherwise needs no graph.
    * **Inference only.** Dropout, noise and batch statistics take their inference behaviour.
    * The result is differentiable again (``create_graph``) only when the backward model is run
      with gradients enabled.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if keras.backend.backend() != "torch":
            raise RuntimeError(
                "jacverify: the autograd fallback needs the torch backend (current backend: "
                f"'{keras.backend.backend()}'); write a rule for '{layer.name}' "
                f"({type(layer).__name__}) instead."
            )

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        import torch

        several = _is_multi(self.input_dim_wo_batch)
        inputs = list(input) if several else [input]
        gradients = [ops.convert_to_tensor(g) for g in (
            gradient if self.has_several_outputs else [gradient])]
        batch = int(gradients[0].shape[0])
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            xs, leaves = _leaves(inputs, create_graph)
            masks = _match_batch(mask, batch)
            args = fill_in(self.call_args, xs, masks)
            kwargs = fill_in(self.call_kwargs, xs, masks)
            if _takes_training(self.layer):
                kwargs["training"] = False
            outputs = [t for t in keras.tree.flatten(self.layer(*args, **kwargs))
                       if t is not None]
            if len(outputs) != len(gradients):
                raise ValueError(
                    f"AutogradFallback: '{self.layer.name}' returned {len(outputs)} tensors, "
                    f"its rule was made for {len(gradients)} (output_dim_wo_batch="
                    f"{self.output_dim_wo_batch})."
                )
            # Integer outputs (top_k's indices) and outputs that do not depend on the input
            # carry no gradient.
            pairs = [(y, g.to(y.dtype)) for y, g in zip(outputs, gradients, strict=True)
                     if (y.is_floating_point() or y.is_complex()) and y.requires_grad]
            grads = torch.autograd.grad(
                [y for y, _ in pairs],
                leaves,
                [g for _, g in pairs],
                allow_unused=True,
                create_graph=create_graph,
            ) if leaves and pairs else [None] * len(leaves)
        by_id = {id(leaf): g for leaf, g in zip(leaves, grads, strict=True)}
        results = []
        for x in xs:
            g = by_id.get(id(x))
            results.append(torch.zeros_like(x, dtype=gradients[0].dtype) if g is None else g)
        return results if several else results[0]


def _leaves(inputs, create_graph: bool) -> tuple[list, list]:
    """The inputs as tensors, and those autograd differentiates (floating or complex), made
    leaves unless the result must stay differentiable through them."""
    xs, leaves = [], []
    for tensor in inputs:
        tensor = ops.convert_to_tensor(tensor)
        if tensor.is_floating_point() or tensor.is_complex():
            if not (create_graph and tensor.requires_grad):
                tensor = tensor.detach().requires_grad_(True)
            leaves.append(tensor)
        xs.append(tensor)
    return xs, leaves


def _takes_training(operation) -> bool:
    if not isinstance(operation, keras.layers.Layer):
        return False
    return "training" in getattr(operation, "call_signature_parameters", [])


def _match_batch(mask, batch: int):
    """Repeat masks whose batch is a divisor of ``batch`` (extra Jacobian axes were folded into
    the batch of the gradient and the inputs)."""
    if mask is None:
        return None

    def repeat(m):
        if m is None or not hasattr(m, "shape") or len(m.shape) == 0:
            return m
        n = int(m.shape[0])
        if n in (0, 1, batch) or batch % n:
            return m
        return ops.repeat(m, batch // n, axis=0)

    return keras.tree.map_structure(repeat, mask)
