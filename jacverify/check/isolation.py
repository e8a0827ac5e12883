"""A check leaves the process as it found it.

Checking a rule clones layers (Keras draws their initializers' seeds from Python's ``random``
and names them from process-wide counters), runs Hypothesis, sets torch's thread count and
patches Keras' type promotion for float64 references. :func:`check_isolation` wraps every
public check so that none of it outlives the check, whether it returns or raises:

* the global random states: Python's ``random``, NumPy's global generator, torch's CPU
  generator and Keras' global seed generator are restored, so a user's draws after a check are
  the draws they would have made without it;
* Keras' automatic layer names continue where they were (``dense_2`` stays ``dense_2``);
* the deprecation warnings libraries raise inside the check are silenced
  (:mod:`jacverify.check.library_warnings`), the warning filters restored;
* Hypothesis' files go to jacverify's cache directory (:mod:`jacverify.check.storage`), and
  its storage directory is restored.

torch's threads (:func:`jacverify.check.settings.torch_threads`) and Keras' promotion table
(:func:`jacverify.keras_internals.float64_not_downcast`) are restored by the blocks that change
them. Within a check, Keras' float64 depthwise convolutions without autograd are computed as
shifted sums (:mod:`jacverify.check.float64_depthwise`), perspective transforms are computed on
whole batches instead of image by image and channel by channel
(:mod:`jacverify.check.batched_perspective`), and Keras' own computations are put back when the
check ends.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

from jacverify.check.batched_perspective import batched_perspective_transform
from jacverify.check.float64_depthwise import fast_float64_depthwise
from jacverify.check.library_warnings import library_warnings_silenced
from jacverify.check.storage import hypothesis_storage
from jacverify.keras_internals import KerasGlobalState
from jacverify.shared_switch import SharedSwitch

__all__ = ["check_isolation", "preserved_random_and_names"]


def _capture() -> list:
    return [random.getstate(), np.random.get_state(), torch.get_rng_state(),
            KerasGlobalState.capture()]


def _restore(saved: list) -> None:
    python_state, numpy_state, torch_state, keras_state = saved
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    keras_state.restore()


_random_and_names = SharedSwitch(_capture, _restore)


def preserved_random_and_names() -> contextlib.AbstractContextManager[None]:
    """Restore the global random generators and Keras' name counters when the block ends.

    Only the outermost block captures and restores: inside a model check, the checks of its
    calls draw names and seeds one after the other (no two objects built during the outer
    check get the same automatic name), and everything is put back when the model check ends.
    """
    return _random_and_names()


@contextlib.contextmanager
def check_isolation() -> Iterator[None]:
    """Within the block (or the decorated check), library deprecation warnings are silenced,
    Hypothesis writes to jacverify's cache, float64 depthwise convolutions and perspective
    transforms take their fast paths; the global random states, Keras' name counters and its
    depthwise convolution and perspective transform are restored after."""
    with library_warnings_silenced(), preserved_random_and_names(), hypothesis_storage(), \
            fast_float64_depthwise(), batched_perspective_transform():
        yield
