"""What rules may know about the tensors they receive."""

from __future__ import annotations

import keras


def is_torch_tensor(value: object) -> bool:
    """Whether ``value`` is a concrete torch tensor on the torch backend: a rule may then use
    torch's own functions, which cost a few microseconds per call where a ``keras.ops`` call
    costs tens (its dispatch: symbolic checks, conversions, dtype standardization)."""
    if keras.backend.backend() != "torch":
        return False
    import torch

    return isinstance(value, torch.Tensor)
