"""The SLAP codec shared by the proxy and the slap library: xml_marshaller documents,
without lxml or xml_marshaller.

Byte-compatible with what slapos.core 1.26.1 emits through xml_marshaller (tests compare
both on the same values), but built from plain strings and parsed with the standard
library. Why not the libraries themselves: importing lxml costs about 13 MiB of resident
memory, half the proxy's budget; importing xml_marshaller pulls urllib.request and the
email package into every `slapos node` run; and building a tree per answer is slower
than joining strings, while every call to the proxy decodes a few small documents and
encodes one answer (benchmarks/slap_codec.py measures it, benchmarks/RESULTS.rst keeps
the numbers).

Objects travel as `WireObject`s here (the proxy's view); `slapos.slap.wire` subclasses
`Encoder`/`Decoder` to build and read the real slap classes instead.

Wire rules reproduced (protocol.md §4):
* `<marshal>` root, no declaration, ASCII output (others as `&#N;`);
* strings escaped twice (`&` -> `&amp;amp;`), `\\r` as `&#13;`, control characters refused;
* containers numbered `iN` from 2 in document order; a container met twice is a
  `<reference>`; dictionary keys sorted (repr order when keys do not compare);
* objects: `<object id module class>`, constructor tuple, then the attribute dictionary.

Encoding joins one list of parts, escapes each short string once per process (bounded
cache) and inlines the common dict/tuple items. Decoding first tries
`slapos.slap.marshal_fast` (a regex tokenizer for documents written the way
xml_marshaller writes them); anything it does not take goes to the reference decoder
here, ElementTree and a recursive walk, which decides the value or the error. Instance
XML (`<instance><parameter>`) is `slapos.slap.instance_xml`.

Imports only the standard library, slapos.slap.marshal_fast and slapos.slap.xmltext.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, ClassVar

from slapos.slap import marshal_fast
from slapos.slap.marshal_fast import unescape_string
from slapos.slap.xmltext import INVALID_XML, Fallback, MarshalError

__all__ = [
    "ALLOWED_CLASSES",
    "SLAP_MODULE",
    "Decoder",
    "Encoder",
    "MarshalError",
    "WireObject",
    "dumps",
    "loads",
]

SLAP_MODULE = "slapos.slap.slap"
#: The only classes slapos lets through the wire, either way.
ALLOWED_CLASSES = frozenset(
    {"Computer", "ComputerPartition", "SoftwareRelease", "SoftwareInstance"}
)

_NON_ASCII = re.compile("[^\x00-\x7f]")


@dataclass
class WireObject:
    """An instance of one of the four slap classes, as it travels on the wire."""

    cls: str
    args: tuple[Any, ...] = ()
    state: dict[str, Any] = field(default_factory=dict)
    module: str = SLAP_MODULE


# ---------------------------------------------------------------------------------------
# Encoding


def _charref(match: re.Match[str]) -> str:
    return f"&#{ord(match.group())};"


def _text(value: str) -> str:
    """Escape like xml_marshaller: saxutils escape, then the XML serializer's own."""
    if INVALID_XML.search(value):
        raise MarshalError("strings must be XML compatible: no NULL bytes or control characters")
    if "&" in value:
        value = value.replace("&", "&amp;amp;")
    if "<" in value:
        value = value.replace("<", "&amp;lt;")
    if ">" in value:
        value = value.replace(">", "&amp;gt;")
    if "\r" in value:
        value = value.replace("\r", "&#13;")
    if not value.isascii():
        value = _NON_ASCII.sub(_charref, value)
    return value


def _key_cmp(a: tuple[Any, Any], b: tuple[Any, Any]) -> int:
    x, y = a[0], b[0]
    try:
        return int((x > y) - (x < y))
    except TypeError:
        rx, ry = repr(x), repr(y)
        return (rx > ry) - (rx < ry)


_ITEM_KEY = functools.cmp_to_key(_key_cmp)


#: `<string>` elements of short strings, escaped once: attribute names and most values
#: come back in every answer. Bounded (cleared when full); long strings are not kept.
_STRING_ELEMENTS: dict[str, str] = {}
_STRING_ELEMENTS_MAX = 4096
_STRING_ELEMENTS_LENGTH = 64


def _string_element(value: str) -> str:
    element = f"<string>{_text(value)}</string>"
    if len(value) <= _STRING_ELEMENTS_LENGTH:
        if len(_STRING_ELEMENTS) >= _STRING_ELEMENTS_MAX:
            _STRING_ELEMENTS.clear()
        _STRING_ELEMENTS[value] = element
    return element


