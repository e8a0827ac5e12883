"""Assertions for test suites: check a backward rule inside a test, and list registered rules.

* :func:`assert_backward_correct` runs :func:`jacverify.check_layer` and raises
  :class:`BackwardCheckFailed` (an ``AssertionError``) unless the verdict is ``pass`` (or one
  the test allows); its message shows the verdict, the counterexample and how to replay it.
* :func:`registered_rules` gives one ``pytest.param`` per registered rule, to parametrize a
  test over them.

Under pytest, the plugin (:mod:`jacverify.pytest_plugin`) supplies the defaults of each test
(``--jacverify-examples``, ``--jacverify-seed``, the ``jacverify`` marker) and collects every
check into the session's report. Outside pytest the same calls work with plain defaults.

Importing this module is cheap: the checker is imported on the first check.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jacverify.check.storage import database_for_checks
from jacverify.verdicts import Verdict

if TYPE_CHECKING:
    from jacverify.check.results import LayerCheck

__all__ = [
    "ACCEPTABLE_VERDICTS",
    "BackwardCheckFailed",
    "CheckRecord",
    "TestDefaults",
    "assert_backward_correct",
    "failure_message",
    "registered_rules",
]

#: Verdicts that ``allow=`` may accept. ``fail`` and ``error`` show the rule wrong: they always
#: fail the assertion (mark such a test ``xfail`` instead).
ACCEPTABLE_VERDICTS = (
    Verdict.BOUNDARY.value, Verdict.INCONCLUSIVE.value, Verdict.SKIPPED.value
)
#: Examples per check when nothing else sets them and no Hypothesis profile can be read.
DEFAULT_EXAMPLES = 100
#: At most this many seeds that failed before are replayed from the example database.
MAX_REPLAYED_SEEDS = 3
_DATABASE_PREFIX = b"jacverify.testing.assert_backward_correct:"

# Layer config keys that the constructor call in a replay leaves out.
_BASE_CONFIG_KEYS = ("name", "trainable", "dtype")


@dataclass(frozen=True)
class TestDefaults:
    """Defaults of the checks made in the current test, set by the pytest plugin."""

    __test__ = False  # not a test class for pytest

    examples: int | None = None
    examples_source: str = ""  # "marker" or "option" when examples is set
    seed: int | None = None  # a seed fixed by the marker or --jacverify-seed
    seed_source: str = ""  # "marker" or "option" when seed is set
    session_seed: int | None = None  # the session's seed, used when no seed is fixed
    convention: str | None = None
    allow: tuple = ()
    test_id: str = ""  # the pytest node id; "" outside a test


@dataclass
class CheckRecord:
    """One check made through :func:`assert_backward_correct`, as the session report keeps it."""

    check: LayerCheck
    test_id: str = ""  # the pytest node id ("" outside a test)
    accepted: bool = False  # the assertion passed (verdict pass, or allowed)
    seed_source: str = "argument"  # a key of text.SEED_SOURCES: argument, marker, session ...
    examples_source: str = "argument"  # argument, marker, option, profile or default
    examples: int = 0  # the examples asked for (check.examples counts those judged)
    replay: str = ""  # a call that repeats the check
    example_replay: str | None = None  # a call that evaluates the counterexample alone
    layer_note: str = ""  # what `layer` stands for in the calls, when they cannot rebuild it

    def to_dict(self) -> dict:
        """The check's JSON data, with the test id as its ``label`` and how it was made."""
        data = self.check.to_dict()
        data["label"] = self.test_id or f"{self.check.layer_class} / {self.check.rule_class}"
        data["accepted"] = self.accepted
        data["seed_source"] = self.seed_source
        data["examples_source"] = self.examples_source
        data["replay_call"] = self.replay
        return data


class BackwardCheckFailed(AssertionError):
    """A backward rule did not pass its check; ``check`` holds the full result."""

    def __init__(self, message: str, check: LayerCheck) -> None:
        super().__init__(message)
        self.check = check


# Set by the pytest plugin; None outside pytest (or with -p no:jacverify).
_defaults: TestDefaults | None = None
_listeners: list[Callable[[CheckRecord], None]] = []


def _set_defaults(defaults: TestDefaults | None) -> None:
    """Install the defaults of the current test (the pytest plugin's hook)."""
    global _defaults
    _defaults = defaults


# --------------------------------------------------------------------------- options


