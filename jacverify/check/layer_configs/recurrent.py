"""Configurations of the recurrent layers: SimpleRNN, LSTM, GRU (``reset_after`` both ways),
RNN over Keras cells (and stacks of them), Bidirectional (every merge mode, ``None`` included),
TimeDistributed and ConvLSTM1D/2D/3D, over go_backwards, return_sequences, return_state,
unroll, use_bias and activations.

With ``return_state=True`` (or ``merge_mode=None``) a layer has several outputs: the checker
packs them into one and gives the rule one upstream gradient per output. A few time steps and
units keep the Jacobians small. Not drawn here (tested against torch autograd in
``tests/backward/rules/test_recurrent.py``): masks (``check_layer`` calls a layer without
one), initial states given as inputs.
"""

from __future__ import annotations

import keras
from hypothesis import strategies as st

from jacverify.check.layer_configs._common import finish, layer_strategy, weight_seeds

L = keras.layers

#: Cell activations: the defaults first (Hypothesis shrinks towards them), then others with a
#: derivative, kinks included.
CELL_ACTIVATIONS = ("tanh", "relu", "sigmoid", "elu", "softsign", "gelu", "linear")
GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "tanh", "softplus")


@st.composite
def _sequence_shape(draw, max_steps: int = 4, max_features: int = 3):
    return (draw(st.integers(1, max_steps)), draw(st.integers(1, max_features)))


@st.composite
def _run_options(draw, unroll: bool = True) -> dict:
    options = {
        "go_backwards": draw(st.booleans()),
        "return_sequences": draw(st.booleans()),
        "return_state": draw(st.booleans()),
    }
    if unroll:
        options["unroll"] = draw(st.booleans())
    return options


@st.composite
def _cell_options(draw, gates: bool) -> dict:
    options = {
        "units": draw(st.integers(1, 3)),
        "activation": draw(st.sampled_from(CELL_ACTIVATIONS)),
        "use_bias": draw(st.booleans()),
    }
    if gates:
        options["recurrent_activation"] = draw(st.sampled_from(GATE_ACTIVATIONS))
    return options


@layer_strategy
def simple_rnn(draw):
    layer = L.SimpleRNN(**draw(_cell_options(gates=False)), **draw(_run_options()))
    return finish(layer, draw(_sequence_shape()), draw(weight_seeds))


@layer_strategy
def lstm(draw):
    layer = L.LSTM(**draw(_cell_options(gates=True)), **draw(_run_options()))
    return finish(layer, draw(_sequence_shape()), draw(weight_seeds))


@layer_strategy
def gru(draw):
    layer = L.GRU(**draw(_cell_options(gates=True)), reset_after=draw(st.booleans()),
                  **draw(_run_options()))
    return finish(layer, draw(_sequence_shape()), draw(weight_seeds))


@st.composite
def _keras_cell(draw):
    kind = draw(st.sampled_from(["simple", "lstm", "gru"]))
    if kind == "simple":
        return L.SimpleRNNCell(**draw(_cell_options(gates=False)))
    if kind == "lstm":
        return L.LSTMCell(**draw(_cell_options(gates=True)))
    return L.GRUCell(**draw(_cell_options(gates=True)), reset_after=draw(st.booleans()))


@layer_strategy
def rnn(draw):
    """``RNN`` over one Keras cell or a stack of two."""
    cells = [draw(_keras_cell()) for _ in range(draw(st.integers(1, 2)))]
    layer = L.RNN(cells if len(cells) > 1 else cells[0], **draw(_run_options()))
    return finish(layer, draw(_sequence_shape(max_steps=3)), draw(weight_seeds))


@layer_strategy
def bidirectional(draw):
    kind = draw(st.sampled_from([L.LSTM, L.GRU, L.SimpleRNN]))
    options = draw(_cell_options(gates=kind is not L.SimpleRNN))
    inner = kind(**options, return_sequences=draw(st.booleans()),
                 return_state=draw(st.booleans()))
    layer = L.Bidirectional(inner, merge_mode=draw(st.sampled_from(
        ["concat", "sum", "mul", "ave", None])))
    return finish(layer, draw(_sequence_shape(max_steps=3)), draw(weight_seeds))


@layer_strategy
def time_distributed(draw):
    """``TimeDistributed`` over a Dense (any activation) or a Conv1D."""
    steps = draw(st.integers(1, 3))
    if draw(st.booleans()):
        inner = L.Dense(draw(st.integers(1, 3)), activation=draw(st.sampled_from(
            CELL_ACTIVATIONS)))
        shape = (steps, draw(st.integers(1, 4)))
    else:
        inner = L.Conv1D(draw(st.integers(1, 2)), draw(st.integers(1, 2)),
                         activation=draw(st.sampled_from(["relu", "tanh", None])))
        shape = (steps, draw(st.integers(2, 4)), draw(st.integers(1, 2)))
    return finish(L.TimeDistributed(inner), shape, draw(weight_seeds))


@st.composite
def _conv_lstm(draw, layer_class, rank: int):
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    padding = draw(st.sampled_from(["valid", "same"]))
    kernel = draw(st.integers(1, 2))
    spatial = tuple(draw(st.integers(kernel, 3)) for _ in range(rank))
    channels = draw(st.integers(1, 2))
    steps = draw(st.integers(1, 3))
    strides = 1 if rank > 1 else draw(st.integers(1, 2))
    layer = layer_class(
        filters=draw(st.integers(1, 2)), kernel_size=kernel, strides=strides, padding=padding,
        data_format=data_format, activation=draw(st.sampled_from(["tanh", "relu"])),
        use_bias=draw(st.booleans()), **draw(_run_options(unroll=False)),
    )
    per_step = (*spatial, channels) if data_format == "channels_last" else (channels, *spatial)
    return finish(layer, (steps, *per_step), draw(weight_seeds))


@layer_strategy
def conv_lstm1d(draw):
    return draw(_conv_lstm(L.ConvLSTM1D, 1))


@layer_strategy
def conv_lstm2d(draw):
    return draw(_conv_lstm(L.ConvLSTM2D, 2))


@layer_strategy
def conv_lstm3d(draw):
    return draw(_conv_lstm(L.ConvLSTM3D, 3))


STRATEGIES = {
    L.SimpleRNN: simple_rnn,
    L.LSTM: lstm,
    L.GRU: gru,
    L.RNN: rnn,
    L.Bidirectional: bidirectional,
    L.TimeDistributed: time_distributed,
    L.ConvLSTM1D: conv_lstm1d,
    L.ConvLSTM2D: conv_lstm2d,
    L.ConvLSTM3D: conv_lstm3d,
}
UNSUPPORTED: dict = {}
