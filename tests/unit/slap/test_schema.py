"""software.cfg.json: serialisation and request validation."""

from __future__ import annotations

import json

from slapos.slap.schema import SoftwareReleaseSchema


def release(tmp_path, top=None, entry=None, schema=None):
    (tmp_path / "software.cfg.json").write_text(
        json.dumps(
            {
                **(top or {}),
                "software-type": {
                    "default": {"request": "in.json", **(entry or {})},
                },
            }
        )
    )
    (tmp_path / "in.json").write_text(
        json.dumps(
            schema
            or {
                "type": "object",
                "properties": {"n": {"type": "integer"}, "ref": {"$ref": "common.json"}},
                "additionalProperties": False,
            }
        )
    )
    (tmp_path / "common.json").write_text(json.dumps({"type": "string", "maxLength": 3}))
    return str(tmp_path / "software.cfg")


def test_serialisation_lookup(tmp_path):
    url = release(tmp_path, top={"serialisation": "xml"})
    assert SoftwareReleaseSchema(url).serialisation() == "xml"
    url = release(tmp_path, top={"serialisation": "xml"}, entry={"serialisation": "json-in-xml"})
    assert SoftwareReleaseSchema(url, "default").serialisation() == "json-in-xml"
    assert SoftwareReleaseSchema(url, "other").serialisation() == "xml"
    missing = SoftwareReleaseSchema(str(tmp_path / "nope" / "software.cfg"))
    assert missing.serialisation() is None
    assert missing.problems and "unable to load JSON" in missing.problems[0]
    assert missing.absent == missing.problems  # no schema at all: normal, said at DEBUG
    # the reason keeps its quotes balanced
    assert missing.problems[0].endswith("software.cfg.json')")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "software.cfg.json").write_text("{not json")
    schema = SoftwareReleaseSchema(str(tmp_path / "b" / "software.cfg"))
    assert schema.serialisation() is None
    assert schema.problems and schema.absent == []


def test_validation_json_in_xml_with_relative_ref(tmp_path):
    url = release(tmp_path, top={"serialisation": "json-in-xml"})
    schema = SoftwareReleaseSchema(url)
    assert schema.validate({"_": json.dumps({"n": 1, "ref": "abc"})}) == []
    problems = schema.validate({"_": json.dumps({"n": "x", "ref": "abcd", "z": 1, "$schema": "s"})})
    assert "$.n: 'x' is not of type 'integer'" in problems
    assert "$.ref: 'abcd' is too long" in problems
    assert any("'z' was unexpected" in p for p in problems)
    assert schema.validate({"_": "{not json"})[0].startswith("$: the '_' parameter")


def test_validation_xml(tmp_path):
    url = release(tmp_path, top={"serialisation": "xml"})
    assert SoftwareReleaseSchema(url).validate({"n": 1}) == []
    assert SoftwareReleaseSchema(url).validate({"n": "1"}) == ["$.n: '1' is not of type 'integer'"]


def test_no_schema_no_problem(tmp_path):
    schema = SoftwareReleaseSchema(str(tmp_path / "software.cfg"))
    assert schema.validate({"a": 1}) == []