def allowed_verdicts(allow: Iterable[str] | str) -> tuple[str, ...]:
    verdicts = (allow,) if isinstance(allow, str) else tuple(allow)
    for verdict in verdicts:
        if verdict not in ACCEPTABLE_VERDICTS:
            raise ValueError(
                f"allow= accepts {ACCEPTABLE_VERDICTS}, got {verdict!r}: 'fail' and 'error' "
                "show the rule wrong (mark the test xfail to expect that)"
            )
    return verdicts


def _profile() -> Any:
    """The Hypothesis settings profile in use (inside a @given test, the profile, not the
    test's own settings), or None if it cannot be read."""
    try:
        from hypothesis import settings

        name = getattr(settings, "get_current_profile_name", lambda: None)()
        return settings.get_profile(name) if name is not None else settings.default
    except Exception:  # noqa: BLE001 - no profile, the built-in defaults
        return None


def _examples(examples: int | None, defaults: TestDefaults) -> tuple[int, str]:
    if examples is not None:
        return int(examples), "argument"
    if defaults.examples is not None:
        return int(defaults.examples), defaults.examples_source or "option"
    profile = _profile()
    if profile is not None:
        return int(profile.max_examples), "profile"
    return DEFAULT_EXAMPLES, "default"


def _inside_hypothesis_test() -> bool:
    try:
        from hypothesis import currently_in_test_context
    except ImportError:  # an older Hypothesis
        return False
    return currently_in_test_context()


def _seed(seed: int | None, defaults: TestDefaults) -> tuple[int, str]:
    if seed is not None:
        return int(seed), "argument"
    if defaults.seed is not None:
        return int(defaults.seed), defaults.seed_source or "option"
    profile = _profile()
    if profile is not None and profile.derandomize:
        return zlib.crc32(defaults.test_id.encode()), "derandomize"
    if defaults.session_seed is not None:
        return int(defaults.session_seed), "session"
    if _inside_hypothesis_test():
        # Hypothesis seeds `random` for each example: a replayed example draws the same seed.
        return random.getrandbits(32), "random"
    return int.from_bytes(os.urandom(4), "little"), "random"


# --------------------------------------------------------------------------- running


