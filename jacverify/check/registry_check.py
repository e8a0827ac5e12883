"""``check_registry``: check every registered backward rule on a few configurations of its
forward class.

A rule's configurations come from the ``example=`` given to
:func:`jacverify.register_backward` (a layer, a ``(layer, input_shape)`` pair, a callable
returning one, or a Hypothesis strategy drawing them), else from the native strategy of its
forward class (:mod:`jacverify.check.layer_configs`). Strategies are drawn reproducibly from
the seed (the first configuration is the strategy's simplest), and each configuration is
checked by :func:`jacverify.check.check_layer` with the registered rule.

The configurations are drawn by the task that checks them (a :class:`RuleTask`: the rule, the
indices of its configurations, the seed), in whichever process runs it: a worker receives no
layer, only what to draw, and draws exactly what a serial run draws.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np
from hypothesis.strategies import SearchStrategy

from jacverify.backward.graph import INPUT_KEY
from jacverify.backward.registry import RuleEntry, registered_rules
from jacverify.backward.rules._call_arguments import is_input
from jacverify.check import task_cost
from jacverify.check.adapters import PackedCall
from jacverify.check.isolation import check_isolation
from jacverify.check.layer_check import check_layer
from jacverify.check.layer_configs import (
    draw_configs,
    native_example_strategy,
    native_skip_reason,
)
from jacverify.check.parallel import (
    operation_from_state,
    operation_state,
    prepare_workers,
    run_tasks,
)
from jacverify.check.results import ConfigCheck, LayerCheck, RegistryCheck
from jacverify.check.seeded_draws import seeded_python_random
from jacverify.check.storage import cache_directory
from jacverify.verdicts import Verdict

#: Why a rule without any example is skipped.
NO_EXAMPLE_REASON = "no example layer or strategy: pass example= to register_backward"
SOURCES = ("native", "user", "package")
#: Configuration keys that say nothing about the function a layer computes.
_NOISE_KEYS = ("name", "trainable", "dtype", "seed", "registered_name", "module")
_NOISE_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def derive_seed(seed: int, *parts: Any) -> int:
    """A 32-bit seed from ``seed`` and a name (and more parts): independent of which other
    rules are checked, and of their order."""
    words = [int(seed) & 0xFFFFFFFF]
    words += [zlib.crc32(str(part).encode()) for part in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def _compact(value: Any) -> Any:
    """Configuration values made short and plain: a serialized Keras object becomes
    ``"ClassName(key=value, ...)"``; Keras' tracked lists and dicts become plain ones (they
    cannot be unpickled, and a registry task's rows travel back from workers pickled)."""
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        inner = value["config"] if isinstance(value["config"], dict) else {}
        arguments = ", ".join(f"{k}={_compact(v)!r}" for k, v in describe_config(inner).items())
        return f"{value['class_name']}({arguments})"
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_compact(v) for v in value)
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def describe_config(config: dict) -> dict:
    """A layer configuration without what does not change its function (name, dtype,
    initializers, regularizers, constraints, seeds), serialized objects compacted."""
    return {
        k: _compact(v) for k, v in config.items()
        if k not in _NOISE_KEYS and not k.endswith(_NOISE_SUFFIXES)
    }


def describe_layer(layer: Any) -> dict:
    """:func:`describe_config` of ``layer.get_config()`` (``{}`` when it has none); for a call
    through the checker's adapter, the operation's, with the call's keyword constants."""
    if isinstance(layer, PackedCall):
        described = describe_layer(layer.operation)
        constants = {
            k: v for k, v in layer.call_kwargs.items() if k != "training" and not is_input(v)
        }
        if constants:
            described["call"] = constants
        if layer.domain is not None:
            described["domain"] = layer.domain.description
        if layer.companions is not None:
            described["companions"] = layer.companions.description
        if layer.autograd_forward is not None:
            described["autograd_forward"] = layer.autograd_forward.description
        return described
    try:
        return describe_config(layer.get_config())
    except Exception:  # noqa: BLE001 - a description must never stop a check
        return {}


