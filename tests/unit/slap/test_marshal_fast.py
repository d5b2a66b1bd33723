"""The codec's fast paths give exactly what the reference (ElementTree) paths give.

`slapos.slap.marshal.loads` first tries a regex tokenizer that takes only documents written
the way xml_marshaller writes them, and falls back to ElementTree for anything else; these
tests check both halves of that promise: generated documents are taken by the fast path
and decode to the same values (types, shared references included), and every odd
document is left to the reference path, so results and errors are unchanged.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from slapos.slap import instance_xml, marshal, marshal_fast, wire
from slapos.slap.marshal import Decoder, MarshalError, WireObject
from slapos.slap.slap import Computer, ComputerPartition, SoftwareInstance, SoftwareRelease

TRAFFIC = Path(__file__).parents[2] / "data" / "wire" / "upstream-1.26.1-traffic.json"

#: Characters that exercise escaping: markup, quotes, non-ASCII (BMP and not), and the
#: legal "control-ish" ones (tab, newline, carriage return, DEL, NEL, LINE SEPARATOR).
ALPHABET = "ab Z09<>&\"';=/#\t\n\r\x7f\x85\u2028\u00e9\u20ac\ufffd\U0001f600]"


def shape(value: Any, memo: dict[int, int] | None = None) -> Any:
    """A comparable picture of a value: types, contents and which containers are shared."""
    memo = {} if memo is None else memo
    kind = type(value)
    if kind in (list, dict, set, WireObject) or hasattr(value, "__dict__"):
        if id(value) in memo:
            return ("ref", memo[id(value)])
        memo[id(value)] = len(memo)
    if kind is list:
        return ("list", [shape(item, memo) for item in value])
    if kind is tuple:
        return ("tuple", [shape(item, memo) for item in value])
    if kind is dict:
        return ("dict", [(shape(k, memo), shape(v, memo)) for k, v in value.items()])
    if kind is set:
        return ("set", sorted(repr(shape(item, memo)) for item in value))
    if kind is WireObject:
        return (
            "object",
            value.module,
            value.cls,
            shape(value.args, memo),
            shape(value.state, memo),
        )
    if hasattr(value, "__dict__"):
        return ("slap", kind.__name__, shape(dict(vars(value)), memo))
    if kind is float:
        return ("float", repr(value))
    return (kind.__name__, value)


def outcome(function: Any, *args: Any) -> Any:
    """shape() of the result, or the type and message of the error."""
    try:
        return shape(function(*args))
    except Exception as exc:  # compared as data
        return ("error", type(exc).__name__, str(exc))


def random_string(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.choice((0, 1, 3, 12))))


def random_scalar(rng: random.Random) -> Any:
    return rng.choice(
        (
            random_string(rng),
            random_string(rng),
            "",
            rng.randint(-(10**6), 10**6),
            rng.choice((10**24, -(10**30), 10**23, 0)),
            rng.uniform(-1e6, 1e6),
            rng.choice((float("inf"), 1e300, -0.0, 0.1)),
            True,
            False,
            None,
        )
    )


def random_value(rng: random.Random, depth: int, shared: list[Any]) -> Any:
    """Nested values, containers sometimes reused (references) and WireObjects."""
    if depth == 0 or rng.random() < 0.3:
        return random_scalar(rng)
    choice = rng.randrange(7)
    if choice == 0 and shared:
        return rng.choice(shared)
    if choice == 1:
        value: Any = [random_value(rng, depth - 1, shared) for _ in range(rng.randrange(4))]
    elif choice == 2:
        value = tuple(random_value(rng, depth - 1, shared) for _ in range(rng.randrange(4)))
    elif choice == 3:
        value = {
            rng.choice((random_string(rng), rng.randint(0, 9), ("t", 1))): random_value(
                rng, depth - 1, shared
            )
            for _ in range(rng.randrange(5))
        }
    elif choice == 4:
        value = {random_string(rng) for _ in range(rng.randrange(3))}
    elif choice == 5:
        value = WireObject(
            rng.choice(sorted(marshal.ALLOWED_CLASSES)),
            tuple(random_scalar(rng) for _ in range(rng.randrange(3))),
            {random_string(rng): random_value(rng, depth - 1, shared) for _ in range(3)},
        )
    else:
        value = {f"key{i}": random_string(rng) for i in range(rng.randrange(6))}
    if type(value) is not tuple:
        shared.append(value)
    return value


def fast(document: str | bytes, decoder: type[Decoder] = Decoder) -> Any:
    return marshal_fast.decode(document, decoder.build_object)


def slow(document: str | bytes, decoder: type[Decoder] = Decoder) -> Any:
    return marshal._slow_loads(document, decoder)


@pytest.mark.parametrize("seed", range(40))
def test_fast_path_takes_generated_documents_and_matches(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        value = random_value(rng, 5, [])
        document = marshal.dumps(value)
        expected = shape(slow(document))
        assert shape(fast(document)) == expected, document  # no fallback: it is taken
        assert shape(fast(document.encode("ascii"))) == expected
        assert shape(marshal.loads(document)) == expected
        if "<set" not in document:  # set order is not stable
            assert marshal.dumps(marshal.loads(document)) == document


def test_fast_path_keeps_shared_and_cyclic_containers() -> None:
    inner = [1, "x"]
    loop: list[Any] = ["self"]
    loop.append(loop)
    table: dict[str, Any] = {}
    table["me"] = table
    value = {"a": inner, "b": inner, "loop": loop, "table": table, "t": (inner, inner)}
    document = marshal.dumps(value)
    decoded = fast(document)
    assert shape(decoded) == shape(slow(document))
    assert decoded["a"] is decoded["b"] is decoded["t"][0]
    assert decoded["loop"][1] is decoded["loop"]
    assert decoded["table"]["me"] is decoded["table"]


def slap_values() -> list[Any]:
    partition = ComputerPartition("COMP", "slappart0")
    partition._parameter_dict = {"ip_list": [("tap", "10.0.0.1")], "x": "<&>\u00e9"}
    partition._software_release_document = SoftwareRelease("https://e.invalid/sr", "COMP")
    computer = Computer("COMP")
    computer._computer_partition_list = [partition, partition]
    computer._software_release_list = [SoftwareRelease("https://e.invalid/a", "COMP")]
    instance = SoftwareInstance(_connection_dict={}, _parameter_dict={"a": "b"}, slap_x="y")
    return [partition, computer, instance, [instance, instance]]


@pytest.mark.parametrize("index", range(4))
def test_fast_path_builds_the_same_slap_objects(index: int) -> None:
    document = wire.dumps(slap_values()[index])
    expected = shape(slow(document, wire._SlapDecoder))
    assert shape(fast(document, wire._SlapDecoder)) == expected
    assert shape(wire.loads(document)) == expected
    assert wire.dumps(wire.loads(document)) == document


def traffic_documents() -> list[str]:
    documents = []
    for record in json.loads(TRAFFIC.read_text()):
        texts = [record.get("body") or "", *(record.get("data") or {}).values()]
        documents += [t for t in texts if isinstance(t, str) and t.startswith("<marshal>")]
    return documents


def test_fast_path_takes_all_captured_upstream_traffic() -> None:
    documents = traffic_documents()
    assert len(documents) > 20
    for document in documents:
        for decoder in (Decoder, wire._SlapDecoder):
            assert shape(fast(document, decoder)) == shape(slow(document, decoder)), document


# Valid documents dumps() never writes, still inside what the fast path understands.
UNUSUAL = [
    "<marshal><unicode>u&amp;amp;v</unicode></marshal>",
    "<marshal><long>123456789012345678901234567890</long></marshal>",
    "<marshal><string/></marshal>",
    "<marshal><unicode/></marshal>",
    "<marshal><string>&#x41;&#65;&quot;&apos;&gt;&#13;&#x1F600;</string></marshal>",
    "<marshal><int> 7 </int></marshal>",
    "<marshal><bool>2</bool></marshal>",
    "<marshal><float>nan</float></marshal>",
    "<marshal><none>ignored</none></marshal>",
    '<marshal><set id="i2"/></marshal>',
    '<marshal><list id=""><reference id=""/></list></marshal>',
    "<?xml version='1.0'?><marshal><int>1</int></marshal>",
    '<?xml version="1.0" encoding="UTF-8"?>\n<marshal><int>1</int></marshal>',
    "<marshal><string>tab\there\nnewline \x7f</string></marshal>",
    '<marshal><dictionary id="i2"><string>k</string><dictionary id="i3"/>'
    '<string>l</string><reference id="i3"/></dictionary></marshal>',
]


@pytest.mark.parametrize("document", UNUSUAL)
def test_fast_path_takes_unusual_but_plain_documents(document: str) -> None:
    assert shape(fast(document)) == shape(slow(document))


# Documents the fast path must leave to ElementTree (whatever ElementTree makes of them).
FALLBACK = [
    "",
    " <marshal><none/></marshal>",
    "<marshal><none/></marshal>\n",
    "<marshal>\n<none/></marshal>",
    "<marshal><none/> </marshal>",
    '<marshal><list id="i2"> <int>1</int></list></marshal>',
    "<marshal><string>a</string>tail</marshal>",
    "<marshal><!-- comment --><none/></marshal>",
    "<marshal><string><![CDATA[x<y]]></string></marshal>",
    "<marshal><string>a]]>b</string></marshal>",
    "<marshal><?pi x?><none/></marshal>",
    '<!DOCTYPE marshal [<!ENTITY a "xx">]><marshal><string>&a;</string></marshal>',
    '<?xml version="1.0" encoding="latin-1"?><marshal><string>x</string></marshal>',
    b'<?xml version="1.0" encoding="latin-1"?><marshal><string>\xe9</string></marshal>',
    "\ufeff<marshal><none/></marshal>",
    "<marshal><string>\u00e9</string></marshal>",
    "<marshal><string>a\rb</string></marshal>",
    "<marshal><string>a\x01b</string></marshal>",
    "<marshal><string>&#1;</string></marshal>",
    "<marshal><string>&#xD800;</string></marshal>",
    "<marshal><string>&#1114112;</string></marshal>",
    "<marshal><string>&#X41;</string></marshal>",
    "<marshal><string>&nbsp;</string></marshal>",
    "<marshal><string>a & b</string></marshal>",
    "<marshal><m:string xmlns:m='urn:x'>a</m:string></marshal>",
    "<marshal xmlns='urn:x'><string>a</string></marshal>",
    "<marshal><string >a</string></marshal>",
    "<marshal><string>a</int></marshal>",
    "<marshal><string>a<int>1</int></string></marshal>",
    "<marshal><none><bogus/></none></marshal>",
    "<marshal><bogus/></marshal>",
    "<marshal><String>a</String></marshal>",
    "<marshal></marshal>",
    "<marshal><none/><none/></marshal>",
    "<marshal><int>x</int></marshal>",
    "<marshal><int></int></marshal>",
    "<marshal><int/></marshal>",
    "<marshal><float>1.0.0</float></marshal>",
    "<marshal><bool>yes</bool></marshal>",
    "<marshal><int>" + "9" * 5000 + "</int></marshal>",
    "<marshal><dictionary><string>a</string></dictionary></marshal>",
    '<marshal><dictionary id="i2"><string>a</string></dictionary></marshal>',
    '<marshal><dictionary id="i2"><list id="i3"/><int>1</int></dictionary></marshal>',
    '<marshal><set id="i2"><list id="i3"/></set></marshal>',
    "<marshal><reference id='i9'/></marshal>",
    '<marshal><reference id="i9"/></marshal>',
    '<marshal><list id="i2"><list id="i2"/></list></marshal>',
    '<marshal><list id="i2"><reference id="i3"/><list id="i3"/></list></marshal>',
    "<marshal><list id='i2'/></marshal>",
    '<marshal><list  id="i2"/></marshal>',
    '<marshal><list id="i2" x="y"/></marshal>',
    '<marshal><list id="a&amp;b"/></marshal>',
    '<marshal><list id="a\tb"/></marshal>',
    '<marshal><tuple id="i2"><int>1</int></tuple></marshal>',
    '<marshal><tuple><reference id="i2"/></tuple></marshal>',
    '<marshal><list id="i2"><int>1</int></marshal>',
    '<marshal><list id="i2"></tuple></marshal>',
    '<marshal><list id="i2"></list></list></marshal>',
    '<marshal><object id="i2" module="os" class="system"><tuple/>'
    '<dictionary id="i3"/></object></marshal>',
    '<marshal><object id="i2" module="slapos.slap.slap" class="Popen"><tuple/>'
    '<dictionary id="i3"/></object></marshal>',
    '<marshal><object id="i2" module="slapos.slap.slap" class="SoftwareInstance">'
    "<tuple/></object></marshal>",
    '<marshal><object id="i2" module="slapos.slap.slap" class="SoftwareInstance">'
    '<list id="i3"/><dictionary id="i4"/></object></marshal>',
    '<marshal><object id="i2" module="slapos.slap.slap" class="SoftwareInstance">'
    '<tuple/><dictionary id="i3"><string>me</string><reference id="i2"/></dictionary>'
    "</object></marshal>",
    '<marshal><object class="SoftwareInstance" id="i2" module="slapos.slap.slap">'
    '<tuple/><dictionary id="i3"/></object></marshal>',
    "<marshal>" + '<list id="i2">' * 150 + "</list>" * 150 + "</marshal>",
    "<marshal>" + "<tuple>" * 5000 + "</tuple>" * 5000 + "</marshal>",
    "<other/>",
    "<marshal>",
    "not xml at all",
    b"<marshal><string>\xff</string></marshal>",
]


#: Fine as WireObjects, not as slap objects (bad constructor arguments, int attribute names).
SLAP_FALLBACK = [
    '<marshal><object id="i2" module="slapos.slap.slap" class="ComputerPartition">'
    '<tuple><int>1</int></tuple><dictionary id="i3"/></object></marshal>',
    '<marshal><object id="i2" module="slapos.slap.slap" class="ComputerPartition">'
    '<tuple><string>c</string><string>p</string></tuple><dictionary id="i3">'
    "<int>1</int><int>2</int></dictionary></object></marshal>",
]


@pytest.mark.parametrize("document", FALLBACK, ids=lambda d: repr(d)[:60])
@pytest.mark.parametrize("decoder", [Decoder, wire._SlapDecoder], ids=["proxy", "slap"])
def test_odd_documents_go_to_elementtree_with_the_same_outcome(
    document: str | bytes, decoder: type[Decoder]
) -> None:
    with pytest.raises(Exception):  # noqa: B017 - any error means "fall back"
        fast(document, decoder)
    assert outcome(marshal.loads, document, decoder) == outcome(slow, document, decoder)


@pytest.mark.parametrize("document", SLAP_FALLBACK)
def test_bad_slap_objects_go_to_elementtree_with_the_same_outcome(document: str) -> None:
    assert shape(fast(document)) == shape(slow(document))
    with pytest.raises(Exception):  # noqa: B017
        fast(document, wire._SlapDecoder)
    expected = outcome(slow, document, wire._SlapDecoder)
    assert expected[0] == "error"
    assert outcome(marshal.loads, document, wire._SlapDecoder) == expected
    assert outcome(wire.loads, document)[0] == "error"


def test_error_messages_are_unchanged() -> None:
    cases = {
        "<other/>": "root element is <other>, not <marshal>",
        "<marshal></marshal>": "<marshal> must hold exactly one value",
        "<marshal><int>x</int></marshal>": "bad <int> value 'x'",
        "<marshal><bogus/></marshal>": "unknown element <bogus>",
        '<marshal><dictionary id="i2"><string>a</string></dictionary></marshal>': (
            "<dictionary> with an odd number of children"
        ),
        '<marshal><reference id="i9"/></marshal>': "unknown reference 'i9'",
        '<marshal><dictionary id="i2"><list id="i3"/><int>1</int></dictionary></marshal>': (
            "unhashable dictionary key"
        ),
        '<marshal><object id="i2" module="os" class="system"><tuple/>'
        '<dictionary id="i3"/></object></marshal>': "refusing to unmarshall os.system",
        "<marshal>" + "<tuple>" * 5000 + "</tuple>" * 5000 + "</marshal>": (
            "document nested too deeply"
        ),
    }
    for document, message in cases.items():
        with pytest.raises(MarshalError) as error:
            marshal.loads(document)
        assert str(error.value) == message
    with pytest.raises(MarshalError, match=r"^not an XML document: "):
        marshal.loads("<marshal>")
    with pytest.raises(wire.WireError, match=r"refusing to unmarshall os\.system"):
        wire.loads(
            '<marshal><object id="i2" module="os" class="system"><tuple/>'
            '<dictionary id="i3"/></object></marshal>'
        )


def test_entity_expansion_is_left_to_expat() -> None:
    laughs = (
        '<!DOCTYPE marshal [<!ENTITY a "aaaaaaaaaa">'
        + "".join(
            f'<!ENTITY {c} "{("&" + p + ";") * 10}">'
            for p, c in zip("abcdefg", "bcdefgh", strict=True)
        )
        + "]><marshal><string>&h;</string></marshal>"
    )
    with pytest.raises(Exception):  # noqa: B017
        fast(laughs)
    assert outcome(marshal.loads, laughs) == outcome(slow, laughs)


def test_decoders_take_the_fast_path_only_when_they_say_so() -> None:
    calls = []

    class Counting(Decoder):
        def decode_object(self, element: Any) -> Any:
            calls.append(element.get("class"))
            return super().decode_object(element)

    document = marshal.dumps(WireObject("SoftwareInstance", (), {"a": "b"}))
    assert marshal.loads(document, Counting) == WireObject("SoftwareInstance", (), {"a": "b"})
    assert calls == ["SoftwareInstance"]


def test_encoder_string_cache_is_bounded_and_skips_long_strings() -> None:
    marshal.dumps([f"s{i}" for i in range(marshal._STRING_ELEMENTS_MAX + 10)])
    assert len(marshal._STRING_ELEMENTS) <= marshal._STRING_ELEMENTS_MAX
    long = "x" * (marshal._STRING_ELEMENTS_LENGTH + 1)
    assert marshal.dumps(long) == f"<marshal><string>{long}</string></marshal>"
    assert long not in marshal._STRING_ELEMENTS
    with pytest.raises(MarshalError, match="XML compatible"):
        marshal.dumps({"a": "bad\x01"})
    assert "bad\x01" not in marshal._STRING_ELEMENTS


def test_decoder_string_cache_is_bounded() -> None:
    items = "".join(
        f"<string>{i}&amp;amp;</string>" for i in range(marshal_fast._FAST_STRINGS_MAX + 9)
    )
    decoded = marshal.loads(f'<marshal><list id="i2">{items}</list></marshal>')
    assert decoded[-1] == f"{marshal_fast._FAST_STRINGS_MAX + 8}&"
    assert len(marshal_fast._FAST_STRINGS) <= marshal_fast._FAST_STRINGS_MAX
    long = "&amp;amp;" * marshal_fast._FAST_CACHED_LENGTH
    assert marshal.loads(f"<marshal><string>{long}</string></marshal>") == "&" * len(long[::9])
    assert long not in marshal_fast._FAST_STRINGS


def test_decoder_tag_cache_is_bounded_and_keeps_fixed_tags() -> None:
    count = marshal_fast._FAST_TAGS_MAX + 9
    items = "".join(f'<dictionary id="i{i}"/>' for i in range(3, count + 3))
    decoded = fast(f'<marshal><list id="i2">{items}<none/></list></marshal>')
    assert len(decoded) == count + 1 and decoded[0] == {} and decoded[-1] is None
    assert len(marshal_fast._FAST_TAGS) <= marshal_fast._FAST_TAGS_MAX
    assert marshal_fast._FAST_TAGS["/list"] == marshal_fast._FAST_TAGS_FIXED["/list"]
    tag = 'list id="' + "i" * marshal_fast._FAST_CACHED_LENGTH + '"/'
    assert fast(f"<marshal><{tag}></marshal>") == []
    assert tag not in marshal_fast._FAST_TAGS


# ---------------------------------------------------------------------------------------
# Instance XML


def reference_dict2xml(parameters: dict[Any, Any]) -> str:
    """dict2xml before its fast path: escape every key and value."""
    from lxml import etree

    root = etree.Element("instance")
    for key, value in sorted((instance_xml._param_str(k), v) for k, v in parameters.items()):
        etree.SubElement(root, "parameter", attrib={"id": key}).text = instance_xml._param_str(
            value
        )
    out: bytes = etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="utf-8")
    return out.decode("utf-8")


@pytest.mark.parametrize("seed", range(20))
def test_instance_xml_fast_paths_match_the_references(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20):
        parameters = {
            random_string(rng): rng.choice((random_string(rng), "", rng.randint(0, 99), 1.5))
            for _ in range(rng.randrange(6))
        }
        xml = instance_xml.dict2xml(parameters)
        assert xml == reference_dict2xml(parameters)
        assert instance_xml._fast_instance(xml) is not None  # taken by the fast path
        assert instance_xml.xml2dict(xml) == instance_xml._slow_xml2dict(xml)
        assert instance_xml.xml2dict(xml) == {
            str(k): (str(v) if v != "" else None) for k, v in parameters.items()
        }


INSTANCE_PLAIN = [
    '<instance><parameter id="a">x</parameter><parameter id="a">y</parameter></instance>',
    '<instance><parameter id="a"/><parameter id="a">y</parameter></instance>',
    '<instance>\n\t<parameter id="a">x</parameter>\n</instance>\n\n',
    '<?xml version="1.0"?><instance><parameter id="&quot;&#10;">&#x41;&amp;lt;</parameter>'
    "</instance>",
    "<instance/>",
    "<instance></instance>",
    '<instance><parameter id="">\u00e9 \U0001f600</parameter></instance>',
]

INSTANCE_FALLBACK = [
    "<instance>",
    "not xml",
    "<root><parameter id='a'>x</parameter></root>",
    "<instance><parameter id='a'>x</parameter></instance>",
    '<instance><parameter id="a" x="y">x</parameter></instance>',
    '<instance><parameter>x</parameter><parameter id="b">y</parameter></instance>',
    '<instance><parameter id="a">x<b/>y</parameter></instance>',
    '<instance><parameter id="a">x</parameter>tail</instance>',
    '<instance>text<parameter id="a">x</parameter></instance>',
    '<instance><other id="a">x</other><parameter id="b">y</parameter></instance>',
    '<instance><!-- c --><parameter id="a">x</parameter></instance>',
    '<instance><parameter id="a"><![CDATA[<x>]]></parameter></instance>',
    '<instance><parameter id="a">a]]>b</parameter></instance>',
    '<instance><parameter id="a">&#1;</parameter></instance>',
    '<instance><parameter id="a">&nbsp;</parameter></instance>',
    '<instance><parameter id="a">a\rb</parameter></instance>',
    '<instance><parameter id="a\tb">x</parameter></instance>',
    '<instance><parameter id="a">\x01</parameter></instance>',
    '<instance><parameter id="a">\ud800</parameter></instance>',
    '<?xml version="1.0" encoding="latin-1"?><instance><parameter id="a">\u00e9</parameter>'
    "</instance>",
    '<!DOCTYPE instance [<!ENTITY e "v">]><instance><parameter id="a">&e;</parameter></instance>',
    ' <?xml version="1.0"?><instance/>',
]


@pytest.mark.parametrize("xml", INSTANCE_PLAIN)
def test_xml2dict_fast_path_takes_plain_documents(xml: str) -> None:
    assert instance_xml._fast_instance(xml) is not None
    assert instance_xml.xml2dict(xml) == instance_xml._slow_xml2dict(xml)


@pytest.mark.parametrize("xml", INSTANCE_FALLBACK, ids=lambda x: repr(x)[:60])
def test_xml2dict_leaves_odd_documents_to_elementtree(xml: str) -> None:
    # a bad character reference is found when decoding the text, the others before
    assert instance_xml._fast_instance(xml) is None or "&#1;" in xml
    assert outcome(instance_xml.xml2dict, xml) == outcome(instance_xml._slow_xml2dict, xml)


def test_dict2xml_errors_are_unchanged() -> None:
    with pytest.raises(MarshalError, match="no control characters"):
        instance_xml.dict2xml({"a": "x\x01"})
    with pytest.raises(MarshalError, match="no control characters"):
        instance_xml.dict2xml({"a\x02": "x"})
