"""Rules of the recurrent layers (SimpleRNN, LSTM, GRU, RNN with Keras cells, Bidirectional,
TimeDistributed, ConvLSTM) against torch autograd of the same Keras layer: every option, masks,
several outputs, initial states, extra Jacobian axes, float64, whole models, save and load."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch

from jacverify import clone_to_backward, get_backward_rule, registered_rules
from jacverify.backward.registry import MissingBackwardRuleError
from jacverify.check.references import true_float64
from tests.backward.model_reference import model_autograd_vjp
from tests.backward.reference import assert_rule_matches_autograd, make_rule

registered_rules()
L = keras.layers


# ----------------------------------------------------------------------------- helpers
def _randomize(layer, seed=1, scale=1.0):
    """Weights uniform in [-scale, scale): gates away from 1/2, so that a wrong derivative
    shows."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.uniform(-scale, scale, weight.shape).astype(str(weight.dtype)))
    return layer


def _sequences(shape, batch=3, dtype="float32", seed=0):
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(dtype)


def _built(layer, x, seed=1, **call_kwargs):
    layer(x, **call_kwargs)
    return _randomize(layer, seed)


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _autograd(layer, inputs, gradients, **call_kwargs):
    """Gradients of ``sum_k <g_k, output_k>`` with respect to each input of ``layer``
    (``inputs``: the sequence, or ``[sequence, *initial_states]`` passed as initial_state)."""
    tensors = [torch.tensor(np.asarray(a), requires_grad=True) for a in _as_list(inputs)]
    if len(tensors) > 1:
        call_kwargs = {**call_kwargs, "initial_state": tensors[1:]}
    outputs = keras.tree.flatten(layer(tensors[0], **call_kwargs))
    grads = torch.autograd.grad(
        outputs, tensors, [torch.tensor(g, dtype=o.dtype) for g, o in zip(
            gradients, outputs, strict=True)], allow_unused=True,
    )
    return [np.zeros(t.shape) if g is None else g.numpy() for t, g in zip(tensors, grads,
                                                                        strict=True)]


def _rule_for(layer, inputs, **call_kwargs):
    """The registered rule of ``layer`` called on ``inputs`` (output shapes from the call)."""
    tensors = _as_list(inputs)
    if len(tensors) > 1:
        call_kwargs = {**call_kwargs, "initial_state": tensors[1:]}
    outputs = keras.tree.flatten(layer(tensors[0], **call_kwargs))
    out_dims = [list(o.shape[1:]) for o in outputs]
    in_dims = [list(t.shape[1:]) for t in tensors]
    return get_backward_rule(layer)(
        layer=layer,
        input_dim_wo_batch=in_dims if len(in_dims) > 1 else in_dims[0],
        output_dim_wo_batch=out_dims if len(out_dims) > 1 else out_dims[0],
    ), [tuple(o.shape) for o in outputs]


def _compare(layer, inputs, *, mask=None, seed=0, rtol=1e-4, atol=1e-5, extra=0,
             zero_outputs=()):
    """The rule against autograd for random upstream gradients on every output (zeros on the
    outputs listed in ``zero_outputs``), optionally with ``extra`` Jacobian rows."""
    call_kwargs = {} if mask is None else {"mask": mask}
    rule, out_shapes = _rule_for(layer, inputs, **call_kwargs)
    rng = np.random.default_rng(seed)
    dtype = str(_as_list(inputs)[0].dtype)
    rows = max(extra, 1)
    gradients = [
        rng.standard_normal((s[0], rows, *s[1:])).astype(dtype) for s in out_shapes
    ]
    for k in zero_outputs:
        gradients[k][:] = 0
    if extra:
        given = gradients
    else:
        given = [g[:, 0] for g in gradients]
    given = given if len(given) > 1 else given[0]
    rule_kwargs = {} if mask is None else {"mask": keras.ops.convert_to_tensor(mask)}
    got = [keras.ops.convert_to_numpy(t) for t in _as_list(rule([given, inputs], **rule_kwargs))]
    for row in range(rows):
        if dtype == "float64":  # a float64 reference: Keras' float32 promotion switched off
            with true_float64():
                expected = _autograd(layer, inputs, [g[:, row] for g in gradients],
                                     **call_kwargs)
        else:
            expected = _autograd(layer, inputs, [g[:, row] for g in gradients], **call_kwargs)
        assert len(got) == len(expected)
        for i, (a, e) in enumerate(zip(got, expected, strict=True)):
            a_row = a[:, row] if extra else a
            assert a_row.shape == e.shape
            scale = max(1.0, float(np.max(np.abs(e))))
            np.testing.assert_allclose(a_row, e, rtol=rtol, atol=atol * scale,
                                       err_msg=f"{layer.name}: input {i}, row {row}")


