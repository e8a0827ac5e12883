"""The keras.applications architectures jacverify builds backward models for, at their
smallest input size (used by the application tests and benchmark)."""

from __future__ import annotations

import keras

_A = keras.applications

#: name -> (constructor, smallest input size it accepts with weights=None)
ARCHITECTURES = {
    "VGG16": (_A.VGG16, 32),
    "ResNet50": (_A.ResNet50, 32),
    "ResNet50V2": (_A.ResNet50V2, 32),
    "InceptionV3": (_A.InceptionV3, 75),
    "InceptionResNetV2": (_A.InceptionResNetV2, 75),
    "Xception": (_A.Xception, 71),
    "MobileNet": (_A.MobileNet, 32),
    "MobileNetV2": (_A.MobileNetV2, 32),
    "MobileNetV3Small": (_A.MobileNetV3Small, 32),
    "DenseNet121": (_A.DenseNet121, 32),
    "EfficientNetB0": (_A.EfficientNetB0, 32),
    "EfficientNetV2B0": (_A.EfficientNetV2B0, 32),
    "ConvNeXtTiny": (_A.ConvNeXtTiny, 32),
}


def build_application(name: str) -> tuple[keras.Model, int]:
    """The architecture ``name`` with random weights and a logits head, and its input size."""
    factory, size = ARCHITECTURES[name]
    model = factory(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    return model, size
