"""The proxy's codec: the shared, lxml-free one of `slapos.slap.marshal` (re-exported)."""

from __future__ import annotations

from slapos.slap.marshal import (
    EMPTY_INSTANCE_XML,
    INSTANCE_XML_HEADER,
    SLAP_MODULE,
    MarshalError,
    WireObject,
    dict2xml,
    dumps,
    loads,
    xml2dict,
)

__all__ = [
    "EMPTY_INSTANCE_XML",
    "INSTANCE_XML_HEADER",
    "SLAP_MODULE",
    "MarshalError",
    "WireObject",
    "dict2xml",
    "dumps",
    "loads",
    "xml2dict",
]