def _float64_relative_error(layer, x, seed=0):
    """Largest error of the rule relative to the largest autograd value, both in float64
    (Keras' float64-to-float32 promotion switched off for the reference)."""
    rule = make_rule(layer, x)
    g = np.random.default_rng(seed).standard_normal(
        keras.ops.convert_to_numpy(layer(x)).shape)
    got = keras.ops.convert_to_numpy(rule([g, x]))
    with true_float64():
        (expected,) = _autograd(layer, x, [g])
    assert got.dtype == np.float64
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


def _mask(batch=3, steps=5):
    """Every kind of masked step: trailing, leading, in the middle, a whole sequence."""
    mask = np.ones((batch, steps), bool)
    mask[0, 3:] = False
    mask[1, :2] = False
    if batch > 2:
        mask[2, 1] = False
        mask[2, 3] = False
    return mask


# ------------------------------------------------------------------------- the three cells
CELL_LAYERS = {
    "simple_rnn": lambda **kw: L.SimpleRNN(3, **kw),
    "lstm": lambda **kw: L.LSTM(3, **kw),
    "gru": lambda **kw: L.GRU(3, **kw),
    "gru_reset_before": lambda **kw: L.GRU(3, reset_after=False, **kw),
}
OPTIONS = [
    {},
    {"return_sequences": True},
    {"go_backwards": True},
    {"go_backwards": True, "return_sequences": True},
    {"unroll": True, "return_sequences": True},
    {"use_bias": False},
    {"dropout": 0.5, "recurrent_dropout": 0.3},  # the identity at inference
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(o) or "default")
@pytest.mark.parametrize("name", sorted(CELL_LAYERS))
def test_cell_layers_match_autograd(name, options):
    x = _sequences((4, 2))
    layer = _built(CELL_LAYERS[name](**options), x)
    assert not make_rule(layer, x).is_linear
    assert_rule_matches_autograd(layer, x)


@pytest.mark.parametrize("name,kwargs", [
    ("simple_rnn", {"activation": "relu"}),
    ("simple_rnn", {"activation": None}),
    ("lstm", {"activation": "elu", "recurrent_activation": "hard_sigmoid"}),
    ("gru", {"activation": "softsign", "recurrent_activation": "sigmoid"}),
    ("gru_reset_before", {"activation": "selu", "recurrent_activation": "hard_sigmoid"}),
])
def test_other_activations(name, kwargs):
    x = _sequences((4, 2), seed=3)
    layer = _built(CELL_LAYERS[name](**kwargs), x)
    assert_rule_matches_autograd(layer, x)


@pytest.mark.parametrize("name", sorted(CELL_LAYERS))
def test_float64_precision(name):
    """Float64 rules are float64-precise: relative error below 1e-12."""
    x = _sequences((5, 3), dtype="float64")
    layer = _built(CELL_LAYERS[name](return_sequences=True, dtype="float64"), x)
    assert _float64_relative_error(layer, x) <= 1e-12


MASK_OPTIONS = [
    {"return_sequences": True},
    {"go_backwards": True},
    {"zero_output_for_mask": True, "return_sequences": True},
    *[pytest.param(o, marks=pytest.mark.slow) for o in (
        {}, {"go_backwards": True, "return_sequences": True}, {"unroll": True},
        {"unroll": True, "return_sequences": True, "zero_output_for_mask": True},
        {"zero_output_for_mask": True, "go_backwards": True},
    )],
]


