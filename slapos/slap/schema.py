"""Software release schemas: `<software_url>.json` (software.cfg.json) and the JSON schemas
it names. Tells how instance parameters are serialised (`xml` or `json-in-xml`) and
validates requested parameters.

Nothing here blocks a request: problems come back as lines of text for the caller to show.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from slapos.slap import wire

log = logging.getLogger(__name__)

XML = "xml"
JSON_IN_XML = "json-in-xml"
SERIALISATIONS = (XML, JSON_IN_XML)
DEFAULT_SOFTWARE_TYPE = "default"
FETCH_TIMEOUT = 10.0

Fetcher = Callable[[str], Any]


class SchemaUnavailable(Exception):
    """A JSON document could not be read; `missing` when there is none (no file, HTTP 404)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def fetch_json(url: str, timeout: float = FETCH_TIMEOUT) -> Any:
    """Read JSON from an http(s) URL, a file: URL or a local path."""
    try:
        if url.startswith(("http://", "https://")):
            import requests

            response = requests.get(url, timeout=timeout)
            response.raise_for_status()
            return json.loads(response.text)
        path = urlsplit(url).path if url.startswith("file:") else url
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except Exception as exc:  # any failure means "no schema": the request goes on
        status = getattr(getattr(exc, "response", None), "status_code", None)
        missing = isinstance(exc, FileNotFoundError) or status == 404
        raise SchemaUnavailable(
            f"unable to load JSON {url} ({_reason(exc)})", missing=missing
        ) from exc


def _reason(exc: BaseException) -> str:
    """A short reason: requests nests whole reprs in its messages."""
    text = " ".join(str(exc).split())
    for marker in ("Failed to resolve", "[Errno", "timed out", "404", "403", "500"):
        if marker in text:
            text = text[text.index(marker) :]
            break
    # requests' nested reprs end in closing brackets and quotes that open nowhere here
    while text and text[-1] in ")\"' ":
        last = text[-1]
        if last == ")" and text.count("(") >= text.count(")"):
            break
        if last in "\"'" and text.count(last) % 2 == 0:
            break
        text = text[:-1]
    return f"{type(exc).__name__}: {text[:160]}"


class SoftwareReleaseSchema:
    """What `<software_url>.json` says about one software type of a release."""

    def __init__(
        self, software_url: str, software_type: str | None = None, fetch: Fetcher | None = None
    ) -> None:
        self.software_url = software_url
        if software_type in (None, "", "RootSoftwareInstance"):
            software_type = DEFAULT_SOFTWARE_TYPE
        self.software_type = str(software_type)
        self._fetch = fetch or fetch_json
        self._cache: dict[str, Any] = {}
        #: Human-readable problems met while reading schemas (shown as warnings).
        self.problems: list[str] = []
        #: Those of `problems` that only say a document does not exist (a release without
        #: a schema is normal).
        self.absent: list[str] = []

    def _read(self, url: str) -> Any:
        if url not in self._cache:
            try:
                self._cache[url] = self._fetch(url)
            except SchemaUnavailable as exc:
                self.problems.append(str(exc))
                if exc.missing:
                    self.absent.append(str(exc))
                self._cache[url] = None
        return self._cache[url]

    def software_schema(self) -> dict[str, Any] | None:
        document = self._read(self.software_url + ".json")
        return document if isinstance(document, dict) else None

    def software_type_schema(self) -> dict[str, Any] | None:
        schema = self.software_schema()
        if schema is None:
            return None
        entry = (schema.get("software-type") or {}).get(self.software_type)
        return entry if isinstance(entry, dict) else None

    def serialisation(self) -> str | None:
        """`xml`, `json-in-xml`, or None when the release does not say."""
        for document in (self.software_type_schema(), self.software_schema()):
            if document and document.get("serialisation") in SERIALISATIONS:
                return str(document["serialisation"])
        return None

    def _schema_url(self, key: str) -> str | None:
        entry = self.software_type_schema()
        if not entry or not entry.get(key):
            return None
        return urljoin(self.software_url, str(entry[key]))

    def request_schema(self) -> dict[str, Any] | None:
        url = self._schema_url("request")
        if url is None:
            return None
        schema = self._read(url)
        if isinstance(schema, dict):
            schema.setdefault(
                "$id", url if "://" in url or url.startswith("file:") else "file:" + url
            )
            return schema
        return None

    def validate(self, parameters: Mapping[str, Any]) -> list[str]:
        """Problems of `parameters` against the request schema (`$.path: message` lines)."""
        schema = self.request_schema()
        if not schema:
            return []
        data: Any = dict(parameters)
        if self.serialisation() != XML and set(data) == {wire.JSON_KEY}:
            try:
                data = json.loads(data[wire.JSON_KEY])
            except ValueError as exc:
                return [f"$: the '_' parameter is not valid JSON ({exc})"]
        if isinstance(data, dict):
            data.pop("$schema", None)
        try:
            import jsonschema  # type: ignore[import-untyped]
            from referencing import Registry, Resource
            from referencing.jsonschema import specification_with

            validator_class = jsonschema.validators.validator_for(schema)
            # referenced files often omit $schema: read them with the root's dialect
            specification = specification_with(validator_class.META_SCHEMA["$schema"])

            def retrieve(uri: str) -> Resource[Any]:
                return specification.create_resource(fetch_json(uri))

            registry: Registry[Any] = Registry(retrieve=retrieve)  # type: ignore[call-arg]
            validator = validator_class(schema, registry=registry)
            return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(data)]
        except Exception as exc:  # a broken schema must not block the request
            return [f"cannot validate against the schema ({type(exc).__name__}: {exc})"]
