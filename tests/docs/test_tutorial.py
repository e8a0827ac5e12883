"""The first tutorial (the seed tutorial, imports renamed) runs, and its numbers are right."""

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorials" / "custom_backward.md"
SEED = ROOT.parent / "shared" / "seed" / "custom_backward_tutorial.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.fixture(scope="module")
def tutorial():
    namespace: dict = {"__name__": "tutorial"}
    for block in _python_blocks(TUTORIAL.read_text()):
        exec(compile(block, str(TUTORIAL), "exec"), namespace)
    return namespace


def _autograd_input_gradient(model, x):
    xt = torch.tensor(x, requires_grad=True)
    (y,) = [model(xt)]
    return torch.autograd.grad(y, xt, torch.ones_like(y))[0].numpy()


def test_plus_constant_gradients_equal_torch_autograd(tutorial):
    model = tutorial["model_plusconstant"]
    x = tutorial["random_input"][None]
    expected = _autograd_input_gradient(model, x)
    for name in ("grad_v0", "grad_v2"):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(tutorial[name]), expected, rtol=1e-5, atol=1e-7
        )


def test_model_without_the_rule_is_traced_and_right(tutorial):
    """Without a rule, PlusConstant's call is traced (an addition of a constant)."""
    from jacverify import clone_to_backward

    model = tutorial["model_plusconstant"]
    x = tutorial["random_input"][None]
    backward = clone_to_backward(model)
    got = backward([x, np.ones((1, 1), dtype="float32")])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got),
                               _autograd_input_gradient(model, x), rtol=1e-5, atol=1e-7)


def test_corrected_clip_rule_matches_autograd_where_the_tutorial_rule_does_not(tutorial):
    """Inside the range both rules agree with autograd; below vmin the tutorial's is wrong."""
    from tests.backward.reference import assert_rule_matches_autograd

    clip = tutorial["Clip"](0.0, 2.0)
    x = np.array([[-1.5, 0.5, 1.0, 3.0]], dtype="float32")
    assert_rule_matches_autograd(clip, x, rule_class=tutorial["BackwardClipCorrect"])
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(clip, x, rule_class=tutorial["BackwardClip"])
    inside = np.array([[0.3, 0.5, 1.0, 1.7]], dtype="float32")
    assert_rule_matches_autograd(clip, inside, rule_class=tutorial["BackwardClip"])


@pytest.mark.skipif(not SEED.exists(), reason="the seed tutorial is not beside the checkout")
def test_tutorial_code_is_the_seed_code_with_imports_renamed():
    seed = SEED.read_text()
    blocks = _python_blocks(TUTORIAL.read_text())
    from_seed = [b for b in blocks if "BackwardClipCorrect" not in b]
    assert len(from_seed) >= 9
    for block in from_seed:
        original = block.replace("jacverify", "jacobinet").strip()
        assert original in seed, f"not in the seed tutorial:\n{original}"