@pytest.mark.parametrize("options", MASK_OPTIONS, ids=lambda o: "-".join(o) or "default")
@pytest.mark.parametrize("name", sorted(CELL_LAYERS))
def test_masks_carry_the_states_through(name, options):
    x = _sequences((5, 2))
    mask = _mask()
    layer = CELL_LAYERS[name](**options)
    _built(layer, x, mask=mask)
    _compare(layer, x, mask=mask)
    _compare(layer, x, mask=mask, extra=2)  # extra Jacobian axes: the mask follows


def test_masked_steps_get_no_gradient():
    """A masked step's input does not reach the output: its gradient is exactly 0."""
    x = _sequences((5, 2))
    mask = _mask()
    layer = _built(L.LSTM(3, return_sequences=True), x, mask=mask)
    rule, _ = _rule_for(layer, x, mask=mask)
    g = _sequences((5, 3), seed=4)
    got = keras.ops.convert_to_numpy(rule([g, x], mask=keras.ops.convert_to_tensor(mask)))
    assert np.all(got[~mask] == 0)
    assert np.all(np.abs(got[mask]).sum(-1) > 0)


# ----------------------------------------------------------------- states: several outputs
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("name", sorted(CELL_LAYERS))
def test_return_state(name, return_sequences):
    x = _sequences((4, 2))
    layer = _built(CELL_LAYERS[name](return_state=True, return_sequences=return_sequences), x)
    _compare(layer, x)
    _compare(layer, x, zero_outputs=(0,))  # only the states are used downstream
    _compare(layer, x, extra=2)


@pytest.mark.parametrize("name", sorted(CELL_LAYERS))
def test_initial_state_inputs_get_their_gradient(name):
    x = _sequences((4, 2))
    n_states = 2 if name == "lstm" else 1
    states = [_sequences((3,), seed=10 + k) for k in range(n_states)]
    layer = CELL_LAYERS[name](return_sequences=True, return_state=True)
    _built(layer, x, initial_state=states)
    _compare(layer, [x, *states])


def test_initial_state_with_mask():
    x = _sequences((5, 2))
    states = [_sequences((3,), seed=7), _sequences((3,), seed=8)]
    mask = _mask()
    layer = L.LSTM(3, return_state=True)
    _built(layer, x, initial_state=states, mask=mask)
    _compare(layer, [x, *states], mask=mask)


# ----------------------------------------------------------------------- RNN(cell)
@pytest.mark.parametrize("cells", [
    lambda: L.SimpleRNNCell(3),
    lambda: L.LSTMCell(3),
    lambda: L.GRUCell(3, reset_after=False),
    lambda: [L.LSTMCell(3), L.GRUCell(2), L.SimpleRNNCell(2, activation="relu")],
], ids=["simple", "lstm", "gru", "stacked"])
@pytest.mark.parametrize("options", [{}, {"return_sequences": True, "go_backwards": True}],
                         ids=["default", "sequences-backwards"])
def test_rnn_with_keras_cells(cells, options):
    x = _sequences((4, 2))
    layer = _built(L.RNN(cells(), **options), x)
    assert_rule_matches_autograd(layer, x)


def test_stacked_cells_return_state_and_mask():
    x = _sequences((5, 2))
    mask = _mask()
    layer = L.RNN([L.LSTMCell(3), L.GRUCell(2)], return_state=True, return_sequences=True)
    _built(layer, x, mask=mask)
    _compare(layer, x, mask=mask)


