"""What a check is expected to cost, so that the longest checks start first.

With a few processes sharing many checks, the run ends when the last process ends: a long
check started last leaves the other processes idle while it runs. Checks are therefore handed
out longest first, by their expected seconds:

- the time the same check took in an earlier run, remembered in jacverify's cache directory
  (``task_seconds.json``, see :func:`remembered_seconds` and :func:`remember_seconds`), keyed
  by :func:`cost_key`: the forward class, the rule, the configuration, the input shapes and
  the examples;
- else an estimate from the configuration (:func:`estimate_seconds`): the examples, the
  input's size, and the layer's family (recurrent layers, attention and spectrograms cost
  many times a ``Dense`` layer's check).

Only the order of the checks depends on these figures, never their results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "FAMILY_FACTORS",
    "SECONDS_PER_EXAMPLE",
    "TIMINGS_FILE",
    "cost_key",
    "estimate_class_seconds",
    "estimate_seconds",
    "family_factor",
    "remember_seconds",
    "remembered_seconds",
    "rule_cost_key",
]

#: The file in jacverify's cache directory that keeps the seconds of earlier checks.
TIMINGS_FILE = "task_seconds.json"
#: Seconds per example of a small layer's check (a Dense layer of a few units: about 1 s for
#: 30 examples in a serial whole-registry run on a busy 2-core machine).
SECONDS_PER_EXAMPLE = 0.033
#: How many times a small Dense layer's check a layer family costs, by a part of its class
#: name (the first match, in this order, counts). From the mean seconds per family in a
#: serial whole-registry run (``check_registry(seed=0)``, 1,069 checks): the rest average
#: about 0.9. ``PerspectiveTransform`` since its checks compute the transform on whole
#: batches (:mod:`jacverify.check.batched_perspective`): 0.27 s per check against 0.095 s for
#: the mean check of the classes without a factor, in a serial run of 1,090 checks.
FAMILY_FACTORS: tuple[tuple[str, float], ...] = (
    ("PerspectiveTransform", 2.8),
    ("ConvLSTM", 4.5),
    ("LSTM", 3.7),
    ("MixUp", 3.6),
    ("GRU", 2.8),
    ("Attention", 2.7),
    ("Bidirectional", 2.7),
    ("RNN", 2.2),
    ("Conv", 2.0),
    ("STFT", 1.7),
    ("Spectrogram", 1.7),
    ("Random", 1.4),
)
#: Input elements at which the input's size doubles the estimate.
SIZE_SCALE = 256
#: Remembered timings kept at most (the most recent ones).
MAX_REMEMBERED = 20_000


def cost_key(operation: Any, rule: type, shapes: Any, examples: int) -> str:
    """A digest naming one check for the timings of earlier runs: the operation's class and
    configuration (its name aside), the rule class, the input shapes and the examples."""
    target = getattr(operation, "operation", operation)  # a call through an adapter
    try:
        config = {k: v for k, v in target.get_config().items() if k != "name"}
        described = json.dumps(config, sort_keys=True, default=repr)
    except Exception:  # noqa: BLE001 - no configuration: the class stands for it
        described = ""
    call = repr(getattr(operation, "call_kwargs", ""))
    text = "|".join([_qualified(type(target)), _qualified(rule), described, call,
                     repr(_plain(shapes)), str(int(examples))])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def rule_cost_key(keras_class: type, rule: type, example_kind: str, seed: int, configs: int,
                  indices: Sequence[int], examples: int) -> str:
    """A digest naming the checks of one rule on some of the configurations a registry check
    draws for it (which the seed and the number of configurations fix): the forward and rule
    classes, what the example is (``"native"`` for the class's own strategy), the seed, the
    configurations drawn, the indices of those checked, and the examples."""
    text = "|".join([_qualified(keras_class), _qualified(rule), example_kind, str(int(seed)),
                     str(int(configs)), repr(tuple(int(i) for i in indices)),
                     str(int(examples))])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def family_factor(class_name: str) -> float:
    """How many times a small Dense layer's check a check of the class costs
    (:data:`FAMILY_FACTORS`; 1 for the others)."""
    return next((f for part, f in FAMILY_FACTORS if part in class_name), 1.0)


def estimate_seconds(operation: Any, shapes: Any, examples: int) -> float:
    """An estimate, from the configuration alone, of the seconds one check takes: the
    examples times :data:`SECONDS_PER_EXAMPLE`, times the family's factor
    (:data:`FAMILY_FACTORS`), times ``1 + size / SIZE_SCALE`` for the input's elements."""
    name = type(getattr(operation, "operation", operation)).__name__
    return estimate_class_seconds(name, shapes, examples)


def estimate_class_seconds(class_name: str, shapes: Any, examples: int) -> float:
    """:func:`estimate_seconds` for a class known by its name."""
    factor = family_factor(class_name)
    size = sum(_elements(shape) for shape in _shape_list(shapes))
    return max(1, int(examples)) * SECONDS_PER_EXAMPLE * factor * (1.0 + size / SIZE_SCALE)


def remembered_seconds(directory: Path) -> dict[str, float]:
    """The remembered seconds of earlier checks by :func:`cost_key` (empty when there are
    none, or the file cannot be read)."""
    try:
        data = json.loads((directory / TIMINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items()
            if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0}


def remember_seconds(directory: Path, seconds: Mapping[str, float]) -> None:
    """Add ``seconds`` (by :func:`cost_key`) to the remembered ones, replacing the file
    whole (a reader never sees half of it); a cache that cannot be written is left as it
    is."""
    if not seconds:
        return
    merged = remembered_seconds(directory)
    for key in seconds:
        merged.pop(key, None)  # the newest last: the oldest are dropped first
    merged.update({k: round(float(v), 4) for k, v in seconds.items()})
    if len(merged) > MAX_REMEMBERED:
        merged = dict(list(merged.items())[-MAX_REMEMBERED:])
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".task_seconds-")
    except OSError:
        return
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(merged, file)
        os.replace(temporary, directory / TIMINGS_FILE)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _qualified(cls: type) -> str:
    return f"{getattr(cls, '__module__', '')}.{getattr(cls, '__qualname__', cls)}"


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _shape_list(shapes: Any) -> list[Sequence]:
    """``shapes`` (one shape, several, or ``None``) as a list of shapes."""
    if shapes is None:
        return []
    if isinstance(shapes, (list, tuple)) and shapes and all(
            isinstance(s, (list, tuple)) for s in shapes):
        return list(shapes)
    return [shapes] if isinstance(shapes, (list, tuple)) else []


def _elements(shape: Sequence) -> int:
    return math.prod(int(d) for d in shape if isinstance(d, int) and d > 0)
