"""Handlers of the client commands (parsers are in slapos.cli.client).

Import-light: the slap library, requests, yaml and jsonschema are imported inside handlers.
Results go to ctx.stdout; progress and diagnostics are logged (stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import pprint
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slapos.cli._common import Context
from slapos.errors import ExitCode, MasterError, SlapOSError, UsageError

if TYPE_CHECKING:
    from slapos.config import ClientConfig
    from slapos.slap import ComputerPartition, slap

log = logging.getLogger("slapos")

PRODUCT_PREFIX = "product."
#: The historic frontend SR that upstream never validates (cli.md §5.1.2).
FRONTEND_URL = (
    "http://git.erp5.org/gitweb/slapos.git/blob_plain/HEAD:/software/apache-frontend/software.cfg"
)


class ParameterError(SlapOSError):
    """A `key=value` list could not be parsed (exit 1, as upstream)."""


# ---------------------------------------------------------------------------------------
# shared helpers


def connect(config: ClientConfig) -> slap:
    """A slap object connected as the configuration says."""
    from slapos.slap import slap

    connection = slap()
    connection.initializeConnection(
        config.master_url,
        key_file=config.key_file,
        cert_file=config.cert_file,
        master_ca_file=config.master_ca_file,
        master_tls_verify=config.master_tls_verify,
        max_answer_size=config.master_max_answer_mb << 20,
        timeout=config.timeout,
        slapgrid_rest_uri=config.master_rest_url,
    )
    return connection


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


def load_parameters_file(path: str) -> tuple[Any, bool]:
    """Parse a --parameters-file: (data, is_instance_xml). Format from the extension."""
    from slapos.slap import wire

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"--parameters-file: cannot read {path}: {reason}") from None
    suffix = Path(path).suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".xml":
            return wire.instance_xml_to_dict(text), True
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml, json and XML syntax errors all mean "bad file"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--parameters-file: {path} is not valid: {first}") from None
    return data, False


def emit_json(ctx: Context, data: Any) -> None:
    ctx.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def decode_connection(connection_dict: Any, serialisation: str | None) -> Any:
    """Connection parameters for display: `_` decoded unless the release says `xml`."""
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


# ---------------------------------------------------------------------------------------
# request


def _request_parameters(args: argparse.Namespace, schema: Any) -> dict[str, Any]:
    from slapos.slap import wire

    if not args.parameters_file:
        return parse_key_values(args.parameters, "--parameters")
    data, is_xml = load_parameters_file(args.parameters_file)
    if is_xml:
        return dict(data)
    serialisation = args.force_serialisation or schema.serialisation()
    if serialisation is None:
        # Upstream crashes here ('NoneType' object is not subscriptable). JSON-in-XML is
        # what SlapOS masters assume for releases without a schema.
        log.warning(
            "%s declares no parameter serialisation; sending the file as json-in-xml "
            "(use --force-serialisation xml to send its keys as plain parameters)",
            schema.software_url,
        )
        serialisation = "json-in-xml"
    if serialisation == "json-in-xml":
        try:
            return wire.wrap_json_in_xml(data)
        except (TypeError, ValueError) as exc:  # e.g. YAML dates have no JSON form
            raise UsageError(
                f"--parameters-file: {args.parameters_file} cannot be sent as JSON: {exc}"
            ) from None
    if not isinstance(data, dict):
        raise UsageError(
            f"--parameters-file: {args.parameters_file} must hold a mapping for xml serialisation"
        )
    return data


def _validate(schema: Any, reference: str, software: str, parameters: Mapping[str, Any]) -> None:
    log.info("Validating request parameters for %s as an instance of %s ...", reference, software)
    if schema.software_url == FRONTEND_URL:
        return
    problems = schema.validate(parameters)
    for problem in schema.problems:  # no schema is fine: nothing to validate against
        if problem in schema.absent:
            log.debug("no schema, parameters not validated: %s", problem)
        else:
            log.info("no schema, parameters not validated: %s", problem)
    if problems:
        log.warning(
            "Request parameters do not validate against schema definition:\n  %s",
            "\n  ".join(problems),
        )


def _instance_status(partition: ComputerPartition) -> tuple[str | None, dict[str, Any] | None]:
    """(state, connection parameters), or (None, None) while the master allocates it."""
    from slapos.slap import ResourceNotReady

    try:
        state = partition.getState()
        return state, dict(partition.getConnectionParameterDict())
    except ResourceNotReady:
        return None, None


def supply_state(connection: slap, software: str, node: str) -> str | None:
    """Whether `software` is supplied to `node`: "available", "destroyed" (being removed),
    "absent" (never supplied), or None when the master does not tell this client."""
    try:
        releases = connection.registerComputer(node).getSoftwareReleaseList()
    except Exception as exc:  # a real master may refuse: then say nothing
        log.debug("cannot read the releases supplied to %s: %s", node, exc)
        return None
    for release in releases:
        if release.getURI() == software:
            return release.getState()
    return "absent"


def _deployment_hint(connection: slap, software: str, partition: Any) -> str:
    """Why an allocated instance has no connection parameters yet, from what the master says."""
    node = str(getattr(partition, "_computer_id", "") or "")
    where = f"{node}/{getattr(partition, '_partition_id', '?')}"
    if node and supply_state(connection, software, node) in ("absent", "destroyed"):
        return (
            f"allocated to {where}, but its software release is not supplied to {node} "
            f"(slapos supply {software} {node})"
        )
    return (
        f"allocated to {where}, no node has deployed it yet (is slapos node software, then "
        f"slapos node instance, running on {node or 'that node'}?)"
    )


def _reported(connection: slap, reference: str) -> tuple[str, str] | None:
    """What the instance's node last reported ("error" or another state, and its message),
    when the master keeps it (ours, a real master; not upstream's proxy)."""
    from slapos.slap.explain import explain_tree

    try:
        tree = explain_tree(connection._connection_helper, reference)
    except Exception as exc:  # a hint, never a failure of the request
        log.debug("cannot tell what the node reported for %s: %s", reference, exc)
        return None
    root = tree.instances[0] if tree.instances else None
    if root is None or root.reported_state is None:
        return None
    return root.reported_state, root.message


def _waiting_for(connection: slap, reference: str, static_hint: str) -> str:
    """The wait line's reason: the node's own report when there is one, else `static_hint`."""
    if not static_hint:  # a shared instance: its host's node publishes for it
        return "no connection parameters yet"
    if "not supplied" in static_hint:
        return static_hint
    reported = _reported(connection, reference)
    if reported is None:
        return static_hint
    state, message = reported
    where = static_hint.split(",", 1)[0]  # "allocated to NODE/PARTITION"
    if state == "error":
        return (
            f"{where}, whose node reported an error: {message or 'no message'} "
            f"(slapos explain {reference} tells more)"
        )
    return f"{where}, {state} by its node, no connection parameters published yet"


def run_request(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.slap import NotFoundError
    from slapos.slap.schema import SoftwareReleaseSchema

    config = ctx.client_config(args)
    node = parse_key_values(args.node, "--node")
    if args.parameters_file is None:
        parse_key_values(args.parameters, "--parameters")  # fail before any network call
    connection = connect(config)
    software = resolve_software(connection, config, args.software_url)
    schema = SoftwareReleaseSchema(software, args.type)
    parameters = _request_parameters(args, schema)
    _validate(schema, args.reference, args.software_url, parameters)
    log.info("Requesting %s as an instance of %s ...", args.reference, software)
    order = connection.registerOpenOrder()
    deadline = ctx.clock.monotonic() + args.timeout
    delay = 1.0
    hint = ""
    while True:
        try:
            partition = order.request(
                software,
                args.reference,
                partition_parameter_kw=parameters,
                software_type=args.type,
                filter_kw=node,
                state=args.state,
                shared=args.slave,
            )
        except NotFoundError as exc:  # allocation refused: a failure, not "unknown"
            raise MasterError(str(exc)) from None
        state, connection_dict = _instance_status(partition)
        ready = state is not None and (state != "started" or bool(connection_dict))
        if state is not None and not hint and not args.slave:
            hint = _deployment_hint(connection, software, partition)
            if "not supplied" in hint:
                log.warning("%s: %s", args.reference, hint)
        if not args.wait or ready:
            break
        remaining = deadline - ctx.clock.monotonic()
        if remaining <= 0:
            break
        what = (
            "not allocated to a partition yet"
            if state is None
            else f"{state}, {_waiting_for(connection, args.reference, hint)}"
        )
        log.info("waiting for %s: %s (%ds left)", args.reference, what, max(0, int(remaining)))
        ctx.clock.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 10.0)
    return _report_request(args, ctx, schema, software, state, connection_dict)


def _report_request(
    args: argparse.Namespace,
    ctx: Context,
    schema: Any,
    software: str,
    state: str | None,
    connection_dict: dict[str, Any] | None,
) -> int:
    if state is None:
        if args.format == "json":
            emit_json(ctx, {"reference": args.reference, "software-url": software, "ready": False})
        if args.wait:
            log.warning(
                "Instance %s is still not ready after %ss. Master is provisioning it.",
                args.reference,
                args.timeout,
            )
        else:
            log.warning(
                "Instance requested. Master is provisioning it. Please rerun in a couple of "
                "minutes to get connection information."
            )
        return ExitCode.USAGE  # upstream: 2 means "not ready yet, rerun later"
    shown = decode_connection(connection_dict, schema.serialisation())
    if args.format == "json":
        emit_json(
            ctx,
            {
                "reference": args.reference,
                "software-url": software,
                "software-type": args.type or "default",
                "shared": bool(args.slave),
                "ready": True,
                "state": state,
                "connection-parameters": shown,
            },
        )
    else:
        log.info("Instance requested.\nState is : %s.", state)
        log.info("Connection parameters of instance are:")
        ctx.stdout.write(pprint.pformat(shown) + "\n")
        log.info("You can rerun the command to get up-to-date information.")
    if args.wait and state == "started" and not connection_dict:
        log.warning("timed out after %ss waiting for connection parameters", args.timeout)
        return ExitCode.USAGE
    return ExitCode.OK


# ---------------------------------------------------------------------------------------
# supply, remove


def run_supply(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.slap import NotFoundError

    config = ctx.client_config(args)
    connection = connect(config)
    software = resolve_software(connection, config, args.software_url)
    if args.software_state == "destroyed":
        if supply_state(connection, software, args.node) == "absent":
            log.warning(
                "%s is not supplied to %s (unknown there): nothing to remove",
                args.software_url,
                args.node,
            )
            return ExitCode.OK
        log.info("Requesting deletion of %s Software Release...", args.software_url)
    else:
        log.info("Requesting software installation of %s...", args.software_url)
    try:
        connection.registerSupply().supply(software, args.node, args.software_state)
    except NotFoundError as exc:
        raise MasterError(str(exc)) from None
    log.info("Done.")
    return ExitCode.OK


# ---------------------------------------------------------------------------------------
# service list / info


def run_service_list(args: argparse.Namespace, ctx: Context) -> int:
    connection = connect(ctx.client_config(args))
    trees = connection.getOpenOrderDict()
    result = {title: trees[title]._software_release_url for title in sorted(trees)}
    emit_json(ctx, result)
    return ExitCode.OK


def _news_status(news: Any) -> str:
    status = 0
    for entry in news or ():
        text = entry.get("text", "") if isinstance(entry, dict) else ""
        if text.startswith("#access"):
            status |= 1
        elif text.startswith("#error"):
            status |= 2
    return ("none", "green", "red", "orange")[status]


def run_service_info(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.slap import NotFoundError, ResourceNotReady
    from slapos.slap.schema import SoftwareReleaseSchema

    connection = connect(ctx.client_config(args))
    try:
        instance = connection.registerOpenOrder().getInformation(args.reference)
    except ResourceNotReady:
        log.warning("Instance does not exist or is not ready yet.")
        return ExitCode.USAGE
    except NotFoundError:
        log.warning("Instance %s does not exist.", args.reference)
        return ExitCode.USAGE
    software_url = instance._software_release_url
    software_type = getattr(instance, "_source_reference", None) or "default"
    schema = SoftwareReleaseSchema(str(software_url), software_type)
    info: dict[str, Any] = {
        "software-url": software_url,
        "software-type": software_type,
        "shared": bool(getattr(instance, "_root_slave", False)),
        "requested-state": instance._requested_state,
        "instance-parameters": instance._parameter_dict,
        "connection-parameters": decode_connection(
            instance._connection_dict, schema.serialisation()
        ),
    }
    news = getattr(instance, "_news", None)
    if isinstance(news, dict) and "instance" in news:
        info["status"] = _news_status(news["instance"])
        if args.news:
            info["news"] = news["instance"]
    else:
        info["status"] = "unsupported"
    for problem in schema.problems:
        log.debug("%s", problem)
    emit_json(ctx, info)
    return ExitCode.OK


# ---------------------------------------------------------------------------------------
# computer list / info / token


def run_computer_list(args: argparse.Namespace, ctx: Context) -> int:
    connection = connect(ctx.client_config(args))
    computers = connection.getComputerDict()
    rows = [
        {"reference": getattr(c, "_reference", title), "title": getattr(c, "_title", title)}
        for title, c in sorted(computers.items())
    ]
    if args.format == "json":
        emit_json(ctx, rows)
    elif not rows:
        ctx.stdout.write("No existing computer.\n")
    else:
        ctx.stdout.write("List of Computers:\n")
        for row in rows:
            ctx.stdout.write(f"{row['reference']} {row['title']}\n")
    return ExitCode.OK


def run_computer_info(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.slap import NotFoundError, ResourceNotReady

    connection = connect(ctx.client_config(args))
    try:
        computer = connection.registerComputer(args.reference).getInformation()
    except ResourceNotReady:
        ctx.stdout.write("Computer does not exist or is not ready yet.\n")
        return ExitCode.USAGE
    except NotFoundError:
        ctx.stdout.write(f"Computer {args.reference} does not exist.\n")
        return ExitCode.USAGE
    reference = getattr(computer, "_reference", args.reference)
    title = getattr(computer, "_title", "")
    if args.format == "json":
        emit_json(ctx, {"reference": reference, "title": title})
    else:
        ctx.stdout.write(f"Computer Reference: {reference}\nComputer Title    : {title}\n")
    return ExitCode.OK


def run_computer_token(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.slap import NotFoundError, ResourceNotReady

    connection = connect(ctx.client_config(args))
    try:
        token = connection.registerToken().request()
    except ResourceNotReady:
        ctx.stdout.write("Computer does not exist or is not ready yet.\n")
        return ExitCode.USAGE
    except NotFoundError as exc:  # upstream crashes in this branch
        ctx.stdout.write(f"Cannot get a computer token: {exc}\n")
        return ExitCode.USAGE
    if args.format == "json":
        emit_json(ctx, {"token": token})
    else:
        ctx.stdout.write(f"Computer token: {token}\n")
    return ExitCode.OK
