"""What changed in a rule's config between ``get_config()`` and the config of the rule rebuilt
by ``from_config``: the entries that differ, by path, and which of them only Keras itself
loses.

Keras builds a layer that has no ``build()`` of its own (``ReLU``, ``Activation``,
``Softmax``, pooling...) when it is constructed, and when it deserializes such a layer it skips
the ``build_config`` the layer was saved with. A rule whose config holds such a layer built
with ``layer.build(shape)`` (and whose ``from_config`` does not give the record back, as
jacverify's base classes do) sees the record vanish in the round trip: nothing the rule
computes changes, and a saved backward model loads and runs the same. The checker does not
call that an error (:func:`lost_by_keras`).
"""

from __future__ import annotations

import copy
from typing import Any

import keras

__all__ = ["changed_paths", "lost_by_keras"]

#: The config key under which Keras serializes a layer's build record.
BUILD_CONFIG = "build_config"


def changed_paths(before: Any, after: Any, limit: int = 8) -> list[str]:
    """The dotted paths (``layer.build_config``, ``scale``, ``shapes.1``) of the entries that
    differ between two configs made of plain data (dicts, lists, numbers, strings), at most
    ``limit`` of them, in sorted order of keys; ``[]`` when they are equal."""
    found: list[str] = []
    _collect(before, after, "", found, limit)
    return found


def _collect(before: Any, after: Any, path: str, found: list[str], limit: int) -> None:
    if len(found) >= limit or before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in before or key not in after:
                if len(found) < limit:
                    found.append(where)
                continue
            _collect(before[key], after[key], where, found, limit)
        return
    if (isinstance(before, (list, tuple)) and isinstance(after, (list, tuple))
            and len(before) == len(after)):
        for index, (b, a) in enumerate(zip(before, after, strict=True)):
            _collect(b, a, f"{path}.{index}" if path else str(index), found, limit)
        return
    found.append(path or "(the whole config)")


def _at(config: Any, path: str) -> Any:
    """The entry of ``config`` at a dotted path (``None`` when there is none)."""
    value = config
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def lost_by_keras(before: dict, after: dict, path: str) -> bool:
    """Whether the change at ``path`` (one of :func:`changed_paths`) is a serialized layer's
    ``build_config`` that the rebuilt config lacks and that Keras' own round trip of that layer
    (deserialize, then serialize) loses too."""
    parent_path, _, key = path.rpartition(".")
    if key != BUILD_CONFIG or not parent_path:
        return False
    serialized = _at(before, parent_path)
    if not isinstance(serialized, dict) or BUILD_CONFIG not in serialized:
        return False
    rebuilt = _at(after, parent_path)
    if not isinstance(rebuilt, dict) or BUILD_CONFIG in rebuilt:
        return False  # the record came back, but different: that is the rule's change
    try:
        layer = keras.saving.deserialize_keras_object(copy.deepcopy(serialized))
        again = keras.saving.serialize_keras_object(layer)
    except Exception:  # noqa: BLE001 - a layer Keras cannot rebuild: not Keras' own loss
        return False
    return isinstance(again, dict) and BUILD_CONFIG not in again
