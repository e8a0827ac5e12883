"""The pytest plugin of jacverify: check backward rules in a test suite, and report the checks.

Registered through the ``pytest11`` entry point ``jacverify``, so it is active wherever
jacverify is installed; ``-p no:jacverify`` turns it off. It provides:

* the fixture ``backward_check``: :func:`jacverify.testing.assert_backward_correct` with the
  test's defaults (it records the checks it made in ``backward_check.checks``);
* the marker ``@pytest.mark.jacverify(examples=..., seed=..., convention=..., allow=...)``:
  defaults of every check made in a test (or a class, or a module through ``pytestmark``);
* the options ``--jacverify-examples N``, ``--jacverify-seed N``, ``--jacverify-json PATH`` and
  ``--jacverify-html PATH``: defaults for every check, and one report of every check made in
  the session (through the fixture or ``assert_backward_correct``), with ``pytest -n``
  workers' checks merged by the controlling process.

Unless ``--jacverify-seed`` is given, a seed is drawn for the session and printed in pytest's
header; ``pytest -n`` workers share it. Keras, torch, the checker and the report writers are
imported only when a check or a report needs them: pytest loads plugins at every start.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from jacverify.check.results import LayerCheck
    from jacverify.testing import CheckRecord, TestDefaults

MARKER = "jacverify"
_MARKER_KEYS = ("examples", "seed", "convention", "allow")
#: Key of the checks a ``pytest -n`` worker sends to the controlling process.
WORKER_OUTPUT_KEY = "jacverify_checks"
#: Key of the session seed the controlling process sends to its workers.
WORKER_SEED_KEY = "jacverify_seed"
_STATE = pytest.StashKey["_SessionChecks"]()
_MAX_LISTED = 20


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``--jacverify-*`` options."""
    group = parser.getgroup("jacverify", "jacverify: checks of backward rules")
    group.addoption(
        "--jacverify-examples", type=int, default=None, metavar="N",
        help="examples per check of a backward rule (default: max_examples of the Hypothesis "
        "settings profile in use, 100 unless a profile changes it); the jacverify marker and "
        "explicit arguments take precedence",
    )
    group.addoption(
        "--jacverify-seed", type=int, default=None, metavar="N",
        help="seed of every check of a backward rule (default: a seed drawn for the session, "
        "shown in the header); the jacverify marker and explicit arguments take precedence",
    )
    group.addoption(
        "--jacverify-json", default=None, metavar="PATH",
        help="write every check of a backward rule made in the session to PATH as a JSON report",
    )
    group.addoption(
        "--jacverify-html", default=None, metavar="PATH",
        help="write every check of a backward rule made in the session to PATH as an HTML page",
    )


