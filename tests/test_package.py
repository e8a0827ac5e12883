"""The package's public surface and its import cost."""

import subprocess
import sys

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