class Encoder:
    __slots__ = ("counter", "out", "seen")

    def __init__(self) -> None:
        self.out: list[str] = []
        self.counter = 1
        # id() of each container emitted: the value tree outlives the encoder, so ids
        # cannot be reused by other objects meanwhile.
        self.seen: dict[int, int] = {}

    def container_id(self, value: object) -> int | None:
        key = id(value)
        if key in self.seen:
            self.out.append(f'<reference id="i{self.seen[key]}"/>')
            return None
        self.counter += 1
        self.seen[key] = self.counter
        return self.counter

    def encode(self, value: Any) -> None:
        out = self.out
        kind = type(value)
        if kind is str:
            out.append(_STRING_ELEMENTS.get(value) or _string_element(value))
        elif kind is dict:
            self.encode_dict(value)
        elif value is None:
            out.append("<none/>")
        elif kind is bool:
            out.append("<bool>1</bool>" if value else "<bool>0</bool>")
        elif kind is int:
            tag = "int" if -1e24 < value < 1e24 else "long"
            out.append(f"<{tag}>{value}</{tag}>")
        elif kind is float:
            out.append(f"<float>{value}</float>")
        elif kind is tuple:
            if not value:
                out.append("<tuple/>")
                return
            out.append("<tuple>")
            for item in value:
                if type(item) is str:
                    out.append(_STRING_ELEMENTS.get(item) or _string_element(item))
                else:
                    self.encode(item)
            out.append("</tuple>")
        elif kind is list or kind is set or kind is frozenset:
            self.encode_sequence(value, "list" if kind is list else "set")
        elif kind is bytes:
            self.encode(value.decode("utf-8"))
        elif kind is WireObject:
            self.encode_object(value)
        else:
            self.encode_other(value)

    def encode_other(self, value: Any) -> None:
        """A value of no wire type: subclasses may encode it as an object."""
        raise MarshalError(f"cannot marshal a {type(value).__name__}")

    def encode_dict(self, value: dict[Any, Any]) -> None:
        out = self.out
        seen = self.seen
        if id(value) in seen:
            out.append(f'<reference id="i{seen[id(value)]}"/>')
            return
        self.counter = number = self.counter + 1
        seen[id(value)] = number
        if not value:
            out.append(f'<dictionary id="i{number}"/>')
            return
        out.append(f'<dictionary id="i{number}">')
        try:
            items = sorted(value.items())
        except TypeError:
            items = sorted(value.items(), key=_ITEM_KEY)
        append = out.append
        strings = _STRING_ELEMENTS
        for key, item in items:
            if type(key) is str:
                append(strings.get(key) or _string_element(key))
            else:
                self.encode(key)
            kind = type(item)
            if kind is str:
                append(strings.get(item) or _string_element(item))
            elif kind is dict:
                self.encode_dict(item)
            elif item is None:
                append("<none/>")
            else:
                self.encode(item)
        append("</dictionary>")

    def encode_sequence(self, value: Any, tag: str) -> None:
        out = self.out
        number = self.container_id(value)
        if number is None:
            return
        if not value:
            out.append(f'<{tag} id="i{number}"/>')
            return
        out.append(f'<{tag} id="i{number}">')
        for item in value:
            if type(item) is str:
                out.append(_STRING_ELEMENTS.get(item) or _string_element(item))
            else:
                self.encode(item)
            if len(out) > 2048:  # big documents keep few live string objects
                out[:] = ["".join(out)]
        out.append(f"</{tag}>")

    def encode_object(self, value: WireObject) -> None:
        if value.module != SLAP_MODULE or value.cls not in ALLOWED_CLASSES:
            raise MarshalError(f"refusing to marshall {value.module}.{value.cls}")
        self.encode_instance(value, value.module, value.cls, tuple(value.args), value.state)

    def encode_instance(
        self, value: object, module: str, cls: str, args: tuple[Any, ...], state: Any
    ) -> None:
        """`<object>`: constructor arguments, then the attribute dictionary."""
        number = self.container_id(value)
        if number is None:
            return
        self.out.append(f'<object id="i{number}" module="{module}" class="{cls}">')
        self.encode(args)
        if type(state) is dict:
            self.encode_dict(state)
        else:
            self.encode(state)
        self.out.append("</object>")


def dumps(value: Any, encoder_class: type[Encoder] = Encoder) -> str:
    """Marshal `value` into an xml_marshaller document (a str of ASCII characters)."""
    encoder = encoder_class()
    encoder.out.append("<marshal>")
    encoder.encode(value)
    encoder.out.append("</marshal>")
    return "".join(encoder.out)


# ---------------------------------------------------------------------------------------
# Decoding


def _local(tag: str) -> str:
    return tag.rpartition("}")[2] if tag[:1] == "{" else tag


