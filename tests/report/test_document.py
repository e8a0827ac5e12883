"""The report document: assembly, schema, JSON files (atomic), reading back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

import jacverify
from jacverify import LayerCheck, ModelCheck
from jacverify.report import (
    SCHEMA_VERSION,
    DocumentError,
    build_document,
    read_document,
    write_json,
)
from jacverify.report.document import document_failed

SCHEMA = json.loads(
    (Path(jacverify.__file__).parent / "report" / "schema.json").read_text(encoding="utf-8")
)


def validate(document: dict) -> None:
    validator = jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(json.loads(json.dumps(document)))


def test_the_schema_itself_is_valid():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_model_document(model_check):
    document = build_document(models=[model_check], title="clip.keras",
                              command=["jacverify", "check", "clip.keras"],
                              options={"examples": 12, "seed": 0})
    validate(document)
    assert document["schema"] == "jacverify-report"
    assert document["schema_version"] == SCHEMA_VERSION == 2
    assert document["jacverify_version"] == jacverify.__version__
    assert document["verdict"] == "fail"
    assert document["counts"] == {"pass": 3, "fail": 1, "boundary": 0, "error": 0,
                                  "inconclusive": 0, "skipped": 0, "no rule": 0}
    model = document["models"][0]
    assert model["model_name"] == "clip_model"
    assert model["first_failure"] == "clip"
    assert [layer["layer_name"] for layer in model["layers"]] == [
        layer.layer_name for layer in model_check.layers
    ]
    clip = model["layers"][1]
    assert clip["counterexample"]["replay"]["seed"] == 0
    assert clip["evidence"]["line"]["rule"] is not None
    assert document["command"] == ["jacverify", "check", "clip.keras"]
    assert document["options"] == {"examples": 12, "seed": 0}
    assert document["environment"]["torch"].startswith("2.")


def test_objects_and_their_dicts_give_the_same_document(model_check):
    from_objects = build_document(models=[model_check], title="t")
    from_dicts = build_document(models=[model_check.to_dict()], title="t")
    for key in ("models", "counts", "verdict"):
        assert from_objects[key] == from_dicts[key]


def test_checks_outside_a_model_with_labels(hostile_check, model_check):
    passing = model_check.layers[0]
    document = build_document(
        checks=[{**hostile_check.to_dict(), "label": "test_a.py::test_clip"}, passing],
        title="pytest session",
    )
    validate(document)
    assert document["models"] == []
    assert [c.get("label") for c in document["checks"]] == ["test_a.py::test_clip", None]
    assert document["verdict"] == "fail"
    assert document["counts"]["fail"] == 1 and document["counts"]["pass"] == 1


def test_a_model_dict_without_derived_fields_gets_them():
    layer = LayerCheck(verdict="boundary", reason="r", layer_name="a", layer_class="Clip",
                       rule_class="R", seed=3)
    data = ModelCheck(model_name="m", layers=[layer]).to_dict()
    for key in ("verdict", "first_failure", "end_to_end"):
        del data[key]
    document = build_document(models=[data], title="m")
    validate(document)
    assert document["models"][0]["verdict"] == "boundary"
    assert document["models"][0]["first_failure"] == "a"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"checks": [object()]}, "result object"),
        ({"checks": [{"verdict": "pass"}]}, "not a LayerCheck"),
        ({"checks": [{"verdict": "maybe", "layer_name": "a", "layer_class": "B"}]}, "verdict"),
        ({"models": [{"layers": []}]}, "not a ModelCheck"),
    ],
)
def test_what_is_not_a_result_is_refused(kwargs, message):
    with pytest.raises(TypeError, match=message):
        build_document(title="t", **kwargs)


def _layer(verdict: str) -> LayerCheck:
    return LayerCheck(verdict=verdict, reason="", layer_name=verdict, layer_class="C",
                      rule_class="R")


@pytest.mark.parametrize(
    ("verdicts", "failed", "failed_strict"),
    [
        (["pass", "pass"], False, False),
        (["pass", "inconclusive"], False, True),
        (["pass", "skipped"], False, True),
        (["pass", "boundary"], True, True),
        (["error"], True, True),
    ],
)
def test_document_failed(verdicts, failed, failed_strict):
    document = build_document(models=[ModelCheck("m", [_layer(v) for v in verdicts])],
                              title="m")
    assert document_failed(document) is failed
    assert document_failed(document, strict=True) is failed_strict


def test_a_failing_end_to_end_check_fails_the_document():
    model = ModelCheck("m", [_layer("pass")], end_to_end=_layer("fail"))
    document = build_document(models=[model], title="m")
    assert document["verdict"] == "fail"
    assert document_failed(document)


def test_write_and_read_back(tmp_path, model_check):
    document = build_document(models=[model_check], title="clip.keras")
    path = write_json(document, tmp_path / "result.json")
    assert path == tmp_path / "result.json"
    assert os.listdir(tmp_path) == ["result.json"]
    assert read_document(path) == json.loads(json.dumps(document))


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old", encoding="utf-8")
    document = build_document(title="t")
    document["bad"] = float("nan")  # strict JSON refuses it midway
    with pytest.raises(ValueError):
        write_json(document, path)
    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["result.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        ('{"schema": "something-else"}', "not a jacverify report"),
        ('[1, 2]', "not a jacverify report"),
        ('{"schema": "jacverify-report", "schema_version": 99}', "newer jacverify"),
        ('{"schema": "jacverify-report", "schema_version": "1"}', "unknown schema version"),
    ],
)
def test_read_document_says_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DocumentError, match=message):
        read_document(path)
