"""The pre-activation of a layer with a built-in activation, shared by its forward call and its
rule in a backward model.

The rule of ``Dense(activation=f)`` or ``Conv2D(activation=f)`` needs ``f'(z)`` at the
pre-activation ``z = x W + b``, which the layer's forward call computes and does not return.
Recomputing it costs the layer's matrix product or convolution again (autograd keeps ``z``).
In a backward model run by :class:`~jacverify.backward.runner.GraphRunner`, a rule with
:class:`PreActivationProvider` makes the layer's forward call itself (``provide_forward``): it
computes ``z``, keeps it, and returns ``f(z)``; its own call on the same input tensor then
takes ``z`` instead of computing it again. The rule is called the same way and gives the same
values whether or not ``z`` was kept (the same operations on the same tensors).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import keras


def identical(expected: Any, got: Any) -> bool:
    """Whether two torch tensors are equal bit for bit (NaN where the other has NaN)."""
    import torch

    if not (isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)):
        return False
    if expected.dtype != got.dtype or expected.shape != got.shape:
        return False
    return torch.equal(expected.isnan(), got.isnan()) and torch.equal(
        expected.nan_to_num(), got.nan_to_num())


def forward_state(rule: Any) -> dict:
    """A rule's values of one run of the backward model, kept between the forward call it
    provides and its own call: ``"reproduces"`` (per input shape and dtype, whether its
    forward equals the layer's own call) and ``"kept"`` (per thread, what its call reuses).
    Not tracked by Keras: no configuration."""
    state = rule.__dict__.get("_forward_state")
    if state is None:
        state = {"reproduces": {}, "kept": {}}
        object.__setattr__(rule, "_forward_state", state)
    return state


class PreActivationProvider:
    """Mixin for the rule of a layer with a built-in activation (see the module docstring).

    The rule class provides ``_pre_activation(input, dtype)`` (``z`` as the layer's ``call``
    computes it, in ``dtype``) and ``_vjp`` (the activation's vector-Jacobian product, ``None``
    for no activation), and calls :meth:`pre_activation` where it needs ``z``.

    The first forward call at each input shape and dtype also makes the layer's own call and
    compares the outputs bit for bit; where they differ, the layer's own call is used at that
    shape and nothing is kept.
    """

    def provide_forward(self, inputs: list, mask: Any, call_layer: Callable) -> Any:
        """The layer's output on ``inputs`` (one tensor), computed from the pre-activation
        that the next call of this rule on the same tensor (in this thread) reuses."""
        if self._vjp is None or len(inputs) != 1 or any(
                m is not None for m in keras.tree.flatten(mask)):
            return call_layer()
        (x,) = inputs
        state = forward_state(self)
        key = (tuple(x.shape), str(x.dtype))
        verdict = state["reproduces"].get(key)
        if verdict is False:
            return call_layer()
        z = self._pre_activation(x, self.layer.compute_dtype)
        output = self.layer.activation(z)
        if verdict is None:
            expected = call_layer()
            state["reproduces"][key] = identical(expected, output)
            if not state["reproduces"][key]:
                return expected
        state["kept"][threading.get_ident()] = (x, z)
        return output

    def pre_activation(self, input: Any, dtype: Any) -> Any:
        """``z`` on ``input`` in ``dtype``: the one kept by :meth:`provide_forward` for this
        very tensor, or computed."""
        kept = forward_state(self)["kept"].pop(threading.get_ident(), None)
        if kept is not None and kept[0] is input and kept[1].dtype == dtype:
            return kept[1]
        return self._pre_activation(input, dtype)