@keras.saving.register_keras_serializable(package="jacverify_tests")
class _MinimalCell(L.Layer):
    """A user's cell: a kernel of its own, a Dense sublayer and keras.ops in its call."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units))
        self.recurrent = L.Dense(self.units, activation="tanh")
        self.recurrent.build((None, self.units))

    def call(self, inputs, states):
        output = keras.ops.sigmoid(keras.ops.matmul(inputs, self.kernel))
        output = output + self.recurrent(states[0])
        return output, [output]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="jacverify_tests")
class _BranchingCell(_MinimalCell):
    """Python control flow on a tensor value: cannot be traced."""

    def call(self, inputs, states):
        if keras.ops.sum(inputs) > 0:
            return inputs[:, : self.units], [inputs[:, : self.units]]
        return states[0], [states[0]]


@pytest.mark.parametrize("build", [
    lambda: L.RNN(_MinimalCell(3), return_sequences=True),
    lambda: L.RNN([_MinimalCell(3), L.LSTMCell(2)], go_backwards=True),
    lambda: L.Bidirectional(L.RNN(_MinimalCell(2), return_sequences=True)),
], ids=["rnn", "stacked", "bidirectional"])
def test_rnn_with_a_user_cell_is_traced(build):
    x = _sequences((4, 3))
    layer = _built(build(), x)
    assert_rule_matches_autograd(layer, x)


def test_user_cell_with_masks_and_save_load(tmp_path):
    inputs = keras.Input((5, 3))
    h = L.Masking()(inputs)
    model = keras.Model(inputs, L.RNN(_MinimalCell(2), return_sequences=True)(h))
    x = _sequences((5, 3))
    x[0, 3:] = 0.0
    backward = _assert_backward_model(model, [x])
    g = _sequences((5, 2), seed=2)
    path = tmp_path / "cell.keras"
    backward.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded([x, g])),
                               keras.ops.convert_to_numpy(backward([x, g])), rtol=1e-6)


def test_untraceable_user_cell_is_refused_with_the_ways_out():
    x = _sequences((4, 3))
    layer = L.RNN(_BranchingCell(3))
    layer(x)
    with pytest.raises(ValueError, match="_BranchingCell") as error:
        make_rule(layer, x)
    message = str(error.value)
    assert "control flow" in message
    assert "register_cell_math" in message and "fallback='autograd'" in message


# -------------------------------------------------------------------------- refusals
def test_stateful_layer_is_refused():
    x = _sequences((4, 2))
    layer = L.LSTM(3, stateful=True)
    layer(x)
    with pytest.raises(ValueError, match="stateful"):
        make_rule(layer, x)


def test_sequences_of_unknown_length_are_refused():
    inputs = keras.Input((None, 2))
    model = keras.Model(inputs, L.GRU(3)(inputs))
    with pytest.raises(ValueError, match="unknown length"):
        clone_to_backward(model)


# ---------------------------------------------------------------------- Bidirectional
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_merge_modes(merge_mode, return_sequences):
    x = _sequences((4, 2))
    layer = L.Bidirectional(L.LSTM(3, return_sequences=return_sequences),
                            merge_mode=merge_mode)
    _built(layer, x)
    _compare(layer, x)
    _compare(layer, x, extra=2)


@pytest.mark.parametrize("merge_mode", ["concat", "mul", None])
def test_bidirectional_states_masks_and_initial_states(merge_mode):
    x = _sequences((5, 2))
    mask = _mask()
    layer = L.Bidirectional(L.GRU(3, return_sequences=True, return_state=True),
                            merge_mode=merge_mode)
    _built(layer, x, mask=mask)
    _compare(layer, x, mask=mask)
    states = [_sequences((3,), seed=20), _sequences((3,), seed=21)]
    layer = L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode=merge_mode)
    _built(layer, x, initial_state=states)
    _compare(layer, [x, *states])


def test_bidirectional_with_its_own_backward_layer():
    x = _sequences((4, 2))
    layer = L.Bidirectional(
        L.LSTM(3, return_sequences=True),
        backward_layer=L.GRU(2, return_sequences=True, go_backwards=True),
    )
    _built(layer, x)
    assert_rule_matches_autograd(layer, x)


# --------------------------------------------------------------------- TimeDistributed
@pytest.mark.parametrize("inner,shape", [
    (lambda: L.Dense(3), (4, 5)),
    (lambda: L.Dense(3, activation="tanh"), (4, 5)),
    (lambda: L.Conv2D(2, 2, activation="relu"), (3, 4, 4, 2)),
    (lambda: L.MaxPooling1D(2), (3, 4, 2)),
    (lambda: L.LayerNormalization(), (4, 5)),
], ids=["dense", "dense-tanh", "conv2d-relu", "maxpool", "layernorm"])
def test_time_distributed_reuses_the_inner_rule(inner, shape):
    x = _sequences(shape)
    layer = _built(L.TimeDistributed(inner()), x)
    rule = make_rule(layer, x)
    assert rule.is_linear == get_backward_rule(layer.layer)(
        layer=layer.layer, input_dim_wo_batch=list(shape[1:]),
        output_dim_wo_batch=list(layer.compute_output_shape((None, *shape))[2:]),
    ).is_linear
    assert_rule_matches_autograd(layer, x)


def test_time_distributed_over_a_layer_without_rule_names_it():
    class NoRule(L.Layer):
        def call(self, x):
            return x * 2.0

    x = _sequences((4, 5))
    layer = L.TimeDistributed(NoRule(name="no_rule"))
    layer(x)
    with pytest.raises(MissingBackwardRuleError, match="TimeDistributed"):
        make_rule(layer, x)


# ------------------------------------------------------------------------ ConvLSTM
@pytest.mark.parametrize("layer,shape", [
    (lambda: L.ConvLSTM1D(2, 3), (3, 6, 2)),
    (lambda: L.ConvLSTM1D(2, 2, strides=2, padding="same", return_sequences=True,
                          go_backwards=True), (3, 5, 2)),
    (lambda: L.ConvLSTM1D(2, 2, dilation_rate=2, padding="same", activation="relu"),
     (3, 6, 2)),
    (lambda: L.ConvLSTM2D(2, 2, data_format="channels_first", return_sequences=True),
     (2, 2, 4, 4)),
    (lambda: L.ConvLSTM2D(1, (2, 3), padding="same"), (2, 3, 4, 2)),
], ids=["1d", "1d-strided-backwards", "1d-dilated-relu", "2d-channels-first", "2d-same"])
def test_conv_lstm(layer, shape):
    x = _sequences(shape)
    assert_rule_matches_autograd(_built(layer(), x), x)


def test_conv_lstm_return_state_and_mask():
    x = _sequences((5, 4, 2))
    mask = _mask()
    layer = L.ConvLSTM1D(2, 3, padding="same", return_state=True)
    _built(layer, x, mask=mask)
    _compare(layer, x, mask=mask)


@pytest.mark.slow
def test_conv_lstm3d():
    x = _sequences((2, 3, 3, 3, 1), batch=2)
    assert_rule_matches_autograd(_built(L.ConvLSTM3D(1, 2), x), x)


# ------------------------------------------------------------------------- whole models
def _assert_backward_model(model, xs, *, rtol=1e-4, atol=1e-5, seed=5):
    backward = clone_to_backward(model)
    rng = np.random.default_rng(seed)
    gradients = [rng.standard_normal((xs[0].shape[0], *o.shape[1:])).astype("float32")
                 for o in model.outputs]
    got = _as_list(backward([*xs, *gradients]))
    expected = model_autograd_vjp(model, xs if len(xs) > 1 else xs[0],
                                  gradients if len(gradients) > 1 else gradients[0])
    for a, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), e, rtol=rtol,
                                   atol=atol * max(1.0, float(np.max(np.abs(e)))))
    return backward


def _conv_lstm_dense():
    inputs = keras.Input((6, 3))
    h = L.Conv1D(4, 2, activation="relu")(inputs)
    h = L.LSTM(5)(h)
    return keras.Model(inputs, L.Dense(2)(h))


def _bidirectional_lstm():
    inputs = keras.Input((5, 3))
    h = L.Bidirectional(L.LSTM(4, return_sequences=True))(inputs)
    h = L.Bidirectional(L.LSTM(3), merge_mode="sum")(h)
    return keras.Model(inputs, L.Dense(2, activation="softmax")(h))


def _time_distributed_dense():
    inputs = keras.Input((4, 3))
    h = L.TimeDistributed(L.Dense(5, activation="relu"))(inputs)
    h = L.GRU(3, return_sequences=True)(h)
    return keras.Model(inputs, L.TimeDistributed(L.Dense(2))(h))


def _conv_lstm1d_model():
    inputs = keras.Input((4, 6, 2))
    h = L.ConvLSTM1D(3, 3, padding="same")(inputs)
    return keras.Model(inputs, L.Dense(2)(L.Flatten()(h)))


def _encoder_decoder():
    inputs = keras.Input((5, 3))
    _, h, c = L.LSTM(4, return_state=True)(inputs)
    decoded = L.LSTM(4, return_sequences=True)(inputs, initial_state=[h, c])
    return keras.Model(inputs, L.TimeDistributed(L.Dense(2))(decoded))


def _masked_gru():
    inputs = keras.Input((5, 3))
    h = L.Masking()(inputs)
    h = L.GRU(4, return_sequences=True)(h)
    return keras.Model(inputs, L.GRU(2, go_backwards=True)(h))


@pytest.mark.parametrize("build", [
    _conv_lstm_dense, _bidirectional_lstm, _time_distributed_dense, _conv_lstm1d_model,
    _encoder_decoder, _masked_gru,
], ids=lambda f: f.__name__.strip("_"))
def test_small_models_match_autograd(build):
    model = build()
    x = _sequences(model.input.shape[1:])
    if build is _masked_gru:
        x[0, 3:] = 0.0  # masked steps (Masking's mask_value is 0)
        x[1, :1] = 0.0
    _assert_backward_model(model, [x])


def test_embedding_mask_reaches_the_rule():
    """A mask made by Embedding(mask_zero=True) reaches the GRU (through Add, which ORs it
    with the Masking mask of the float features, zero on the same steps): the gradient with
    respect to the features is autograd's, and zero on the masked steps."""
    tokens = keras.Input((5,), dtype="int32")
    features = keras.Input((5, 4))
    embedded = L.Embedding(7, 4, mask_zero=True)(tokens)
    h = L.Add()([embedded, L.Masking()(features)])
    model = keras.Model([tokens, features], L.GRU(3)(h))
    x_tokens = np.array([[1, 2, 3, 0, 0], [0, 0, 4, 5, 6], [1, 0, 2, 0, 3]], "int32")
    x_features = _sequences((5, 4)) * (x_tokens != 0)[..., None]
    backward = _assert_backward_model(model, [x_tokens, x_features])
    g = np.ones((3, 3), "float32")
    grad_features = keras.ops.convert_to_numpy(_as_list(backward([x_tokens, x_features, g]))[1])
    assert np.all(grad_features[x_tokens == 0] == 0)  # masked steps: no gradient
    assert np.all(np.abs(grad_features[x_tokens != 0]).sum(-1) > 0)