def _select(
    rules: dict, classes: Iterable | None, include: Sequence[str]
) -> list[RuleEntry]:
    """The entries to check: of the given classes (or class names), from the included
    sources, in a stable order (by module and name)."""
    unknown = [s for s in include if s not in SOURCES]
    if unknown:
        raise ValueError(f"include takes sources among {SOURCES}, got {unknown}")
    entries = list(rules.values())
    if classes is not None:
        wanted = list(classes)
        entries = [
            e for e in entries
            if e.keras_class in wanted or e.keras_class.__name__ in wanted
            or _qualified(e.keras_class) in wanted
        ]
        missing = [
            c for c in wanted
            if not any(c in (e.keras_class, e.keras_class.__name__, _qualified(e.keras_class))
                       for e in entries)
        ]
        if missing:
            names = ", ".join(getattr(c, "__name__", str(c)) for c in missing)
            raise ValueError(f"no registered rule for: {names}")
    entries = [e for e in entries if e.source.split(":", 1)[0] in include]
    return sorted(entries, key=lambda e: (e.keras_class.__module__, e.keras_class.__qualname__))


def _as_pair(drawn: Any) -> tuple:
    """``(layer, input_shape or None)`` from a layer or a pair."""
    if isinstance(drawn, tuple) and len(drawn) == 2 and callable(drawn[0]):
        return drawn[0], drawn[1]
    return drawn, None


def _configurations(entry: RuleEntry, configs: int, seed: int) -> tuple[list, str]:
    """``([(layer, input_shape), ...], skip_reason)`` for one rule."""
    example = entry.example
    if example is None:
        strategy = native_example_strategy(entry.keras_class)
        if strategy is None:
            return [], native_skip_reason(entry.keras_class) or NO_EXAMPLE_REASON
        example = strategy
    if isinstance(example, SearchStrategy):
        drawn = draw_configs(example, configs, derive_seed(seed, _qualified(entry.keras_class)))
        return [_as_pair(d) for d in drawn], ""
    layer, shape = _as_pair(example)
    if not isinstance(layer, keras.Operation) and callable(layer):
        layer, made_shape = _as_pair(layer())
        shape = made_shape if made_shape is not None else shape
    return [(layer, shape)], ""


def _bare_check(keras_class: type, rule_class: type, verdict: str, reason: str,
                layer: Any = None, shape: Any = None) -> LayerCheck:
    return LayerCheck(
        verdict=verdict,
        reason=reason,
        layer_name=getattr(layer, "name", "-") if layer is not None else "-",
        layer_class=keras_class.__name__,
        rule_class=rule_class.__name__,
        input_shape=_shape_list(shape),
        # The dtype the configuration would have run in: the layer's, else the session's.
        dtype=str(getattr(layer, "compute_dtype", None) or keras.config.floatx()),
    )


def _is_multi(shape: Any) -> bool:
    return bool(shape) and isinstance(shape[0], (list, tuple))


def _shape_list(shape: Any) -> list:
    if shape is None:
        return []
    if _is_multi(shape):
        return [list(s) for s in shape]
    return list(shape)


def _checkable(layer: Any, shape: Any) -> Any:
    """A ``keras.ops`` operation (not a layer) wrapped in the checker's adapter, called with
    its inputs as positional arguments; layers as they are."""
    if isinstance(layer, keras.layers.Layer) or not isinstance(layer, keras.Operation):
        return layer
    if shape is None:
        raise ValueError(
            f"the example operation {type(layer).__name__} needs its input shape: give a "
            "(operation, input_shape) pair"
        )
    shapes = [tuple(s) for s in shape] if _is_multi(shape) else [tuple(shape)]
    return PackedCall(layer, shapes, [{INPUT_KEY: i} for i in range(len(shapes))])


def _check_one(
    keras_class: type, rule_class: type, layer: Any, shape: Any, *, examples: int, seed: int,
    convention: str,
) -> LayerCheck:
    """check_layer on one configuration; a problem of the checker or of the example (not of
    the rule) is an ``inconclusive`` check saying what happened."""
    try:
        layer = _checkable(layer, shape)
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"the example is not a Keras layer or operation: {layer!r}")
        return check_layer(
            layer, rule_class, input_shape=shape, examples=examples,
            seed=seed, convention=convention,
        )
    except Exception as error:  # noqa: BLE001 - one configuration must not end the run
        reason = f"check_layer() raised {type(error).__name__}: {str(error)[:300]}"
        return _bare_check(keras_class, rule_class, Verdict.INCONCLUSIVE.value, reason, layer,
                           shape)


#: With several processes, a rule expected to take more than this share of the whole run (by
#: the durations of an earlier run, see :mod:`jacverify.check.task_cost`, else by estimates) is
#: checked as one task per configuration (each draws the rule's configurations again, which
#: costs little beside such checks), so that no long task is left to run alone at the end. A
#: share, not seconds: durations remembered on a busy machine are all longer together.
SPLIT_SHARE = 0.01


