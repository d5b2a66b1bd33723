"""The demo release ships a parameter schema: the panel's request form is generated from
it (through the panel's JSON-RPC method), and `slapos request` validates against it."""

from __future__ import annotations

from pathlib import Path

from slapos.demo.release import materialise_release
from slapos.proxy.app import ProxyApp
from slapos.slap.schema import SoftwareReleaseSchema
from tests.unit.proxy.test_panel import app, populate, rpc  # noqa: F401


def test_demo_release_schema_through_the_panel(app: ProxyApp, tmp_path: Path) -> None:  # noqa: F811
    materialise_release(tmp_path / "sr")
    release = str(tmp_path / "sr" / "software.cfg")
    populate(app, release)
    answer = rpc(app, "slapos.get.WIP.software_release_schema", software_release_uri=release)
    assert answer.status == 200
    document = answer.json()
    assert document["problem_list"] == []
    assert document["name"] == "SlapOS demo" and document["serialisation"] == "xml"
    [default] = document["software_type_list"]
    assert (default["key"], default["software_type"], default["shared"]) == (
        "default", "default", False,
    )  # fmt: skip
    request_schema = default["request_schema"]
    assert request_schema["type"] == "object" and request_schema["properties"] == {}


def test_demo_release_schema_validates_requests(tmp_path: Path) -> None:
    materialise_release(tmp_path / "sr")
    schema = SoftwareReleaseSchema(str(tmp_path / "sr" / "software.cfg"))
    assert schema.serialisation() == "xml"
    assert schema.validate({}) == []
    [problem] = schema.validate({"greeting": "hi"})
    assert "greeting" in problem
    assert schema.problems == []