@pytest.mark.parametrize("layer", [
    lambda: L.GRU(3),
    lambda: L.Bidirectional(L.LSTM(2, return_sequences=True)),
], ids=["gru", "bidirectional-lstm"])
def test_token_model_through_wrt(layer):
    """Embedding(mask_zero=True) + recurrent layer: the gradient with respect to the
    embedding output (wrt=), masked steps included, against autograd of the same layers given
    the same mask."""
    tokens = keras.Input((5,), dtype="int32")
    embedding = L.Embedding(9, 4, mask_zero=True)
    recurrent = layer()
    head = L.Dense(2)
    model = keras.Model(tokens, head(recurrent(embedding(tokens))))
    x = np.array([[1, 2, 3, 0, 0], [0, 0, 4, 5, 6], [7, 0, 2, 0, 3]], "int32")
    g = _sequences(model.output.shape[1:], seed=6)
    backward = clone_to_backward(model, wrt=embedding)
    got = keras.ops.convert_to_numpy(backward([x, g]))
    e = torch.tensor(keras.ops.convert_to_numpy(embedding(x)), requires_grad=True)
    y = head(recurrent(e, mask=torch.tensor(x != 0)))
    (expected,) = torch.autograd.grad(y, e, torch.tensor(g))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)
    assert np.all(got[x == 0] == 0)


