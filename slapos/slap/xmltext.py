"""What expat makes of XML text, for the fast paths of the two codecs built on it.

`slapos.slap.marshal` (xml_marshaller documents) and `slapos.slap.instance_xml` (instance
XML) read the documents they expect with regexes and leave anything else to ElementTree
(expat). Both must agree with expat on every document they take: which characters it
refuses or normalizes, which `&` it accepts, and what the references mean. Those rules
live here, once.

Imports only the standard library.
"""

from __future__ import annotations

import re


class MarshalError(ValueError):
    """A value cannot be encoded, or a document cannot be decoded."""


class Fallback(Exception):
    """A fast path does not handle this document: the ElementTree path decides."""


#: Characters no XML document may hold (XML 1.0 `Char`), beyond the ones we escape.
INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: ASCII characters expat refuses, or changes (a literal \r becomes \n).
_BAD_ASCII = bytes(range(0x20)).translate(None, b"\t\n") + b"\r"
#: An `&` that starts neither a predefined entity nor a character reference.
_BAD_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});)")


_XML_REFERENCE = re.compile(r"&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);")
_PREDEFINED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _xml_reference(match: re.Match[str]) -> str:
    name = match.group(1)
    if name[0] != "#":
        return _PREDEFINED[name]
    code = int(name[2:], 16) if name[1] == "x" else int(name[1:])
    if (
        0x20 <= code <= 0xD7FF
        or code in (0x9, 0xA, 0xD)
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    ):
        return chr(code)
    raise Fallback  # expat: "reference to invalid character number"


def xml_unescape(text: str) -> str:
    """What expat makes of character data (whose `&`s _BAD_AMPERSAND checked)."""
    if "&#" in text:
        return _XML_REFERENCE.sub(_xml_reference, text)
    # every `&` starts an entity: replacing `&amp;` last cannot create new ones
    if "&lt;" in text:
        text = text.replace("&lt;", "<")
    if "&gt;" in text:
        text = text.replace("&gt;", ">")
    if "&quot;" in text:
        text = text.replace("&quot;", '"')
    if "&apos;" in text:
        text = text.replace("&apos;", "'")
    return text.replace("&amp;", "&")


#: Characters expat refuses, or changes (a literal \r becomes \n), beyond ASCII too.
_EXPAT_BAD_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\r\ud800-\udfff\ufffe\uffff]")


def expat_plain(text: str) -> bool:
    """True if expat reads `text` as is: no refused or normalized character, no `]]>`,
    and every `&` starts a predefined entity or a character reference."""
    if text.isascii():
        if not text.isprintable():  # \t, \n, or a control character
            raw = text.encode("ascii")
            if len(raw.translate(None, _BAD_ASCII)) != len(raw):
                return False
    elif _EXPAT_BAD_CHARACTER.search(text) is not None:
        return False
    if "]]>" in text:
        return False
    return "&" not in text or _BAD_AMPERSAND.search(text) is None
