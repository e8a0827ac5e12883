"""The tasks of check_registry: a rule's configurations are drawn where its task runs, exactly
as the calling process draws them; long rules are split into one task per configuration with
the same rows; what the tasks cost is remembered under keys naming them."""

from __future__ import annotations

import json
import pickle
import random

import keras
import pytest

from jacverify.backward.registry import RuleEntry, registered_rules
from jacverify.check import task_cost
from jacverify.check.layer_configs import draw_configs, native_example_strategy
from jacverify.check.registry_check import (
    SPLIT_SHARE,
    RuleTask,
    derive_seed,
    describe_layer,
    registry_tasks,
)
from jacverify.examples.tutorial import BackwardClip, BackwardClipCorrect

L = keras.layers


def _entry(cls: type) -> RuleEntry:
    return registered_rules()[cls]


def _task(cls: type, indices=(0, 1, 2), examples: int = 4, seed: int = 0) -> RuleTask:
    entry = _entry(cls)
    return RuleTask(label=cls.__name__, keras_class=cls, rule_class=entry.rule_class,
                    source=entry.source, example=entry.example, configs=3,
                    indices=tuple(indices), examples=examples, seed=seed,
                    convention="subgradient")


def _without_durations(rows) -> list:
    found = []
    for row in rows:
        data = row.to_dict()
        data["check"].pop("layer_name", None)
        data["check"].pop("duration_s", None)
        found.append(json.dumps(data, sort_keys=True, default=str))
    return found


def test_a_task_draws_the_configurations_of_the_rule_s_strategy():
    task = _task(L.Conv2D, examples=2)
    drawn = draw_configs(native_example_strategy(L.Conv2D), 3,
                         derive_seed(0, "keras.src.layers.convolutional.conv2d.Conv2D"))
    rows = task.run()
    assert [r.index for r in rows] == [0, 1, 2]
    assert [r.config for r in rows] == [describe_layer(layer) for layer, _ in drawn]
    assert [r.input_shape for r in rows] == [list(shape) for _, shape in drawn]
    assert {r.verdict for r in rows} == {"pass"}


def test_a_travelled_task_gives_the_rows_of_the_task_run_here():
    task = _task(L.Dense, examples=3)
    here = task.run()
    random.seed(12345)  # what the process did before must not matter
    travelled = pickle.loads(pickle.dumps(task)).run()
    assert _without_durations(travelled) == _without_durations(here)


def test_split_tasks_give_the_rows_of_the_whole_rule():
    whole = _task(L.ReLU, examples=3).run()
    parts = [row for index in range(3) for row in _task(L.ReLU, (index,), examples=3).run()]
    assert _without_durations(parts) == _without_durations(whole)


class Clamp(keras.layers.Layer):
    """Clips its input to [vmin, vmax]."""

    def __init__(self, vmin=0.0, vmax=1.0, **kwargs):
        super().__init__(**kwargs)
        self.vmin, self.vmax = vmin, vmax

    def call(self, inputs):
        return keras.ops.clip(inputs, self.vmin, self.vmax)

    def get_config(self):
        return {**super().get_config(), "vmin": self.vmin, "vmax": self.vmax}


@pytest.mark.parametrize("rule, verdict", [(BackwardClipCorrect, "pass"),
                                           (BackwardClip, "fail")])
def test_a_travelled_layer_example_is_checked_right_and_wrong(rule, verdict):
    task = RuleTask(label="Clamp", keras_class=Clamp, rule_class=rule, source="user",
                    example=(Clamp(0.0, 2.0), (5,)), configs=3, indices=(0, 1, 2),
                    examples=40, seed=0, convention="subgradient")
    rows = pickle.loads(pickle.dumps(task)).run()  # the layer travels as its configuration
    assert [(r.verdict, r.config) for r in rows] == [(verdict, {"vmin": 0.0, "vmax": 2.0})]