def test_float64_model_end_to_end():
    """A float64 model's backward model is float64-precise (rel err <= 1e-12 against float64
    autograd) through Conv1D, Bidirectional(LSTM), GRU and TimeDistributed(Dense)."""
    inputs = keras.Input((5, 3), dtype="float64")
    h = L.Conv1D(4, 2, activation="tanh", dtype="float64")(inputs)
    h = L.Bidirectional(L.LSTM(3, return_sequences=True, dtype="float64"), dtype="float64")(h)
    h = L.GRU(3, return_sequences=True, dtype="float64")(h)
    model = keras.Model(inputs, L.TimeDistributed(L.Dense(2, dtype="float64"),
                                                  dtype="float64")(h))
    x = _sequences((5, 3), dtype="float64")
    g = _sequences((4, 2), dtype="float64", seed=3)
    got = keras.ops.convert_to_numpy(clone_to_backward(model)([x, g]))
    with true_float64():
        (expected,) = model_autograd_vjp(model, x, g)
    assert got.dtype == np.float64
    assert np.max(np.abs(got - expected)) <= 1e-12 * np.max(np.abs(expected))


def test_several_outputs_model_and_jacobian_mode():
    inputs = keras.Input((4, 3))
    output, h, c = L.LSTM(3, return_state=True, return_sequences=True)(inputs)
    model = keras.Model(inputs, [output, c])
    x = _sequences((4, 3))
    _assert_backward_model(model, [x])
    # Jacobian rows of the final carry state through the whole sequence.
    basis = np.broadcast_to(np.eye(3, dtype="float32"), (3, 3, 3))
    backward = clone_to_backward(keras.Model(inputs, c),
                                 gradient=keras.Input((3, 3)))
    rows = keras.ops.convert_to_numpy(backward([x, basis]))
    for k in range(3):
        (expected,) = model_autograd_vjp(keras.Model(inputs, c), x, basis[:, k])
        np.testing.assert_allclose(rows[:, k], expected, rtol=1e-4, atol=1e-5)


