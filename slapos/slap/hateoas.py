"""The HATEOAS (HAL JSON, jIO-style) subset used by `service` and `computer` commands.

protocol.md §7. The REST root comes from `master_rest_url` or, lazily at first use, from
the legacy `getHateoasUrl` call. Links are RFC 6570 URI templates; `expand_template` covers
the operators ERP5 and the proxy use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from slapos.slap import wire
from slapos.slap.exception import ConnectionError, NotFoundError, ServerError, SlapException

ALLOWED_JIO_FIELD_LIST = (
    "StringField",
    "EmailField",
    "IntegerField",
    "FloatField",
    "TextAreaField",
)
INSTANCE_TREE_QUERY = 'portal_type:"Instance Tree" AND validation_state:validated'
COMPUTE_NODE_QUERY = 'portal_type:"Compute Node" AND validation_state:validated'
#: ERP5's raw_search default limit is too low for real trees (upstream's comment).
SEARCH_LIMIT = 40
VIEW = "slaposjs_view"


class TempDocument:
    """A bag of attributes (`_title`, `_url_string`...) built from a HATEOAS row."""

    _software_release_url: Any

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def __repr__(self) -> str:
        return f"<TempDocument {self.__dict__!r}>"


# ---------------------------------------------------------------------------------------
# RFC 6570 subset

_EXPRESSION = re.compile(r"\{([^}]*)\}")
_OPERATORS = {
    "": ("", ",", False, ""),
    "+": ("", ",", False, ""),
    "#": ("#", ",", False, ""),
    ".": (".", ".", False, ""),
    "/": ("/", "/", False, ""),
    ";": (";", ";", True, ""),
    "?": ("?", "&", True, "="),
    "&": ("&", "&", True, "="),
}


def expand_template(template: str, variables: Mapping[str, Any]) -> str:
    """Expand an RFC 6570 URI template (levels 1-4, no prefix modifiers)."""

    def expand(match: re.Match[str]) -> str:
        expression = match.group(1)
        operator = expression[:1] if expression[:1] in _OPERATORS and expression[:1] else ""
        names = expression[len(operator) :].split(",")
        first, separator, named, empty = _OPERATORS[operator]
        safe = ":/?#[]@!$&'()*+,;=" if operator in ("+", "#") else ""
        parts: list[str] = []
        for spec in names:
            explode = spec.endswith("*")
            name = spec.rstrip("*").split(":")[0]
            value = variables.get(name)
            if value is None or value == [] or value == {}:
                continue
            parts.extend(_expand_value(name, value, explode, named, separator, safe, empty))
        return first + separator.join(parts) if parts else ""

    return _EXPRESSION.sub(expand, template)


def _expand_value(
    name: str, value: Any, explode: bool, named: bool, separator: str, safe: str, empty: str
) -> list[str]:
    def enc(text: Any) -> str:
        return quote(str(text), safe=safe)

    if isinstance(value, Mapping):
        items = [(enc(k), enc(v)) for k, v in value.items()]
        if explode:
            return [f"{k}={v}" for k, v in items]
        joined = ",".join(f"{k},{v}" for k, v in items)
        return [f"{name}={joined}" if named else joined]
    if isinstance(value, list | tuple):
        if explode:
            return [f"{name}={enc(v)}" if named else enc(v) for v in value]
        joined = ",".join(enc(v) for v in value)
        return [f"{name}={joined}" if named else joined]
    text = enc(value)
    if named:
        return [f"{name}={text}" if text else f"{name}{empty}"]
    return [text]


# ---------------------------------------------------------------------------------------


class SlapHateoasNavigator:
    """Reads the master's HATEOAS API through a MasterSession."""

    def __init__(self, connection: Any, rest_url: str | None = None) -> None:
        self.connection = connection
        self._rest_url = rest_url
        self._root: dict[str, Any] | None = None

    @property
    def slapos_master_hateoas_uri(self) -> str:
        if not self._rest_url:
            try:
                body = self.connection.get(wire.GET_HATEOAS_URL)
            except ConnectionError:
                raise  # the master is down, not without the API: its own message says so
            except SlapException as exc:
                raise SlapException(
                    "SlapOS Master Hateoas API required for this operation is not available "
                    f"({exc}); set [slapos] master_rest_url"
                ) from exc
            self._rest_url = body.decode("utf-8").strip()
        return self._rest_url

    def GET(self, url: str, headers: Mapping[str, str] | None = None) -> Any:
        """GET a JSON document at an absolute URL (redirects followed)."""
        response = self.connection.request("GET", url, headers=headers, call=url)
        try:
            return json.loads(response.text)
        except ValueError as exc:
            raise ServerError(f"master answered GET {url} with invalid JSON: {exc}") from exc

    def getRootDocument(self) -> dict[str, Any]:
        if self._root is None:
            root = self.GET(self.slapos_master_hateoas_uri, headers={"Cache-Control": "no-cache"})
            if not isinstance(root, dict):
                raise ServerError("the HATEOAS root is not a JSON object")
            self._root = root
        return self._root

    def _link(self, name: str) -> str:
        try:
            return str(self.getRootDocument()["_links"][name]["href"])
        except (KeyError, TypeError):
            raise SlapException(
                f"the master's HATEOAS root has no '{name}' link (not supported by this master)"
            ) from None

    def jio_allDocs(self, query: dict[str, Any]) -> dict[str, Any]:
        query.setdefault("limit", SEARCH_LIMIT)
        result = self.GET(expand_template(self._link("raw_search"), query))
        try:
            rows = result["_embedded"]["contents"]
        except (KeyError, TypeError):
            raise ServerError("HATEOAS search answer has no _embedded.contents") from None
        return {"data": {"rows": rows, "total_rows": len(rows)}}

    def jio_get(self, key: str) -> dict[str, Any]:
        url = expand_template(self._link("traverse"), {"relative_url": key, "view": VIEW})
        return extract_form(self.GET(url))

    def jio_getAttachment(
        self, key: str, action: str, options: Mapping[str, Any] | None = None
    ) -> Any:
        if action == "view":
            url = expand_template(self._link("traverse"), {"relative_url": key, "view": VIEW})
        elif action.startswith(("http://", "https://")):
            url = action
        else:
            raise NotImplementedError(f"jio_getAttachment action {action!r}")
        return self.GET(url)

    def getMeDocument(self) -> dict[str, Any]:
        urn = self._link("me")
        return self.jio_get(urn.split("urn:jio:get:", 1)[-1])

    # -- client-as-a-person API ----------------------------------------------------------

    def _getInstanceTreeList(
        self, title: str | None = None, select_list: list[str] | None = None
    ) -> list[dict[str, Any]]:
        query = INSTANCE_TREE_QUERY
        if title is not None:
            query += f' AND title:="{title}"'
        select = select_list or ["title", "url_string"]
        return self.jio_allDocs({"query": query, "select_list": select})["data"]["rows"]  # type: ignore[no-any-return]

    def _getComputerList(
        self,
        title: str | None = None,
        reference: str | None = None,
        select_list: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        query = COMPUTE_NODE_QUERY
        if title is not None:
            query += f' AND title:="{title}"'
        if reference is not None:
            query += f' AND reference:="{reference}"'
        select = select_list or ["title", "reference"]
        return self.jio_allDocs({"query": query, "select_list": select})["data"]["rows"]  # type: ignore[no-any-return]

    def getInstanceTreeDict(self, title: str | None = None) -> dict[str, TempDocument]:
        result: dict[str, TempDocument] = {}
        for row in self._getInstanceTreeList(title=title):
            document = TempDocument(
                **{f"_{k}": v for k, v in row.items() if k not in ("_links", "url_string")}
            )
            document._software_release_url = row.get("url_string")
            result[str(row.get("title"))] = document
        return result

    def getComputerDict(self) -> dict[str, TempDocument]:
        result: dict[str, TempDocument] = {}
        for row in self._getComputerList():
            document = TempDocument(**{f"_{k}": v for k, v in row.items() if k != "_links"})
            result[str(row.get("title"))] = document
        return result

    def getToken(self) -> str:
        base = self._link("self")
        answer = self.jio_getAttachment(
            "computer_module", base.rstrip("/") + "/computer_module/Base_getComputerToken"
        )
        try:
            return str(answer["access_token"])
        except (KeyError, TypeError):
            raise ServerError("the master's token answer has no access_token") from None

    def getInstanceTreeRootSoftwareInstanceInformation(self, reference: str) -> dict[str, Any]:
        rows = self._getInstanceTreeList(title=reference, select_list=["title", "relative_url"])
        for row in rows:
            if row.get("title") == reference:
                return self.jio_get(str(row["relative_url"]))
        raise NotFoundError(f"instance {reference!r} does not exist")

    def _getComputer(self, reference: str) -> dict[str, Any]:
        rows = self._getComputerList(reference=reference, select_list=["reference", "relative_url"])
        for row in rows:
            if row.get("reference") == reference or row.get("title") == reference:
                return self.jio_get(str(row["relative_url"]))
        raise NotFoundError(f"computer {reference!r} does not exist")


def extract_form(document: Mapping[str, Any]) -> dict[str, Any]:
    """A HATEOAS form document -> {'data': {field: value}, 'form_data': {...}}."""
    try:
        form = document["_embedded"]["_view"]
        data: dict[str, Any] = {"portal_type": document["_links"]["type"]["name"]}
    except (KeyError, TypeError):
        raise ServerError("HATEOAS document has no _embedded._view form") from None
    parent = document.get("_links", {}).get("parent")
    if isinstance(parent, dict) and "href" in parent:
        data["parent_relative_url"] = "/".join(str(parent["href"]).split("/")[-2:])
    form_data: dict[str, Any] = {}
    if isinstance(form.get("form_id"), dict):
        form_id = form["form_id"]
        form_data["form_id"] = {"key": [form_id.get("key")], "default": form_id.get("default")}
    for key, field in form.items():
        for prefix in ("my_", "your_"):
            if key.startswith(prefix):
                name = key[len(prefix) :]
                break
        else:
            continue
        if isinstance(field, dict) and field.get("type") in ALLOWED_JIO_FIELD_LIST:
            form_data[name] = {"default": field.get("default"), "key": field.get("key")}
            data[name] = field.get("default")
    # 'news' is not a form field but service info shows it when present
    if "news" in document:
        data["news"] = document["news"]
    return {"data": data, "form_data": form_data}
