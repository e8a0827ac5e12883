"""The command line, driven as a user drives it: saved .keras models, exit statuses, messages,
reports."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import jsonschema
import keras
import pytest

import jacverify
from jacverify import LayerCheck, ModelCheck
from jacverify.cli import main
from jacverify.examples.tutorial import clip_model

SCHEMA = json.loads(
    (Path(jacverify.__file__).parent / "report" / "schema.json").read_text(encoding="utf-8")
)
#: Keras refuses "/" in names; this one is HTML all the same.
HOSTILE_NAME = "<img src=x onerror=alert(1)><script>alert(1)<\\script>"

RULES = '''\
"""The tutorial's Clip with the tutorial's (wrong) rule."""
import jacverify
from jacverify.examples.tutorial import BackwardClip, Clip

jacverify.register_backward(Clip)(BackwardClip)
'''


@keras.saving.register_keras_serializable(package="jacverify_tests_cli")
class Twice(keras.layers.Layer):
    """A layer without a backward rule that cannot be traced (it calls torch directly)."""

    def call(self, inputs):
        import torch

        return torch.mul(inputs, 2)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m jacverify.cli ARGS`` in a fresh process."""
    env = {**os.environ, "KERAS_BACKEND": "torch", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "jacverify.cli", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=600,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Saved models and a rules file in one directory."""
    folder = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="tanh", name="hidden"),
         keras.layers.Dense(2, name="out")],
        name="mlp",
    )
    mlp.save(folder / "mlp.keras")
    model = clip_model()
    model.layers[0].name = HOSTILE_NAME
    model.layers[1].name = "clip"  # whatever Keras' name counter says in this process
    model.save(folder / "clip.keras")
    keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2)]).save(
        folder / "lambda.keras"
    )
    twice = keras.Sequential([keras.Input((3,)), Twice(name="twice")], name="twice")
    twice.save(folder / "twice.keras")
    (folder / "rules.py").write_text(RULES, encoding="utf-8")
    (folder / "broken_rules.py").write_text("raise RuntimeError('oops in the rules')\n")
    (folder / "notes.txt").write_text("not a model")
    (folder / "text.keras").write_text("not a zip")
    data = (folder / "mlp.keras").read_bytes()
    (folder / "truncated.keras").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(folder / "mlp.keras") as archive:
        info = archive.getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    flipped = bytearray(data)
    for i in range(start + 100, start + 300):
        flipped[i] ^= 0xFF
    (folder / "flipped.keras").write_bytes(bytes(flipped))
    with zipfile.ZipFile(folder / "empty.keras", "w") as archive:
        archive.writestr("readme.txt", "no config")
    return folder


# ----------------------------------------------------------------- end to end, as a user
def test_a_correct_model_passes(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    assert main(["check", "mlp.keras", "--examples", "5", "--seed", "0"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.rstrip().splitlines()
    assert lines[-1].startswith("PASS  mlp: 2 rules checked: 2 pass; end to end pass")
    assert "seed 0" in lines[-1]
    assert any(line.split()[:4] == ["1", "hidden", "Dense", "BackwardDense"] for line in lines)
    assert "(end to end)" in captured.out
    assert not (files / ".hypothesis").exists()  # nothing written where the user is


def test_the_tutorial_clip_rule_fails_and_the_reports_show_it(files, tmp_path):
    before = digest(files / "clip.keras")
    result = run(
        "check", str(files / "clip.keras"), "--rules", str(files / "rules.py"), "--examples",
        "8", "--seed", "0", "--json", str(tmp_path / "result.json"), "--html",
        str(tmp_path / "report.html"), cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "FAIL clip_model: clip (Clip, rule BackwardClip)" in out
    summary = out.rstrip().splitlines()[-1]
    assert summary.startswith("FAIL  clip_model") and "first failing layer clip" in summary
    assert digest(files / "clip.keras") == before  # the model file is only read
    assert sorted(os.listdir(tmp_path)) == ["report.html", "result.json"]  # no temporaries

    document = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    model = document["models"][0]
    assert model["first_failure"] == "clip"
    assert [layer["layer_name"] for layer in model["layers"]][:2] == [HOSTILE_NAME, "clip"]
    assert document["options"]["seed"] == 0 and document["options"]["examples"] == 8

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<table class="sortable layers"' in page and ">clip<" in page
    assert page.count("data:image/png;base64,") >= 3  # chart, line, heatmaps
    assert "directional derivative" in page
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(1)" in page

    # Rendered again from the saved result, in this process.
    assert main(["report", str(tmp_path / "result.json"), "--html",
                 str(tmp_path / "again.html"), "--quiet"]) == 1  # exits as check did
    again = (tmp_path / "again.html").read_text(encoding="utf-8")
    assert again.count("data:image/png;base64,") == page.count("data:image/png;base64,")


def test_an_unknown_layer_class_is_one_line_without_traceback(files):
    result = run("check", "clip.keras", cwd=files)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown layer class 'Clip'" in lines[0] and "--rules" in lines[0]


# --------------------------------------------------------------- bad input, in process
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "missing.keras"], "missing.keras: no such file"),
        (["check", "notes.txt"], "not a .keras file"),
        (["check", "text.keras"], "not a .keras archive (not a zip file"),
        (["check", "truncated.keras"], "not a .keras archive"),
        (["check", "flipped.keras"], "corrupt .keras archive (model.weights.h5 fails"),
        (["check", "empty.keras"], "no config.json inside"),
        (["check", "mlp.keras", "--rules", "nowhere.py"], "--rules nowhere.py: no such file"),
        (["check", "mlp.keras", "--rules", "broken_rules.py"],
         "importing it raised RuntimeError: oops in the rules"),
        (["check", "mlp.keras", "--rules", "no_such_module_xyz"],
         "no module named 'no_such_module_xyz'"),
        (["check", "lambda.keras"], "pass --unsafe-deserialization"),
        (["check", "mlp.keras", "--examples", "0"], "--examples 0: give at least 1"),
        (["check", "mlp.keras", "--jobs", "0"], "--jobs 0: give at least 1"),
        (["check", "mlp.keras", "--layers", "hidden,nope"],
         "--layers names no call of model 'mlp': nope. Give layer names or classes among its "
         "calls: hidden, out"),
        (["check", "mlp.keras", "--json", "no/such/dir/r.json"], "no such directory"),
        (["check", "mlp.keras", "--html", "mlp.keras"], "is the model file"),
        (["report", "notes.txt"], "not JSON"),
        (["report", "missing.json"], "missing.json: no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(files, monkeypatch, capsys, args, message):
    monkeypatch.chdir(files)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = digest(files / "mlp.keras")
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"jacverify {args[0]}: error: ")
    assert message in lines[0]
    assert digest(files / "mlp.keras") == before


def test_debug_shows_the_traceback(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["check", "mlp.keras", "--rules", "broken_rules.py", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "oops in the rules" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["check"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "m.keras", "--convention", "jax"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("command", [[], ["check"], ["report"], ["list"], ["example"]])
def test_help_and_version_everywhere(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: jacverify" in out
    if command == ["check"]:
        for option in ("--rules", "--examples", "--seed", "--json", "--html", "--convention",
                       "--quiet", "--strict", "--debug", "--unsafe-deserialization", "Exit"):
            assert option in out
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"jacverify {jacverify.__version__}"


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "Keras class (module)" in out and "rule class (module)" in out and "source" in out
    row = next(line for line in out.splitlines() if line.startswith("Dense (keras.layers)"))
    assert "BackwardDense" in row and "native" in row
    # the total counts the native rules (and those of packages imported in this process)
    assert re.match(r"\d+ rules \(\d+ native", out.rstrip().splitlines()[-1])


def test_list_shows_the_users_rules_with_their_modules(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    monkeypatch.setattr(sys, "path", list(sys.path))
    from jacverify.examples.tutorial import Clip

    try:
        assert main(["list", "--rules", "rules.py", "--source", "user"]) == 0
    finally:
        jacverify.unregister_backward(Clip)
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[1].split() == ["Clip", "(jacverify.examples.tutorial)", "BackwardClip",
                                "(jacverify.examples.tutorial)", "user"]
    assert lines[-1] == "1 rules (1 user)"


# ------------------------------------------------------- exit statuses, with a stand-in
def _stand_in(verdicts, calls):
    def check_model(model, mapping=None, *, examples, seed, convention, progress, inputs=None,
                    fallback=None, layers=None, only=None, jobs=1):
        calls.append({"examples": examples, "seed": seed, "convention": convention})
        progress(0, 2, "[bold]markup[/bold] <b>")
        progress(1, 2, "end to end")
        layers = [LayerCheck(verdict=v, reason=v, layer_name=f"l{i}", layer_class="C",
                             rule_class="R") for i, v in enumerate(verdicts)]
        return ModelCheck(model.name, layers, seed=seed if seed is not None else 11)

    return check_model


@pytest.mark.parametrize(
    ("verdicts", "strict", "status"),
    [
        (["pass"], False, 0),
        (["pass", "inconclusive", "skipped"], False, 0),
        (["pass", "inconclusive"], True, 1),
        (["pass", "skipped"], True, 1),
        (["pass", "boundary"], False, 1),
        (["error"], False, 1),
    ],
)
def test_exit_status(files, monkeypatch, capsys, verdicts, strict, status):
    calls: list = []
    monkeypatch.setattr("jacverify.check.model_check.check_model", _stand_in(verdicts, calls))
    args = ["check", str(files / "mlp.keras"), "--examples", "3", "--convention", "autograd"]
    assert main([*args, *(["--strict"] if strict else [])]) == status
    assert calls == [{"examples": 3, "seed": None, "convention": "autograd"}]
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("FAIL" if status else "PASS")


def test_quiet_prints_only_the_summary(files, monkeypatch, capsys):
    monkeypatch.setattr("jacverify.check.model_check.check_model", _stand_in(["pass"], []))
    assert main(["check", str(files / "mlp.keras"), "--quiet", "--seed", "4"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        captured.out.strip()
    ] and captured.out.startswith("PASS  mlp: 1 rule checked: 1 pass; seed 4")
    assert captured.err == ""


def test_an_internal_error_is_one_line_exit_3(files, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("checker bug\nsecond line")

    monkeypatch.setattr("jacverify.check.model_check.check_model", broken)
    assert main(["check", str(files / "mlp.keras")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["jacverify check: internal error: RuntimeError: checker bug (--debug shows "
                   "the traceback)"]


def test_reports_are_written_whole(files, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("jacverify.check.model_check.check_model", _stand_in(["fail"], []))
    (tmp_path / "r.json").write_text("previous", encoding="utf-8")
    assert main(["check", str(files / "mlp.keras"), "--json", str(tmp_path / "r.json"),
                 "--html", str(tmp_path / "r.html")]) == 1
    assert sorted(os.listdir(tmp_path)) == ["r.html", "r.json"]
    document = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert document["verdict"] == "fail"
    out = capsys.readouterr().out
    assert f"JSON report: {tmp_path / 'r.json'}" in out


@pytest.mark.slow
def test_a_rules_module_defining_its_own_layer(tmp_path):
    """The common case: one module defines the custom layer and registers its rule; given by
    its dotted name, it is imported (from the current directory) before the model loads."""
    rules = tmp_path / "halve_rules.py"
    rules.write_text(textwrap.dedent('''
        import keras
        import jacverify

        @keras.saving.register_keras_serializable(package="cli_rules_test")
        class Halve(keras.layers.Layer):
            def call(self, x):
                return x / 2

        @jacverify.register_backward(Halve)
        class BackwardHalve(jacverify.BackwardLinearLayer):
            def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
                return gradient / 2
    '''))
    spec = importlib.util.spec_from_file_location("cli_test_halve_rules", rules)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        keras.Sequential([keras.Input((3,)), module.Halve()], name="halve").save(
            tmp_path / "halve.keras"
        )
    finally:
        jacverify.unregister_backward(module.Halve)
    result = run("check", "halve.keras", "--rules", "halve_rules", "--examples", "4",
                 "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PASS  halve: 1 rule checked: 1 pass; end to end pass")


# -------------------------- a newcomer's model: a layer without a rule + a custom layer
USER_RULES = '''\
"""A custom layer and its (right) rule, as a user writes them."""
import keras
import jacverify


@keras.saving.register_keras_serializable(package="jacverify_tests_user")
class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return self.factor * x

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="jacverify_tests_user")
class Mystery(keras.layers.Layer):
    """No rule, and not traceable: it calls torch on its input directly."""

    def call(self, x):
        import torch

        return torch.tanh(x)


@jacverify.register_backward(Scale)
class BackwardScale(jacverify.BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return self.layer.factor * gradient
'''


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """A model with a layer without a rule, the user's Scale layer and a Dense; its rules file; and
    input arrays."""
    import numpy as np

    folder = tmp_path_factory.mktemp("user")
    (folder / "user_rules.py").write_text(USER_RULES, encoding="utf-8")
    before = set(jacverify.registered_rules())
    spec = importlib.util.spec_from_file_location("cli_test_user_rules", folder / "user_rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 3)), module.Mystery(name="mystery"),
                              module.Scale(3.0, name="scale"), keras.layers.Dense(2, name="out")],
                             name="user_model")
    model.save(folder / "user.keras")
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.standard_normal((3, 4, 3)).astype("float32"))
    np.save(folder / "bad.npy", rng.standard_normal((3, 5)).astype("float32"))
    np.savez(folder / "named.npz", **{model.inputs[0].name: rng.standard_normal((2, 4, 3))})
    yield folder
    for keras_class in set(jacverify.registered_rules()) - before:
        jacverify.unregister_backward(keras_class)


def _rows(out: str) -> dict:
    return {line.split()[1]: line.split() for line in out.splitlines()
            if line.split()[:1] and line.split()[0].isdigit()}


def test_the_custom_layer_is_checked_and_the_one_without_a_rule_reported(
    user_files, monkeypatch, capsys
):
    monkeypatch.chdir(user_files)
    monkeypatch.setattr(sys, "path", list(sys.path))
    args = ["check", "user.keras", "--rules", "user_rules.py", "--examples", "5", "--seed", "0"]
    assert main(args) == 1
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["mystery"][2:6] == ["Mystery", "-", "no", "rule"]
    assert rows["scale"][2:5] == ["Scale", "BackwardScale", "pass"]
    assert rows["out"][4] == "pass"
    assert "NO RULE user_model: mystery (Mystery, rule -): no backward rule for Mystery" in out
    assert "docs/writing_rules.md" in out
    assert "not run: 1 call(s) have no backward rule (mystery)" in out  # end to end, and why
    assert out.rstrip().splitlines()[-1].startswith(
        "FAIL  user_model: 2 rules checked: 2 pass; 1 call without a rule (mystery); end to end "
        "skipped")

    assert main([*args, "--allow-no-rule", "--quiet"]) == 0
    assert "calls without a rule allowed" in capsys.readouterr().out

    assert main([*args, "--fallback", "autograd", "--json", "fallback.json"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["mystery"][2:5] == ["Mystery", "AutogradFallback", "skipped"]
    document = json.loads((user_files / "fallback.json").read_text(encoding="utf-8"))
    assert document["models"][0]["end_to_end"]["verdict"] == "pass"
    assert "not checked" in document["models"][0]["layers"][0]["reason"]
    assert document["options"]["fallback"] == "autograd"


def test_layers_and_only_choose_the_calls(user_files, monkeypatch, capsys):
    monkeypatch.chdir(user_files)
    monkeypatch.setattr(sys, "path", list(sys.path))
    args = ["check", "user.keras", "--rules", "user_rules.py", "--examples", "5", "--seed", "0",
            "--jobs", "1"]
    assert main([*args, "--only", "custom", "--json", "custom.json"]) == 1
    rows = _rows(capsys.readouterr().out)
    assert set(rows) == {"mystery", "scale"}  # the Dense 'out' ships with jacverify
    document = json.loads((user_files / "custom.json").read_text(encoding="utf-8"))
    assert document["options"]["only"] == "custom"
    assert main([*args, "--layers", "scale", "--layers", "Dense", "--allow-no-rule"]) == 0
    assert set(_rows(capsys.readouterr().out)) == {"scale", "out"}


def test_jobs_2_gives_the_verdicts_of_jobs_1(user_files, monkeypatch, capsys):
    monkeypatch.chdir(user_files)
    monkeypatch.setattr(sys, "path", list(sys.path))
    args = ["check", "user.keras", "--rules", "user_rules.py", "--examples", "5", "--seed", "0",
            "--fallback", "autograd"]
    documents = []
    for jobs in ("1", "2"):
        assert main([*args, "--jobs", jobs, "--json", f"jobs{jobs}.json", "--quiet"]) == 0
        document = json.loads((user_files / f"jobs{jobs}.json").read_text(encoding="utf-8"))
        # a rules file loaded twice in one process gets a new module name the second time
        text = re.sub(r"_jacverify_rules_\d+_", "", json.dumps(document["models"][0]["layers"]))
        documents.append([{k: v for k, v in check.items() if k != "duration_s"}
                          for check in json.loads(text)])
    assert documents[0] == documents[1]


def test_the_worker_server_starts_early_only_for_checks_worth_sharing(files, monkeypatch):
    from jacverify.cli import check as check_command
    from jacverify.cli.common import UsageError

    started = []
    monkeypatch.setattr(check_command, "start_worker_server", lambda: started.append(True))
    monkeypatch.setattr(check_command, "idle_core", lambda: True)

    def stop(*args):
        raise UsageError("stopped before checking")

    monkeypatch.setattr(check_command, "_check", stop)
    monkeypatch.chdir(files)
    assert check_command.expected_check_seconds(files / "mlp.keras", 50) == pytest.approx(
        2 * 50 * check_command.SECONDS_PER_EXAMPLE)  # two Dense layers
    for examples, jobs in (("3", "2"), ("50", "1")):
        assert main(["check", "mlp.keras", "--examples", examples, "--jobs", jobs]) == 2
    assert started == []
    assert main(["check", "mlp.keras", "--examples", "50", "--jobs", "2"]) == 2
    assert started == []  # about 1 s of checking: not worth the server's start and end
    assert main(["check", "mlp.keras", "--examples", "200", "--jobs", "2"]) == 2
    assert started == [True]
    monkeypatch.setattr(check_command, "idle_core", lambda: False)  # a busy machine
    assert main(["check", "mlp.keras", "--examples", "200", "--jobs", "2"]) == 2
    assert started == [True]


@pytest.mark.parametrize(
    ("inputs", "status", "message"),
    [
        ("x.npy", 0, None),
        ("named.npz", 0, None),
        ("bad.npy", 2, "--inputs bad.npy: has shape (3, 5) for model input"),
        ("missing.npy", 2, "--inputs missing.npy: no such file"),
        ("user_rules.py", 2, "give a .npy file"),
    ],
)
def test_inputs_from_a_file(user_files, monkeypatch, capsys, inputs, status, message):
    monkeypatch.chdir(user_files)
    monkeypatch.setattr(sys, "path", list(sys.path))
    args = ["check", "user.keras", "--rules", "user_rules.py", "--examples", "3", "--seed", "1",
            "--inputs", inputs, "--allow-no-rule", "--json", "inputs.json", "--quiet"]
    assert main(args) == status
    captured = capsys.readouterr()
    if message is None:
        document = json.loads((user_files / "inputs.json").read_text(encoding="utf-8"))
        rows = {"x.npy": 3, "named.npz": 2}[inputs]
        assert document["models"][0]["notes"] == [
            f"layers were checked around the activations of {rows} inputs"]
        assert document["options"]["inputs"] == inputs
    else:
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("jacverify check: error: ")
        assert message in lines[0]


# ------------------------------------------------------------ every replay reproduces
def _counterexamples(document: dict) -> dict:
    model = document["models"][0]
    checks = [*model["layers"], model["end_to_end"]]
    return {c["layer_name"]: (c["verdict"], c["counterexample"]["input"],
                              c["counterexample"]["rule_output"], c["counterexample"]["message"])
            for c in checks if c["verdict"] in ("fail", "boundary", "error")}


def test_every_printed_replay_reproduces_its_counterexample(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["check", "clip.keras", "--rules", "rules.py", "--examples", "8",
                 "--json", "first.json", "--html", "first.html"]) == 1  # a drawn seed
    out = capsys.readouterr().out
    first = json.loads((files / "first.json").read_text(encoding="utf-8"))
    wanted = _counterexamples(first)
    assert wanted and "clip" in wanted
    printed = [line.split("replay: ", 1)[1] for line in out.splitlines()
               if line.startswith("  replay: ")]
    assert len(printed) == len(wanted)  # one per failing check
    seed = first["models"][0]["seed"]
    assert f"--seed {seed}" in printed[0] and f"seed {seed + 1}" not in out
    page = (files / "first.html").read_text(encoding="utf-8")
    for command in set(printed):
        assert f"<pre>{command}</pre>" in page  # the HTML gives the same command
        for check in first["models"][0]["layers"]:
            if check["layer_name"] in wanted:
                assert check["replay_command"] == command  # and the JSON
        parts = shlex.split(command)
        assert parts[:2] == ["jacverify", "check"]
        assert main([*parts[1:], "--json", "again.json", "--quiet"]) == 1
        again = json.loads((files / "again.json").read_text(encoding="utf-8"))
        assert _counterexamples(again) == wanted


# ------------------------------------------------------------------ off a terminal
def test_progress_off_a_terminal_is_one_line_per_call(files):
    result = run("check", "mlp.keras", "--examples", "3", "--seed", "0", "--jobs", "1",
                 cwd=files)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(" s  ", 1)[1] for line in lines] == [
        "[1/3] checking hidden", "[2/3] checking out", "[3/3] checking mlp (end to end)"]
    quiet = run("check", "mlp.keras", "--examples", "3", "--seed", "0", "--progress", "none",
                cwd=files)
    assert quiet.returncode == 0 and quiet.stderr == ""


EXIT_RULES = RULES + '''
import atexit
import pathlib


class Teardown:
    """Writes a file when Python clears this module at the end of the process."""

    def __del__(self):
        pathlib.Path("teardown.txt").write_text("cleared")


TEARDOWN = Teardown()
atexit.register(lambda: pathlib.Path("at_exit.txt").write_text("ran"))
'''


def test_the_process_ends_after_its_exit_handlers_with_its_status(files, tmp_path):
    """The command's process skips Python's clearing of its modules, not its exit handlers,
    its output or its status."""
    (tmp_path / "exit_rules.py").write_text(EXIT_RULES, encoding="utf-8")
    (tmp_path / "clip.keras").write_bytes((files / "clip.keras").read_bytes())
    result = run("check", "clip.keras", "--rules", "exit_rules.py", "--examples", "5",
                 "--seed", "0", "--json", "out.json", "--progress", "none", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # the tutorial's rule is wrong
    assert result.stdout.rstrip().splitlines()[-1].startswith("FAIL")
    document = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert [c["verdict"] for c in document["models"][0]["layers"]][1] == "fail"
    assert (tmp_path / "at_exit.txt").read_text() == "ran"
    assert not (tmp_path / "teardown.txt").exists()
    # under coverage measurement (its exit handler registered first) the usual end
    code = ("import sys, types\nsys.modules['coverage'] = types.ModuleType('coverage')\n"
            "from jacverify.cli import console_main\nconsole_main()")
    usual = subprocess.run(
        [sys.executable, "-c", code, "check", "clip.keras", "--rules", "exit_rules.py",
         "--examples", "3", "--seed", "0", "--progress", "none", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert usual.returncode == 1, usual.stderr
    assert (tmp_path / "teardown.txt").read_text() == "cleared"


def test_another_backend_is_one_line_exit_2(files):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-m", "jacverify.cli", "check", "mlp.keras"],
                            cwd=files, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "jacverify check: error: KERAS_BACKEND=jax: jacverify needs the torch backend for now; "
        "unset KERAS_BACKEND or set KERAS_BACKEND=torch"]


@pytest.mark.parametrize(
    "args",
    [["--help"], ["check", "--help"], ["check", "missing.keras"], ["check", "."],
     ["check", "notes.txt"], ["report", "missing.json"], ["check", "mlp.keras", "--inputs",
                                                          "x.csv"]],
)
def test_usage_answers_come_before_torch_and_keras(files, args):
    code = ("import sys\nfrom jacverify.cli import main\ntry:\n    status = main(sys.argv[1:])\n"
            "except SystemExit as exit:\n    status = exit.code\n"
            "print(status, 'torch' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=files, capture_output=True,
                            text=True, timeout=120)
    status, torch_loaded, keras_loaded = result.stdout.strip().splitlines()[-1].split()
    assert status == ("0" if "--help" in args else "2"), result.stderr
    assert (torch_loaded, keras_loaded) == ("False", "False")


def test_check_loads_only_what_it_needs(files):
    """A check without --html loads neither Jinja2 nor the registry check's configuration
    strategies, nor the plugins other packages register with Hypothesis, nor matplotlib's
    pyplot (Keras imports it; it runs only when used); it writes nothing to the current
    directory."""
    unneeded = ["jinja2", "jacverify.report.html", "jacverify.check.registry_check",
                "jacverify.check.layer_configs", "trio", "pytest", "matplotlib.backend_bases",
                "matplotlib.figure"]
    code = ("import sys\nfrom jacverify.cli import main\nstatus = main(sys.argv[1:])\n"
            f"print(status, [m for m in {unneeded!r} if m in sys.modules])")
    before = sorted(p.name for p in files.iterdir())
    result = subprocess.run(
        [sys.executable, "-c", code, "check", "mlp.keras", "--examples", "3", "--seed", "0",
         "--progress", "none", "--quiet"],
        cwd=files, capture_output=True, text=True, timeout=600,
    )
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout + result.stderr
    assert sorted(p.name for p in files.iterdir()) == before


@pytest.mark.slow
def test_example_writes_into_a_directory_of_its_own(tmp_path):
    result = run("example", "--examples", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "jacverify-example").iterdir())
    assert written == sorted([
        "models", "plus_constant_model-tutorial_rules.html",
        "plus_constant_model-tutorial_rules.json", "clip_model-tutorial_rules.html",
        "clip_model-tutorial_rules.json", "clip_model-corrected_rules.html",
        "clip_model-corrected_rules.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jacverify-example"]
    assert result.stdout.count("(as expected)") == 3