class _SessionChecks:
    """The plugin's state in one process: the session's defaults and the checks made."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        examples = config.getoption("jacverify_examples")
        if examples is not None and examples < 1:
            raise pytest.UsageError("--jacverify-examples must be at least 1")
        self.examples: int | None = examples
        self.fixed_seed: int | None = config.getoption("jacverify_seed")
        workerinput = getattr(config, "workerinput", None)
        if self.fixed_seed is not None:
            self.session_seed = self.fixed_seed
        elif workerinput is not None and WORKER_SEED_KEY in workerinput:
            self.session_seed = int(workerinput[WORKER_SEED_KEY])
        else:
            self.session_seed = int.from_bytes(os.urandom(4), "little")
        self.is_worker = workerinput is not None
        self.records: list[dict] = []  # CheckRecord.to_dict() of every check, workers' too
        self.lost_workers: list[str] = []
        self.written: list[Path] = []
        self.report_error: str | None = None
        self.previous_defaults: TestDefaults | None = None
        self.cache_scope = contextlib.ExitStack()

    def use_pytest_cache(self, config: pytest.Config) -> None:
        """Keep the checks' Hypothesis files in pytest's cache directory (``jacverify/`` in
        ``.pytest_cache/d/``) for the session, when pytest's cache is on."""
        from jacverify.check.storage import use_cache_directory

        cache = getattr(config, "cache", None)
        if cache is not None:
            self.cache_scope.enter_context(use_cache_directory(cache.mkdir("jacverify")))

    def add(self, record: CheckRecord) -> None:
        """Keep one check (a listener of jacverify.testing)."""
        self.records.append(record.to_dict())

    def defaults(self, item: pytest.Item | None = None) -> TestDefaults:
        """The defaults of the checks made in ``item`` (outside any test when None)."""
        from jacverify.testing import TestDefaults

        values: dict[str, Any] = {}
        if item is not None:
            for mark in reversed(list(item.iter_markers(MARKER))):  # the closest wins
                values.update(_marker_values(mark))
        examples, examples_source = values.get("examples"), "marker"
        if examples is None:
            examples, examples_source = self.examples, "option"
        seed, seed_source = values.get("seed"), "marker"
        if seed is None:
            seed, seed_source = self.fixed_seed, "option"
        return TestDefaults(
            examples=examples,
            examples_source=examples_source if examples is not None else "",
            seed=seed,
            seed_source=seed_source if seed is not None else "",
            session_seed=self.session_seed,
            convention=values.get("convention"),
            allow=tuple(values.get("allow", ())),
            test_id=item.nodeid if item is not None else "",
        )

    def write_reports(self) -> None:
        """Write the JSON and HTML reports asked for (each atomically)."""
        targets = [
            (self.config.getoption("jacverify_json"), "write_json"),
            (self.config.getoption("jacverify_html"), "write_html"),
        ]
        targets = [(path, writer) for path, writer in targets if path]
        if not targets:
            return
        try:
            from jacverify import report
        except ImportError as error:
            self.report_error = f"no report written: jacverify.report is unavailable ({error})"
            return
        records = sorted(self.records, key=lambda record: record.get("label") or "")
        try:
            document = self._document(report, records)
        except Exception as error:  # noqa: BLE001 - a report must not crash the session
            self.report_error = f"no report written: {type(error).__name__}: {error}"
            return
        for path, writer in targets:
            target = Path(self.config.invocation_params.dir, path)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                self.written.append(getattr(report, writer)(document, target))
            except Exception as error:  # noqa: BLE001 - reported in the terminal summary
                self.report_error = f"could not write {target}: {type(error).__name__}: {error}"

    def _document(self, report: Any, records: list[dict]) -> dict:
        return report.build_document(
            checks=records,
            title=f"pytest session: {len(records)} checks of backward rules",
            command=["pytest", *self.config.invocation_params.args],
            options={
                "examples": self.examples,
                "seed": self.session_seed,
                "seed_fixed": self.fixed_seed is not None,
                "workers_lost": self.lost_workers,
            },
        )


def _marker_values(mark: pytest.Mark) -> dict:
    """The keyword arguments of one ``jacverify`` marker, checked."""
    if mark.args:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} takes keyword arguments only ({', '.join(_MARKER_KEYS)})"
        )
    unknown = sorted(set(mark.kwargs) - set(_MARKER_KEYS))
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} got unknown arguments {unknown}; it takes "
            f"{', '.join(_MARKER_KEYS)}"
        )
    values = dict(mark.kwargs)
    if "examples" in values and values["examples"] is not None:
        if int(values["examples"]) < 1:
            raise pytest.UsageError(f"@pytest.mark.{MARKER}(examples=...) must be at least 1")
    if values.get("convention") is not None:
        from jacverify.verdicts import CONVENTIONS

        if values["convention"] not in CONVENTIONS:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER}(convention=...) must be one of {CONVENTIONS}, got "
                f"{values['convention']!r}"
            )
    if "allow" in values:
        from jacverify.testing import allowed_verdicts

        try:
            values["allow"] = allowed_verdicts(values["allow"] or ())
        except ValueError as error:
            raise pytest.UsageError(f"@pytest.mark.{MARKER}: {error}") from None
    return values


