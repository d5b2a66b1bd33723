"""The SLAP codec shared by the proxy and the slap library: xml_marshaller documents and
instance XML, without lxml or xml_marshaller.

Byte-compatible with what slapos.core 1.26.1 emits through xml_marshaller (tests compare
both on the same values), but built from plain strings and parsed with the standard
library (regexes, and expat through ElementTree for the odd document): importing lxml
costs about 13 MiB of resident memory, half the proxy's budget, importing xml_marshaller
pulls urllib.request and the email package (~30 ms per `slapos node` run), and building
a tree per answer is slower than joining strings.

Objects travel as `WireObject`s here (the proxy's view); `slapos.slap.wire` subclasses
`Encoder`/`Decoder` to build and read the real slap classes instead.

Wire rules reproduced (protocol.md §4):
* `<marshal>` root, no declaration, ASCII output (others as `&#N;`);
* strings escaped twice (`&` -> `&amp;amp;`), `\\r` as `&#13;`, control characters refused;
* containers numbered `iN` from 2 in document order; a container met twice is a
  `<reference>`; dictionary keys sorted (repr order when keys do not compare);
* objects: `<object id module class>`, constructor tuple, then the attribute dictionary.

Instance XML (`<instance><parameter id=..>`) is the proxy's storage format for parameters
and connection data (§5.1), written exactly as lxml pretty-prints it.

Why the fast paths: every request to the proxy decodes a few small documents and encodes
one answer, and the client decodes that answer, so the codec is a fixed cost of every call
(issue 4: 10x upstream's sequential request rate). ElementTree alone took ~20-30 us to
parse a 1 kB requestComputerPartition answer, about half of `loads`. So `loads` first runs
`_fast_decode`: one compiled regex (`findall`) cuts the document into runs of `<string>`
elements (split apart by `str.split`), other leaves and tags (each distinct tag text parsed
once, then cached), and a small stack machine builds the values. It takes only what
xml_marshaller writes -- ASCII, the known tags, attributes in the usual order between
double quotes, text with the predefined entities and character references, at most 100
levels -- and raises `_Fallback` on anything else (whitespace between elements,
namespaces, declarations other than a plain UTF-8 one, comments, CDATA, DOCTYPE and so
entities, unknown tags, bad values, unknown or reused ids, refused classes...): the
ElementTree path then decides, so odd documents get exactly the old value or error.
Encoding joins one list of parts, escapes each short string once per process (bounded
cache) and inlines the common dict/tuple items. xml2dict reads plain instance documents
with two regexes, dict2xml escapes only strings that need it.

Measured with `benchmarks/slap_codec.py --baseline` on the 2-core development machine,
before -> after (noisy, +-20%): 1 kB SoftwareInstance answer loads 40 -> 20 us, dumps
17 -> 7 us; small parameter dict loads 9 -> 3.5 us, dumps 2.7 -> 1.4 us; 200-partition
getFullComputerInformation (1.07 MB) loads 36 -> 25 ms; xml2dict (10 parameters) 19 -> 13 us.

Imports only the standard library.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

SLAP_MODULE = "slapos.slap.slap"
#: The only classes slapos lets through the wire, either way.
ALLOWED_CLASSES = frozenset(
    {"Computer", "ComputerPartition", "SoftwareRelease", "SoftwareInstance"}
)

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NON_ASCII = re.compile("[^\x00-\x7f]")


class MarshalError(ValueError):
    """A value cannot be encoded, or a document cannot be decoded."""


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
    if _INVALID_XML.search(value):
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


def _unescape(text: str) -> str:
    if "&" not in text:
        return text
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


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
            raise _Fallback
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
                return _unescape(text)
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


# ---------------------------------------------------------------------------------------
# Fast decoding: the xml_marshaller grammar, tokenized by one regex.
#
# Only documents written the way xml_marshaller (and `dumps`) writes them are taken: the
# known tags, attributes in the usual order between double quotes, text with nothing but
# the predefined entities and character references. Anything else -- whitespace between
# elements, namespaces, comments, CDATA, a DOCTYPE, an unknown tag, a bad value, a
# reference to an unknown or reused id, deep nesting -- raises _Fallback and `loads`
# starts again with ElementTree, so odd documents get exactly the old result or error.


class _Fallback(Exception):
    """The fast decoder does not handle this document: the ElementTree path decides."""


#: Deeper documents go to the ElementTree path, which turns RecursionError into an error.
_FAST_MAX_DEPTH = 100
_FAST_DECLARATION = re.compile(
    r"""<\?xml version=(["'])1\.0\1(?: encoding=(["'])(?:utf-8|UTF-8)\2)?\?>[ \t\n]*"""
)
#: ASCII characters expat refuses, or changes (a literal \r becomes \n).
_FAST_BAD_ASCII = bytes(range(0x20)).translate(None, b"\t\n") + b"\r"
#: An `&` that starts neither a predefined entity nor a character reference.
_FAST_BAD_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});)")
# Tokens: a run of <string> elements (split apart with str.split, at C speed), another
# leaf, any other tag (told apart by a dict lookup or str.split('"')), or one stray
# character (all groups empty: fall back). findall() gives 4 groups per token.
_FAST_TOKEN = re.compile(
    r"((?:<string>[^<]*</string>)+)"
    r"|<(int|long|float|bool|none|unicode)>([^<]*)</\2>"
    r"|<([^<>]*)>"
    r"|[\s\S]"
)
_STRING_SEPARATOR = "</string><string>"
# What a tag means to the fast decoder: (_CLOSE, name), (_VALUE, immutable value),
# (_OPEN, name, id or None), (_EMPTY, name, id) for a childless container,
# (_REFERENCE, id), (_OBJECT, id, module, class).
_CLOSE, _VALUE, _OPEN, _EMPTY, _REFERENCE, _OBJECT = range(6)
_FAST_TAGS_FIXED: dict[str, tuple[Any, ...]] = {
    **{f"/{name}": (_CLOSE, name) for name in ("dictionary", "list", "tuple", "object", "set")},
    "none/": (_VALUE, None),
    "tuple/": (_VALUE, ()),
    "string/": (_VALUE, ""),
    "unicode/": (_VALUE, ""),
    "tuple": (_OPEN, "tuple", None),
}
_FAST_CONTAINERS: dict[str, str] = {
    "dictionary id=": "dictionary",
    "list id=": "list",
    "set id=": "set",
}
#: Tag text -> meaning; ids and class names come back in every answer: parse each once.
_FAST_TAGS: dict[str, tuple[Any, ...]] = dict(_FAST_TAGS_FIXED)
_FAST_TAGS_MAX = 4096
#: Longer texts are decoded each time: the caches must stay small whatever arrives.
_FAST_CACHED_LENGTH = 128


