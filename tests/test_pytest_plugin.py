"""The pytest plugin and jacverify.testing, used the way a test suite uses them.

Runs that make checks go through ``pytester.runpytest_subprocess`` (a fresh Keras and torch);
runs that only collect or read the defaults run in-process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.database import InMemoryExampleDatabase

from jacverify import testing
from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import registered_rules as registry_rules
from jacverify.check import check_example
from jacverify.examples.tutorial import (
    BackwardClip,
    BackwardClipCorrect,
    Clip,
)
from jacverify.testing import (
    BackwardCheckFailed,
    TestDefaults,
    assert_backward_correct,
    registered_rules,
)

pytest_plugins = ["pytester"]

#: Environment variables that make Hypothesis load its "ci" profile (derandomize=True).
_CI_VARIABLES = ("CI", "TF_BUILD", "BUILDKITE", "CIRCLECI", "CIRRUS_CI", "CODEBUILD_BUILD_ID",
                 "GITHUB_ACTIONS", "GITLAB_CI", "HEROKU_TEST_RUN_ID", "TEAMCITY_VERSION",
                 "bamboo.buildKey", "__TOX_ENVIRONMENT_VARIABLE_ORIGINAL_CI")


@pytest.fixture(autouse=True)
def _hypothesis_default_profile(monkeypatch):
    """These tests describe the plugin under Hypothesis' default profile. On a CI service
    (the ``CI`` variable set) Hypothesis loads its "ci" profile, which derandomizes: the
    plugin then derives seeds from test ids, as documented, and these tests would see that
    instead. The profile is reset here and the variables removed for the subprocesses."""
    for name in _CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    previous = settings._current_profile
    settings.load_profile("default")
    yield
    settings.load_profile(previous)


USER_TESTS = '''
import pytest
from hypothesis import given, settings, strategies as st

from jacverify.examples.tutorial import (
    BackwardClip, BackwardClipCorrect, BackwardPlusConstant, Clip, PlusConstant,
)
from jacverify.testing import assert_backward_correct


def test_tutorial_clip():
    assert_backward_correct(Clip(0.0, 2.0), BackwardClip, input_shape=(5,), examples=15)


def test_correct_clip(backward_check):
    backward_check(Clip(0.0, 2.0), BackwardClipCorrect, input_shape=(5,), examples=15)
    assert len(backward_check.checks) == 1


def test_plus_constant():
    check = assert_backward_correct(PlusConstant(2.0), BackwardPlusConstant, input_shape=(3,))
    assert check.verdict == "pass"


@pytest.mark.jacverify(examples=6, seed=11)
def test_marker(backward_check):
    check = backward_check(PlusConstant(1.0), BackwardPlusConstant, input_shape=(4,))
    assert check.seed == 11


@settings(max_examples=3, deadline=None, database=None)
@given(vmax=st.floats(0.5, 3.0))
def test_inside_given(vmax):
    with open("given_calls.txt", "a") as calls:
        calls.write("call\\n")
    assert_backward_correct(Clip(0.0, vmax), BackwardClipCorrect, input_shape=(4,), examples=8)
'''


def _json(pytester: pytest.Pytester, name: str) -> dict:
    return json.loads((pytester.path / name).read_text())


def _labels(document: dict) -> list[str]:
    return [check["label"].split("::")[-1] for check in document["checks"]]


def test_user_suite_fails_wrong_rule_passes_right_ones_and_reports(pytester: pytest.Pytester):
    pytester.makepyfile(test_rules=USER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--jacverify-examples", "10",
        "--jacverify-json", "out/report.json", "--jacverify-html", "out/report.html",
    )
    result.assert_outcomes(passed=4, failed=1)
    output = result.stdout.str()
    # the failure reads like a test failure: verdict, reason, counterexample, replay
    result.stdout.fnmatch_lines([
        "*BackwardCheckFailed: BackwardClip for layer 'clip*' (Clip): FAIL*",
        "*The rule is wrong*",
        "*counterexample (*",
        "*input x *[[]*",
        "*upstream gradient g *[[]*",
        "*rule's output *[[]*",
        "*expected g^T J(x) *[[]*",
        "*differs at:*",
        "*kink: *",
        "*replay:*",
        "*pytest 'test_rules.py::test_tutorial_clip' --jacverify-seed *",
        "*assert_backward_correct(Clip(vmin=0.0, vmax=2.0), BackwardClip, input_shape=(5,), "
        "examples=15, seed=*)",
        "*check_example(Clip(vmin=0.0, vmax=2.0), BackwardClip, {'kind': *",
    ])
    assert "FAILED test_rules.py::test_tutorial_clip" in output
    session_seed = int(re.search(r"jacverify: seed (\d+)", output).group(1))
    assert f"--jacverify-seed {session_seed}" in output
    result.stdout.fnmatch_lines(["*checks of backward rules: *1 fail*", "report: *report.json"])

    document = _json(pytester, "out/report.json")
    given_calls = len((pytester.path / "given_calls.txt").read_text().splitlines())
    labels = _labels(document)
    assert sorted(set(labels)) == [
        "test_correct_clip", "test_inside_given", "test_marker", "test_plus_constant",
        "test_tutorial_clip",
    ]
    assert labels.count("test_inside_given") == given_calls >= 1
    assert len(labels) == 4 + given_calls  # every check, once
    by_label = {label: check for label, check in zip(labels, document["checks"])}
    assert by_label["test_tutorial_clip"]["verdict"] == "fail"
    assert by_label["test_tutorial_clip"]["accepted"] is False
    assert by_label["test_correct_clip"]["verdict"] == "pass"
    # the marker beats --jacverify-examples; the option applies where nothing else does
    assert by_label["test_marker"]["seed"] == 11
    assert by_label["test_marker"]["replay_call"].endswith("examples=6, seed=11)")
    assert by_label["test_plus_constant"]["replay_call"].endswith(
        f"examples=10, seed={session_seed})"
    )
    assert document["counts"]["fail"] == 1 and document["counts"]["pass"] == 3 + given_calls
    html = (pytester.path / "out/report.html").read_text()
    assert "test_tutorial_clip" in html and "BackwardClip" in html


@pytest.mark.slow
def test_xdist_report_lists_every_check_once(pytester: pytest.Pytester):
    pytester.makepyfile(test_rules=USER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--jacverify-examples", "8",
        "--jacverify-json", "report.json",
    )
    result.assert_outcomes(passed=4, failed=1)
    document = _json(pytester, "report.json")
    given_calls = len((pytester.path / "given_calls.txt").read_text().splitlines())
    labels = _labels(document)
    assert len(labels) == 4 + given_calls
    assert labels.count("test_inside_given") == given_calls
    for name in ("test_correct_clip", "test_marker", "test_plus_constant", "test_tutorial_clip"):
        assert labels.count(name) == 1
    # the workers share the session's seed
    seeds = {c["seed"] for c in document["checks"] if not c["label"].endswith("test_marker")}
    assert len(seeds) == 1
    assert not [p for p in pytester.path.iterdir() if p.name.startswith(".report.json")]


def test_report_without_checks_and_a_path_that_cannot_be_written(pytester: pytest.Pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    (pytester.path / "taken").mkdir()
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--jacverify-json", "r.json", "--jacverify-html", "taken"
    )
    result.assert_outcomes(passed=1)
    document = _json(pytester, "r.json")
    assert document["checks"] == [] and document["schema"] == "jacverify-report"
    result.stdout.fnmatch_lines(["report: *r.json", "jacverify: could not write *taken*"])
    assert [p.name for p in pytester.path.iterdir() if p.name.startswith(".")] == []


def test_parametrize_over_registered_rules_one_case_per_rule(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        from jacverify.testing import registered_rules

        @pytest.mark.parametrize("entry", registered_rules())
        def test_rule(entry):
            assert entry.rule_class is not None
        """
    )
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    collected = [line for line in result.outlines if "::test_rule[" in line]
    assert len(collected) == len(registry_rules()) > 100
    assert len(set(collected)) == len(collected)
    assert any(line.endswith("test_rule[Dense]") for line in collected)
    # two classes named Add (the layer and the operation) get distinct ids
    assert sum(line.endswith("Add]") for line in collected) == 2