def test_backward_model_saves_and_loads(tmp_path):
    inputs = keras.Input((4, 3))
    h = L.Bidirectional(L.GRU(3, return_sequences=True))(inputs)
    h = L.TimeDistributed(L.Dense(2))(h)
    h = L.RNN([L.LSTMCell(2), L.SimpleRNNCell(2)])(h)
    model = keras.Model(inputs, h)
    backward = clone_to_backward(model)
    x = _sequences((4, 3))
    g = _sequences((2,), seed=3)
    before = keras.ops.convert_to_numpy(backward([x, g]))
    path = tmp_path / "backward.keras"
    backward.save(path)
    loaded = keras.saving.load_model(path)
    after = keras.ops.convert_to_numpy(loaded([x, g]))
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------- exhaustive (slow)
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("masked", [False, "carry", "zeros"])
@pytest.mark.parametrize("name", sorted(CELL_LAYERS))
def test_every_combination(name, masked, return_state, return_sequences, go_backwards, dtype):
    x = _sequences((5, 2), dtype=dtype)
    mask = _mask() if masked else None
    layer = CELL_LAYERS[name](return_state=return_state, return_sequences=return_sequences,
                              go_backwards=go_backwards, dtype=dtype,
                              zero_output_for_mask=masked == "zeros")
    _built(layer, x, **({} if mask is None else {"mask": mask}))
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {
        "rtol": 0.0, "atol": 1e-12}  # float64: error <= 1e-12 of the largest value
    _compare(layer, x, mask=mask, **tolerance)
    _compare(layer, x, mask=mask, extra=2, **tolerance)
