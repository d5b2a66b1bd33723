"""URI templates and HATEOAS form extraction."""

from __future__ import annotations

import pytest

from slapos.slap.exception import ServerError
from slapos.slap.hateoas import expand_template, extract_form


@pytest.mark.parametrize(
    "template,expected",
    [
        (
            "http://h/?mode=search&query={query}&select_list={select_list}",
            "http://h/?mode=search&query=portal_type%3A%22Instance%20Tree%22&select_list=title,url_string",
        ),
        (
            "http://h/search{?query,select_list*,limit}",
            "http://h/search?query=portal_type%3A%22Instance%20Tree%22&select_list=title"
            "&select_list=url_string&limit=40",
        ),
        ("http://h/x{&query}", "http://h/x&query=portal_type%3A%22Instance%20Tree%22"),
        ("http://h/{+path}/z", "http://h/a/b/z"),
        ("http://h/{missing}x{?missing}", "http://h/x"),
    ],
)
def test_expand_template(template, expected):
    variables = {
        "query": 'portal_type:"Instance Tree"',
        "select_list": ["title", "url_string"],
        "limit": 40,
        "path": "a/b",
    }
    assert expand_template(template, variables) == expected


def test_extract_form():
    document = {
        "_embedded": {
            "_view": {
                "form_id": {"key": "form_id", "default": "InstanceTree_viewAsHateoas"},
                "my_reference": {
                    "type": "StringField",
                    "key": "field_my_reference",
                    "default": "x",
                },
                "my_root_slave": {"type": "IntegerField", "key": "k", "default": 1},
                "your_hidden": {"type": "ListField", "key": "k", "default": "ignored"},
                "other": {"type": "StringField", "default": "ignored"},
            }
        },
        "_links": {
            "type": {"name": "Instance Tree"},
            "parent": {"href": "https://h/erp5/computer_module/COMP-1"},
        },
    }
    data = extract_form(document)["data"]
    assert data == {
        "portal_type": "Instance Tree",
        "parent_relative_url": "computer_module/COMP-1",
        "reference": "x",
        "root_slave": 1,
    }
    with pytest.raises(ServerError):
        extract_form({"nothing": 1})
