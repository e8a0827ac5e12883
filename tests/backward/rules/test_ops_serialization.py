"""Backward models with the numpy-family op rules save and load (rules that read their
operation at construction, as the element copies' probes do, rebuild from the saved
operation and call arguments)."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from tests.backward.model_reference import assert_model_matches_autograd, functional

CASES = {
    "take_along_axis": (lambda x: ops.take_along_axis(
        x, np.array([[[0, 2], [1, 1], [2, 0]]]), axis=2), [(3, 3)]),
    "nanquantile": (lambda x: ops.nanquantile(x, 0.3, axis=1), [(5,)]),
    "kron": (lambda x: ops.kron(x, np.ones((1, 2, 2), "float32")), [(2, 3)]),
    "select": (lambda x, y: ops.select([x > 0, y > 0], [x, y], x * 3.0), [(5,), (5,)]),
    "tensordot": (lambda x: ops.tensordot(x, np.ones((3, 2), "float32"), axes=1), [(2, 3)]),
    "broadcast_to": (lambda x: ops.broadcast_to(x, (3, 3, 4)), [(1, 4)]),
    "full_like": (lambda x: ops.full_like(x, 2.0) + x, [(3,)]),
    "diff": (lambda x: ops.diff(x, n=2, axis=1), [(5,)]),
    "ldexp": (lambda x: ops.ldexp(x, np.array([1, 2, 0], "int32")), [(3,)]),
    "tile_roll_rot90": (lambda x: ops.rot90(ops.roll(ops.tile(x, (1, 2, 1)), 1, axis=1),
                                            axes=(1, 2)), [(2, 3)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_backward_model_saves_and_loads(name, tmp_path):
    fn, shapes = CASES[name]
    assert_model_matches_autograd(functional(fn, shapes), save_to=tmp_path / f"{name}.keras",
                                  extra_axes=())


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_rule_class_has_its_own_serialization_name():
    """Keras finds a saved rule by its registered name: two classes under one name would load
    as whichever registered last (the abstract bases of the core and rearrangement ops once
    shared one)."""
    import collections

    import keras

    from jacverify import registered_rules
    from jacverify.backward.base import BackwardLayer

    registered_rules()  # every native rule module imported
    names = collections.Counter(
        keras.saving.get_registered_name(c) for c in set(_subclasses(BackwardLayer))
        if c.__module__.startswith("jacverify."))
    assert [name for name, count in names.items() if count > 1] == []
