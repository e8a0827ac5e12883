"""Every use of Keras internals (``keras.src``, private attributes) by jacverify, in one place.

Keras 3 keeps some things jacverify needs out of its public API: the classes of ``keras.ops``
operations, a few layer classes, the functional model's graph, the masks attached to symbolic
tensors, the table behind float64 -> float32 promotion, and private members of some layers
(the projections of ``MultiHeadAttention``...). When Keras changes one of them, this module is
the one place to change: no other module imports ``keras.src`` or reads a private Keras
attribute (``tests/test_layout.py`` enforces the first).

Sections: module names; operation classes; layer classes Keras does not export; models and
their graph; masks; dtypes and backends; private members of layers; utilities.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from keras.src import backend as _backend
from keras.src.activations import activations as keras_activations
from keras.src.applications.convnext import LayerScale, StochasticDepth
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
from keras.src.backend.common import dtypes as _dtypes
from keras.src.backend.config import standardize_data_format
from keras.src.layers.layer import CallSpec as _CallSpec
from keras.src.layers.rnn.conv_lstm import ConvLSTMCell
from keras.src.models.functional import Functional, operation_fn
from keras.src.ops import core as ops_core
from keras.src.ops import einops as ops_einops
from keras.src.ops import image as ops_image
from keras.src.ops import linalg as ops_linalg
from keras.src.ops import math as ops_math
from keras.src.ops import nn as ops_nn
from keras.src.ops import numpy as ops_numpy
from keras.src.utils.python_utils import is_continuous_axis

from jacverify.shared_switch import SharedSwitch

__all__ = [
    "INTERNAL_PREFIX",
    "OPS_FAMILY_MODULES",
    "ConvLSTMCell",
    "CustomScaleLayer",
    "Functional",
    "KerasGlobalState",
    "LayerScale",
    "StochasticDepth",
    "autocast_scope",
    "backend_image_function",
    "backend_nn_function",
    "build_shapes",
    "call_context_arguments",
    "call_spec",
    "compute_output_spec",
    "current_call_context",
    "float64_not_downcast",
    "get_keras_mask",
    "global_dtype_policy",
    "has_torch_module_hooks",
    "in_autocast_scope",
    "inbound_nodes",
    "is_continuous_axis",
    "keras_activations",
    "keras_history",
    "nodes_by_depth",
    "operation_fn",
    "outside_call_context",
    "ops_core",
    "ops_einops",
    "ops_image",
    "ops_linalg",
    "ops_math",
    "ops_nn",
    "ops_numpy",
    "record_node",
    "private_member",
    "replace_backend_image_function",
    "replace_backend_nn_function",
    "remat_mode",
    "public_module",
    "public_name",
    "sequential_functional",
    "set_global_dtype_policy",
    "standardize_data_format",
    "to_torch_dtype",
    "torch_convert_to_tensor",
    "torch_global_module_hooks",
    "torch_homography_matrix",
]

# ------------------------------------------------------------------------------ module names
#: The prefix of Keras' internal module names.
INTERNAL_PREFIX = "keras.src."

#: The ``keras.ops`` families and the internal modules defining their operation classes.
OPS_FAMILY_MODULES = {
    "numpy": "keras.src.ops.numpy",
    "nn": "keras.src.ops.nn",
    "math": "keras.src.ops.math",
    "linalg": "keras.src.ops.linalg",
    "image": "keras.src.ops.image",
    "core": "keras.src.ops.core",
    "einops": "keras.src.ops.einops",
}


def public_module(module: str) -> str:
    """A Keras class's module without the internal prefix (``keras.src.layers...`` ->
    ``layers...``)."""
    return module.removeprefix(INTERNAL_PREFIX)


# ----------------------------------------------------------------- operation classes
# ``ops_numpy``, ``ops_nn``, ``ops_math``, ``ops_linalg``, ``ops_image``, ``ops_core`` and
# ``ops_einops`` hold the classes a functional model records ``keras.ops`` calls as
# (``ops_numpy.Add``, ``ops_numpy.Mean``...); ``keras_activations`` the activation operation
# classes (``keras_activations.ReLU``). Imported above.


# ------------------------------------------------------- layer classes Keras does not export
# ``LayerScale``, ``StochasticDepth`` (ConvNeXt), ``CustomScaleLayer`` (Inception-ResNet v2)
# and ``ConvLSTMCell`` (the cell of ConvLSTM1D/2D/3D). Imported above.


# --------------------------------------------------------------------- models and their graph
def sequential_functional(model: Any) -> Any:
    """The functional model a built ``Sequential`` model runs (``None`` when not built)."""
    return getattr(model, "_functional", None)


def nodes_by_depth(functional: Any) -> dict:
    """A functional model's call nodes by depth (outputs at depth 0)."""
    return functional._nodes_by_depth


