"""Tiny keras_hub backbones with random weights (nothing is downloaded), used by the
keras_hub tests and benchmark: the image backbones, and BERT / GPT-2 for ``wrt=``.

``keras_hub`` is optional (the ``hub`` extra); it is imported when a backbone is built.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

IMAGE = (32, 32, 3)


def _vit(hub):
    return hub.models.ViTBackbone(image_shape=IMAGE, patch_size=8, num_layers=2, num_heads=2,
                                  hidden_dim=16, mlp_dim=32)


def _deit(hub):
    return hub.models.DeiTBackbone(image_shape=IMAGE, patch_size=8, num_layers=2, num_heads=2,
                                   hidden_dim=16, intermediate_dim=32)


def _dinov2(hub):
    return hub.models.DINOV2Backbone(patch_size=8, num_layers=2, hidden_dim=16, num_heads=2,
                                     intermediate_dim=32, image_shape=(32, 32, 3),
                                     position_embedding_shape=(32, 32, 3))


def _resnet_basic(hub):
    return hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=IMAGE)


def _resnet_bottleneck_preact(hub):
    return hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="bottleneck_block",
        use_pre_activation=True, image_shape=IMAGE)


def _vgg(hub):
    return hub.models.VGGBackbone(stackwise_num_repeats=[1, 1], stackwise_num_filters=[8, 16],
                                  image_shape=IMAGE)


def _densenet(hub):
    return hub.models.DenseNetBackbone(stackwise_num_repeats=[1, 1], growth_rate=4,
                                       image_shape=IMAGE)


def _xception(hub):
    return hub.models.XceptionBackbone(
        stackwise_conv_filters=[[8, 8], [16, 16], [16, 16]],
        stackwise_pooling=[False, True, False], image_shape=IMAGE)


def _swin(hub):
    return hub.models.SwinTransformerBackbone(image_shape=IMAGE, embed_dim=8, depths=[2, 2],
                                              num_heads=[2, 2], window_size=4, patch_size=2,
                                              drop_path=0.0)


def _mit(hub):
    return hub.models.MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[2, 1], max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2], image_shape=IMAGE, hidden_dims=[8, 16])


def _bert(hub):
    return hub.models.BertBackbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                                   intermediate_dim=32, max_sequence_length=16)


def _gpt2(hub):
    return hub.models.GPT2Backbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                                   intermediate_dim=32, max_sequence_length=16)


#: name -> constructor of the tiny backbone (given the keras_hub module).
IMAGE_BACKBONES: dict[str, Callable] = {
    "ViT": _vit,
    "DeiT": _deit,
    "DINOV2": _dinov2,
    "ResNet": _resnet_basic,
    "ResNetPreActBottleneck": _resnet_bottleneck_preact,
    "VGG": _vgg,
    "DenseNet": _densenet,
    "Xception": _xception,
    "Swin": _swin,
    "MiT": _mit,
}

TEXT_BACKBONES: dict[str, Callable] = {"BERT": _bert, "GPT2": _gpt2}


def build_backbone(name: str, seed: int = 0) -> keras.Model:
    """The tiny backbone ``name`` with seeded random weights."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    factory = IMAGE_BACKBONES.get(name) or TEXT_BACKBONES[name]
    return factory(keras_hub)


def image_model(backbone: keras.Model) -> keras.Model:
    """A single-input, single-output model of an image backbone: its features (the first
    output when it has several, e.g. a dict of pyramid levels)."""
    outputs = backbone.outputs
    if len(outputs) == 1:
        return backbone
    return keras.Model(backbone.inputs, outputs[0], name=f"{backbone.name}_features")


def text_inputs(backbone: keras.Model, batch: int, length: int = 8, seed: int = 0) -> list:
    """Token ids and a padding mask (and segment ids) for a text backbone's inputs."""
    rng = np.random.default_rng(seed)
    data = {}
    for tensor in backbone.inputs:
        name = tensor.name
        if "segment" in name:
            data[name] = np.zeros((batch, length), "int32")
        elif "mask" in name:
            mask = np.ones((batch, length), "int32")
            mask[:, -2:] = 0
            data[name] = mask
        else:
            data[name] = rng.integers(1, 50, (batch, length)).astype("int32")
    return [data[t.name] for t in backbone.inputs]
