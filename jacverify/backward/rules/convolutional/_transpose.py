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

On the torch backend torch is called directly (keras.ops has no grouped transposed
convolution, and its ``conv_transpose`` copies channels-last tensors to channels-first and
back): ``conv_transpose{1,2,3}d`` with ``groups``, except for grouped convolutions with stride
1, where the equivalent correlation with the flipped kernel is used because torch's CPU grouped
transposed convolution is 3-4x slower than autograd on channels-last data (measured on 2 cores,
torch 2.x: depthwise 3x3, 32x32x16, ~12 ms against ~3 ms; the correlation takes ~3.7 ms).
Other backends use ``keras.ops.conv_transpose`` (no groups).
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
    for n_in, n_out, k, s, d in zip(
        in_sizes, out_sizes, kernel_size, strides, dilations, strict=True
    ):
        left, _ = forward_padding(padding, n_in, n_out, k, s, d)
        full = (n_out - 1) * s + effective_kernel_size(k, d)
        starts.append(left)
        output_padding.append(max(0, left + n_in - full))
    return starts, output_padding


def crop(tensor, starts, in_sizes, rank, data_format):
    """``tensor[..., start:start + size, ...]`` on each spatial axis (a view when possible)."""
    axes = spatial_axes(rank, data_format)
    shape = tuple(tensor.shape)
    if all(shape[a] == n and s == 0 for a, s, n in zip(axes, starts, in_sizes, strict=True)):
        return tensor
    index = [slice(None)] * len(shape)
    for a, s, n in zip(axes, starts, in_sizes, strict=True):
        index[a] = slice(s, s + n)
    return tensor[tuple(index)]


def conv_input_gradient(gradient, kernel, *, in_sizes, padding, strides, dilations,
                        data_format, groups=1, implementation=None):
    """``g^T J`` of ``ops.conv(x, kernel, ...)`` (``groups`` inferred as Keras does).

    ``kernel`` has the Keras layout ``(*kernel_size, in_channels // groups, filters)``;
    ``in_sizes`` are the spatial sizes of ``x``. One transposed convolution and one crop.

    On the torch backend torch's own convolutions are called on the gradient in the layout it
    arrives in (for ``channels_last``, a channels-last view: no copy), as autograd does. Other
    backends use ``keras.ops.conv_transpose``, which has no groups. ``implementation``
    (``"torch"`` or ``"keras"``) forces one of the two (the default picks by backend).
    """
    rank = len(kernel.shape) - 2
    kernel_size = tuple(int(k) for k in kernel.shape[:rank])
    axes = spatial_axes(rank, data_format)
    out_sizes = [int(gradient.shape[a]) for a in axes]
    starts, output_padding = crops_and_output_padding(
        padding, in_sizes, out_sizes, kernel_size, strides, dilations
    )
    if implementation is None:
        implementation = "torch" if keras.backend.backend() == "torch" else "keras"
    if implementation == "torch":
        return _conv_input_gradient_torch(
            gradient, kernel, starts, in_sizes, output_padding, strides, dilations,
            data_format, groups,
        )
    if groups != 1:
        raise NotImplementedError(
            "jacverify: the backward rule of a grouped or depthwise convolution "
            f"(groups={groups}) needs a grouped transposed convolution, which keras.ops does "
            f"not provide; it is implemented for the torch backend only (the current backend "
            f"is '{keras.backend.backend()}')."
        )
    return _conv_input_gradient_keras(
        gradient, kernel, starts, in_sizes, output_padding, strides, dilations, data_format
    )


def _conv_input_gradient_keras(gradient, kernel, starts, in_sizes, output_padding, strides,
                               dilations, data_format):
    """Any backend, no groups: ``keras.ops.conv_transpose`` without padding, then the crop."""
    full = ops.conv_transpose(
        gradient,
        kernel,
        strides=list(strides),
        padding="valid",
        output_padding=list(output_padding),
        data_format=data_format,
        dilation_rate=list(dilations),
    )
    return crop(full, starts, in_sizes, len(kernel.shape) - 2, data_format)


def windows_do_not_overlap(kernel_size, strides, dilations, groups) -> bool:
    """Whether each input position is read by at most one kernel tap of one output position
    (stride equal to the kernel size, no dilation, no groups): a patch embedding or a
    pointwise convolution."""
    return int(groups) == 1 and all(
        int(k) == int(s) and int(d) == 1
        for k, s, d in zip(kernel_size, strides, dilations, strict=True)
    )


