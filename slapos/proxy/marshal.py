"""The proxy's codecs: the shared, lxml-free ones of `slapos.slap` (re-exported)."""

from __future__ import annotations

from slapos.slap.instance_xml import EMPTY_INSTANCE_XML, INSTANCE_XML_HEADER, dict2xml, xml2dict
from slapos.slap.marshal import (
    SLAP_MODULE,
    MarshalError,
    WireObject,
    dumps,
    loads,
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