@dataclass
class RuleTask:
    """The checks of one registered rule on some of its configurations, as a task that can
    travel to a worker (see :mod:`jacverify.check.parallel`).

    The configurations are drawn where the task runs, from the seed, exactly as a serial run
    draws them: ``indices`` says which of the ``configs`` drawn ones this task checks (all of
    them, or one for a rule whose checks are long). :meth:`run` returns the rule's
    :class:`ConfigCheck` rows: one per checked configuration, or, for the task holding the
    first configuration, the single row of a rule that could not be checked (skipped, or a
    broken example)."""

    label: str  # the forward class's name, for progress
    keras_class: type
    rule_class: type
    source: str
    example: Any  # the registered example (None: the native strategy of the class)
    configs: int
    indices: tuple[int, ...]
    examples: int
    seed: int
    convention: str

    def run(self) -> list[ConfigCheck]:
        """The rows of this task's configurations."""
        with seeded_python_random(derive_seed(self.seed, "python-random", self._name)):
            try:
                drawn, reason = _configurations(self._entry(), self.configs, self.seed)
            except Exception as error:  # noqa: BLE001 - a broken example must not end the run
                reason = f"drawing an example raised {type(error).__name__}: {str(error)[:300]}"
                return self._rule_row(Verdict.INCONCLUSIVE.value, reason)
        if not drawn:
            return self._rule_row(Verdict.SKIPPED.value, reason)
        return [self._config_row(index, *drawn[index])
                for index in self.indices if index < len(drawn)]

    @property
    def _name(self) -> str:
        return _qualified(self.keras_class)

    def _entry(self) -> RuleEntry:
        return RuleEntry(keras_class=self.keras_class, rule_class=self.rule_class,
                         source=self.source, example=self.example)

    def _common(self) -> dict:
        return dict(keras_class=self._name, rule_class=self.rule_class.__name__,
                    source=self.source)

    def _rule_row(self, verdict: str, reason: str) -> list[ConfigCheck]:
        if 0 not in self.indices:
            return []
        check = _bare_check(self.keras_class, self.rule_class, verdict, reason)
        return [ConfigCheck(index=0, config={}, input_shape=[], check=check, **self._common())]

    def _config_row(self, index: int, layer: Any, shape: Any) -> ConfigCheck:
        config = describe_layer(layer)
        check = _check_one(self.keras_class, self.rule_class, layer, shape,
                           examples=self.examples, seed=derive_seed(self.seed, self._name, index),
                           convention=self.convention)
        return ConfigCheck(index=index, config=config,
                           input_shape=_shape_list(shape) or check.input_shape, check=check,
                           **self._common())

    @property
    def cost_key(self) -> str:
        """Names these checks for the durations of earlier runs (see
        :mod:`jacverify.check.task_cost`)."""
        return task_cost.rule_cost_key(self.keras_class, self.rule_class, self._example_kind(),
                                       self.seed, self.configs, self.indices, self.examples)

    def _example_kind(self) -> str:
        return "native" if self.example is None else type(self.example).__name__

    def estimated_seconds(self) -> float:
        """A guess of these checks' seconds from the forward class."""
        return len(self.indices) * task_cost.estimate_class_seconds(
            self.keras_class.__name__, None, self.examples)

    def failed(self, error: BaseException) -> list[ConfigCheck]:
        """``inconclusive`` rows: the checks could not run, and why."""
        reason = f"the check could not run: {type(error).__name__}: {str(error)[:300]}"
        check = _bare_check(self.keras_class, self.rule_class, Verdict.INCONCLUSIVE.value,
                            reason)
        return [ConfigCheck(index=index, config={}, input_shape=[], check=check,
                            **self._common()) for index in self.indices]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "example": _example_state(self.example)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**state, "example": _example_from_state(state["example"])})


def _example_state(example: Any) -> Any:
    """A registered example made picklable: Keras layers and operations (alone or in a
    ``(layer, input_shape)`` pair) as :func:`operation_state`."""
    if isinstance(example, keras.Operation):
        return {"operation": operation_state(example)}
    if isinstance(example, tuple) and len(example) == 2 and isinstance(example[0],
                                                                       keras.Operation):
        return {"operation": operation_state(example[0]), "shape": example[1]}
    return example


def _example_from_state(state: Any) -> Any:
    if isinstance(state, dict) and set(state) in ({"operation"}, {"operation", "shape"}):
        operation = operation_from_state(state["operation"])
        return (operation, state["shape"]) if "shape" in state else operation
    return state


