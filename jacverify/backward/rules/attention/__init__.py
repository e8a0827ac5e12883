"""Backward rules for Keras attention layers."""

from jacverify.backward.rules.attention import attention, multi_head_attention  # noqa: F401
