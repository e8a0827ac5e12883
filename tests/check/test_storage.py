"""Where checks put Hypothesis' files: jacverify's cache directory, never ``.hypothesis/`` of
the current directory, unless the user chose a storage directory or a database.

A rule that records Hypothesis' storage directory while the checker calls it observes where the
check's files go; the directories themselves are inspected after."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir, storage_directory
from hypothesis.database import DirectoryBasedExampleDatabase, InMemoryExampleDatabase

from jacverify import check_layer, testing
from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.check import storage
from jacverify.examples.tutorial import BackwardClip, Clip
from jacverify.testing import BackwardCheckFailed, assert_backward_correct

SEEN: list[Path] = []


class RecordingClipRule(BackwardClip):
    """The tutorial's (wrong) Clip rule, recording Hypothesis' storage directory."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        SEEN.append(storage_directory(intent_to_write=False).home_directory)
        return super().call_on_reshaped_gradient(gradient, input, training, mask)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's project directory whose Hypothesis storage is the default ``.hypothesis/``,
    and jacverify's cache in ``cache/``."""
    previous = storage_directory(intent_to_write=False).home_directory
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    set_hypothesis_home_dir(tmp_path / "project" / ".hypothesis")
    SEEN.clear()
    yield tmp_path
    set_hypothesis_home_dir(previous)


@pytest.fixture
def profile():
    """Load a Hypothesis settings profile for the test; the previous one is loaded after."""
    previous = settings.get_current_profile_name()
    names = []

    def load(**options) -> None:
        name = f"jacverify-storage-test-{len(names)}"
        settings.register_profile(name, derandomize=False, **options)
        settings.load_profile(name)
        names.append(name)

    yield load
    settings.load_profile(previous)


def test_a_check_uses_the_cache_directory_and_leaves_the_project_clean(project):
    check = check_layer(Clip(0.0, 2.0), RecordingClipRule, input_shape=(5,), seed=0, examples=5)
    assert check.verdict == "fail"
    assert set(SEEN) == {project / "cache" / "hypothesis"}
    assert not (project / "project" / ".hypothesis").exists()
    assert list((project / "project").iterdir()) == []
    assert storage_directory(intent_to_write=False).home_directory == (
        project / "project" / ".hypothesis")


def test_failed_seeds_go_to_the_cache_unless_the_profile_sets_a_database(
    project, profile, monkeypatch
):
    monkeypatch.setattr(testing, "_listeners", [])  # not a check of this session's report
    layer = Clip(0.0, 2.0)
    # A profile with Hypothesis' default database, .hypothesis/examples (named explicitly:
    # under CI, Hypothesis' own default profile has no database).
    default = storage_directory("examples", intent_to_write=False).path
    profile(database=DirectoryBasedExampleDatabase(default))
    with pytest.raises(BackwardCheckFailed):
        assert_backward_correct(layer, BackwardClip, input_shape=(5,), examples=5)
    stored = list((project / "cache" / "hypothesis" / "examples").rglob("*"))
    assert [p for p in stored if p.is_file()], "the failed seed is kept in the cache"
    assert list((project / "project").iterdir()) == []

    users = DirectoryBasedExampleDatabase(project / "users-db")
    profile(database=users)
    with pytest.raises(BackwardCheckFailed):
        assert_backward_correct(layer, BackwardClip, input_shape=(5,), examples=5)
    assert [p for p in (project / "users-db").rglob("*") if p.is_file()]
    assert list((project / "project").iterdir()) == []


def test_database_for_checks_keeps_what_the_user_configured(project):
    default = DirectoryBasedExampleDatabase(project / "project" / ".hypothesis" / "examples")
    ours = storage.database_for_checks(default)
    assert Path(ours.path) == project / "cache" / "hypothesis" / "examples"
    elsewhere = DirectoryBasedExampleDatabase(project / "elsewhere")
    memory = InMemoryExampleDatabase()
    assert storage.database_for_checks(elsewhere) is elsewhere
    assert storage.database_for_checks(memory) is memory
    assert storage.database_for_checks(None) is None


@pytest.mark.parametrize("how", ["set_hypothesis_home_dir", "environment"])
def test_a_storage_directory_the_user_chose_is_kept(project, monkeypatch, how):
    chosen = project / "chosen"
    if how == "environment":
        monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", str(chosen))
        set_hypothesis_home_dir(None)  # resolved again from the environment
    else:
        set_hypothesis_home_dir(chosen)
    check_layer(Clip(0.0, 2.0), RecordingClipRule, input_shape=(5,), seed=0, examples=3)
    assert set(SEEN) == {chosen}
    assert not (project / "cache").exists()
    assert storage_directory(intent_to_write=False).home_directory == chosen


def test_where_the_cache_directory_is(tmp_path, monkeypatch):
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "explicit"))
    with storage.use_cache_directory(tmp_path / "pytest-cache"):
        assert storage.cache_directory() == tmp_path / "explicit"
        monkeypatch.delenv(storage.CACHE_ENV)
        assert storage.cache_directory() == tmp_path / "pytest-cache"
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert storage.user_cache_directory() == tmp_path / "xdg" / "jacverify"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert storage.user_cache_directory() == tmp_path / "home" / ".cache" / "jacverify"


class _StorageProbe(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        SEEN.append(storage_directory(intent_to_write=False).home_directory)
        return gradient


def test_nested_and_repeated_checks_restore_the_users_directory(project):
    home = project / "project" / ".hypothesis"
    with storage.hypothesis_storage() as outer:
        assert outer == project / "cache" / "hypothesis"
        check_layer(keras.layers.Identity(), _StorageProbe, input_shape=(2,), seed=0,
                    examples=2)
        assert storage_directory(intent_to_write=False).home_directory == outer
    assert storage_directory(intent_to_write=False).home_directory == home
    assert set(SEEN) == {project / "cache" / "hypothesis"}
