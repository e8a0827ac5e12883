"""The references a rule is compared with.

* :func:`autograd_vjp`: torch autograd's vector-Jacobian product of the layer's own forward
  call (the backend's convention at kinks);
* :func:`make_fd_model` + :func:`directional_derivatives`: finite differences of
  ``phi(t) = <g, f(x + t d)>`` on a float64 clone of the layer, computed with
  ``scipy.differentiate.derivative`` (Richardson extrapolation with an error estimate) from the
  left, the right and both sides at once, plus a ladder of tiny one-sided steps that recognises
  jumps (difference quotients growing like 1/h).

Comparing ``<rule(g), d>`` with ``phi'(0)`` costs a few batched forward calls per direction,
whatever the layer's size; with the basis vectors as directions it is the full vector-Jacobian
product.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import torch
from scipy.differentiate import derivative

from jacverify import keras_internals
from jacverify.check.exact_rows import first_occurrences


@contextlib.contextmanager
def true_float64() -> Iterator[bool]:
    """Make Keras compute 64-bit floats in 64 bits while the block runs.

    Keras 3 on the torch and JAX backends promotes ``float64`` op results to ``float32``
    (``keras.backend.result_type("float64", "float64") == "float32"``, to match JAX's default),
    so a float64 clone of a Dense layer multiplies in float32. The table behind that rule is
    patched for the duration of the block and restored after. Yields whether float64 ops now
    stay float64.
    """
    with keras_internals.float64_not_downcast():
        yield keras.backend.result_type("float64", "float64") == "float64"


def keras_downcasts_float64() -> bool:
    """True when Keras computes float64 ops in float32 (torch and JAX backends)."""
    return keras.backend.result_type("float64", "float64") != "float64"


def effective_eps(dtype: str) -> float:
    """Machine epsilon of what a layer of ``dtype`` really computes in (float64 layers get
    float32's when Keras downcasts 64-bit ops)."""
    try:
        eps = float(np.finfo(np.dtype(dtype)).eps)
    except (TypeError, ValueError):
        return float(np.finfo(np.float32).eps)
    if eps < 1e-10 and keras_downcasts_float64():
        return float(np.finfo(np.float32).eps)
    return eps


class ReferenceUnavailable(Exception):
    """A reference could not be computed (the message says why)."""


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(keras.ops.convert_to_numpy(value))


# ----------------------------------------------------------------------------- autograd
def autograd_vjp(layer: keras.layers.Layer, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``g^T J(x)`` of ``layer`` by torch autograd, in the layer's dtype (shape of ``x``).

    Returns zeros when the output has no autograd path to the input (it does not depend on it).
    Raises :class:`ReferenceUnavailable` when the forward or backward call fails. A layer with
    an ``autograd_forward`` (see :mod:`jacverify.check.autograd_forward`) is differentiated
    through its ``call_for_autograd``.
    """
    x_t = torch.tensor(np.asarray(x), requires_grad=True)
    forward = layer.call_for_autograd if getattr(layer, "autograd_forward", None) else layer
    try:
        y = forward(x_t)
    except ReferenceUnavailable:
        raise
    except Exception as error:
        raise ReferenceUnavailable(f"the layer's forward call raised {error!r}") from None
    if isinstance(y, (list, tuple)):
        raise ReferenceUnavailable("the layer returns several tensors")
    if not isinstance(y, torch.Tensor) or not y.requires_grad:
        return np.zeros_like(np.asarray(x))
    try:
        (grad,) = torch.autograd.grad(
            y, x_t, torch.as_tensor(np.asarray(g), dtype=y.dtype), allow_unused=True
        )
    except Exception as error:
        raise ReferenceUnavailable(f"torch autograd raised {error!r}") from None
    if grad is None:
        return np.zeros_like(np.asarray(x))
    return grad.detach().cpu().numpy()


# ----------------------------------------------------------------------- probe calls
def call_on_probe(function: Callable[[Any], Any], shapes: Sequence, dtype: str) -> Any:
    """``function`` called on one example of inputs of ``shapes`` (without the batch axis; a
    list of inputs when there are several) to learn what it returns: zeros, or, where the
    call refuses zeros (``lu_factor`` of a singular matrix raises), seeded standard normal
    values. Raises what the second call raises."""
    def inputs(make):
        parts = [make((1, *s)).astype(dtype) for s in shapes]
        return parts if len(parts) > 1 else parts[0]

    try:
        return function(inputs(np.zeros))
    except Exception:  # noqa: BLE001 - any refusal of zeros: try values in general position
        rng = np.random.default_rng(0)
        return function(inputs(rng.standard_normal))


# ----------------------------------------------------------------------- float64 clone
#: Dtype names (and dtype policy names) of floating layers, which a clone's inner layers move
#: to the clone's dtype.
FLOATING_DTYPES = frozenset(
    {"float16", "bfloat16", "float32", "float64", "mixed_float16", "mixed_bfloat16"}
)


def _floating(dtype: Any) -> bool:
    """Whether a config's ``dtype`` entry (a name, or a serialized dtype policy) is
    floating."""
    if isinstance(dtype, dict) and "DTypePolicy" in str(dtype.get("class_name", "")):
        dtype = (dtype.get("config") or {}).get("name")
    return isinstance(dtype, str) and dtype in FLOATING_DTYPES


def _floating_dtypes_replaced(config: Any, dtype: str) -> Any:
    if isinstance(config, dict):
        return {
            key: dtype if key == "dtype" and _floating(value)
            else _floating_dtypes_replaced(value, dtype)
            for key, value in config.items()
        }
    if isinstance(config, (list, tuple)):
        return type(config)(_floating_dtypes_replaced(v, dtype) for v in config)
    return config


def config_in_dtype(config: dict, dtype: str) -> dict:
    """A layer's ``config`` for a copy computing in ``dtype``: its own ``dtype`` and the
    floating dtypes of the layers it holds (an RNN's cells, a wrapper's layer, an activation
    given as a layer) replaced. Replacing only the outer one would leave the inner layers
    computing in their own dtype (a float64 RNN over float32 cells rounds to float32)."""
    return {**_floating_dtypes_replaced(config, dtype), "dtype": dtype}


def clone_layer(
    layer: keras.layers.Layer, dtype: str, input_shape: Sequence,
    build: Callable[[Any], Any] | None = None,
):
    """A copy of ``layer`` computing in ``dtype``: ``from_config`` with the dtypes replaced
    (:func:`config_in_dtype`), built on ``input_shape`` (without batch axis; a list of shapes
    for a layer with several inputs) or by ``build(clone)`` (a call that builds it, for a layer
    called with more than floating inputs), weights copied. Layers that know how to copy
    themselves (a ``clone_to_dtype`` method) do so. Raises on any failure."""
    if hasattr(layer, "clone_to_dtype"):
        return layer.clone_to_dtype(dtype)
    clone = type(layer).from_config(config_in_dtype(layer.get_config(), dtype))
    if build is not None:
        build(clone)
    else:
        several = bool(input_shape) and isinstance(input_shape[0], (list, tuple))
        call_on_probe(clone, list(input_shape) if several else [input_shape], dtype)
    source, target = layer.get_weights(), clone.weights
    if len(source) != len(target):
        raise ValueError(
            f"the clone has {len(target)} weights, the layer {len(source)}"
        )
    for w_source, w_target in zip(source, target, strict=True):
        if tuple(np.shape(w_source)) != tuple(w_target.shape):
            raise ValueError(
                f"weight {w_target.path}: shape {tuple(w_target.shape)} in the clone, "
                f"{tuple(np.shape(w_source))} in the layer"
            )
        w_target.assign(np.asarray(w_source).astype(w_target.dtype))
    return clone


@dataclass
class FDModel:
    """The function finite differences are taken of: flat float64 rows in, flat rows out."""

    forward: Callable[[np.ndarray], np.ndarray]
    dtype: str  # the dtype it computes in
    clone_ok: bool
    note: str  # why the clone was not used, or "" when it was
    input_shape: tuple
    eps: float  # machine epsilon of ``dtype``
    #: ``vjp(rows, gs)``: g^T J at each flat float64 row, by autograd of the same function
    #: (None when unavailable); used to measure how much a derivative moves under rounding.
    vjp: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None


def _vjp_of(layer, input_shape, float64: bool):
    forward = layer.call_for_autograd if getattr(layer, "autograd_forward", None) else layer

    def vjp(rows: np.ndarray, gs: np.ndarray) -> np.ndarray:
        dtype = torch.float64 if float64 else None
        x_t = torch.tensor(np.array(rows).reshape(-1, *input_shape), dtype=dtype)
        x_t.requires_grad_(True)
        context = true_float64() if float64 else contextlib.nullcontext()
        with context:
            y = forward(x_t)
            if not isinstance(y, torch.Tensor) or not y.requires_grad:
                return np.zeros(np.shape(rows))
            (grad,) = torch.autograd.grad(
                y, x_t, torch.as_tensor(np.array(gs).reshape(y.shape), dtype=y.dtype),
                allow_unused=True,
            )
        if grad is None:
            return np.zeros(np.shape(rows))
        return grad.detach().cpu().numpy().reshape(np.shape(rows)).astype(np.float64)

    return vjp


#: Random sign patterns (each used both ways) of the rounding perturbation.
SENSITIVITY_PATTERNS = 3


def rounding_sensitivity(
    fd: FDModel,
    x: np.ndarray,
    g: np.ndarray,
    eps: float,
    rng: np.random.Generator,
    forward_rounding: np.ndarray,
) -> np.ndarray | None:
    """How much ``g^T J`` moves, coordinate by coordinate, under a perturbation of ``x`` that
    moves the outputs as much as the layer's own rounding does.

    ``forward_rounding`` is the layer's output minus the float64 clone's at ``x``. A layer that
    rounds its intermediate sums (a Dense pre-activation of 0.25 summed from terms of 1e3)
    behaves like the float64 one at a slightly perturbed input; where ``g^T J`` is sensitive
    to that (a kink the float32 layer sees on the other side), a float32 rule and float32
    autograd are legitimately off by as much. The perturbation is ``2 eps |x|`` with random
    signs (three patterns, each both ways; the largest change), scaled to move the outputs
    twice as much as the observed rounding at most: a layer computing exactly in its dtype
    (clip, relu) gets none, so its kinks stay sharp.
    """
    if fd.vjp is None:
        return None
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    observed = float(np.linalg.norm(np.asarray(forward_rounding, dtype=np.float64)))
    if not observed > 0.0 or not math.isfinite(observed):
        return np.zeros(x.size)
    signs = rng.choice([-1.0, 1.0], size=(SENSITIVITY_PATTERNS, x.size))
    signs = np.concatenate([signs, -signs])  # both ways, so a nearby kink is crossed
    bases = x[None, :] + 2 * eps * np.abs(x)[None, :] * signs
    moved = fd.forward(np.concatenate([x[None, :], bases]))
    shift = float(np.median(np.linalg.norm(moved[1:] - moved[:1], axis=1)))
    scale = 1.0 if shift == 0.0 else min(1.0, 2 * observed / shift)
    rows = np.concatenate([x[None, :], x[None, :] + scale * (bases - x[None, :])])
    gs = np.broadcast_to(np.asarray(g, dtype=np.float64).reshape(1, -1), (len(rows), np.size(g)))
    try:
        v = fd.vjp(rows, gs)
    except Exception:  # noqa: BLE001 - the layer's autograd may not exist
        return None
    change = np.max(np.abs(v[1:] - v[:1]), axis=0)
    return np.where(np.isfinite(change), change, 0.0)


def _batched(fn, input_shape, max_rows, float64: bool = False):
    def forward(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        outs = []
        context = true_float64() if float64 else contextlib.nullcontext()
        with torch.no_grad(), context:
            for start in range(0, rows.shape[0], max_rows):
                chunk = rows[start : start + max_rows].reshape(-1, *input_shape)
                outs.append(fn(chunk).reshape(chunk.shape[0], -1))
        return np.concatenate(outs, axis=0) if outs else np.zeros((0, 0))

    return forward


def _same_tensor(expected: Any, got: Any) -> bool:
    """Two tensors of the same dtype, shape, values and NaNs."""
    if not (isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)):
        return False
    if expected.dtype != got.dtype or expected.shape != got.shape:
        return False
    same_nans = torch.equal(torch.isnan(expected), torch.isnan(got))
    return same_nans and torch.equal(torch.nan_to_num(expected), torch.nan_to_num(got))


def direct_call(
    layer: keras.layers.Layer, probe: torch.Tensor, *, float64: bool = False
) -> Callable[[torch.Tensor], Any]:
    """The fastest way to evaluate ``layer`` on tensors without gradients: without Keras'
    ``__call__`` (per-call bookkeeping, a quarter of a millisecond, that the references do not
    need) when that gives exactly what ``layer(...)`` gives on ``probe``, else the layer
    itself. Tried in turn: the layer's ``call_operation_directly`` (an adapter calling the
    layer it wraps through that layer's ``call``), then its ``call``. ``float64``: compare
    inside :func:`true_float64`, as the references run the clone."""
    def context():
        return true_float64() if float64 else contextlib.nullcontext()

    candidates = [getattr(layer, "call_operation_directly", None), layer.call]
    try:
        with torch.no_grad(), context():
            expected = layer(probe)
    except Exception:  # noqa: BLE001 - the layer is then called as it is, and reports it
        return layer
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            with torch.no_grad(), context():
                got = candidate(probe)
        except Exception:  # noqa: BLE001 - a call that needs Keras' own __call__
            continue
        if _same_tensor(expected, got):
            return candidate
    return layer


def _clone_problem(clone, probe: np.ndarray, reference: np.ndarray, eps: float) -> str:
    """Why the float64 clone cannot stand for the layer ("" when it can)."""
    try:
        with true_float64():
            out = _to_numpy(clone(torch.from_numpy(probe.astype(np.float64))))
    except Exception as error:
        return f"the float64 clone's forward call raised {error!r}"
    if out.dtype != np.float64:
        return f"the float64 clone computes in {out.dtype} (the layer ignores its dtype)"
    if out.shape != reference.shape:
        return f"the float64 clone's output has shape {out.shape}, the layer's {reference.shape}"
    difference = float(np.max(np.abs(out - reference), initial=0.0))
    allowed = 1e3 * eps * (float(np.max(np.abs(reference), initial=0.0)) + 1.0)
    if not difference <= allowed:
        return (
            f"the float64 clone's output differs from the layer's by {difference:.3g} "
            f"(more than rounding: state not in get_config()/weights?)"
        )
    return ""


#: Input values per forward call of the references: batches of convolutions much larger than
#: this run slower per row on one core (their work no longer fits the caches).
FORWARD_CHUNK_VALUES = 2**16


def make_fd_model(
    layer: keras.layers.Layer, input_shape: Sequence[int], rng: np.random.Generator
) -> FDModel:
    """The float64 clone of ``layer`` (verified against the layer on a random input), or the
    layer itself in its own dtype when cloning fails (the note says why)."""
    input_shape = tuple(int(s) for s in input_shape)
    max_rows = max(1, FORWARD_CHUNK_VALUES // max(1, math.prod(input_shape)))
    layer_dtype = str(layer.compute_dtype)
    probe = rng.standard_normal((2, *input_shape)).astype(layer_dtype)
    reference = _to_numpy(layer(probe)).astype(np.float64)

    def own(chunk):
        return _to_numpy(layer(chunk.astype(layer_dtype))).astype(np.float64)

    # The precision the layer really computes in (Keras on torch runs some float64 ops in
    # float32): the clone is compared with it, and finite differences of the layer itself use it.
    fallback_eps = effective_eps(layer_dtype) if "float" in layer_dtype else 1e-7

    def fallback(note: str) -> FDModel:
        return FDModel(forward=_batched(own, input_shape, max_rows), dtype=layer_dtype,
                       clone_ok=False, note=note, input_shape=input_shape, eps=fallback_eps)

    try:
        clone = clone_layer(layer, "float64", input_shape)
    except Exception as error:
        return fallback(
            f"could not clone the layer to float64 ({type(error).__name__}: {error}); "
            f"finite differences use the layer itself in {layer_dtype}"
        )

    call = direct_call(clone, torch.from_numpy(probe.astype(np.float64)), float64=True)

    def cloned(chunk):
        return _to_numpy(call(torch.from_numpy(chunk))).astype(np.float64)

    forward = _batched(cloned, input_shape, max_rows, float64=True)
    problem = _clone_problem(clone, probe, reference, fallback_eps)
    if problem:
        return fallback(problem)
    eps64 = float(np.finfo(np.float64).eps)
    precision = measured_precision(forward, probe[0].reshape(-1).astype(np.float64), rng)
    low = precision > 1e3 * eps64
    note = (
        "the float64 clone computes in float32 precision somewhere (an operation casts "
        "down): finite differences are judged at float32 precision"
    ) if low else ""
    return FDModel(
        forward=forward, dtype="float64", clone_ok=True, note=note, input_shape=input_shape,
        eps=max(precision, fallback_eps) if low else eps64,
        vjp=_vjp_of(clone, input_shape, float64=True),
    )


def measured_precision(
    forward: Callable[[np.ndarray], np.ndarray], x: np.ndarray, rng: np.random.Generator
) -> float:
    """float64's epsilon if ``forward`` computes in float64 near ``x``, else float32's.

    Difference quotients with steps of 1, 2 and 3 times 2**-26 agree to ~1e-8 in float64 and
    not at all when an operation rounds to float32. Three random directions; the median
    decides (a kink crossed by one of them does not). A direction along which the outputs
    move by no more than float64 rounding of their size (``forward`` locally constant:
    sparsemax saturated at ``(0, 1)`` gives ``z2 - (z2 - 1)``, 1 up to an ulp) says nothing
    against float64: its quotients are rounding noise, and float32 rounding would move the
    outputs by 1e8 times more.
    """
    scale = max(1.0, float(np.max(np.abs(x), initial=0.0)))
    tiny = 2.0**-26 * scale
    mismatches = []
    for _ in range(3):
        d = rng.standard_normal(x.size)
        d /= max(float(np.max(np.abs(d))), 1e-300)
        ys = forward(np.stack([x + i * tiny * d for i in range(4)]))
        q = [(ys[i] - ys[0]) / (i * tiny) for i in (1, 2, 3)]
        size = sum(float(np.sum(np.abs(v))) for v in q)
        rounding = 64 * float(np.finfo(np.float64).eps) * float(np.max(np.abs(ys), initial=0.0))
        constant = float(np.max(np.abs(ys[1:] - ys[:1]), initial=0.0)) <= rounding
        if size == 0.0 or constant or not all(np.all(np.isfinite(v)) for v in q):
            mismatches.append(0.0)
            continue
        mismatches.append(
            (float(np.sum(np.abs(q[0] - q[1]))) + float(np.sum(np.abs(q[1] - q[2])))) / size
        )
    if float(np.median(mismatches)) < 1e-3:
        return float(np.finfo(np.float64).eps)
    return float(np.finfo(np.float32).eps)  # the usual culprit: an op computing in float32


# ------------------------------------------------------------- directional derivatives
#: Richardson extrapolation settings (scipy.differentiate.derivative).
FD_ORDER = 6
FD_MAXITER = 8
FD_STEP_FACTOR = 2.0
#: Ladder of one-sided steps (relative to the side's step) used to recognise jumps.
JUMP_LADDER = tuple(32.0**-m for m in range(7))  # h ... h / 1e9


@dataclass
class Directional:
    """Finite-difference derivatives of ``phi_k(t) = <g, f(x + t d_k)>`` at 0, per direction."""

    left: np.ndarray
    right: np.ndarray
    central: np.ndarray
    err_left: np.ndarray
    err_right: np.ndarray
    err_central: np.ndarray
    jump_left: np.ndarray  # bool
    jump_right: np.ndarray  # bool
    jump_size: np.ndarray
    abs_scale: np.ndarray  # sum_j |g_j| |(J d_k)_j|: size of the terms of g^T J d_k
    step_left: np.ndarray
    step_right: np.ndarray
    output: np.ndarray  # f(x), flat
    out_scale: np.ndarray  # sum_j |g_j| |f_j(x)| over the outputs moving along d_k
    near_left: np.ndarray  # one-sided difference quotients at a tiny step (~1e-9 h)
    near_right: np.ndarray
    near_err_left: np.ndarray
    near_err_right: np.ndarray
    far_left: np.ndarray  # slope past a kink closer than Richardson's steps (nan if none)
    far_right: np.ndarray
    far_err_left: np.ndarray
    far_err_right: np.ndarray


def fd_steps(
    x: np.ndarray,
    directions: np.ndarray,
    kinks: Sequence,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial steps per direction and side for the candidate kinks ``kinks``, and whether
    the direction moves a coordinate that sits on one.

    1/8 of the coordinates' scale, shorter than half the distance to the nearest candidate
    kink on that side. A kink closer than ``eps**0.6`` times the scale cannot be resolved:
    the point is treated as on it (its one-sided derivatives then straddle it), and the step
    is bounded by the next kink instead.
    """
    from jacverify.check.kinks import kink_distances

    moving = np.abs(directions) > 0
    magnitude = np.max(np.where(moving, np.abs(x)[None, :], 0.0), axis=1, initial=0.0)
    scale = np.maximum(1.0, magnitude)
    base = 0.125 * np.maximum(1.0, magnitude * math.sqrt(eps) * 4)
    floor = eps**0.6 * scale
    left_room, right_room, at_kink = kink_distances(x, directions, kinks, ignore_below=floor)
    left = np.maximum(np.minimum(base, 0.5 * left_room), floor)
    right = np.maximum(np.minimum(base, 0.5 * right_room), floor)
    return left, right, at_kink


@dataclass
class _Group:
    """Several examples' directions, concatenated example after example: the finite
    differences of a group work on these arrays, with one loop over the examples only where
    a result depends on an example's own sizes (its products with ``g``, its median)."""

    x: np.ndarray  # (G, n) the examples' points
    g: np.ndarray  # (G, n_out) their upstream gradients
    d: np.ndarray  # (K, n) every example's directions in turn
    step_left: np.ndarray  # (K,)
    step_right: np.ndarray  # (K,)
    example: np.ndarray  # (K,) the example of each direction
    bounds: np.ndarray  # (G + 1,) where each example's directions start, then the end

    @classmethod
    def of(cls, lines: Sequence[tuple[np.ndarray, ...]]) -> _Group:
        """The group of ``lines``: each example's ``(x, g, directions, step_left,
        step_right)``."""
        ds = [np.asarray(line[2], dtype=np.float64) for line in lines]
        sizes = np.array([len(d) for d in ds], dtype=np.int64)
        return cls(
            x=np.stack([np.asarray(line[0], dtype=np.float64).reshape(-1) for line in lines]),
            g=np.stack([np.asarray(line[1], dtype=np.float64).reshape(-1) for line in lines]),
            d=np.concatenate(ds),
            step_left=np.concatenate([np.asarray(ln[3], dtype=np.float64) for ln in lines]),
            step_right=np.concatenate([np.asarray(ln[4], dtype=np.float64) for ln in lines]),
            example=np.repeat(np.arange(len(ds), dtype=np.int64), sizes),
            bounds=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        )

    def slices(self) -> list[slice]:
        """Each example's rows of the direction arrays."""
        return [slice(int(a), int(b)) for a, b in zip(self.bounds[:-1], self.bounds[1:],
                                                      strict=True)]


@dataclass
class _Ladder:
    """``phi(t) - phi(0)`` on geometric ladders of steps either side of x (one batched call),
    and the scales read from it, per direction of a :class:`_Group`."""

    t_left: np.ndarray  # (K, L) negative steps, decreasing in size
    t_right: np.ndarray  # (K, L)
    phi_left: np.ndarray  # (K, L)
    phi_right: np.ndarray
    y0: np.ndarray  # (G, n_out) f(x) of each example
    abs_scale: np.ndarray  # sum_j |g_j| |(J d)_j|
    out_scale: np.ndarray  # sum_j |g_j| |f_j(x)| over the outputs moving along d
    noise: np.ndarray  # rounding level of phi: a smaller "jump" is noise
    rounding_moving: np.ndarray  # rounding of the outputs that move
    resolution: np.ndarray  # what outputs that never moved bound their derivative by
    ts: np.ndarray  # (K, 2L + 2) every step of the ladder (with the |J d| points)
    phis: np.ndarray  # (K, 2L + 2) phi(t) - phi(0) at those steps


def _forward_once(fd: FDModel, rows: np.ndarray) -> np.ndarray:
    """``fd.forward(rows)``, each distinct row evaluated once, in the order first met (the
    ladder's ``h / 32`` on the side of the smaller step is also its ``|J d|`` point)."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    first = first_occurrences(rows)
    distinct = np.flatnonzero(first == np.arange(len(rows)))  # in the order first met
    if distinct.size == len(rows):
        return fd.forward(rows)
    values = fd.forward(rows[distinct])
    return values[np.searchsorted(distinct, first)]


def _ladder_steps(group: _Group) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(t_left, t_right, ts)``: the jump ladders' steps and every step evaluated (the
    ladders, then ``-h`` and ``h`` of ``|J d|``), per direction."""
    ladder = np.asarray(JUMP_LADDER)
    t_left = -group.step_left[:, None] * ladder[None, :]  # (K, L)
    t_right = group.step_right[:, None] * ladder[None, :]
    h_abs = np.minimum(group.step_left, group.step_right) / 32
    ts = np.concatenate([t_left, t_right, -h_abs[:, None], h_abs[:, None]], axis=1)
    return t_left, t_right, ts


def _ladder_points(group: _Group, ts: np.ndarray) -> np.ndarray:
    """The points ``x + t d`` at the steps ``ts`` (K, P) of each direction: (K, P, n)."""
    return group.x[group.example][:, None, :] + ts[:, :, None] * group.d[:, None, :]


@np.errstate(invalid="ignore", over="ignore")  # NaN outputs: judged downstream
def _ladder_from_values(
    fd: FDModel, group: _Group, steps: tuple, y0: np.ndarray, ys: np.ndarray,
) -> _Ladder:
    """The ladder read from the values ``ys`` (K, 2L + 2, n_out) of ``f`` at the
    :func:`_ladder_points` of ``steps`` and ``y0`` (G, n_out), f at the examples' points."""
    t_left, t_right, ts = steps
    n_l = t_left.shape[1]
    h_abs = np.minimum(group.step_left, group.step_right) / 32
    y0_rows = y0[group.example]
    # phi(t) - phi(0) from output differences: outputs that do not move cancel exactly.
    differences = ys - y0_rows[:, None, :]
    # Rounding level of phi near x: a "jump" smaller than this is noise (or an unresolvable
    # kink a few denormals away). Every output counts, even one that does not seem to move:
    # sigmoid(36 + t) does not move in float64 although its derivative is 2e-16.
    abs_y0 = np.abs(y0_rows)
    y_max = np.maximum(abs_y0, np.max(np.abs(ys), axis=1))  # (K, n_out)
    abs_jd = np.abs((ys[:, -1, :] - ys[:, -2, :]) / (2 * h_abs[:, None]))
    x_max = np.max(np.abs(group.x), axis=1, initial=0.0)[group.example]
    # For the error of derivatives, outputs that never moved over the whole ladder (-h .. h)
    # only bound their derivative by their resolution over the largest step.
    moving = np.any(ys != y0_rows[:, None, :], axis=1)  # (K, n_out)
    y_moving, y_still, jd_moves = np.where(moving, y_max, 0.0), np.where(
        moving, 0.0, abs_y0), abs_jd > 0
    phis = np.empty(ts.shape)
    abs_scale, y_sum, moving_sum, still_sum, out_scale = np.empty((5, len(ts)))
    for i, rows in enumerate(group.slices()):  # products with each example's own g
        g, abs_g = group.g[i], np.abs(group.g[i])
        phis[rows] = differences[rows] @ g
        abs_scale[rows] = abs_jd[rows] @ abs_g
        y_sum[rows] = y_max[rows] @ abs_g
        moving_sum[rows] = y_moving[rows] @ abs_g
        still_sum[rows] = y_still[rows] @ abs_g
        out_scale[rows] = jd_moves[rows] @ (abs_g * np.abs(y0[i]))
    rounding = fd.eps * (y_sum + x_max * abs_scale)
    return _Ladder(
        t_left=t_left, t_right=t_right, phi_left=phis[:, :n_l], phi_right=phis[:, n_l:2 * n_l],
        y0=y0, abs_scale=abs_scale, out_scale=out_scale, noise=64 * rounding + 1e-300,
        rounding_moving=fd.eps * (moving_sum + x_max * abs_scale),
        resolution=2 * fd.eps * still_sum / np.minimum(group.step_left, group.step_right),
        ts=ts, phis=phis,
    )


def _jumps(side_phis: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A jump: |phi(t) - phi(0)| stays put while t shrinks by 32x, three times in a row (a
    continuous function's difference shrinks like t). A kink a little way off only flattens
    the large steps. Returns the flags and the jump sizes."""
    delta = np.abs(side_phis)  # (k, L), steps decreasing
    n_l = delta.shape[1]
    flat = np.ones(delta.shape[0], dtype=bool)
    for i in range(n_l - 3, n_l - 1):
        flat &= delta[:, i + 1] > 0.5 * delta[:, i]
    flag = flat & (delta[:, -1] > 1000 * noise)
    return flag, np.where(flag, delta[:, -1], 0.0)


@np.errstate(invalid="ignore", over="ignore")  # NaN outputs: judged downstream
def _tiny_quotients(
    side_phis: np.ndarray, side_t: np.ndarray, floor: np.ndarray, lad: _Ladder
) -> tuple[np.ndarray, np.ndarray]:
    """One-sided difference quotients at the smallest ladder step that rounding allows
    (``floor``, per direction; when a kink lies closer to x than Richardson's smallest step,
    they disagree with it), with their errors."""
    k, n_l = side_phis.shape
    q = side_phis / side_t  # (k, L)
    usable = np.abs(side_t) >= floor[:, None]
    usable[:, 0] = True
    m = np.max(np.where(usable, np.arange(n_l)[None, :], 0), axis=1)
    rows_k = np.arange(k)
    q_min = q[rows_k, m]
    q_prev = q[rows_k, np.maximum(m - 1, 0)]
    error = (
        4 * lad.rounding_moving / np.abs(side_t[rows_k, m])
        + lad.resolution
        + np.abs(q_prev - q_min) / 16
    )
    return q_min, error


@dataclass
class _Reading:
    """What the ladder tells per direction: jumps and tiny-step quotients per side, and each
    example's scale of the terms (Richardson's tolerance is relative to it)."""

    jumps: tuple  # ((flags, sizes) left, (flags, sizes) right)
    near: tuple  # ((quotients, errors) left, (quotients, errors) right)
    scale: np.ndarray  # (G,)


def _read_ladder(fd: FDModel, group: _Group, lad: _Ladder) -> _Reading:
    """Jumps, tiny-step quotients and the scale of the terms, from the ladder."""
    x_max = np.max(np.abs(group.x), axis=1, initial=0.0)
    floor = fd.eps**0.6 * np.where(x_max > 1.0, x_max, 1.0)[group.example]
    sizes = np.diff(group.bounds)
    if len(sizes) and np.all(sizes == sizes[0]) and sizes[0] > 0:
        scale = np.median(lad.abs_scale.reshape(len(sizes), -1), axis=1)
    else:
        scale = np.array([np.median(lad.abs_scale[rows]) if rows.stop > rows.start else 1.0
                          for rows in group.slices()], dtype=np.float64)
    return _Reading(
        jumps=(_jumps(lad.phi_left, lad.noise), _jumps(lad.phi_right, lad.noise)),
        near=(_tiny_quotients(lad.phi_left, lad.t_left, floor, lad),
              _tiny_quotients(lad.phi_right, lad.t_right, floor, lad)),
        # A NaN output somewhere (a domain edge): unit scale.
        scale=np.where(np.isfinite(scale), scale, 1.0),
    )


@dataclass
class LineRows:
    """The rows of one Richardson call: ``phi_i(t) = <g, f(bases[i] + t directions[i]) -
    y_bases[i]>``, one-sided (``sides`` -1 / +1) or central (0), from ``initial`` steps.

    Rows with the same key have the same base and ``y_base``, so a point they have in common
    is evaluated once; rows with the same key and line move along the same direction up to
    its sign (``signs`` times one direction, see :func:`direction_lines`). ``known`` holds
    ``(keys, rows, t, values)``: values already known at ``bases[rows] + t directions[rows]``.
    ``rounding`` bounds the rounding error of each row's values of ``phi`` (None: unknown), the
    floor below which successive estimates cannot agree (see :func:`_richardson`)."""

    bases: np.ndarray
    directions: np.ndarray
    y_bases: np.ndarray
    initial: np.ndarray
    sides: np.ndarray
    keys: np.ndarray
    known: tuple
    lines: np.ndarray
    signs: np.ndarray
    rounding: np.ndarray | None = None


@np.errstate(invalid="ignore", over="ignore")  # NaN outputs: judged downstream
def _far_request(group: _Group, lad: _Ladder, df: np.ndarray, err: np.ndarray,
                 near: tuple) -> tuple | None:
    """Where Richardson's one-sided estimate disagrees with the tiny-step quotient, a kink
    lies inside its steps: the largest ladder step whose quotient still disagrees bounds its
    distance. ``(side, direction, signs, h, bases)`` of the lines to measure the slope beyond
    it on, from a point past it, example by example, left side first (None when there is
    none)."""
    found = []
    sides = ((lad.t_left, lad.phi_left, -1.0, 0), (lad.t_right, lad.phi_right, 1.0, 2))
    for side_i, (side_t, side_phi, sign, f_row) in enumerate(sides):
        near_q, near_e = near[side_i]
        off = np.abs(df[f_row] - near_q) > near_e + err[f_row]
        quotients = side_phi / side_t  # (K, L)
        bad = np.abs(quotients - near_q[:, None]) > 4 * near_e[:, None] + (
            1e-9 * (np.abs(near_q) + lad.abs_scale)
        )[:, None]
        rows = np.flatnonzero(off & np.any(bad, axis=1))
        last = bad.shape[1] - 1 - np.argmax(bad[rows, ::-1], axis=1)  # the largest bad step
        found.append((np.full(len(rows), side_i), rows, np.full(len(rows), sign),
                      np.abs(side_t[rows, last])))
    side_idx, rows, signs, h_k = (np.concatenate(parts) for parts in zip(*found, strict=True))
    if not len(rows):
        return None
    order = np.lexsort((rows, side_idx, group.example[rows]))
    side_idx, rows, signs, h_k = side_idx[order], rows[order], signs[order], h_k[order]
    bases = group.x[group.example[rows]] + (2 * signs * h_k)[:, None] * group.d[rows]
    return side_idx, rows, signs, h_k, bases


def _far_rows(group: _Group, lad: _Ladder, request: tuple, y_bases: np.ndarray) -> LineRows:
    """The Richardson rows of a :func:`_far_request` (``y_bases``: f at its bases)."""
    _, rows, signs, h_k, bases = request
    return LineRows(bases=bases, directions=group.d[rows], y_bases=y_bases, initial=h_k / 2,
                    sides=signs.astype(int), keys=np.arange(len(rows)),
                    known=_no_points(), lines=np.zeros(len(rows), dtype=np.int64),
                    signs=np.ones(len(rows)), rounding=lad.rounding_moving[rows])


def _far_result(lad: _Ladder, request: tuple | None, f_df: np.ndarray | None,
                f_err: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The slopes past a kink (rows: left, right; nan where none was measured)."""
    far = np.full((2, len(lad.abs_scale)), np.nan)
    far_err = np.full((2, len(lad.abs_scale)), np.nan)
    if request is None:
        return far, far_err
    side_idx, rows, _, h_k, _ = request
    far[side_idx, rows] = f_df
    far_err[side_idx, rows] = np.maximum(f_err, 8 * lad.rounding_moving[rows] / (h_k / 64))
    return far, far_err


def _initial_steps(step_left: np.ndarray, step_right: np.ndarray) -> np.ndarray:
    """Richardson's first steps: left, central, right (3, k)."""
    return np.stack([step_left, np.minimum(step_left, step_right), step_right])


def _group_lines(group: _Group) -> tuple[np.ndarray, np.ndarray]:
    """:func:`direction_lines` of each example's directions, in one pass."""
    d = group.d
    if not len(d):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    signs = _first_positive(d)
    first = first_occurrences(_records(group.example, d * signs[:, None] + 0.0))  # no -0.0
    return (first - group.bounds[group.example]).astype(np.int64), signs


def _three_sided_rows(group: _Group, lad: _Ladder) -> tuple[LineRows, np.ndarray]:
    """The rows of Richardson's left, central and right derivatives of every direction
    (example by example: its left rows, central rows, right rows) and where each
    (side, direction) is among them (3, K).

    Every row of an example is a difference from the same f(x): a point the three estimates
    have in common (the central stencil's are the one-sided ones' when the steps are equal),
    or one the ladder has evaluated, is evaluated once."""
    count = len(group.example)
    start = group.bounds[group.example]
    size = np.diff(group.bounds)[group.example]
    where = (3 * start + np.arange(count) - start)[None, :] + np.arange(3)[:, None] * size
    direction = np.empty(3 * count, dtype=np.int64)
    direction[where] = np.arange(count)[None, :]
    sides = np.empty(3 * count, dtype=np.int64)
    sides[where] = np.array([-1, 0, 1])[:, None]
    initial = np.empty(3 * count)
    initial[where] = _initial_steps(group.step_left, group.step_right)
    example = group.example[direction]
    lines, signs = _group_lines(group)
    per_direction = lad.ts.shape[1]
    rows = LineRows(
        bases=group.x[example], directions=group.d[direction], y_bases=lad.y0[example],
        initial=initial, sides=sides, keys=example,
        known=(np.repeat(group.example, per_direction), np.repeat(where[0], per_direction),
               lad.ts.reshape(-1), lad.phis.reshape(-1)),
        lines=lines[direction], signs=signs[direction],
        rounding=lad.rounding_moving[direction],
    )
    return rows, where


def _three_sided_result(
    df: np.ndarray, err: np.ndarray, nit: np.ndarray, lad: _Ladder, group: _Group,
) -> tuple[np.ndarray, np.ndarray]:
    """Richardson's left, central and right derivatives (rows 0, 1, 2) and their errors,
    floored by the rounding of phi divided by the smallest step used (scipy's estimate only
    compares successive extrapolations)."""
    initial = _initial_steps(group.step_left, group.step_right)
    smallest = initial / FD_STEP_FACTOR ** np.maximum(nit - 1, 0)
    err = np.maximum(err, 4 * lad.rounding_moving[None, :] / smallest + lad.resolution[None, :])
    return df, err


def _directionals(
    fd: FDModel, group: _Group, lad: _Ladder,
    richardson: Callable[[LineRows, np.ndarray, np.ndarray], tuple],
    forward: Callable[[np.ndarray], np.ndarray],
) -> list[Directional]:
    """Each example's :class:`Directional` from its ladder: Richardson's three estimates,
    then the slopes past kinks closer than its steps. ``richardson(rows, example, scale)``
    runs :func:`_richardson` on rows of the given examples."""
    reading = _read_ladder(fd, group, lad)
    rows, where = _three_sided_rows(group, lad)
    df, err, nit = richardson(rows, rows.keys, reading.scale)
    df, err = _three_sided_result(df[where], err[where], nit[where], lad, group)
    request = _far_request(group, lad, df, err, reading.near)
    f_df = f_err = None
    if request is not None:
        far_rows = _far_rows(group, lad, request, forward(request[4]))
        f_df, f_err, _ = richardson(far_rows, group.example[request[1]], reading.scale)
    far, far_err = _far_result(lad, request, f_df, f_err)
    (jump_left, size_left), (jump_right, size_right) = reading.jumps
    jump_size = np.maximum(size_left, size_right)
    (near_left, near_err_left), (near_right, near_err_right) = reading.near
    return [
        Directional(
            left=df[0, s], right=df[2, s], central=df[1, s], err_left=err[0, s],
            err_right=err[2, s], err_central=err[1, s], jump_left=jump_left[s],
            jump_right=jump_right[s], jump_size=jump_size[s], abs_scale=lad.abs_scale[s],
            step_left=group.step_left[s], step_right=group.step_right[s], output=lad.y0[i],
            out_scale=lad.out_scale[s], near_left=near_left[s], near_right=near_right[s],
            near_err_left=near_err_left[s], near_err_right=near_err_right[s],
            far_left=far[0, s], far_right=far[1, s], far_err_left=far_err[0, s],
            far_err_right=far_err[1, s],
        )
        for i, s in enumerate(group.slices())
    ]


def directional_derivatives(
    fd: FDModel,
    x: np.ndarray,
    g: np.ndarray,
    directions: np.ndarray,
    step_left: np.ndarray,
    step_right: np.ndarray,
) -> Directional:
    """Left, right and central derivatives of ``<g, f(x + t d)>`` at t = 0 for each row ``d``
    of ``directions`` (k, n), with error estimates, jump flags and the size of the terms.

    ``x`` (n,) and ``g`` (n_out,) are float64; every evaluation of a call is one batched
    forward call of ``fd``.
    """
    group = _Group.of([(x, g, directions, step_left, step_right)])
    steps = _ladder_steps(group)
    points = _ladder_points(group, steps[2])
    y0 = fd.forward(group.x)
    ys = _forward_once(fd, points.reshape(-1, group.x.shape[1])).reshape(
        *points.shape[:2], y0.shape[1])
    lad = _ladder_from_values(fd, group, steps, y0, ys)

    def richardson(rows: LineRows, _example: np.ndarray, scale: np.ndarray) -> tuple:
        return _richardson(fd, rows, group.g[0], float(scale[0]))

    return _directionals(fd, group, lad, richardson, fd.forward)[0]


def directional_derivatives_many(
    fd: FDModel, lines: Sequence[tuple[np.ndarray, ...]]
) -> list[Directional]:
    """:func:`directional_derivatives` of several examples at once: ``lines`` holds each
    example's ``(x, g, directions, step_left, step_right)``.

    Each stage evaluates every example's points in one batched forward call, and Richardson
    extrapolation runs once for all examples' directions (``scipy.differentiate.derivative``
    is elementwise): the same derivatives as one example at a time, up to rounding.
    """
    if not lines:
        return []
    group = _Group.of(lines)
    steps = _ladder_steps(group)
    points = _ladder_points(group, steps[2])
    n_examples, n = group.x.shape
    values = _forward_once(fd, np.concatenate([group.x, points.reshape(-1, n)]))
    lad = _ladder_from_values(fd, group, steps, values[:n_examples],
                              values[n_examples:].reshape(*points.shape[:2], values.shape[1]))

    def richardson(rows: LineRows, example: np.ndarray, scale: np.ndarray) -> tuple:
        return _richardson(fd, rows, group.g[example], scale[example])

    return _directionals(fd, group, lad, richardson, fd.forward)


def _no_points() -> tuple:
    """No known values: ``(keys, rows, t, values)`` of none."""
    return (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0),
            np.zeros(0))


def _first_positive(directions: np.ndarray) -> np.ndarray:
    """The sign making each direction's first nonzero value positive."""
    first = directions[np.arange(len(directions)), np.argmax(directions != 0, axis=1)]
    return np.where(first < 0, -1.0, 1.0)


def direction_lines(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directions told apart up to their sign: ``(lines, signs)`` with ``signs[i] *
    directions[i] == signs[j] * directions[j]`` exactly whenever ``lines[i] == lines[j]``
    (``signs`` makes the first nonzero value of each positive), so that ``x + t d`` and
    ``x + (-t)(-d)``, the same bytes, are one point."""
    d = np.asarray(directions, dtype=np.float64)
    if not len(d):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    signs = _first_positive(d)
    sizes = np.sum(np.abs(d), axis=1)  # equal for directions equal up to sign
    if np.unique(sizes).size == len(d):
        return np.arange(len(d), dtype=np.int64), signs
    # A line is numbered by its first direction's index.
    return first_occurrences(d * signs[:, None] + 0.0).astype(np.int64), signs  # no -0.0


def _records(keys: np.ndarray, points: np.ndarray) -> np.ndarray:
    """One record per (key, point): the key, then the point's values (equal records: the
    same key and the same point bytes)."""
    records = np.empty((len(points), points.shape[1] + 1))
    records[:, 0] = keys
    records[:, 1:] = points
    return records


class _LineValues:
    """``phi(t, i) = <g_i, f(bases[i] + t directions[i]) - y_bases[i]>`` for arrays of ``t``
    and row indices ``i``, each distinct input point evaluated once (see :class:`LineRows`;
    ``known = (keys, rows, t, values)`` are values already known at
    ``bases[rows] + t directions[rows]``). ``g`` is one vector for every row, or one per row.

    Points are told apart by their exact bytes (with their key). Each is first found by a
    complex number made of its line (key and direction up to sign) and the value of its
    coordinate that moves most along the line: the same point always has the same number,
    which a sorted array of those held finds in numpy, without a Python object per point.
    Different points of a line may share it (steps closer than that coordinate's
    resolution), so every match is checked word for word, both points computed again; a
    point that is not the one held under its number is evaluated anew, never confused."""

    def __init__(self, fd: FDModel, rows: LineRows, g: np.ndarray) -> None:
        self.fd, self.bases, self.directions, self.g = fd, rows.bases, rows.directions, g
        self.y_bases, self.keys = rows.y_bases, rows.keys
        lines = np.asarray(rows.lines, dtype=np.int64)
        self.lines = (self.keys * (int(np.max(lines, initial=-1)) + 1) + lines).astype(
            np.float64)
        self.signs = np.asarray(rows.signs, dtype=np.float64)
        most = np.argmax(np.abs(self.directions), axis=1) if self.directions.size else (
            np.zeros(len(self.keys), dtype=np.int64))
        at = np.arange(len(self.keys))
        self.base_j = self.bases[at, most] if self.bases.size else np.zeros(len(at))
        self.step_j = (self.signs * self.directions[at, most] if self.directions.size
                       else np.zeros(len(at)))
        self.codes = np.zeros(0, dtype=np.complex128)
        self.rows, self.ts, self.held = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
        _, known_rows, ts, values = rows.known
        self._add(self._codes(known_rows, ts), known_rows, ts,
                  np.asarray(values, dtype=np.float64))

    def _codes(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.lines[rows] + 1j * (self.base_j[rows] + (self.signs[rows] * t)
                                        * self.step_j[rows])

    def _points(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.bases[rows] + t[:, None] * self.directions[rows]

    def _project(self, differences: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if self.g.ndim == 1:
            return differences @ self.g
        return np.einsum("ij,ij->i", differences, self.g[rows])

    def _find(self, codes: np.ndarray, rows: np.ndarray,
              ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each point's value is held (-1: unknown), and whether its number is held (by
        it or by another point)."""
        found = np.full(len(codes), -1, dtype=np.int64)
        if not len(self.codes) or not len(codes):
            return found, np.zeros(len(codes), dtype=bool)
        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        numbered = self.codes[at] == codes
        hit = np.flatnonzero(numbered)
        mine = self._points(rows[hit], ts[hit])
        held = self._points(self.rows[at[hit]], self.ts[at[hit]])
        same = np.all(mine.view(np.uint64) == held.view(np.uint64), axis=1)
        found[hit[same]] = at[hit[same]]
        return found, numbered

    def _insert(self, codes: np.ndarray, rows: np.ndarray, ts: np.ndarray,
                values: np.ndarray) -> None:
        """Hold new points whose numbers are sorted, distinct and none held already."""
        where = np.searchsorted(self.codes, codes) + np.arange(len(codes))
        old = np.ones(len(self.codes) + len(codes), dtype=bool)
        old[where] = False
        for name, new in (("codes", codes), ("rows", rows), ("ts", ts), ("held", values)):
            merged = np.empty(len(old), dtype=getattr(self, name).dtype)
            merged[where] = new
            merged[old] = getattr(self, name)
            setattr(self, name, merged)

    def _add(self, codes: np.ndarray, rows: np.ndarray, ts: np.ndarray,
             values: np.ndarray) -> None:
        """Hold new points: the first of those with the same number, none whose number is
        held already."""
        _, first = np.unique(codes, return_index=True)
        if len(self.codes):
            at = np.minimum(np.searchsorted(self.codes, codes[first]), len(self.codes) - 1)
            first = first[self.codes[at] != codes[first]]
        self._insert(codes[first], rows[first], ts[first], values[first])

    def _evaluate(self, codes: np.ndarray, rows: np.ndarray, ts: np.ndarray,
                  numbered: np.ndarray) -> np.ndarray:
        """The values of points not held (``numbered``: whether another point holds their
        number), the distinct ones evaluated once in the order first met, then held."""
        points = self._points(rows, ts)
        _, by_number, inverse = np.unique(codes, return_index=True, return_inverse=True)
        first = by_number[inverse.reshape(-1)]
        # Points told apart by their numbers alone unless steps closer than their
        # coordinate's resolution share one.
        exact = np.array_equal(points.view(np.uint64), points[first].view(np.uint64))
        if not exact:
            first = first_occurrences(_records(self.keys[rows], points))
        distinct = np.flatnonzero(first == np.arange(len(codes)))
        computed = self._project(
            self.fd.forward(points[distinct]) - self.y_bases[rows[distinct]], rows[distinct])
        if np.array_equal(first[by_number], by_number):
            # The first point of each number is a distinct one: they are held, in numbers'
            # order (as :meth:`_add` holds them).
            new = by_number[~numbered[by_number]]
            self._insert(codes[new], rows[new], ts[new], computed[np.searchsorted(distinct, new)])
        else:
            self._add(codes[distinct], rows[distinct], ts[distinct], computed)
        return computed[np.searchsorted(distinct, first)]

    def __call__(self, t: np.ndarray, index: np.ndarray) -> np.ndarray:
        t, index = np.broadcast_arrays(t, index)
        shape = t.shape
        flat_t = t.reshape(-1)
        flat_i = np.rint(index.reshape(-1)).astype(np.int64)
        # Differences from f(base): scipy's stencil weights do not sum to exactly 0, so a
        # large phi(0) would leak into the derivative as |phi(0)| * 1e-16 / h. phi(0) is 0
        # by definition: only the other points are evaluated, each once.
        values = np.zeros(flat_t.shape)
        moved = np.flatnonzero(flat_t != 0)
        rows, ts = flat_i[moved], flat_t[moved]
        codes = self._codes(rows, ts)
        held, numbered = self._find(codes, rows, ts)
        known = held >= 0
        values[moved[known]] = self.held[held[known]]
        missing = np.flatnonzero(~known)
        if missing.size:
            values[moved[missing]] = self._evaluate(codes[missing], rows[missing], ts[missing],
                                                    numbered[missing])
        return values.reshape(shape)


@functools.cache
def stencil_weight_sums(order: int, step_factor: float) -> tuple[float, float]:
    """``(central, one_sided)``: the sum of the absolute weights ``scipy.differentiate.
    derivative`` gives the values of the function at its stencil's points other than x, with
    unit step (an estimate at step h is ``sum_i w_i f(x + t_i) / h``).

    A rounding error of at most ``r`` in each value moves an estimate at step ``h`` by at
    most ``sum |w_i| r / h``. The weights are read from scipy itself: one iteration on
    functions that are 1 at one point of the stencil and 0 elsewhere."""
    def weights(side: int) -> float:
        seen: list[np.ndarray] = []

        def record(t, _index):
            seen.append(np.array(t, dtype=np.float64))
            return np.zeros(np.shape(t))

        def run(function, count):
            return derivative(function, np.zeros(count), args=(np.arange(count, dtype=np.float64),),
                              step_direction=side, initial_step=1.0, order=order, maxiter=1,
                              step_factor=step_factor)

        run(record, 1)
        points = np.unique(np.concatenate([t.reshape(-1) for t in seen]))
        points = points[points != 0]

        def indicator(t, index):
            picked = points[np.rint(index).astype(np.int64)]
            return (t == picked).astype(np.float64)

        return float(np.sum(np.abs(run(indicator, len(points)).df)))

    return weights(0), weights(1)


def _rounding_floor(rows: LineRows) -> tuple[np.ndarray, np.ndarray] | None:
    """Per row: how far scipy's first two estimates (at the initial step h and at h / factor)
    can differ by rounding alone, ``W r (1 + factor) / h``, and the stencil's ``W`` (the sum of
    its absolute weights, :func:`stencil_weight_sums`; ``r`` the row's rounding). None when
    the rows' rounding is unknown."""
    if rows.rounding is None:
        return None
    central, one_sided = stencil_weight_sums(FD_ORDER, FD_STEP_FACTOR)
    w = np.where(np.asarray(rows.sides) == 0, central, one_sided)
    rounding = np.asarray(rows.rounding, dtype=np.float64)
    with np.errstate(all="ignore"):
        floor = w * rounding * (1 + FD_STEP_FACTOR) / np.asarray(rows.initial, dtype=np.float64)
    return floor, w


def _richardson(
    fd: FDModel, rows: LineRows, g: np.ndarray, scale: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Derivatives at 0 of every row's ``phi`` (see :class:`LineRows`) by
    ``scipy.differentiate.derivative``; every iteration is one batched forward call.

    ``g`` is one upstream gradient for every row or one per row, ``scale`` the size of the
    terms the absolute tolerance is relative to, one for every row or one per row (scipy's
    tolerances are scalars: rows of several scales are divided by their own, which changes
    their figures by rounding only). Returns ``(df, error, nit)``.

    A row whose rounding (``rows.rounding``) can make its first two estimates differ by more
    than that tolerance gets this rounding floor as its absolute tolerance instead: its
    estimates agreeing within their own noise, it stops, rather than halving its step into
    larger noise. When it stops there without meeting the tolerance relative to the terms'
    size, its error is scipy's (the last two estimates' difference, which bounds the
    truncation) plus the most its rounding can move the estimate at the last step used,
    ``W r / h`` (see :func:`_floored_error`)."""
    m = rows.bases.shape[0]
    phi = _LineValues(fd, rows, g)
    unit_atol, rtol = 1e-3 * math.sqrt(fd.eps), 1e-2 * math.sqrt(fd.eps)
    floor = _rounding_floor(rows)
    base = np.maximum(unit_atol * np.asarray(scale, dtype=np.float64), 1e-300)
    raised = None if floor is None else np.isfinite(floor[0]) & (floor[0] > base)
    if raised is not None and not np.any(raised):
        raised = None
    if np.ndim(scale) == 0 and raised is None:
        function, atol, unit = phi, max(unit_atol * float(scale), 1e-300), None
    else:
        unit = np.broadcast_to(base, (m,)) / unit_atol
        if raised is not None:
            unit = np.where(raised, floor[0] / unit_atol, unit)

        def function(t, index):
            return phi(t, index) / unit[np.rint(index).astype(np.int64)]

        atol = unit_atol
    with np.errstate(all="ignore"):
        res = derivative(
            function,
            np.zeros(m),
            args=(np.arange(m, dtype=np.float64),),
            step_direction=np.asarray(rows.sides, dtype=int),
            initial_step=np.asarray(rows.initial, dtype=np.float64),
            order=FD_ORDER,
            maxiter=FD_MAXITER,
            step_factor=FD_STEP_FACTOR,
            tolerances={"atol": atol, "rtol": rtol},
        )
    df = np.asarray(res.df, dtype=np.float64).reshape(m)
    err = np.asarray(res.error, dtype=np.float64).reshape(m)
    nit = np.asarray(res.nit).reshape(m)
    if unit is not None:
        df, err = df * unit, err * unit
    if raised is not None:
        err = _floored_error(rows, err, nit, raised & ~(err < base + rtol * np.abs(df)),
                             floor[1])
    err = np.where(np.isfinite(err), err, np.inf)
    return df, err, nit


def _floored_error(rows: LineRows, err: np.ndarray, nit: np.ndarray, floored: np.ndarray,
                   weights: np.ndarray) -> np.ndarray:
    """The errors of rows that stopped on their rounding floor (``floored``: their last
    estimates did not agree within the tolerance relative to the terms' size): scipy's
    error, which bounds the truncation, plus the most rounding moves the estimate at the
    last step used (``weights``: each row's stencil's sum of absolute weights)."""
    last_step = np.asarray(rows.initial, dtype=np.float64) / FD_STEP_FACTOR ** np.maximum(
        nit - 1, 0)
    with np.errstate(all="ignore"):
        rounding = weights * np.asarray(rows.rounding, dtype=np.float64) / last_step
    return np.where(floored, err + rounding, err)


#: Scans tried in turn to split a compound kink: (points on the line, shift as a fraction of
#: the half-width, number of random shifts). Cheap first; later ones only if still needed.
KINK_SCANS = ((257, 1 / 16, 1), (1025, 1 / 4, 2), (1025, 1 / 16, 2), (1025, 1 / 64, 2))


def _scan_range(fd, x, g, d, half_width, rng, points, shift, count):
    t = np.linspace(-half_width, half_width, points)
    # Shift each coordinate in proportion to how fast the line moves it, so that an
    # elementwise kink lands within ``shift`` of the window's half-width from its centre.
    # Coordinates the line does not move are shifted too (by up to max|d|), which separates
    # kinks of units mixing several coordinates (a Dense layer's) along a basis direction.
    spread = np.where(d != 0, np.abs(d), np.max(np.abs(d), initial=0.0))
    u = rng.uniform(-1.0, 1.0, (count, x.size)) * spread[None, :]
    bases = x[None, :] + shift * half_width * u
    rows = bases[:, None, :] + t[None, :, None] * d[None, None, :]
    y = fd.forward(rows.reshape(-1, x.size)).reshape(count, points, -1)
    dt = t[1] - t[0]
    # Output by output: kinks of different outputs (units of a ReLU layer, coordinates of a
    # clip) never merge, and each output's rounding noise is judged on its own size.
    slopes = np.diff(y, axis=1) / dt  # (count, points - 1, n_out)
    changes = np.diff(slopes, axis=1)
    # The slopes' smooth change per segment (the median: kinks are few).
    smooth_step = np.median(np.abs(changes), axis=1)  # (count, n_out)
    noise = 8 * fd.eps * np.max(np.abs(y), axis=1, keepdims=True) / dt  # (count, 1, n_out)
    changes = np.where(np.abs(changes) > noise + 1e-300, changes, 0.0) * g[None, None, :]
    # Each output starts from its slope just before its first kink (the window's start when
    # it has none): a curved side's slope drifts over the window (elu's exp).
    kept = changes != 0.0
    first = np.where(np.any(kept, axis=1), np.argmax(kept, axis=1), 0)  # (count, n_out)
    start_slopes = np.take_along_axis(slopes, first[:, None, :], axis=1)[:, 0, :]
    start = start_slopes @ g  # (count,)
    low = start + np.sum(np.minimum(changes, 0.0), axis=(1, 2))
    high = start + np.sum(np.maximum(changes, 0.0), axis=(1, 2))
    # A kink's change is read across the secants next to it, over which a curved side
    # (elu's exp) moves on: the range is widened by a few segments' smooth change per kink.
    n_kinks = np.sum(kept & (np.abs(changes) > 8 * smooth_step[:, None, :] * np.abs(g)), axis=1)
    slack = np.sum(4 * smooth_step * n_kinks * np.abs(g)[None, :], axis=1)
    low, high = low - slack, high + slack
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        return math.inf, -math.inf
    return float(np.min(low)), float(np.max(high))


def kink_slope_range(
    fd: FDModel,
    x: np.ndarray,
    g: np.ndarray,
    direction: np.ndarray,
    half_width: float,
    rng: np.random.Generator,
    target: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """The range of directional derivatives a chain-rule vjp may take at a compound kink.

    At a point where several elementary kinks meet (all of a ReLU layer's units at 0, every
    coordinate of a Clip on its bound), the value of a valid rule along ``direction`` need not
    lie between the one-sided derivatives: each elementary kink may pick its own one-sided
    slope. Moving the line slightly off the point (along random vectors scaled by
    |direction|) separates the elementary kinks; the slope changes of ``g_j f_j`` met along the
    shifted line, output by output, split into their positive and negative parts, give the
    range ``[s_left + sum(negative changes), s_left + sum(positive changes)]``, which is
    ``[min(left, right), max(left, right)]`` for one elementary kink, widened by a few
    segments' smooth slope change per kink met (the secants next to a kink read a curved side's
    slope slightly off). The scans of :data:`KINK_SCANS` are tried in turn and their ranges
    joined; with ``target = (value, tolerance)`` the scans stop as soon as the range holds the
    value.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    g = np.asarray(g, dtype=np.float64).reshape(-1)
    d = np.asarray(direction, dtype=np.float64).reshape(-1)
    low, high = math.inf, -math.inf
    for points, shift, count in KINK_SCANS:
        lo, hi = _scan_range(fd, x, g, d, half_width, rng, points, shift, count)
        low, high = min(low, lo), max(high, hi)
        if target is not None and low - target[1] <= target[0] <= high + target[1]:
            break
    return low, high
