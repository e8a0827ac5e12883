"""The adjoint of a Keras convolution: a transposed convolution cropped to the input's size.

A Keras convolution pads its input by ``(left, right)`` on each spatial axis ('valid': none,
'same': the total ``max(0, (out - 1) * stride + k_eff - in)`` split with the extra element on
the right, 'causal': ``k_eff - 1`` on the left), then cross-correlates without padding. Its
adjoint is therefore the *full* transposed convolution (no padding, output length
``(out - 1) * stride + k_eff``) restricted to the window ``[left, left + in)`` of the padded
axis. Positions of the padded input that no output reads (the last ``(in + left + right -
k_eff) % stride`` ones) get a zero gradient: they are added by ``output_padding``, which is
always smaller than the stride. This is exact for every combination of strides, dilation,
padding and input size, including the ones where Keras' own ``padding='same'`` transposed
convolution is not the adjoint of its convolution (stride larger than the kernel).
"""

from __future__ import annotations

import keras
from keras import ops


def effective_kernel_size(kernel_size: int, dilation: int) -> int:
    return (int(kernel_size) - 1) * int(dilation) + 1


def forward_padding(padding: str, in_size: int, out_size: int, kernel_size: int, stride: int,
                    dilation: int) -> tuple[int, int]:
    """``(left, right)`` zeros the forward convolution adds to one spatial axis."""
    k_eff = effective_kernel_size(kernel_size, dilation)
    padding = padding.lower()
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return k_eff - 1, 0
    if padding == "same":
        total = max(0, (out_size - 1) * stride + k_eff - in_size)
        return total // 2, total - total // 2
    raise ValueError(f"Unsupported padding '{padding}'.")


def input_size_from_output(padding: str, out_size: int, kernel_size: int, stride: int,
                           dilation: int) -> int | None:
    """The input size of one spatial axis when the output size determines it (stride 1)."""
    if int(stride) != 1:
        return None
    if padding.lower() == "valid":
        return int(out_size) + effective_kernel_size(kernel_size, dilation) - 1
    return int(out_size)


def spatial_axes(rank: int, data_format: str) -> list[int]:
    return list(range(1, rank + 1)) if data_format == "channels_last" else list(
        range(2, rank + 2)
    )


def crops_and_output_padding(padding, in_sizes, out_sizes, kernel_size, strides, dilations):
    """Per spatial axis: the start of the input window in the full transposed convolution,
    and the ``output_padding`` that makes the full transposed convolution reach its end."""
    starts, output_padding = [], []
    for n_in, n_out, k, s, d in zip(in_sizes, out_sizes, kernel_size, strides, dilations):
        left, _ = forward_padding(padding, n_in, n_out, k, s, d)
        full = (n_out - 1) * s + effective_kernel_size(k, d)
        starts.append(left)
        output_padding.append(max(0, left + n_in - full))
    return starts, output_padding


def crop(tensor, starts, in_sizes, rank, data_format):
    """``tensor[..., start:start + size, ...]`` on each spatial axis (a view when possible)."""
    axes = spatial_axes(rank, data_format)
    shape = tuple(tensor.shape)
    if all(shape[a] == n and s == 0 for a, s, n in zip(axes, starts, in_sizes)):
        return tensor
    index = [slice(None)] * len(shape)
    for a, s, n in zip(axes, starts, in_sizes):
        index[a] = slice(s, s + n)
    return tensor[tuple(index)]


def conv_input_gradient(gradient, kernel, *, in_sizes, padding, strides, dilations,
                        data_format, groups=1):
    """``g^T J`` of ``ops.conv(x, kernel, ...)`` (``groups`` inferred as Keras does).

    ``kernel`` has the Keras layout ``(*kernel_size, in_channels // groups, filters)``;
    ``in_sizes`` are the spatial sizes of ``x``. One transposed convolution and one crop.
    """
    rank = len(kernel.shape) - 2
    kernel_size = tuple(int(k) for k in kernel.shape[:rank])
    axes = spatial_axes(rank, data_format)
    out_sizes = [int(gradient.shape[a]) for a in axes]
    starts, output_padding = crops_and_output_padding(
        padding, in_sizes, out_sizes, kernel_size, strides, dilations
    )
    if groups == 1:
        full = ops.conv_transpose(
            gradient,
            kernel,
            strides=list(strides),
            padding="valid",
            output_padding=output_padding,
            data_format=data_format,
            dilation_rate=list(dilations),
        )
    else:
        full = _grouped_conv_transpose_torch(
            gradient, kernel, strides, dilations, output_padding, data_format, groups
        )
    return crop(full, starts, in_sizes, rank, data_format)


def _grouped_conv_transpose_torch(gradient, kernel, strides, dilations, output_padding,
                                  data_format, groups):
    """Full (unpadded) grouped transposed convolution with torch, Keras layouts in and out."""
    if keras.backend.backend() != "torch":
        raise NotImplementedError(
            "jacverify: the backward rule of a grouped or depthwise convolution "
            f"(groups={groups}) needs a grouped transposed convolution, which keras.ops does "
            f"not provide; it is implemented for the torch backend only (the current backend "
            f"is '{keras.backend.backend()}')."
        )
    import torch

    rank = len(kernel.shape) - 2
    gradient = ops.convert_to_tensor(gradient)
    kernel = ops.convert_to_tensor(kernel)
    if data_format == "channels_last":
        gradient = torch.movedim(gradient, -1, 1)
    # Keras kernel (*k, in // groups, out) -> torch (out, in // groups, *k): the weight of the
    # forward torch convolution is also the weight of its transposed convolution.
    weight = torch.permute(kernel, (rank + 1, rank, *range(rank)))
    transpose = {
        1: torch.nn.functional.conv_transpose1d,
        2: torch.nn.functional.conv_transpose2d,
        3: torch.nn.functional.conv_transpose3d,
    }[rank]
    result = transpose(
        gradient,
        weight,
        stride=tuple(int(s) for s in strides),
        padding=0,
        output_padding=tuple(int(p) for p in output_padding),
        groups=int(groups),
        dilation=tuple(int(d) for d in dilations),
    )
    if data_format == "channels_last":
        result = torch.movedim(result, 1, -1)
    return result