def inbound_nodes(operation: Any) -> list:
    """The calls of ``operation`` recorded in functional graphs."""
    return operation._inbound_nodes


def keras_history(tensor: Any) -> Any:
    """The ``(operation, node_index, tensor_index)`` history of a symbolic tensor (``None``
    for a tensor no operation produced)."""
    return getattr(tensor, "_keras_history", None)


def call_spec(layer: Any, args: Sequence, kwargs: dict) -> Any:
    """How ``layer.call`` binds ``args`` and ``kwargs``: Keras' ``CallSpec`` (its
    ``tensor_arguments_dict``, ``argument_names`` and ``first_arg``)."""
    return _CallSpec(layer._call_signature, layer._call_context_args, tuple(args), kwargs)


def compute_output_spec(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """The symbolic outputs of ``fn`` called on symbolic ``args`` (Keras' backend runs it on
    placeholder tensors)."""
    from keras.src.backend import compute_output_spec as compute

    return compute(fn, *args, **kwargs)


def record_node(operation: Any, call_args: Any, call_kwargs: dict, outputs: Any) -> None:
    """Record a call of ``operation`` producing the symbolic ``outputs`` in the functional
    graph (as Keras does inside ``Operation.__call__``)."""
    from keras.src.ops.node import Node

    Node(operation=operation, call_args=call_args, call_kwargs=call_kwargs, outputs=outputs)


def current_call_context() -> Any:
    """The call context of the layer call running now (``None`` outside any): what
    ``Layer.__call__`` resolves ``training`` from (``get_value`` / ``set_value``)."""
    return _global_attribute("current_call_ctx")


def call_context_arguments(layer: Any) -> set:
    """The arguments ``Layer.__call__`` takes from the call context (``{"training"}`` unless
    the layer registered more)."""
    return set(layer._call_context_args)


def remat_mode(operation: Any) -> Any:
    """The operation's rematerialization mode (``None`` when it is not rematerialized)."""
    return getattr(operation, "_remat_mode", None)


@contextlib.contextmanager
def outside_call_context() -> Iterator[None]:
    """Within the block, Keras sees no layer call running (a model built here does not take
    the running call's ``training`` flag)."""
    from keras.src.backend.common import global_state

    context = global_state.get_global_attribute("current_call_ctx")
    global_state.set_global_attribute("current_call_ctx", None)
    try:
        yield
    finally:
        global_state.set_global_attribute("current_call_ctx", context)


@contextlib.contextmanager
def entered_call_context(entry: Any) -> Iterator[Any]:
    """Within the block, the call context of a call of ``entry`` (as ``Layer.__call__``
    enters one when no call is running; the running call's own otherwise). Yields it."""
    from keras.src.backend.common import global_state
    from keras.src.layers.layer import CallContext

    context = global_state.get_global_attribute("current_call_ctx")
    if context is not None:
        yield context
        return
    context = CallContext(entry_layer=entry)
    global_state.set_global_attribute("current_call_ctx", context)
    try:
        yield context
    finally:
        global_state.set_global_attribute("current_call_ctx", None)


def standardized_inputs(functional: Any, inputs: Any) -> list:
    """``inputs`` as the flat list a functional model runs its graph on (converted and cast
    as ``Functional.call`` does)."""
    return functional._standardize_inputs(inputs)


# ------------------------------------------------------------------------------------ masks
def get_keras_mask(tensor: Any) -> Any:
    """The Keras mask attached to a tensor (``None`` when it carries none)."""
    return _backend.get_keras_mask(tensor)


# ------------------------------------------------------------------------ dtypes and backends
#: Keras' 64-bit -> 32-bit promotion entries that :func:`float64_not_downcast` keeps 64-bit.
_KEPT_64_BIT = {"float64": "float64", "complex128": "complex128"}


def _promotion_table() -> dict | None:
    table = getattr(_dtypes, "BIT64_TO_BIT32_DTYPE", None)
    return table if isinstance(table, dict) and "float64" in table else None


def _keep_64_bit() -> dict:
    table = _promotion_table()
    saved = {k: table[k] for k in _KEPT_64_BIT if k in table}
    table.update({k: v for k, v in _KEPT_64_BIT.items() if k in saved})
    return saved


_float64_kept = SharedSwitch(_keep_64_bit, lambda saved: _promotion_table().update(saved))


@contextlib.contextmanager
def float64_not_downcast() -> Iterator[bool]:
    """While the block runs, Keras' type promotion keeps float64 (and complex128) results in
    64 bits (on torch and JAX it maps them to 32 bits). Yields whether the table could be
    patched. Nested and concurrent blocks share one patch: the table is restored when the last
    block ends, whatever order threads leave in."""
    if _promotion_table() is None:
        yield False
        return
    with _float64_kept():
        yield True



def backend_nn_function(name: str) -> Any:
    """The active backend's function behind ``keras.ops.<name>`` (``keras.ops.nn``)."""
    return getattr(_backend.nn, name)


def replace_backend_nn_function(name: str, function: Any) -> Any:
    """Make the active backend's ``nn`` module compute ``keras.ops.<name>`` with ``function``
    (``keras.ops`` looks the backend function up at each call); returns the function it
    replaced, for putting it back."""
    previous = getattr(_backend.nn, name)
    setattr(_backend.nn, name, function)
    return previous


def backend_image_function(name: str) -> Any:
    """The active backend's function behind ``keras.ops.image.<name>``."""
    return getattr(_backend.image, name)


def replace_backend_image_function(name: str, function: Any) -> Any:
    """Make the active backend's ``image`` module compute ``keras.ops.image.<name>`` with
    ``function`` (``keras.ops.image`` looks the backend function up at each call); returns the
    function it replaced, for putting it back."""
    previous = getattr(_backend.image, name)
    setattr(_backend.image, name, function)
    return previous


def autocast_scope() -> Any:
    """Keras' active autocast scope (``None`` when none is)."""
    return _backend.get_autocast_scope()


def has_torch_module_hooks(layer: Any) -> bool:
    """Whether hooks are registered on a layer as a torch module (its ``__call__`` runs
    them)."""
    attributes = layer.__dict__
    return bool(attributes.get("_forward_hooks") or attributes.get("_forward_pre_hooks")
                or attributes.get("_backward_hooks") or attributes.get("_backward_pre_hooks"))


def torch_global_module_hooks() -> bool:
    """Whether hooks are registered for every torch module
    (``torch.nn.modules.module.register_module_forward_hook`` and its kin)."""
    import torch.nn.modules.module as torch_module

    return any(getattr(torch_module, name, None) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks"))


def in_autocast_scope() -> bool:
    """Whether a Keras autocast scope is active (layers called in it cast their variables)."""
    return autocast_scope() is not None


def to_torch_dtype(dtype: Any) -> Any:
    """The torch dtype of a Keras dtype name (torch backend only)."""
    from keras.src.backend.torch.core import to_torch_dtype as convert

    return convert(dtype)


def torch_convert_to_tensor(value: Any, dtype: Any = None) -> Any:
    """``value`` as a torch tensor of Keras dtype ``dtype``, as Keras' torch backend converts
    it (torch backend only)."""
    from keras.src.backend.torch.core import convert_to_tensor

    return convert_to_tensor(value, dtype=None if dtype is None else _dtypes.standardize_dtype(
        dtype))


def torch_homography_matrix(start_points: Any, end_points: Any) -> Any:
    """The ``(n, 8)`` homographies mapping ``end_points`` to ``start_points`` ``(n, 4, 2)``,
    as Keras' torch ``perspective_transform`` computes them (torch backend only)."""
    from keras.src.backend.torch.image import compute_homography_matrix

    return compute_homography_matrix(start_points, end_points)


# ``standardize_data_format(None)`` is Keras' default image data format, otherwise the
# argument checked. Imported above.


# ------------------------------------------------------------------------- process-wide state
def _global_attribute(name: str) -> Any:
    from keras.src.backend.common import global_state

    return global_state.get_global_attribute(name)


def global_dtype_policy() -> Any:
    """Keras' global dtype policy as it is set, ``None`` while none is (Keras then follows its
    default float type, and sets the policy the first time ``keras.config.dtype_policy()`` is
    read)."""
    return _global_attribute("dtype_policy")


def set_global_dtype_policy(policy: Any) -> None:
    """Put back a global dtype policy read by :func:`global_dtype_policy` (``None``
    included)."""
    from keras.src.backend.common import global_state

    global_state.set_global_attribute("dtype_policy", policy)


@dataclass
class KerasGlobalState:
    """What Keras keeps process-wide that a check can change: the counters behind automatic
    layer names (``dense_3``) and the global random seed generator (unseeded random ops and
    initializers draw from it)."""

    name_uids: dict | None
    seed_generator: Any
    seed_state: Any

    @classmethod
    def capture(cls) -> KerasGlobalState:
        """The state now."""
        import keras

        uids = _global_attribute("object_name_uids")
        generator = _global_attribute("global_seed_generator")
        state = None if generator is None else keras.ops.convert_to_numpy(generator.state)
        return cls(None if uids is None else dict(uids), generator, state)

    @staticmethod
    def _counters(values: dict) -> dict:
        import collections

        return collections.defaultdict(int, values)

    def restore(self) -> None:
        """Put the captured state back."""
        from keras.src.backend.common import global_state

        uids = _global_attribute("object_name_uids")
        if self.name_uids is None or uids is None:
            counters = None if self.name_uids is None else self._counters(self.name_uids)
            global_state.set_global_attribute("object_name_uids", counters)
        else:
            uids.clear()
            uids.update(self.name_uids)
        global_state.set_global_attribute("global_seed_generator", self.seed_generator)
        if self.seed_generator is not None:
            self.seed_generator.state.assign(self.seed_state)


# -------------------------------------------------------------------- private members of layers
#: The private members of Keras layers that rules read, by the name jacverify gives them.
PRIVATE_MEMBERS = {
    # MultiHeadAttention and GroupQueryAttention
    "query_dense": "_query_dense",
    "key_dense": "_key_dense",
    "value_dense": "_value_dense",
    "output_dense": "_output_dense",
    "gate_dense": "_gate_dense",
    "use_gate": "_use_gate",
    "dot_product_equation": "_dot_product_equation",
    "combine_equation": "_combine_equation",
    "inverse_sqrt_key_dim": "_inverse_sqrt_key_dim",
    "inverse_sqrt_head_dim": "_inverse_sqrt_head_dim",
    "softmax": "_softmax",
    "num_heads": "_num_heads",
    "value_dim": "_value_dim",
    "compute_attention_mask": "_compute_attention_mask",
    "compute_attention": "_compute_attention",
    "sliding_window": "_sliding_window",
    "masked_softmax": "_masked_softmax",
    # Attention and AdditiveAttention
    "apply_scores": "_apply_scores",
    "calculate_score_mask": "_calculate_score_mask",
    # Conv1D with padding="causal"
    "compute_causal_padding": "_compute_causal_padding",
    # TimeDistributed's inner layer
    "call_has_mask_arg": "_call_has_mask_arg",
    # every layer: its sublayers, recursively
    "flatten_layers": "_flatten_layers",
    # the Normalization preprocessing layer
    "keep_axis": "_keep_axis",
    # keras.losses.LossFunctionWrapper
    "fn_kwargs": "_fn_kwargs",
}

_NO_DEFAULT = object()


def private_member(obj: Any, name: str, default: Any = _NO_DEFAULT) -> Any:
    """The private Keras member that :data:`PRIVATE_MEMBERS` calls ``name`` (``default`` when
    ``obj`` lacks it and a default is given)."""
    attribute = PRIVATE_MEMBERS[name]
    if default is _NO_DEFAULT:
        return getattr(obj, attribute)
    return getattr(obj, attribute, default)


def build_shapes(layer: Any) -> dict:
    """The input shapes ``layer`` was built with, by ``build()`` argument name (``{}`` when
    Keras did not record them)."""
    return dict(getattr(layer, "_build_shapes_dict", None) or {})


def give_automatic_config(operation: Any, arguments: dict) -> None:
    """Give a ``keras.ops`` operation created with an argument Keras cannot serialize (a numpy
    array of ``trapezoid``'s sample points), whose ``get_config()`` then raises, the
    configuration Keras would have recorded for ``arguments`` (its constructor's arguments
    as plain Python values): the operation, and models holding it, save and load again."""
    from keras.src.saving import serialization_lib

    locked = getattr(operation, "_lock", False)
    operation._lock = False
    try:
        operation._auto_config = serialization_lib.SerializableDict(**arguments)
    finally:
        operation._lock = locked


# ---------------------------------------------------------------------------------- utilities
def public_name(symbol: Any) -> str | None:
    """The public ``keras.*`` name Keras exports ``symbol`` under (``None`` when it has none
    or Keras cannot tell)."""
    try:
        from keras.src.api_export import get_name_from_symbol
    except ImportError:
        return None
    return get_name_from_symbol(symbol)


# ``is_continuous_axis(axes)``: whether sorted axes are consecutive. Imported above.
