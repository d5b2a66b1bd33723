"""slapos.util keeps the helpers upstream code imports."""

from __future__ import annotations

import pytest

from slapos import util


def test_compat_helpers(tmp_path):
    assert util.loads(util.dumps({"a": [1]})) == {"a": [1]}
    assert isinstance(util.dumps(None), bytes)
    assert util.xml2dict(util.dict2xml({"a": 1})) == {"a": "1"}
    assert util.bytes2str(b"x") == "x" and util.str2bytes("x") == b"x"
    assert util.string_to_boolean("True") is True
    assert util.string_to_boolean("false") is False
    with pytest.raises(ValueError):
        util.string_to_boolean("yes")
    util.mkdir_p(str(tmp_path / "a" / "b"))
    util.mkdir_p(str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir()