def _state(config: pytest.Config) -> _SessionChecks | None:
    return config.stash.get(_STATE, None)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, draw the session's seed, start collecting checks."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(examples=None, seed=None, convention=None, allow=()): defaults of the "
        "checks of backward rules made in this test (assert_backward_correct, backward_check)",
    )
    from jacverify import testing

    state = _SessionChecks(config)
    state.previous_defaults = testing._defaults
    state.use_pytest_cache(config)
    config.stash[_STATE] = state
    testing._listeners.append(state.add)
    testing._set_defaults(state.defaults())


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop collecting checks; an in-process run of pytest (pytester) gives the defaults back
    to the run that started it."""
    state = _state(config)
    if state is None:
        return
    from jacverify import testing

    if state.add in testing._listeners:
        testing._listeners.remove(state.add)
    testing._set_defaults(state.previous_defaults)
    state.cache_scope.close()


def pytest_report_header(config: pytest.Config) -> str | None:
    """The session's seed."""
    state = _state(config)
    if state is None:
        return None
    if state.fixed_seed is not None:
        return f"jacverify: seed {state.fixed_seed} (--jacverify-seed)"
    return (
        f"jacverify: seed {state.session_seed} (--jacverify-seed {state.session_seed} repeats "
        "this session's checks)"
    )


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Give a ``pytest -n`` worker the session's seed."""
    state = _state(node.config)
    if state is not None:
        node.workerinput[WORKER_SEED_KEY] = state.session_seed


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """Merge the checks of a ``pytest -n`` worker that finished."""
    state = _state(node.config)
    if state is None:
        return
    output = getattr(node, "workeroutput", None) or {}
    if WORKER_OUTPUT_KEY in output:
        state.records.extend(json.loads(output[WORKER_OUTPUT_KEY]))
    else:
        name = getattr(getattr(node, "gateway", None), "id", "?")
        state.lost_workers.append(f"{name}: {error}" if error else str(name))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Install the test's defaults (options, then its markers) before its fixtures run."""
    state = _state(item.config)
    if state is not None:
        from jacverify import testing

        testing._set_defaults(state.defaults(item))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Back to the session's defaults once the test is over."""
    yield
    state = _state(item.config)
    if state is not None:
        from jacverify import testing

        testing._set_defaults(state.defaults())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A worker hands its checks to the controlling process; otherwise write the reports."""
    state = _state(session.config)
    if state is None:
        return
    if state.is_worker:
        session.config.workeroutput[WORKER_OUTPUT_KEY] = json.dumps(state.records)
    else:
        state.write_reports()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """How many checks reached each verdict, the ones that did not pass, the reports."""
    state = _state(config)
    if state is None or state.is_worker:
        return
    if not state.records and not state.written and not state.report_error:
        return
    counts: dict[str, int] = {}
    for record in state.records:
        counts[record["verdict"]] = counts.get(record["verdict"], 0) + 1
    if counts:
        from jacverify.verdicts import VERDICTS

        counts = {v: counts[v] for v in (*VERDICTS, *counts) if v in counts}
    from jacverify.check import text

    terminalreporter.write_sep("-", "jacverify")
    terminalreporter.write_line(text.session_tally_line(counts))
    others = [r for r in state.records if r["verdict"] != "pass"]
    for record in others[:_MAX_LISTED]:
        terminalreporter.write_line(text.session_check_line(record))
    if len(others) > _MAX_LISTED:
        terminalreporter.write_line(f"  ... and {len(others) - _MAX_LISTED} more")
    for lost in state.lost_workers:
        terminalreporter.write_line(f"  checks of worker {lost} are missing (it crashed)")
    for path in state.written:
        terminalreporter.write_line(f"report: {path}")
    if state.report_error:
        terminalreporter.write_line(f"jacverify: {state.report_error}", red=True)


class BackwardCheck:
    """The ``backward_check`` fixture: call it as :func:`jacverify.testing.
    assert_backward_correct`; ``checks`` lists the results of the calls that passed."""

    def __init__(self) -> None:
        self.checks: list[LayerCheck] = []

    def __call__(self, layer: Any, rule: type | None = None, **kwargs: Any) -> LayerCheck:
        """Check ``rule`` for ``layer`` with the test's defaults; fail unless it passes."""
        __tracebackhide__ = True
        from jacverify.testing import assert_backward_correct

        check = assert_backward_correct(layer, rule, **kwargs)
        self.checks.append(check)
        return check


@pytest.fixture
def backward_check() -> BackwardCheck:
    """Check a backward rule: ``backward_check(Clip(0.0, 2.0), BackwardClip,
    input_shape=(5,))`` fails the test with the counterexample unless the rule passes. Takes
    the arguments of :func:`jacverify.testing.assert_backward_correct`; defaults come from the
    ``jacverify`` marker and the ``--jacverify-*`` options."""
    return BackwardCheck()