class Decoder:
    """The reference decoder: walks an ElementTree; `loads` tries the fast path first.

    A subclass that sets FAST_PATH = True in its own body promises that `build_object`
    gives what `decode_object` gives for a well-formed object; others always take the
    ElementTree path.
    """

    FAST_PATH: ClassVar[bool] = True

    def __init__(self) -> None:
        self.refs: dict[str, Any] = {}

    @staticmethod
    def build_object(module: str, cls: str, args: tuple[Any, ...], state: dict[Any, Any]) -> Any:
        """The fast path's decode_object, from decoded parts; any error means: fall back."""
        if module != SLAP_MODULE or cls not in ALLOWED_CLASSES:
            raise Fallback
        return WireObject(cls=cls, args=args, state=state, module=module)

    def register(self, element: ET.Element, value: Any) -> None:
        ident = element.get("id")
        if ident is not None:
            self.refs[ident] = value

    def decode(self, element: ET.Element) -> Any:  # noqa: C901 - one branch per wire type
        tag = _local(element.tag)
        text = element.text or ""
        try:
            if tag in ("string", "unicode"):
                return unescape_string(text)
            if tag == "none":
                return None
            if tag in ("int", "long"):
                return int(text)
            if tag == "float":
                return float(text)
            if tag == "bool":
                return bool(int(text))
        except ValueError as exc:
            raise MarshalError(f"bad <{tag}> value {text!r}") from exc
        if tag == "dictionary":
            result: dict[Any, Any] = {}
            self.register(element, result)
            children = list(element)
            if len(children) % 2:
                raise MarshalError("<dictionary> with an odd number of children")
            for index in range(0, len(children), 2):
                key = self.decode(children[index])
                try:
                    result[key] = self.decode(children[index + 1])
                except TypeError:
                    raise MarshalError("unhashable dictionary key") from None
            return result
        if tag == "list":
            items: list[Any] = []
            self.register(element, items)
            items.extend(self.decode(child) for child in element)
            return items
        if tag == "tuple":
            return tuple(self.decode(child) for child in element)
        if tag == "set":
            members: set[Any] = set()
            self.register(element, members)
            try:
                members.update(self.decode(child) for child in element)
            except TypeError:
                raise MarshalError("unhashable set member") from None
            return members
        if tag == "reference":
            try:
                return self.refs[element.get("id", "")]
            except KeyError:
                raise MarshalError(f"unknown reference {element.get('id')!r}") from None
        if tag == "object":
            return self.decode_object(element)
        raise MarshalError(f"unknown element <{tag}>")

    def decode_object(self, element: ET.Element) -> Any:
        module, cls = element.get("module", ""), element.get("class", "")
        if module != SLAP_MODULE or cls not in ALLOWED_CLASSES:
            raise MarshalError(f"refusing to unmarshall {module}.{cls}")
        obj = WireObject(cls=cls, module=module)
        self.register(element, obj)
        children = list(element)
        if len(children) != 2:
            raise MarshalError("<object> needs an argument tuple and an attribute dictionary")
        args, state = self.decode(children[0]), self.decode(children[1])
        if not isinstance(args, tuple) or not isinstance(state, dict):
            raise MarshalError("<object> needs an argument tuple and an attribute dictionary")
        obj.args, obj.state = args, state
        return obj


#: Documents every request carries (state, shared_xml, empty dicts): skip the parser.
_CONSTANTS: dict[str, Any] = {
    "<marshal><none/></marshal>": None,
    "<marshal><bool>0</bool></marshal>": False,
    "<marshal><bool>1</bool></marshal>": True,
    "<marshal><string>started</string></marshal>": "started",
    "<marshal><string>stopped</string></marshal>": "stopped",
    "<marshal><string>destroyed</string></marshal>": "destroyed",
}
_EMPTY_DICT = '<marshal><dictionary id="i2"/></marshal>'


def loads(document: str | bytes, decoder_class: type[Decoder] = Decoder) -> Any:
    """Unmarshal one xml_marshaller document; MarshalError says what is wrong."""
    if isinstance(document, str):
        if document in _CONSTANTS:
            return _CONSTANTS[document]
        if document == _EMPTY_DICT:
            return {}
    if decoder_class.__dict__.get("FAST_PATH"):
        try:
            return marshal_fast.decode(document, decoder_class.build_object)
        except Exception:  # Fallback, or a bad value: the ElementTree path decides
            pass
    return _slow_loads(document, decoder_class)


def _slow_loads(document: str | bytes, decoder_class: type[Decoder]) -> Any:
    """The reference decoder: ElementTree (expat), then a recursive walk."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise MarshalError(f"not an XML document: {exc}") from None
    if _local(root.tag) != "marshal":
        raise MarshalError(f"root element is <{_local(root.tag)}>, not <marshal>")
    children = list(root)
    if len(children) != 1:
        raise MarshalError("<marshal> must hold exactly one value")
    try:
        return decoder_class().decode(children[0])
    except RecursionError:
        raise MarshalError("document nested too deeply") from None
