"""Client commands: request, supply, remove, service list|info, computer list|info|token.

One module per command (or small family) holds its parsers and handlers: request.py,
supply.py (supply, remove), service.py (service list|info, and upstream's hidden `list` and
`info`), computer.py (computer list|info|token); this package holds what they share. They read
slapos-client.cfg and talk to the master through slapos.slap, imported inside handlers (as
are requests, yaml and jsonschema): `slapos request --help` imports none of them. Results go
to ctx.stdout; progress and diagnostics are logged (stderr).
"""

from __future__ import annotations

from collections.abc import Iterable

from slapos.cli.context import Context
from slapos.errors import SlapOSError

TYPE_CHECKING = False  # typing is not imported at run time (`slapos request --help`)
if TYPE_CHECKING:
    import logging
    from typing import Any

    from slapos.config import ClientConfig
    from slapos.slap import slap


class _Log:
    """The "slapos" logger, imported on first use: `slapos request --help` needs no logging."""

    def __getattr__(self, name: str) -> Any:
        import logging

        return getattr(logging.getLogger("slapos"), name)


#: The client commands' logger (progress and diagnostics go to stderr, results to stdout).
log: logging.Logger = _Log()  # type: ignore[assignment]

PRODUCT_PREFIX = "product."


class ParameterError(SlapOSError):
    """A `key=value` list could not be parsed (exit 1, as upstream)."""


def connect(config: ClientConfig) -> slap:
    """A slap object connected as the configuration says ([slapos] timeout, 60 s a call)."""
    from slapos.slap.entry import connect as connect_master

    return connect_master(config.master)


def resolve_software(connection: slap, config: ClientConfig, software: str) -> str:
    """Alias -> URL, then `product.NAME` -> the best release of that product."""
    from slapos.slap import SoftwareProductCollection

    software = config.resolve_alias(software)
    if software.startswith(PRODUCT_PREFIX):
        name = software[len(PRODUCT_PREFIX) :]
        try:
            return SoftwareProductCollection(log, connection).get(name)
        except AttributeError as exc:
            raise SlapOSError(f"Error: {exc} Exiting now.") from None
    return software


def parse_key_values(items: Iterable[str] | None, option: str) -> dict[str, str]:
    """`['a=1', 'b=x=y']` -> `{'a': '1', 'b': 'x=y'}`; values stay strings."""
    result: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ParameterError(f"{option}: {item!r} is not of the form key=value")
        if key in result:
            raise ParameterError(f"{option}: multiple values provided for the same key {key!r}")
        result[key] = value
    return result


def emit_json(ctx: Context, data: Any) -> None:
    import json

    ctx.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def decode_connection(connection_dict: Any, serialisation: str | None) -> Any:
    """Connection parameters for display: `_` decoded unless the release says `xml`."""
    import json

    from slapos.slap import wire

    if isinstance(connection_dict, list):  # real master HATEOAS: key/value records
        connection_dict = {
            p.get("connection_key"): p.get("connection_value") for p in connection_dict
        }
    elif isinstance(connection_dict, str | bytes):  # proxy HATEOAS: instance XML
        connection_dict = wire.instance_xml_to_dict(connection_dict)
    connection_dict = dict(connection_dict or {})
    if serialisation != "xml" and wire.JSON_KEY in connection_dict:
        try:
            return json.loads(connection_dict[wire.JSON_KEY])
        except (TypeError, ValueError):
            log.warning("the '_' connection parameter is not valid JSON; shown as is")
    return connection_dict