def _run_check(layer: Any, rule: type | None, **options: Any) -> LayerCheck:
    """check_layer(); inside a Hypothesis test, in a thread of its own, where the checker's
    Hypothesis search is a test of its own rather than one nested in the running test."""
    from jacverify.check.layer_check import check_layer

    if not _inside_hypothesis_test():
        return check_layer(layer, rule, **options)
    box: dict = {}

    def target() -> None:
        try:
            box["check"] = check_layer(layer, rule, **options)
        except BaseException as error:  # noqa: BLE001 - re-raised in the calling thread
            box["error"] = error

    thread = threading.Thread(target=target, name="jacverify-check", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["check"]


def _database() -> Any:
    try:
        from hypothesis import settings

        return settings.default.database
    except Exception:  # noqa: BLE001 - no database, no replays
        return None


def _database_key(layer: Any, rule: type | None, test_id: str, options: dict) -> bytes:
    try:
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
    except Exception:  # noqa: BLE001
        config = {}
    identity = json.dumps(
        {
            "test": test_id,
            "layer": f"{type(layer).__module__}.{type(layer).__qualname__}",
            "config": config,
            "rule": None if rule is None else f"{rule.__module__}.{rule.__qualname__}",
            "options": {k: v for k, v in options.items() if k not in ("seed", "examples")},
        },
        sort_keys=True,
        default=lambda value: type(value).__name__,
    )
    return _DATABASE_PREFIX + hashlib.sha256(identity.encode()).hexdigest().encode()


def _stored_seeds(database: Any, key: bytes) -> list[tuple[bytes, int, int]]:
    found = []
    try:
        for value in database.fetch(key):
            data = json.loads(value)
            found.append((value, int(data["seed"]), int(data["examples"])))
    except Exception:  # noqa: BLE001 - an unreadable database entry is no replay
        return []
    return sorted(found, key=lambda item: item[1])[:MAX_REPLAYED_SEEDS]


def _database_call(database: Any, method: str, key: bytes, value: bytes) -> None:
    try:
        getattr(database, method)(key, value)
    except Exception:  # noqa: BLE001 - a read-only database must not fail the test
        pass


def assert_backward_correct(
    layer: Any,
    rule: type | None = None,
    *,
    input_shape: Any = None,
    examples: int | None = None,
    seed: int | None = None,
    convention: str | None = None,
    allow: Iterable[str] | str | None = None,
    **check_options: Any,
) -> LayerCheck:
    """Check ``rule`` (``None``: the registered rule) for ``layer`` and fail unless it passes.

    Args:
        layer: a Keras layer instance, built or not.
        rule: the backward rule class; ``None`` takes the one registered for the layer.
        input_shape: the layer's input shape without the batch axis (needed when the layer is
            not built).
        examples: Hypothesis examples to judge. Default: the ``jacverify`` marker's, else
            ``--jacverify-examples``, else ``max_examples`` of the Hypothesis settings profile
            in use (100 unless a profile changes it).
        seed: the checker's seed. Default: the marker's, else ``--jacverify-seed``, else one
            derived from the test's id when the Hypothesis profile sets ``derandomize=True``,
            else the pytest session's seed (printed in pytest's header); outside pytest, a
            random one. The failure message prints the seed used.
        convention: ``"subgradient"`` (default, or the marker's) or ``"autograd"``: what a
            rule may return at a kink.
        allow: verdicts besides ``pass`` that do not fail: any of ``"boundary"``,
            ``"inconclusive"``, ``"skipped"`` (default: the marker's, else none).
        **check_options: passed to :func:`jacverify.check_layer` (``dtype``, ``kinks``,
            ``inputs``, ``random_directions`` ...).

    Returns:
        The :class:`~jacverify.check.results.LayerCheck` of a check that passed (or whose
        verdict is allowed).

    Raises:
        BackwardCheckFailed: an ``AssertionError`` whose message gives the verdict, its
            reason, the counterexample and a call that replays the check.

    When no seed is fixed (by the argument, the marker or ``--jacverify-seed``), seeds that
    failed before in the same test are tried first: they are kept in the example database of
    the Hypothesis settings in use when the profile sets one, else in jacverify's cache
    directory (see :mod:`jacverify.check.storage`), as Hypothesis keeps failing examples, and
    forgotten once they pass.
    """
    __tracebackhide__ = True
    defaults = _defaults or TestDefaults()
    allowed = allowed_verdicts(allow if allow is not None else defaults.allow)
    n_examples, examples_source = _examples(examples, defaults)
    the_seed, seed_source = _seed(seed, defaults)
    options = {} if input_shape is None else {"input_shape": input_shape}
    options.update(check_options)
    options["convention"] = convention or defaults.convention or "subgradient"
    run = _Run(layer, rule, options, allowed, defaults.test_id)

    database = None
    if seed_source in ("session", "random"):
        database = database_for_checks(_database())
    if database is None:
        return run.once(the_seed, n_examples, seed_source, examples_source)
    key = _database_key(layer, rule, defaults.test_id, options)
    stored = _stored_seeds(database, key)
    for value, old_seed, old_examples in stored:
        if (old_seed, old_examples) != (the_seed, n_examples):
            source = examples_source if old_examples == n_examples else "database"
            run.once(old_seed, old_examples, "database", source)
            _database_call(database, "delete", key, value)
    try:
        check = run.once(the_seed, n_examples, seed_source, examples_source)
    except BackwardCheckFailed:
        value = json.dumps({"seed": the_seed, "examples": n_examples}).encode()
        _database_call(database, "save", key, value)
        raise
    for value, old_seed, old_examples in stored:
        if (old_seed, old_examples) == (the_seed, n_examples):
            _database_call(database, "delete", key, value)
    return check


@dataclass
class _Run:
    """One call of assert_backward_correct: what every check it makes shares."""

    layer: Any
    rule: type | None
    options: dict
    allowed: tuple
    test_id: str

    def once(
        self, seed: int, examples: int, seed_source: str, examples_source: str
    ) -> LayerCheck:
        """Run one check, tell the listeners, and raise unless it is accepted."""
        __tracebackhide__ = True
        check = _run_check(self.layer, self.rule, examples=examples, seed=seed, **self.options)
        record = CheckRecord(
            check,
            test_id=self.test_id,
            accepted=check.verdict == Verdict.PASS or check.verdict in self.allowed,
            seed_source=seed_source,
            examples_source=examples_source,
            examples=examples,
        )
        _add_replays(record, self.layer, self.rule, self.options)
        for listener in list(_listeners):
            listener(record)
        if record.accepted:
            return check
        raise BackwardCheckFailed(failure_message(check, record), check)


# --------------------------------------------------------------------------- replay calls


def _layer_constructor(layer: Any) -> str | None:
    """``Clip(vmin=0.0, vmax=2.0)``: a call that rebuilds ``layer``, or None when its config
    is not plain literals, it holds weights, or the call would not rebuild the same config."""
    from jacverify.check import text

    try:
        if getattr(layer, "weights", None):
            return None
        config = layer.get_config()
        kwargs = {k: v for k, v in config.items() if k not in _BASE_CONFIG_KEYS}
        if not all(text.is_literal(v) for v in kwargs.values()):
            return None
        rebuilt = type(layer)(**kwargs).get_config()
        if {k: v for k, v in rebuilt.items() if k != "name"} != {
            k: v for k, v in config.items() if k != "name"
        }:
            return None
    except Exception:  # noqa: BLE001 - no constructor call, the replay names `layer`
        return None
    return text.call_text(type(layer).__name__, (f"{k}={v!r}" for k, v in kwargs.items()))


def _add_replays(record: CheckRecord, layer: Any, rule: type | None, options: dict) -> None:
    """Fill the record's replay calls (``layer`` stands for the layer when it cannot be
    rebuilt from plain arguments, or from an input shape the call does not give)."""
    from jacverify.check import text

    target = _layer_constructor(layer) if "input_shape" in options else None
    if target is None:
        weights = len(getattr(layer, "weights", None) or [])
        what = f"with the same {weights} weight values" if weights else "built the same way"
        record.layer_note = f"`layer` is the layer checked, {what}"
    head = [target or "layer"]
    rule_name = rule.__name__ if rule is not None else None
    arguments = head + ([rule_name] if rule_name else []) + text.keyword_arguments(options)
    arguments.append(f"examples={record.examples}, seed={record.check.seed}")
    record.replay = text.call_text("assert_backward_correct", arguments)
    cx = record.check.counterexample
    if cx is not None and cx.replay is not None and cx.replay.example:
        from jacverify.check.results import jsonable

        arguments = head + [rule_name or "None", repr(jsonable(cx.replay.example))]
        arguments += text.keyword_arguments(options, skip=("shrink_budget", "threads"))
        record.example_replay = text.call_text("check_example", arguments)


# --------------------------------------------------------------------------- messages


def _replay_lines(check: LayerCheck, record: CheckRecord) -> list[str]:
    from jacverify.check import text

    command = ""
    if record.test_id:
        command = text.pytest_command(
            record.test_id,
            seed=None if record.seed_source in ("argument", "marker") else check.seed,
            examples=(
                None if record.examples_source in ("argument", "marker") else record.examples
            ),
        )
    return text.replay_lines(
        command=command, call=record.replay, example_call=record.example_replay or "",
        note=record.layer_note,
    )


def failure_message(check: LayerCheck, record: CheckRecord | None = None) -> str:
    """The text of a check that did not pass: verdict and reason, the counterexample (input,
    upstream gradient, the rule's output, the expected one, the coordinates that differ, the
    kink), the check's statistics, and how to replay it (from ``record``)."""
    from jacverify.check import text

    record = record or CheckRecord(check)
    replay = _replay_lines(check, record) if check.verdict != Verdict.SKIPPED else []
    return text.failure_message(
        check, accepts_allow=check.verdict in ACCEPTABLE_VERDICTS,
        seed_source=record.seed_source, replay=replay,
    )


# --------------------------------------------------------------------------- parametrizing


def _rule_id(keras_class: type, duplicated: bool) -> str:
    if not duplicated:
        return keras_class.__name__
    from jacverify.keras_internals import public_module

    module = public_module(keras_class.__module__)
    return f"{module}.{keras_class.__name__}"


def registered_rules(source: str | None = None) -> list:
    """One ``pytest.param(entry, id=<forward class name>)`` per registered rule, for
    ``@pytest.mark.parametrize("entry", registered_rules())``.

    Each ``entry`` is a :class:`jacverify.backward.registry.RuleEntry` (``keras_class``,
    ``rule_class``, ``source``). ``source`` keeps only the rules of one origin: ``"user"``
    (registered with :func:`jacverify.register_backward`), ``"package"`` (from installed
    packages' entry points) or ``"native"``. Ids are the forward class names, qualified by
    their module where two classes share a name (``Add`` and ``ops.numpy.Add``).
    """
    import pytest

    from jacverify.backward.registry import registered_rules as registry_rules

    entries = list(registry_rules().values())
    if source is not None:
        if source not in ("user", "package", "native"):
            raise ValueError(f"source must be 'user', 'package' or 'native', got {source!r}")
        entries = [e for e in entries if e.source.split(":", 1)[0] == source]
    names: dict[str, int] = {}
    for entry in entries:
        names[entry.keras_class.__name__] = names.get(entry.keras_class.__name__, 0) + 1
    return [
        pytest.param(entry, id=_rule_id(entry.keras_class, names[entry.keras_class.__name__] > 1))
        for entry in entries
    ]