def test_one_example_gives_one_row_and_a_rule_without_any_one_skipped_row():
    entry = _entry(L.ReLU)
    single = dict(label="ReLU", keras_class=L.ReLU, rule_class=entry.rule_class,
                  source="user", example=(L.ReLU(), (4,)), configs=3, examples=3, seed=0,
                  convention="subgradient")
    assert [r.index for r in RuleTask(indices=(0, 1, 2), **single).run()] == [0]
    assert RuleTask(indices=(1,), **single).run() == []  # one configuration only
    broken = {**single, "example": lambda: 1 / 0}
    rows = RuleTask(indices=(0,), **broken).run()
    assert [r.verdict for r in rows] == ["inconclusive"]
    assert "ZeroDivisionError" in rows[0].check.reason
    assert RuleTask(indices=(2,), **broken).run() == []  # said once, by the first task


def test_long_rules_are_split_by_their_share_of_the_run():
    entries = [_entry(cls) for cls in (L.Dense, L.ReLU, L.Add)]

    def tasks(remembered, split=True):
        found = registry_tasks(entries, configs=3, seed=0, examples=30,
                               convention="subgradient", remembered=remembered, split=split)
        return [(t.label, t.indices) for t in found]

    whole = [("Dense", (0, 1, 2)), ("ReLU", (0, 1, 2)), ("Add", (0, 1, 2))]
    assert tasks({}, split=False) == whole
    keys = {cls: _task(cls, examples=30).cost_key for cls in (L.Dense, L.ReLU, L.Add)}
    # ReLU takes 99 % of the run: it is split; the others are 0.5 %, under SPLIT_SHARE
    remembered = {keys[L.Dense]: 0.5, keys[L.ReLU]: 99.0, keys[L.Add]: 0.5}
    assert tasks(remembered) == [whole[0], ("ReLU", (0,)), ("ReLU", (1,)), ("ReLU", (2,)),
                                 whole[2]]
    # the same durations on a machine 10 times busier split the same rules
    assert tasks({k: 10 * v for k, v in remembered.items()}) == tasks(remembered)
    assert tasks(remembered, split=False) == whole  # one process: nothing to balance
    parts = {_task(L.ReLU, (i,), examples=30).cost_key: 33.0 for i in range(3)}
    assert tasks({**remembered, **parts}) == tasks(remembered)  # split last time: summed
    assert SPLIT_SHARE < 0.5


def test_the_cost_key_names_the_rule_s_checks():
    base = _task(L.Dense)
    others = [_task(L.Dense, seed=1), _task(L.Dense, (0,)), _task(L.Dense, examples=5),
              _task(L.ReLU)]
    keys = {base.cost_key, *(t.cost_key for t in others)}
    assert len(keys) == 1 + len(others)
    assert _task(L.Dense).cost_key == base.cost_key
    assert task_cost.family_factor("ConvLSTM2D") > task_cost.family_factor("Dense") == 1.0


@pytest.mark.parametrize("cls", [L.Dense, L.PReLU])
def test_the_python_random_state_is_left_as_found(cls):
    random.seed(7)
    before = random.getstate()
    _task(cls, (0,), examples=2).run()
    assert random.getstate() == before


@pytest.mark.parametrize("cls", [L.RandomColorDegeneration, L.Dense, L.Normalization])
def test_a_task_s_rows_travel_back(cls):
    """The rows come back from a worker pickled: no Keras object (a tracked list in a layer's
    configuration cannot be unpickled) may be in them."""
    rows = _task(cls, examples=2).run()
    assert rows and _without_durations(pickle.loads(pickle.dumps(rows))) == _without_durations(
        rows)


def test_configurations_are_described_with_plain_values():
    from keras.src.utils.tracking import TrackedList

    described = describe_layer(L.Dense(3, name="d"))
    assert described["units"] == 3 and "name" not in described
    from jacverify.check.registry_check import describe_config

    config = describe_config({"factor": TrackedList([0.1, 0.2]), "pair": (TrackedList([1]),)})
    assert type(config["factor"]) is list and type(config["pair"][0]) is list
    assert pickle.loads(pickle.dumps(config)) == {"factor": [0.1, 0.2], "pair": ([1],)}