def _fast_tag(tag: str) -> tuple[Any, ...]:
    """Parse a tag with attributes (double quotes, known order), or raise _Fallback."""
    if "&" in tag or "\t" in tag or "\n" in tag:
        raise _Fallback  # attribute values with references or normalized spaces
    parts = tag.split('"')
    meaning: tuple[Any, ...]
    if len(parts) == 3 and parts[2] == "/" and parts[0] == "reference id=":
        meaning = (_REFERENCE, parts[1])
    elif len(parts) == 3 and parts[0] in _FAST_CONTAINERS and parts[2] in ("", "/"):
        meaning = (_EMPTY if parts[2] else _OPEN, _FAST_CONTAINERS[parts[0]], parts[1])
    elif (
        len(parts) == 7
        and parts[0] == "object id="
        and parts[2] == " module="
        and parts[4] == " class="
        and not parts[6]
    ):
        meaning = (_OBJECT, parts[1], parts[3], parts[5])
    else:
        raise _Fallback
    if len(tag) <= _FAST_CACHED_LENGTH:
        if len(_FAST_TAGS) >= _FAST_TAGS_MAX:
            _FAST_TAGS.clear()
            _FAST_TAGS.update(_FAST_TAGS_FIXED)
        _FAST_TAGS[tag] = meaning
    return meaning


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
    raise _Fallback  # expat: "reference to invalid character number"


def _xml_unescape(text: str) -> str:
    """What expat makes of character data (whose `&`s _FAST_BAD_AMPERSAND checked)."""
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


def _expat_plain(text: str) -> bool:
    """True if expat reads `text` as is: no refused or normalized character, no `]]>`,
    and every `&` starts a predefined entity or a character reference."""
    if text.isascii():
        if not text.isprintable():  # \t, \n, or a control character
            raw = text.encode("ascii")
            if len(raw.translate(None, _FAST_BAD_ASCII)) != len(raw):
                return False
    elif _EXPAT_BAD_CHARACTER.search(text) is not None:
        return False
    if "]]>" in text:
        return False
    return "&" not in text or _FAST_BAD_AMPERSAND.search(text) is None


#: Escaped string text -> value; attribute names and values repeat from call to call.
_FAST_STRINGS: dict[str, str] = {}
_FAST_STRINGS_MAX = 4096


def _fast_string(text: str) -> str:
    value = _FAST_STRINGS.get(text)
    if value is None:
        value = _unescape(_xml_unescape(text))
        if len(text) <= _FAST_CACHED_LENGTH:
            if len(_FAST_STRINGS) >= _FAST_STRINGS_MAX:
                _FAST_STRINGS.clear()
            _FAST_STRINGS[text] = value
    return value


def _bool(text: str) -> bool:
    return bool(int(text))


_FAST_SCALARS: dict[str, Any] = {"int": int, "long": int, "float": float, "bool": _bool}


