"""proxy show: prettytable-compatible rendering and the JSON document."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from slapos.proxy.app import create_app
from slapos.proxy.config import ProxyConfig
from slapos.proxy.show import ShowError, render_table, show


def test_table_matches_upstream_example() -> None:
    lines = render_table(
        ["reference", "address", "netmask"], [("local_computer", "127.0.0.1", "255.0.0.0")]
    )
    assert lines == [
        "------------------------------------",
        "   reference     address   netmask  ",
        "------------------------------------",
        " local_computer 127.0.0.1 255.0.0.0 ",
        "------------------------------------",
    ]
    assert render_table(["a"], [(None,), (1.5,)])[3:5] == ["  -  ", " 1.5 "]


def test_json_and_empty_sections(tmp_path: Path) -> None:
    database = str(tmp_path / "db")
    app = create_app(ProxyConfig(path=None, database_uri=database, computer_id="C"))
    app.write(None, lambda m: m.supply("C", "http://sr", "available"))
    out = io.StringIO()
    show(database, ["software", "slaves"], out)
    text = out.getvalue()
    assert text.startswith(f"Using database: {database}\ntable software18\n")
    assert "table slave18: empty" in text and "\n \n" in text
    out = io.StringIO()
    show(database, ["software"], out, fmt="json")
    assert '"requested_state": "available"' in out.getvalue()


def test_missing_database(tmp_path: Path) -> None:
    with pytest.raises(ShowError, match="does not exist"):
        show(str(tmp_path / "none"), ["computers"], io.StringIO())
