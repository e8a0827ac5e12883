"""jacverify explain and jacverify attack: pages and figures on a saved model; bad inputs
exit 2 with one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from jacverify.analysis.attacks import example_losses
from jacverify.cli import main
from tests.analysis.models import cnn


@pytest.fixture
def saved(tmp_path):
    model = cnn()
    model.save(tmp_path / "model.keras")
    rng = np.random.default_rng(0)
    x = rng.random((4, 8, 8, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 0]))
    np.save(tmp_path / "short.npy", np.array([0, 1, 2]))
    np.save(tmp_path / "flat.npy", x.reshape(4, -1))
    return tmp_path, model, x


@pytest.mark.parametrize("method", ["saliency", "ig", "smoothgrad"])
def test_explain_writes_a_self_contained_page(saved, method, capsys):
    path, _, _ = saved
    page = path / f"{method}.html"
    status = main(["explain", str(path / "model.keras"), "--input", str(path / "x.npy"),
                   "--method", method, "--steps", "8", "--samples", "2", "--html", str(page)])
    assert status == 0, capsys.readouterr().err
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 8  # input and heatmap of 4 examples
    assert not re.search(r"(src|href)=\"https?:", html)
    if method == "ig":
        assert "completeness error" in capsys.readouterr().out


def test_explain_escapes_what_comes_from_the_model(tmp_path, capsys):
    model = cnn()
    model.name = "<b>bold&amp;"
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8, 1), dtype="float32"))
    assert main(["explain", str(tmp_path / "m.keras"), "--input", str(tmp_path / "x.npy"),
                 "--html", str(tmp_path / "p.html")]) == 0
    html = (tmp_path / "p.html").read_text()
    assert "<b>bold" not in html and "&lt;b&gt;bold&amp;amp;" in html


def test_attack_reports_clean_and_adversarial_figures(saved, capsys):
    path, model, x = saved
    out = path / "attack.json"
    status = main(["attack", str(path / "model.keras"), "--input", str(path / "x.npy"),
                   "--labels", str(path / "y.npy"), "--eps", "0.1", "--json", str(out)])
    assert status == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    y = np.array([0, 1, 2, 0])
    np.testing.assert_allclose(result["clean"]["loss"], example_losses(model, x, y).mean(),
                               rtol=1e-5)
    assert result["adversarial"]["loss"] > result["clean"]["loss"]
    predicted = np.argmax(keras.ops.convert_to_numpy(model(x)), axis=-1)
    assert result["clean"]["accuracy"] == pytest.approx(np.mean(predicted == y))
    assert "adversarial" in capsys.readouterr().out


@pytest.mark.parametrize("arguments,message", [
    (["attack", "{m}", "--input", "{p}/x.npy", "--labels", "{p}/short.npy", "--eps", "0.1"],
     "--labels: got 3 for 4 examples"),
    (["attack", "{m}", "--input", "{p}/x.npy", "--labels", "{p}/y.npy", "--eps", "0"],
     "--eps must be"),
    (["attack", "{m}", "--input", "{p}/flat.npy", "--labels", "{p}/y.npy", "--eps", "0.1"],
     "--input has shape (4, 64)"),
    (["explain", "{m}", "--input", "{p}/flat.npy", "--html", "{p}/o.html"],
     "--input has shape (4, 64)"),
    (["explain", "{m}", "--input", "{p}/missing.npy", "--html", "{p}/o.html"], "no such file"),
    (["explain", "{p}/none.keras", "--input", "{p}/x.npy", "--html", "{p}/o.html"],
     "no such file"),
    (["explain", "{m}", "--input", "{p}/x.npy", "--target", "7", "--html", "{p}/o.html"],
     "target"),
])
def test_bad_inputs_exit_2_with_one_line(saved, capsys, arguments, message):
    path, _, _ = saved
    filled = [a.format(m=path / "model.keras", p=path) for a in arguments]
    assert main(filled) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_the_command_line_parser_loads_neither_keras_nor_torch():
    code = (
        "import sys; from jacverify.cli import build_parser; build_parser(); "
        "import jacverify.analysis; "
        "print(sorted(m for m in ('keras', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_attack_on_a_binary_classifier_reports_its_accuracy(tmp_path, capsys):
    from tests.analysis.models import mlp

    model = mlp(units=1, last="sigmoid")
    model.save(tmp_path / "b.keras")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 6)).astype("float32")
    y = rng.integers(0, 2, 8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "b.json"
    assert main(["attack", str(tmp_path / "b.keras"), "--input", str(tmp_path / "x.npy"),
                 "--labels", str(tmp_path / "y.npy"), "--eps", "0.2", "--method", "fgsm",
                 "--json", str(out)]) == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    predicted = keras.ops.convert_to_numpy(model(x))[:, 0] > 0.5
    assert result["clean"]["accuracy"] == pytest.approx(np.mean(predicted == (y == 1)))
    assert result["adversarial"]["loss"] > result["clean"]["loss"]
