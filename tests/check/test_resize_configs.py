"""The resize configurations of ``check_registry`` (``keras.layers.Resizing`` and
``keras.ops.image.resize``) never draw an anti-aliased resize to a width of 1: torch's forward
then repeats the first output row while its autograd interpolates, so the references
disagree; the rules follow the forward there, which tests/backward/rules tests directly."""

import keras
import pytest

from jacverify.check.layer_configs import draw_configs, native_example_strategy
from jacverify.keras_internals import ops_image as kimage


def _settings(operation) -> tuple:
    if isinstance(operation, keras.layers.Resizing):
        return bool(operation.antialias), int(operation.width)
    resize = operation.operation  # the checker's adapter of keras.ops.image.resize
    return bool(resize.antialias), int(resize.size[1])


@pytest.mark.parametrize("cls", [keras.layers.Resizing, kimage.Resize],
                         ids=["Resizing", "ops.image.resize"])
def test_no_antialiased_resize_to_one_column(cls):
    drawn = [_settings(layer) for seed in range(3)
             for layer, _ in draw_configs(native_example_strategy(cls), 12, seed=seed)]
    assert any(antialias for antialias, _ in drawn)  # anti-aliasing is drawn at all
    assert any(width == 1 for _, width in drawn)  # and so are widths of 1
    assert not any(antialias and width == 1 for antialias, width in drawn)