def _patch_input_gradient(gradient, kernel, starts, in_sizes, output_padding):
    """The full transposed convolution of non-overlapping windows (see
    :func:`windows_do_not_overlap`), cropped: one matrix product of the channels-last gradient
    with the kernel, ``(batch, *out, filters) @ (filters, *k * in_channels)``, its patches put
    back in place, zeros after the last window where ``output_padding`` asks for them."""
    import torch.nn.functional as F  # noqa: N812

    rank = len(kernel.shape) - 2
    k = [int(n) for n in kernel.shape[:rank]]
    in_channels, filters = int(kernel.shape[rank]), int(kernel.shape[rank + 1])
    out = [int(n) for n in gradient.shape[1:1 + rank]]
    patches = gradient.reshape(-1, filters) @ kernel.reshape(-1, filters).T
    patches = patches.reshape(-1, *out, *k, in_channels)
    # (batch, o_1.., k_1.., c) -> (batch, o_1, k_1, o_2, k_2, .., c) -> (batch, o_1 k_1, .., c)
    order = [0] + [axis for i in range(rank) for axis in (1 + i, 1 + rank + i)] + [1 + 2 * rank]
    full = patches.permute(order).reshape(-1, *[o * n for o, n in zip(out, k, strict=True)],
                                           in_channels)
    if any(output_padding):
        pads = [0, 0]  # the channels, then the spatial axes from the last
        for p in reversed(output_padding):
            pads += [0, int(p)]
        full = F.pad(full, pads)
    return crop(full, starts, in_sizes, rank, "channels_last")


def _conv_input_gradient_torch(gradient, kernel, starts, in_sizes, output_padding, strides,
                               dilations, data_format, groups):
    import torch
    import torch.nn.functional as F  # noqa: N812

    rank = len(kernel.shape) - 2
    strides = tuple(int(s) for s in strides)
    dilations = tuple(int(d) for d in dilations)
    gradient = ops.convert_to_tensor(gradient)
    kernel = ops.convert_to_tensor(kernel)
    if windows_do_not_overlap(kernel.shape[:rank], strides, dilations, groups):
        # A matrix product: torch's transposed convolution takes about ten times as long on
        # patch embeddings (measured on one thread: 8x4x4x16 to 8x32x32x3, 0.4 ms vs 0.03 ms).
        if data_format == "channels_first":
            gradient = torch.movedim(gradient, 1, -1)
        result = _patch_input_gradient(gradient, kernel, starts, in_sizes, output_padding)
        return torch.movedim(result, -1, 1) if data_format == "channels_first" else result
    if data_format == "channels_last":
        gradient = torch.movedim(gradient, -1, 1)  # a view, channels-last in memory
    # Keras kernel (*k, in // groups, out) -> torch (out, in // groups, *k): the weight of the
    # forward torch convolution is also the weight of its transposed convolution.
    weight = torch.permute(kernel, (rank + 1, rank, *range(rank)))
    spatial = tuple(range(2, rank + 2))
    if groups > 1 and all(s == 1 for s in strides):
        # With stride 1 the transposed convolution is the correlation with the flipped kernel,
        # input and output channels swapped within each group; torch's CPU grouped transposed
        # convolution is several times slower than its grouped convolution (and than autograd).
        out_channels, in_per_group = int(weight.shape[0]), int(weight.shape[1])
        k = tuple(int(n) for n in weight.shape[2:])
        flipped = torch.flip(weight, spatial).reshape(
            groups, out_channels // groups, in_per_group, *k
        )
        flipped = flipped.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, *k)
        # Zeros to add to the gradient so that the correlation gives the input's window.
        k_eff = [(n - 1) * d + 1 for n, d in zip(k, dilations, strict=True)]
        out_sizes = [int(gradient.shape[a]) for a in spatial]
        lefts = [e - 1 - s for e, s in zip(k_eff, starts, strict=True)]
        rights = [
            n - o + s for n, o, s in zip(in_sizes, out_sizes, starts, strict=True)
        ]
        pads = [max(left, right) for left, right in zip(lefts, rights, strict=True)]
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]
        result = conv(gradient, flipped, padding=tuple(pads), dilation=dilations, groups=groups)
        result_starts = [p - left for p, left in zip(pads, lefts, strict=True)]
    else:
        transpose = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[rank]
        result = transpose(
            gradient,
            weight,
            stride=strides,
            padding=0,
            output_padding=tuple(int(p) for p in output_padding),
            groups=int(groups),
            dilation=dilations,
        )
        result_starts = starts
    result = crop(result, result_starts, in_sizes, rank, "channels_first")
    if data_format == "channels_last":
        result = torch.movedim(result, 1, -1)
    return result
