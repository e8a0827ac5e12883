"""The package's public surface and its import cost."""

import subprocess
import sys

import pytest

import jacverify


def test_every_public_name_resolves():
    assert set(jacverify.__all__) - {"__version__"} == set(jacverify._EXPORTS)
    for name in jacverify.__all__:
        assert getattr(jacverify, name) is not None


def test_importing_the_package_does_not_load_keras_or_torch():
    code = (
        "import sys, jacverify, jacverify.pytest_plugin; "
        "print(sorted(m for m in ('keras', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_the_builder_registers_saved_model_classes(tmp_path):
    code = (
        "import os; os.environ.setdefault('KERAS_BACKEND', 'torch'); "
        "import jacverify.backward, keras; "
        "from keras.saving import get_registered_object as get; "
        "print(get('jacverify>BackwardModel') is not None, "
        "get('jacverify>BackwardDense') is not None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True True"


def test_a_module_loaded_on_first_use_runs_its_code_when_first_read(tmp_path, monkeypatch):
    from jacverify.lazy_exports import load_on_first_use

    package = tmp_path / "deferred_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("RUNS = []\n")
    (package / "heavy.py").write_text(
        "import deferred_pkg\ndeferred_pkg.RUNS.append('heavy')\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("deferred_pkg", "deferred_pkg.heavy"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert load_on_first_use("deferred_pkg.heavy") is True
    import deferred_pkg
    import deferred_pkg.heavy as heavy

    assert deferred_pkg.RUNS == []  # imported, not run
    assert heavy.VALUE == 42
    assert deferred_pkg.RUNS == ["heavy"]  # run once, on the first read
    assert heavy.VALUE == 42 and deferred_pkg.RUNS == ["heavy"]
    assert load_on_first_use("deferred_pkg.heavy") is False  # already imported
    assert load_on_first_use("deferred_pkg.missing") is False
    assert load_on_first_use("no_such_package_anywhere.module") is False


def test_a_module_loaded_on_first_use_that_fails_is_gone_as_after_a_failed_import(
        tmp_path, monkeypatch):
    from jacverify.lazy_exports import load_on_first_use

    (tmp_path / "deferred_broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "deferred_broken", raising=False)
    assert load_on_first_use("deferred_broken") is True
    import deferred_broken

    with pytest.raises(RuntimeError, match="broken on purpose"):
        deferred_broken.anything  # noqa: B018 - the first read runs the module
    assert "deferred_broken" not in sys.modules
