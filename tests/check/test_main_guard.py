"""A script that starts checks with several jobs outside ``if __name__ == "__main__":``: its
workers would run it again, so the checks run in the calling process, with one warning."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from jacverify.check.main_guard import unguarded_main_call

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, source: str, timeout: float = 240) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "torch"}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=timeout)


def test_a_call_at_the_top_level_is_told_from_one_under_the_guard(tmp_path):
    result = _run(tmp_path, """
        from jacverify.check.main_guard import unguarded_main_call

        def helper():
            return unguarded_main_call()

        print("top:", helper())
        if "__main__" == __name__:
            print("guarded:", helper())
        if __name__ == "__main__" and True:
            print("compound:", helper())
        if __name__ == "__main__" or True:
            print("either:", helper())
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"top: {tmp_path / 'script.py'}, line 7"
    assert lines[1] == "guarded: None"
    assert lines[2] == "compound: None"
    # A condition that also holds in a worker (where the script is "__mp_main__") guards
    # nothing.
    assert lines[3] == f"either: {tmp_path / 'script.py'}, line 13"


def test_no_script_means_no_complaint():
    # Under pytest the main module is pytest's own, which guards its work.
    assert unguarded_main_call() is None
    result = subprocess.run(
        [sys.executable, "-c", "from jacverify.check.main_guard import unguarded_main_call;"
         "print(unguarded_main_call())"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60)
    assert result.stdout.strip() == "None", result.stderr


def test_a_package_run_with_dash_m_is_not_imported_again(tmp_path):
    """``python -m package`` runs ``package/__main__.py``, which workers do not import (the
    ``jacverify`` command's ``python -m jacverify.cli`` among them); ``python -m
    package.module`` they do."""
    package = tmp_path / "toolpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    body = ("from jacverify.check.main_guard import unguarded_main_call\n"
            "print(unguarded_main_call())\n")
    (package / "__main__.py").write_text(body)
    (package / "tool.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    as_package = subprocess.run([sys.executable, "-m", "toolpkg"], capture_output=True,
                                text=True, env=env, timeout=60)
    as_module = subprocess.run([sys.executable, "-m", "toolpkg.tool"], capture_output=True,
                               text=True, env=env, timeout=60)
    assert as_package.stdout.strip() == "None", as_package.stderr
    assert as_module.stdout.strip() == f"{package / 'tool.py'}, line 2", as_module.stderr


def test_unguarded_checks_run_here_with_one_warning_and_the_same_verdicts(tmp_path):
    source = """
        import warnings
        import jacverify

        warnings.simplefilter("always")
        result = jacverify.check_registry(["ReLU", "Softmax"], seed=0, jobs=2)
        print("VERDICTS", [(c.label, c.verdict) for c in result.checks])
    """
    unguarded = _run(tmp_path, source)
    assert unguarded.returncode == 0, unguarded.stderr
    assert "Traceback" not in unguarded.stderr
    assert unguarded.stderr.count("outside `if __name__ == \"__main__\":`") == 1
    assert "script.py, line 6" in unguarded.stderr
    serial = _run(tmp_path, source.replace("jobs=2", "jobs=1"))
    assert serial.returncode == 0, serial.stderr
    verdicts = [line for line in unguarded.stdout.splitlines() if line.startswith("VERDICTS")]
    assert verdicts and verdicts == [
        line for line in serial.stdout.splitlines() if line.startswith("VERDICTS")]
    assert "outside `if __name__" not in serial.stderr
