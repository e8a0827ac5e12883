"""Rules for ``keras.layers.ConvLSTM1D``, ``ConvLSTM2D`` and ``ConvLSTM3D``.

The cell is the LSTM's with convolutions in place of the products: the input's convolution
(the layer's strides, padding and dilation) is computed for every step at once, the hidden
state's (stride 1, ``same`` padding) at each step; their vector-Jacobian products are the
transposed convolutions the convolution rules use.
"""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.convolutional._transpose import conv_input_gradient, spatial_axes
from jacverify.backward.rules.recurrent.base_recurrent import BackwardRecurrent
from jacverify.backward.rules.recurrent.cells import LSTMCellMath, register_cell_math
from jacverify.keras_internals import ConvLSTMCell


def _fold_time(tensor):
    return ops.reshape(tensor, (-1, *ops.shape(tensor)[2:]))


def _unfold_time(tensor, like):
    return ops.reshape(tensor, (*ops.shape(like)[:2], *ops.shape(tensor)[1:]))


class ConvLSTMCellMath(LSTMCellMath):
    """The time step of ``ConvLSTMCell`` (gates along the channel axis)."""

    def __init__(self, cell):
        super().__init__(cell)
        self.gate_axis = -1 if cell.data_format == "channels_last" else 1
        self._axes = spatial_axes(cell.rank, cell.data_format)

    @property
    def state_sizes(self) -> list:
        return [None, None]  # h and c, shaped like the convolution's output

    def zero_states(self, batch, dtype) -> list:
        return [ops.cast(s, dtype) for s in self.cell.get_initial_state(batch_size=batch)]

    def _bias(self, dtype):
        cell = self.cell
        if not cell.use_bias:
            return None
        if cell.data_format == "channels_last":
            shape = (1,) * (cell.rank + 1) + (-1,)
        else:
            shape = (1, -1) + (1,) * cell.rank
        return ops.reshape(self.weight("bias", dtype), shape)

    def _conv(self, x, kernel, *, recurrent: bool):
        """The input's (``recurrent=False``) or the hidden state's convolution with
        ``kernel`` (a tensor of ``x``'s dtype)."""
        cell = self.cell
        ones = (1,) * cell.rank
        return ops.conv(
            x, kernel,
            strides=ones if recurrent else cell.strides,
            padding="same" if recurrent else cell.padding,
            data_format=cell.data_format,
            dilation_rate=ones if recurrent else cell.dilation_rate,
        )

    def _conv_vjp(self, gradient, kernel, like, *, recurrent: bool):
        cell = self.cell
        ones = (1,) * cell.rank
        return conv_input_gradient(
            gradient, kernel,
            in_sizes=[int(like.shape[a]) for a in self._axes],
            padding="same" if recurrent else cell.padding,
            strides=ones if recurrent else cell.strides,
            dilations=ones if recurrent else cell.dilation_rate,
            data_format=cell.data_format,
        )

    def project(self, x):
        projection = self._conv(_fold_time(x), self.weight("kernel", x.dtype), recurrent=False)
        bias = self._bias(x.dtype)
        if bias is not None:
            projection = projection + bias
        return _unfold_time(projection, x)

    def project_vjp(self, d_projection, x=None):
        folded_x = _fold_time(x)
        d_x = self._conv_vjp(
            _fold_time(d_projection), self.weight("kernel", d_projection.dtype), folded_x,
            recurrent=False,
        )
        return _unfold_time(d_x, x)

    def _recurrent(self, h):
        return self._conv(h, self.weight("recurrent_kernel", h.dtype), recurrent=True)

    def _recurrent_vjp(self, d_z, h):
        return self._conv_vjp(d_z, self.weight("recurrent_kernel", d_z.dtype), h,
                              recurrent=True)


register_cell_math(ConvLSTMCell, ConvLSTMCellMath)


@register_backward(keras.layers.ConvLSTM1D, keras.layers.ConvLSTM2D, keras.layers.ConvLSTM3D)
class BackwardConvLSTM(BackwardRecurrent):
    """Backward through time of a convolutional LSTM."""