def _fast_document(document: str | bytes) -> str:
    """The document as str if the fast path may read it (ASCII, nothing expat refuses)."""
    if type(document) is bytes:
        text = document.decode("ascii")  # UnicodeDecodeError: fall back
    elif type(document) is str and document.isascii():
        text = document
    else:
        raise _Fallback
    if text[:5] == "<?xml":
        declaration = _FAST_DECLARATION.match(text)
        if declaration is None:
            raise _Fallback
        text = text[declaration.end() :]
    if text[:9] != "<marshal>" or text[-10:] != "</marshal>" or not _expat_plain(text):
        raise _Fallback
    return text


def _fast_decode(  # noqa: C901, PLR0915 - one branch per token kind, inlined for speed
    document: str | bytes, build_object: Any
) -> Any:
    """Decode a document the fast way, or raise _Fallback (or any error: same meaning)."""
    text = _fast_document(document)
    refs: dict[str, Any] = {}
    stack: list[tuple[str, list[Any], Any]] = []
    current = "marshal"  # the open element
    items: list[Any] = []  # values read so far in the open element
    extra: Any = None  # the open dict or set, or the open object's attributes
    tags = _FAST_TAGS
    for run, leaf, content, tag in _FAST_TOKEN.findall(text, 9, len(text) - 10):
        if run:
            strings = run[8:-9].split(_STRING_SEPARATOR)
            if "&" in run:
                strings = [_fast_string(s) if "&" in s else s for s in strings]
            items.extend(strings)
        elif tag:
            meaning = tags.get(tag) or _fast_tag(tag)
            what = meaning[0]
            if what == _CLOSE:
                if meaning[1] != current:
                    raise _Fallback
                value: Any
                if current == "dictionary":
                    if len(items) % 2:
                        raise _Fallback
                    pairs = iter(items)
                    extra.update(zip(pairs, pairs, strict=False))
                    value = extra
                elif current == "list":
                    value = items
                elif current == "tuple":
                    value = tuple(items)
                elif current == "object":
                    if len(items) != 2 or type(items[0]) is not tuple or type(items[1]) is not dict:
                        raise _Fallback
                    value = build_object(extra[1], extra[2], items[0], items[1])
                    if extra[0] in refs:
                        raise _Fallback
                    refs[extra[0]] = value
                else:
                    extra.update(items)
                    value = extra
                current, items, extra = stack.pop()
                items.append(value)
            elif what == _VALUE:
                items.append(meaning[1])
            elif what == _REFERENCE:
                items.append(refs[meaning[1]])
            else:
                if len(stack) >= _FAST_MAX_DEPTH:
                    raise _Fallback
                if what == _OBJECT:
                    stack.append((current, items, extra))
                    current, items, extra = "object", [], meaning[1:]
                    continue
                kind, ident = meaning[1], meaning[2]
                if kind == "tuple":
                    stack.append((current, items, extra))
                    current, items, extra = "tuple", [], None
                    continue
                if ident in refs:
                    raise _Fallback
                new: Any = [] if kind == "list" else {} if kind == "dictionary" else set()
                refs[ident] = new
                if what == _EMPTY:
                    items.append(new)
                    continue
                stack.append((current, items, extra))
                current = kind
                if kind == "list":
                    items, extra = new, None
                else:
                    items, extra = [], new
        elif leaf:
            if leaf == "none":
                items.append(None)
            elif leaf == "unicode":
                items.append(_fast_string(content) if "&" in content else content)
            else:
                if "&" in content:
                    content = _xml_unescape(content)
                items.append(_FAST_SCALARS[leaf](content))
        else:
            raise _Fallback
    if stack or len(items) != 1:
        raise _Fallback
    return items[0]


def loads(document: str | bytes, decoder_class: type[Decoder] = Decoder) -> Any:
    """Unmarshal one xml_marshaller document; MarshalError says what is wrong."""
    if isinstance(document, str):
        if document in _CONSTANTS:
            return _CONSTANTS[document]
        if document == _EMPTY_DICT:
            return {}
    if decoder_class.__dict__.get("FAST_PATH"):
        try:
            return _fast_decode(document, decoder_class.build_object)
        except Exception:  # _Fallback, or a bad value: the ElementTree path decides
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


# ---------------------------------------------------------------------------------------
# Instance XML: <instance><parameter id="key">value</parameter>...</instance>

INSTANCE_XML_HEADER = "<?xml version='1.0' encoding='utf-8'?>\n"
EMPTY_INSTANCE_XML = INSTANCE_XML_HEADER + "<instance/>\n"


#: Characters that _xml_attr/_xml_text would change or refuse.
_XML_SPECIAL = re.compile('[&<>"\r\n\t\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')


def _xml_text(value: str) -> str:
    if _INVALID_XML.search(value):
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
    if type(xml) is not str or not _expat_plain(xml):
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
                key = _xml_unescape(key)
            text = (_xml_unescape(raw) if "&" in raw else raw) if raw else None
            previous = result.get(key)
            if previous is not None and text is not None:
                result[key] = previous + " " + text
            elif previous is None:
                result[key] = text
    except _Fallback:  # a character reference expat refuses
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
