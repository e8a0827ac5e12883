"""Which warnings a check silences: everything Keras, torch, NumPy, SciPy and Hypothesis raise
inside it, and jacverify's deprecations; not the user's warnings, not jacverify's others. The
warnings are raised as those modules raise them (attributed to the module's name), and
recorded as pytest records them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

from jacverify import check_layer
from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.check.library_warnings import library_warnings_silenced


def _warn_from(module: str, category: type[Warning], text: str) -> None:
    warnings.warn_explicit(text, category, filename=f"{module.replace('.', '/')}.py", lineno=1,
                           module=module, registry={})


CASES = [
    ("keras.src.backend.torch.core", DeprecationWarning, False),
    ("keras.src.ops.nn", UserWarning, False),
    ("torch.nn.functional", UserWarning, False),
    ("numpy.lib", FutureWarning, False),
    ("scipy.differentiate", RuntimeWarning, False),
    ("hypothesis.core", UserWarning, False),
    ("jacverify.check.references", DeprecationWarning, False),
    ("jacverify.check.model_check", UserWarning, True),  # meant for the user
    ("my_project.layers", DeprecationWarning, True),
    ("my_project.layers", UserWarning, True),
    ("kerasish", UserWarning, True),  # only Keras' own modules, not a prefix of a name
]


@pytest.mark.parametrize(("module", "category", "shown"), CASES)
def test_which_warnings_are_silenced(module, category, shown):
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with library_warnings_silenced():
            _warn_from(module, category, "inside a check")
        _warn_from(module, category, "after the check")
    assert [str(w.message) for w in seen] == (
        ["inside a check", "after the check"] if shown else ["after the check"])
    assert warnings.filters == before


class _WarningRule(BackwardNonLinearLayer):
    """An identity rule whose call converts a tensor to numpy the way Keras does on torch
    (NumPy's copy-keyword DeprecationWarning from inside Keras) and warns as user code."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        keras.ops.convert_to_numpy(gradient)
        warnings.warn("the user's rule says hello", UserWarning)
        return gradient


def test_a_check_shows_its_users_warnings_and_not_keras_numpy_conversions():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check_layer(keras.layers.Identity(), _WarningRule, input_shape=(3,), seed=0,
                    examples=3)
        np.array(keras.ops.ones((2,)))  # the same conversion outside a check still warns
    messages = [str(w.message) for w in seen]
    assert "the user's rule says hello" in messages
    inside = [w for w in seen if "copy keyword" in str(w.message)]
    assert len(inside) <= 1  # the one made after the check, if this NumPy/torch raises it


_REGISTRY_RUN = textwrap.dedent("""
    import multiprocessing, warnings
    from concurrent.futures import ProcessPoolExecutor
    from jacverify import check_registry

    if __name__ == "__main__":
        options = dict(configs=3, examples=30, seed=0)
        check_registry(["Power", "LayerNormalization"], **options)
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            check_registry(["Power", "LayerNormalization"], executor=pool, **options)
        warnings.warn("the user's own warning", UserWarning)
""")


def test_a_registry_run_here_and_in_a_worker_warns_only_the_user(tmp_path):
    # Every warning shown (PYTHONWARNINGS reaches the worker too). Power's saturation examples
    # overflow (NaN arithmetic in the finite differences' bookkeeping); the registry's
    # LayerNormalization(rms_scaling=True) makes Keras warn where a worker rebuilds it.
    script = tmp_path / "registry_run.py"
    script.write_text(_REGISTRY_RUN)
    environment = {**os.environ, "PYTHONWARNINGS": "always", "KERAS_BACKEND": "torch"}
    finished = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=600, env=environment, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-2000:]
    warned = [line for line in finished.stderr.splitlines() if "Warning: " in line]
    assert warned == [f"{script}:12: UserWarning: the user's own warning"]