def _whole_rule_task(entry: RuleEntry, *, configs: int, seed: int, examples: int,
                     convention: str) -> RuleTask:
    """The task checking one rule on all its configurations."""
    return RuleTask(
        label=entry.keras_class.__name__, keras_class=entry.keras_class,
        rule_class=entry.rule_class, source=entry.source, example=entry.example,
        configs=int(configs), indices=tuple(range(max(1, int(configs)))), examples=examples,
        seed=seed, convention=convention,
    )


def _expected_seconds(whole: RuleTask, remembered: dict[str, float]) -> float:
    """A rule's seconds in an earlier run (whole, or split by configuration), else estimated."""
    parts = [replace(whole, indices=(index,)) for index in whole.indices]
    if whole.cost_key in remembered:
        return remembered[whole.cost_key]
    if all(part.cost_key in remembered for part in parts):
        return sum(remembered[part.cost_key] for part in parts)
    return whole.estimated_seconds()


def registry_tasks(entries: Sequence[RuleEntry], *, configs: int, seed: int, examples: int,
                   convention: str, remembered: dict[str, float], split: bool
                   ) -> list[RuleTask]:
    """The tasks of a registry check, in the rules' order: one per rule, or (with ``split``)
    one per configuration for the rules expected to take more than :data:`SPLIT_SHARE` of
    the run."""
    wholes = [_whole_rule_task(entry, configs=configs, seed=seed, examples=examples,
                               convention=convention) for entry in entries]
    if not split:
        return wholes
    expected = [_expected_seconds(whole, remembered) for whole in wholes]
    limit = SPLIT_SHARE * sum(expected)
    tasks: list[RuleTask] = []
    for whole, seconds in zip(wholes, expected, strict=True):
        if seconds > limit and len(whole.indices) > 1:
            tasks += [replace(whole, indices=(index,)) for index in whole.indices]
        else:
            tasks.append(whole)
    return tasks


@check_isolation()
def check_registry(
    classes: Iterable | None = None,
    *,
    configs: int = 3,
    examples: int = 30,
    seed: int | None = None,
    convention: str = "subgradient",
    include: Sequence[str] = ("native", "user", "package"),
    progress: Callable[[int, int, str], Any] | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
) -> RegistryCheck:
    """Check registered backward rules, each on ``configs`` configurations of its forward
    class.

    Args:
        classes: forward classes (or their names) to check; ``None`` checks every registered
            rule from the included sources.
        configs: configurations drawn per rule from its strategy (a single example layer gives
            one).
        examples: Hypothesis examples per configuration (see :func:`check_layer`).
        seed: makes the run reproducible (configurations and examples); ``None`` draws one,
            reported in the result.
        convention: at kinks, ``"subgradient"`` or ``"autograd"`` (see :func:`check_layer`).
        include: the sources of rules to check: ``"native"``, ``"user"``, ``"package"``.
        progress: called as ``progress(index, total, label)`` before each task's checks
            (as each result arrives from a worker; ``index`` from 0, ``total`` tasks, ``label``
            the forward class's name). A task checks one rule on all its configurations, or
            on one of them for a rule expected to take a large share of a parallel run (see
            :data:`SPLIT_SHARE`).
        jobs: processes checking at once: this one and ``jobs - 1`` local workers, each with
            one torch thread (see :func:`jacverify.check.parallel.run_tasks`); the results
            equal the serial run's.
        executor: a :class:`concurrent.futures.Executor` to run every check on instead
            (a ``dask.distributed`` client's ``get_executor()``, say): rule and layer classes
            must be importable where it runs them.

    Returns:
        A :class:`RegistryCheck`: one :class:`ConfigCheck` per configuration, and one
        ``skipped`` check (with the reason) per rule that could not be checked.
    """
    start = time.perf_counter()
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    seed = int(seed)
    if int(jobs) < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs!r}")
    entries = _select(registered_rules(), classes, tuple(include))
    if executor is None:
        prepare_workers(jobs, len(entries) * int(configs))
    result = RegistryCheck(seed=seed, configs=int(configs), examples=int(examples),
                           convention=convention)
    remembered = task_cost.remembered_seconds(cache_directory())
    tasks = registry_tasks(entries, configs=configs, seed=seed, examples=int(examples),
                           convention=convention, remembered=remembered,
                           split=executor is not None or int(jobs) > 1)
    for rows in run_tasks(tasks, jobs=jobs, executor=executor, progress=progress):
        result.checks += rows
    result.duration_s = time.perf_counter() - start
    return result
