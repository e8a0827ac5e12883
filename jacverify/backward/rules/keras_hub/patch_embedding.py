"""Rules of the patch-embedding layers of keras_hub's vision transformers (ViT, DINOV2).

These layers prepend a class token (and DINOV2 its register tokens) tiled to the batch size,
which cannot be traced on symbolic inputs (the batch size is unknown). Their Jacobian with
respect to the image is the patch embedding's, on the patch tokens: the rules drop the
gradient of the prepended tokens and hand the rest to the backward model of the patch
embedding sublayer, built by the builder from its parts' rules.
"""

from __future__ import annotations

import keras
from keras import ops
from keras_hub.src.models.dinov2.dinov2_layers import DINOV2Embedding
from keras_hub.src.models.vit.vit_layers import ViTPatchingAndEmbedding

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward


def _sublayer_backward(sublayer, input_dims) -> keras.Model:
    """The backward model of ``sublayer`` alone, on inputs of ``input_dims``."""
    from jacverify.backward.clone import clone_to_backward

    x = keras.Input(tuple(input_dims))
    return clone_to_backward(keras.Model(x, sublayer(x)))


class _BackwardPrependedTokens(BackwardNonLinearLayer):
    """``out = concat([tokens, patches(x)]) + constant``: ``g`` without the first
    ``n_prepended`` tokens, through the backward model of ``patches``."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.patch_backward = _sublayer_backward(self._patches(), self.input_dim_wo_batch)

    def _patches(self):
        raise NotImplementedError

    def _n_prepended(self) -> int:
        raise NotImplementedError

    def _to_patch_output(self, gradient):
        return gradient

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        patch_gradient = self._to_patch_output(gradient[:, self._n_prepended():])
        return self.patch_backward.call_directly([input, patch_gradient])


@register_backward(ViTPatchingAndEmbedding)
class BackwardViTPatchingAndEmbedding(_BackwardPrependedTokens):
    """ViT: a class token (when ``use_class_token``) before the flattened convolution
    patches, plus position embeddings."""

    def _patches(self):
        return self.layer.patch_embedding

    def _n_prepended(self) -> int:
        return 1 if self.layer.use_class_token else 0

    def _to_patch_output(self, gradient):
        grid = self.layer.patch_embedding.compute_output_shape((None, *self.input_dim_wo_batch))
        if self.layer.data_format == "channels_first":
            channels, rows, cols = grid[1:]
            gradient = ops.reshape(gradient, (-1, rows, cols, channels))
            return ops.transpose(gradient, (0, 3, 1, 2))
        return ops.reshape(gradient, (-1, *grid[1:]))


@register_backward(DINOV2Embedding)
class BackwardDINOV2Embedding(_BackwardPrependedTokens):
    """DINOV2: a class token and ``num_register_tokens`` register tokens before the patch
    tokens, plus (interpolated) position embeddings; dropout is the identity at inference and
    mask tokens are used in training only."""

    def _patches(self):
        return self.layer.patch_embeddings

    def _n_prepended(self) -> int:
        return 1 + int(self.layer.num_register_tokens)