def test_registered_rules_params():
    params = registered_rules()
    assert [p.values[0] for p in params] == list(registry_rules().values())
    assert len({p.id for p in params}) == len(params)
    assert all(p.values[0].source == "native" for p in registered_rules(source="native"))
    with pytest.raises(ValueError, match="source"):
        registered_rules(source="mine")


def test_plugin_off_with_p_no_jacverify(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        def test_uses_fixture(backward_check):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:jacverify", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'backward_check' not found*"])
    assert "jacverify: seed" not in result.stdout.str()


def test_marker_and_options_set_the_defaults(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        from jacverify import testing

        pytestmark = pytest.mark.jacverify(convention="autograd", examples=50)

        def test_options():
            d = testing._defaults
            assert (d.examples, d.examples_source) == (50, "marker")
            assert (d.seed, d.seed_source, d.session_seed) == (3, "option", 3)
            assert d.convention == "autograd"
            assert d.test_id.endswith("test_options")

        @pytest.mark.jacverify(examples=7, seed=11, allow="inconclusive")
        def test_marker():
            d = testing._defaults
            assert (d.examples, d.seed, d.convention, d.allow) == (7, 11, "autograd",
                ("inconclusive",))
            assert (d.examples_source, d.seed_source) == ("marker", "marker")

        @pytest.mark.jacverify(examples=None)
        def test_marker_none_keeps_the_option():
            d = testing._defaults
            assert (d.examples, d.examples_source) == (5, "option")

        @pytest.mark.jacverify(allow=("fail",))
        def test_bad_marker():
            pass
        """
    )
    result = pytester.runpytest(
        "--jacverify-examples", "5", "--jacverify-seed", "3", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*jacverify: seed 3 (--jacverify-seed)*", "*allow=*"])


# --------------------------------------------------------------------------- assertions


@pytest.fixture(autouse=True)
def _keep_out_of_this_sessions_report(monkeypatch):
    """The checks below fail on purpose: they stay out of the running session's report."""
    monkeypatch.setattr(testing, "_listeners", [])


def test_failure_message_and_its_replays_reproduce_the_failure():
    with pytest.raises(BackwardCheckFailed) as caught:
        assert_backward_correct(Clip(0.0, 2.0), BackwardClip, input_shape=(5,), examples=15,
                                seed=3)
    message = str(caught.value)
    check = caught.value.check
    assert isinstance(caught.value, AssertionError)
    assert check.verdict == "fail" and check.seed == 3
    assert message.splitlines()[0] == (
        f"BackwardClip for layer '{check.layer_name}' (Clip): FAIL, the rule is wrong"
    )
    assert check.reason in message
    assert "seed 3 (given as seed=)" in message
    call = next(line.strip() for line in message.splitlines()
                if line.strip().startswith("assert_backward_correct("))
    example_call = next(line.strip().split("  #")[0] for line in message.splitlines()
                        if line.strip().startswith("check_example("))
    assert call.endswith("examples=15, seed=3)")
    namespace = {
        "assert_backward_correct": assert_backward_correct, "check_example": check_example,
        "Clip": Clip, "BackwardClip": BackwardClip,
    }
    with pytest.raises(BackwardCheckFailed) as again:
        eval(call, namespace)
    assert again.value.check.counterexample.input.tolist() == check.counterexample.input.tolist()
    outcome = eval(example_call, namespace)
    assert outcome.verdict == "fail"


class _BrokenAtTheEdge(BackwardNonLinearLayer):
    """Clip's rule, wrong only at vmax (3 instead of a value in [0, 1])."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inside = keras.ops.logical_and(
            keras.ops.greater_equal(input, self.layer.vmin),
            keras.ops.less_equal(input, self.layer.vmax),
        )
        edge = keras.ops.cast(keras.ops.equal(input, self.layer.vmax), gradient.dtype)
        return gradient * (keras.ops.cast(inside, gradient.dtype) + 2.0 * edge)


def test_boundary_failure_names_the_kink_and_the_one_sided_range():
    with pytest.raises(BackwardCheckFailed) as caught:
        assert_backward_correct(Clip(0.0, 2.0), _BrokenAtTheEdge, input_shape=(5,),
                                examples=8, seed=2)
    message = str(caught.value)
    assert caught.value.check.verdict == "boundary"
    assert re.search(r"kink: on the kink x\[0, \d\] = 2 = layer.vmax", message)
    assert "expected a value between the one-sided derivatives" in message
    assert "allow=('boundary',)" in message
    check = assert_backward_correct(Clip(0.0, 2.0), _BrokenAtTheEdge, input_shape=(5,),
                                    examples=8, seed=2, allow=("boundary",))
    assert check.verdict == "boundary"


def test_skipped_fails_unless_allowed():
    layer = keras.layers.Embedding(10, 3)
    with pytest.raises(BackwardCheckFailed, match="SKIPPED") as caught:
        assert_backward_correct(layer, input_shape=(4,), seed=0)
    assert "allow=('skipped',)" in str(caught.value)
    assert assert_backward_correct(layer, input_shape=(4,), allow="skipped").verdict == "skipped"
    with pytest.raises(ValueError, match="xfail"):
        assert_backward_correct(layer, input_shape=(4,), allow=("fail",))


def test_inside_a_hypothesis_test():
    """The checker's own Hypothesis search runs inside a @given test without a health check
    error, and its failure surfaces as the assertion error."""
    calls = []
    outer = settings(max_examples=2, deadline=None, database=None, phases=[Phase.generate])

    @outer
    @given(vmax=st.sampled_from([1.0, 2.5]))
    def right(vmax):
        calls.append(assert_backward_correct(
            Clip(0.0, vmax), BackwardClipCorrect, input_shape=(3,), examples=6
        ))

    @outer
    @given(vmax=st.sampled_from([1.0, 2.5]))
    def wrong(vmax):
        assert_backward_correct(Clip(0.0, vmax), BackwardClip, input_shape=(3,), examples=6)

    right()
    assert calls and all(check.verdict == "pass" for check in calls)
    with pytest.raises(BackwardCheckFailed, match="FAIL"):
        wrong()


_BROKEN = {"on": True}


class _Switchable(BackwardNonLinearLayer):
    """BackwardClip while _BROKEN["on"], BackwardClipCorrect after."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        rule = BackwardClip if _BROKEN["on"] else BackwardClipCorrect
        return rule.call_on_reshaped_gradient(self, gradient, input=input)


def test_failing_seed_is_replayed_from_the_example_database(monkeypatch):
    database = InMemoryExampleDatabase()
    monkeypatch.setattr(testing, "_database", lambda: database)
    seen = []
    monkeypatch.setattr(testing, "_listeners", [seen.append])

    def run(session_seed):
        monkeypatch.setattr(
            testing, "_defaults", TestDefaults(session_seed=session_seed, test_id="t::x")
        )
        return assert_backward_correct(Clip(0.0, 2.0), _Switchable, input_shape=(4,),
                                       examples=10)

    with pytest.raises(BackwardCheckFailed):
        run(101)
    with pytest.raises(BackwardCheckFailed, match="replayed from the Hypothesis example"):
        run(202)
    assert [(r.check.seed, r.seed_source) for r in seen] == [(101, "session"), (101, "database")]
    _BROKEN["on"] = False
    try:
        seen.clear()
        assert run(202).verdict == "pass"
        assert [(r.check.seed, r.seed_source) for r in seen] == [(101, "database"),
                                                                  (202, "session")]
        seen.clear()
        run(303)  # forgotten once it passed
        assert [r.seed_source for r in seen] == ["session"]
    finally:
        _BROKEN["on"] = True
    # a fixed seed is the test's own choice: no database
    seen.clear()
    with pytest.raises(BackwardCheckFailed):
        assert_backward_correct(Clip(0.0, 2.0), _Switchable, input_shape=(4,), examples=10,
                                seed=5)
    assert [r.seed_source for r in seen] == ["argument"]


def test_examples_and_seed_follow_the_hypothesis_profile():
    previous = settings.get_current_profile_name()
    settings.register_profile("jacverify-test-quick", max_examples=7)
    settings.register_profile("jacverify-test-ci", derandomize=True, database=None)
    try:
        settings.load_profile("jacverify-test-quick")
        assert testing._examples(None, TestDefaults()) == (7, "profile")
        option = TestDefaults(examples=5, examples_source="option")
        assert testing._examples(None, option) == (5, "option")
        assert testing._examples(9, option) == (9, "argument")
        seen = []

        @settings(max_examples=2, database=None)
        @given(st.just(0))
        def inside(_):
            seen.append(testing._examples(None, TestDefaults()))

        inside()
        assert set(seen) == {(7, "profile")}  # the profile's, not the @given test's
        assert testing._seed(None, TestDefaults(session_seed=4)) == (4, "session")

        settings.load_profile("jacverify-test-ci")
        first = TestDefaults(session_seed=4, test_id="test_a.py::test_one")
        second = TestDefaults(session_seed=4, test_id="test_a.py::test_two")
        seed, source = testing._seed(None, first)
        assert source == "derandomize" and testing._seed(None, first) == (seed, source)
        assert testing._seed(None, second)[0] != seed
        assert testing._seed(3, first) == (3, "argument")
    finally:
        settings.load_profile(previous)


@pytest.mark.slow
def test_documented_examples_run_as_documented(pytester: pytest.Pytester):
    """The Python blocks of docs/pytest_plugin.md, as one test module."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "pytest_plugin.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    pytester.makepyfile(test_docs="\n".join(blocks))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=8, failed=1)
    result.stdout.fnmatch_lines([
        "test_docs.py::test_my_rules[[]PlusConstant[]] PASSED*",
        "test_docs.py::test_my_rules[[]Clip[]] PASSED*",
        "*BackwardCheckFailed: BackwardClip for layer 'clip*' (Clip): FAIL, the rule is wrong",
        "FAILED test_docs.py::test_clip_rule - *",
    ], consecutive=False)


CITIZEN_TESTS = '''
import warnings

import keras
import pytest

from jacverify.examples.tutorial import BackwardClip, Clip
from jacverify.testing import BackwardCheckFailed, assert_backward_correct


def test_dense():
    assert_backward_correct(keras.layers.Dense(3), input_shape=(4,), examples=5)


def test_relu():
    assert_backward_correct(keras.layers.ReLU(), input_shape=(4,), examples=5)


def test_conv():
    assert_backward_correct(keras.layers.Conv1D(2, 3), input_shape=(6, 2), examples=5)


def test_wrong_clip_rule_and_a_warning_of_the_users_own():
    warnings.warn("a warning of the user's own", UserWarning)
    with pytest.raises(BackwardCheckFailed):
        assert_backward_correct(Clip(0.0, 2.0), BackwardClip, input_shape=(5,), examples=5)
'''


def test_a_users_run_shows_the_users_warnings_only_and_keeps_hypothesis_files_in_pytests_cache(
    pytester: pytest.Pytester, monkeypatch
):
    """A project without jacverify's warning filters: the checks' library warnings (Keras'
    numpy conversions, thousands of them) are not shown, the user's own warning is; nothing is
    written to .hypothesis/ of the project, the failed seed is kept in pytest's cache."""
    monkeypatch.delenv("JACVERIFY_CACHE_DIR", raising=False)
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    pytester.makeini("[pytest]\n")  # the user's own configuration: no warning filters
    pytester.makepyfile(test_user=CITIZEN_TESTS)
    result = pytester.runpytest_subprocess("-p", "cacheprovider")
    result.assert_outcomes(passed=4, warnings=1)
    result.stdout.fnmatch_lines(["*UserWarning: a warning of the user's own*"])
    assert "DeprecationWarning" not in result.stdout.str()
    assert not (pytester.path / ".hypothesis").exists()
    seeds = pytester.path / ".pytest_cache" / "d" / "jacverify" / "hypothesis" / "examples"
    assert [p for p in seeds.rglob("*") if p.is_file()], "the failed seed is kept"
