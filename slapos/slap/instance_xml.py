"""Instance XML: `<instance><parameter id="key">value</parameter>...</instance>`.

The proxy's storage format for instance parameters and connection data (protocol.md
§5.1), written exactly as upstream's lxml-based `dict2xml` pretty-prints it (tests compare
both on the same values). Plain documents are read with two regexes; any other
goes to ElementTree, so odd documents get the same value or error either way.

Imports only the standard library and slapos.slap.xmltext.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from slapos.slap.xmltext import INVALID_XML, Fallback, MarshalError, expat_plain, xml_unescape

INSTANCE_XML_HEADER = "<?xml version='1.0' encoding='utf-8'?>\n"
EMPTY_INSTANCE_XML = INSTANCE_XML_HEADER + "<instance/>\n"


#: Characters that _xml_attr/_xml_text would change or refuse.
_XML_SPECIAL = re.compile('[&<>"\r\n\t\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')


def _xml_text(value: str) -> str:
    if INVALID_XML.search(value):
        raise MarshalError("parameter values must be XML compatible: no control characters")
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace("\r", "&#13;")


def _xml_attr(value: str) -> str:
    value = _xml_text(value).replace('"', "&quot;")
    return value.replace("\n", "&#10;").replace("\t", "&#9;")


def _param_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value if isinstance(value, str) else str(value)


def dict2xml(parameters: Mapping[Any, Any]) -> str:
    """Parameters -> instance XML; non-string values become `str(value)`, as upstream."""
    if not parameters:
        return EMPTY_INSTANCE_XML
    lines = [INSTANCE_XML_HEADER, "<instance>\n"]
    special = _XML_SPECIAL.search
    for key, value in sorted(
        (k if type(k) is str else _param_str(k), v) for k, v in parameters.items()
    ):
        if type(value) is not str:
            value = _param_str(value)
        lines.append(
            f'  <parameter id="{_xml_attr(key) if special(key) else key}">'
            f"{_xml_text(value) if special(value) else value}</parameter>\n"
        )
    lines.append("</instance>\n")
    return "".join(lines)


#: An instance document as dict2xml (or lxml) writes it: optional declaration, only
#: whitespace between elements, `<parameter id="...">` with double quotes and no child.
_INSTANCE_DOCUMENT = re.compile(
    r"""(?:<\?xml version=(["'])1\.0\1(?: encoding=(["'])(?:utf-8|UTF-8)\2)?\?>)?[ \t\n]*"""
    r"""(?:<instance/>|<instance>((?:[ \t\n]*<parameter id="[^"<\t\n]*"(?:/>|>[^<]*"""
    r"""</parameter>))*)[ \t\n]*</instance>)[ \t\n]*"""
)
_INSTANCE_PARAMETER = re.compile(r'<parameter id="([^"<\t\n]*)"(?:/>|>([^<]*)</parameter>)')


def _fast_instance(xml: str) -> list[tuple[str, str]] | None:
    """(id, raw text) of each parameter, or None when ElementTree must read `xml`."""
    if type(xml) is not str or not expat_plain(xml):
        return None
    match = _INSTANCE_DOCUMENT.fullmatch(xml)
    if match is None:
        return None
    body = match.group(3)
    return _INSTANCE_PARAMETER.findall(body) if body else []


def xml2dict(xml: str | None) -> dict[str, str | None]:
    """Instance XML -> parameters; repeated ids are joined with a space, empty -> None."""
    result: dict[str, str | None] = {}
    if not xml:
        return result
    parameters = _fast_instance(xml)
    if parameters is None:
        return _slow_xml2dict(xml)
    try:
        for key, raw in parameters:
            if "&" in key:
                key = xml_unescape(key)
            text = (xml_unescape(raw) if "&" in raw else raw) if raw else None
            previous = result.get(key)
            if previous is not None and text is not None:
                result[key] = previous + " " + text
            elif previous is None:
                result[key] = text
    except Fallback:  # a character reference expat refuses
        return _slow_xml2dict(xml)
    return result


def _slow_xml2dict(xml: str) -> dict[str, str | None]:
    """The reference reader: ElementTree."""
    result: dict[str, str | None] = {}
    try:
        root = ET.fromstring(xml.encode("utf-8"))
    except ET.ParseError as exc:
        raise MarshalError(f"not an instance XML document: {exc}") from None
    for element in root.iterfind("parameter"):
        key = element.get("id", "")
        text = element.text
        previous = result.get(key)
        if previous is not None and text is not None:
            result[key] = previous + " " + text
        elif previous is None:
            result[key] = text
    return result
