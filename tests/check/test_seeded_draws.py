"""A seed replays the same examples whatever local modules the process has loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A registry check (layer configurations and examples drawn by Hypothesis), its result's digest
# without timings and the layers' automatic names.
_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys
    os.environ.setdefault("KERAS_BACKEND", "torch")
    if sys.argv[1] == "with-constants":
        import local_constants  # noqa: F401 - a local module full of constants
    if sys.argv[2] == "switch-off":
        import contextlib
        import jacverify.check.layer_configs.drawing as drawing
        import jacverify.check.runner as runner
        runner.draws_from_seed_alone = drawing.draws_from_seed_alone = contextlib.nullcontext
    import keras
    import jacverify

    result = jacverify.check_registry([keras.layers.Dense, keras.layers.Conv1D], configs=3,
                                      examples=10, seed=0)

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("duration_s", "layer_name")}
        return [strip(v) for v in x] if isinstance(x, list) else x

    text = json.dumps(strip(result.to_dict()), sort_keys=True, default=str)
    verdicts = sorted({c.verdict for c in result.checks})
    print(json.dumps({"verdicts": verdicts, "digest": hashlib.sha256(text.encode()).hexdigest()}))
""")


# Many plain numbers drawn as the registry draws configurations: a few drawn constants
# change them (a check's digest may by chance be untouched by the constants it meets).
_DRAWS_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys
    os.environ.setdefault("KERAS_BACKEND", "torch")
    if sys.argv[1] == "with-constants":
        import local_constants  # noqa: F401 - a local module full of constants
    if sys.argv[2] == "switch-off":
        import contextlib
        import jacverify.check.layer_configs.drawing as drawing
        drawing.draws_from_seed_alone = contextlib.nullcontext
    from hypothesis import strategies as st
    from jacverify.check.isolation import check_isolation
    from jacverify.check.layer_configs.drawing import draw_configs

    with check_isolation():
        values = draw_configs(st.tuples(st.floats(-1e3, 1e3), st.integers(-10**6, 10**6)),
                              200, 0)
    text = json.dumps(values)
    print(json.dumps({"verdicts": [], "digest": hashlib.sha256(text.encode()).hexdigest()}))
""")


def _run(tmp_path: Path, constants: str, switch: str = "on", script: str = "probe.py") -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}",
           "JACVERIFY_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(tmp_path / script), constants, switch],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "probe.py").write_text(_SCRIPT)
    (tmp_path / "draws.py").write_text(_DRAWS_SCRIPT)
    values = ", ".join(f"{0.37 + i / 997:.6f}" for i in range(300))
    integers = ", ".join(str(i) for i in range(2, 400, 3))
    (tmp_path / "local_constants.py").write_text(
        f"VALUES = [{values}, -2.5, 1e-3, 123.25]\nCOUNTS = [{integers}]\n")
    return tmp_path


def test_a_seed_draws_the_same_examples_with_other_local_modules_loaded(project):
    plain = _run(project, "plain")
    loaded = _run(project, "with-constants")
    assert plain["verdicts"] == loaded["verdicts"] == ["pass"]
    assert plain["digest"] == loaded["digest"]


def test_without_the_switch_local_constants_change_the_draws(project):
    # The reason for the switch: Hypothesis mixes local constants into its draws.
    plain = _run(project, "plain", "switch-off", "draws.py")
    loaded = _run(project, "with-constants", "switch-off", "draws.py")
    assert plain["digest"] != loaded["digest"]
    # and with the switch on, the same draws do not change
    assert _run(project, "plain", "on", "draws.py") == _run(project, "with-constants", "on",
                                                             "draws.py")
