"""Rule for Keras's random image augmentation layers: the identity at inference.

Each of these layers transforms its input only when called with ``training=True`` and returns
it unchanged at inference (checked against Keras by the tests). The backward model describes
the model at inference and runs its forward layers with ``training=False``.

Note that these layers default to ``training=True`` when called outside ``fit``/``predict``
without a ``training`` argument: ``model(x)`` augments, ``model(x, training=False)`` and
``model.predict(x)`` do not. ``RandomCrop`` returns the *uncropped* input at inference, whatever
its declared output shape.
"""

from __future__ import annotations

import keras

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.regularization.base_identity import BackwardInferenceIdentity

_NAMES = (
    "AugMix", "CutMix", "Equalization", "MixUp", "RandAugment", "RandomBrightness",
    "RandomColorDegeneration", "RandomColorJitter", "RandomContrast", "RandomCrop",
    "RandomElasticTransform", "RandomErasing", "RandomFlip", "RandomGaussianBlur",
    "RandomGrayscale", "RandomHue", "RandomInvert", "RandomPerspective", "RandomPosterization",
    "RandomRotation", "RandomSaturation", "RandomSharpness", "RandomShear", "RandomTranslation",
    "RandomZoom", "Solarization",
)

#: The augmentation layers of the installed Keras that are the identity at inference.
IDENTITY_AT_INFERENCE = tuple(
    getattr(keras.layers, name) for name in _NAMES if hasattr(keras.layers, name)
)


@register_backward(*IDENTITY_AT_INFERENCE)
class BackwardRandomAugmentation(BackwardInferenceIdentity):
    """The identity: a random augmentation layer returns its input unchanged at inference
    (``training=False``), which is what the backward model describes. Its training-time
    transformations are random, and not part of the differentiated function."""
