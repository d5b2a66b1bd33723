"""`slapos request`: ask the master for an instance, optionally wait until it is ready, and
print its connection parameters."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from slapos.cli._common import Commands, SlapOSArgumentParser, SubParsers, add_format_option
from slapos.cli.client import (
    connect,
    decode_connection,
    emit_json,
    log,
    parse_key_values,
    resolve_software,
)
from slapos.cli.client.supply import supply_state
from slapos.cli.context import Context
from slapos.errors import ExitCode, MasterError, UsageError

TYPE_CHECKING = False  # typing is not imported at run time (`slapos request --help`)
if TYPE_CHECKING:
    from typing import Any

    from slapos.slap import ComputerPartition, slap
    from slapos.system import Clock

#: The historic frontend SR that upstream never validates (cli.md §5.1.2).
FRONTEND_URL = (
    "http://git.erp5.org/gitweb/slapos.git/blob_plain/HEAD:/software/apache-frontend/software.cfg"
)


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    p = Commands(sub, root, group="client", cfg="client").add(
        ("request",), run_request, "request an instance and get status and parameters of instance"
    )
    p.add_argument("reference", help="Your instance reference (for now it is its title)")
    p.add_argument("software_url", help="Your software url (or an alias, or product.NAME)")
    p.add_argument(
        "--node",
        nargs="+",
        metavar="NODE",
        help="Node request option 'option1=value1 option2=value2' (i.e. computer_guid=COMP-1234)",
    )
    p.add_argument("--type", help="Software type to be requested")
    p.add_argument("--state", help="State of the requested instance")
    p.add_argument("--slave", action="store_true", help="Ask for a slave instance")
    p.add_argument(
        "--force-serialisation",
        choices=("xml", "json-in-xml"),
        help="Enforce serialisation of instance parameters when using --parameters-file",
    )
    params = p.add_mutually_exclusive_group()
    params.add_argument(
        "--parameters",
        "--configuration",
        nargs="+",
        metavar="PARAMETERS",
        help="Instance parameters, in the form 'option1=value1 option2=value2'.",
    )
    params.add_argument(
        "--parameters-file",
        metavar="PARAMETERS_FILE",
        help="Instance parameters, in a file. The file will be interpreted as json, yaml or "
        "xml depending on the file extension.",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until the instance is ready, showing progress, then print its connection "
        "parameters",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=600.0,
        help="with --wait, give up after this many seconds (default: 600)",
    )
    add_format_option(p)


def _seconds(value: str) -> float:
    """A --timeout: a number of seconds above zero (argparse says which option is wrong)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:  # refuses nan too
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {value!r}")
    return seconds


def load_parameters_file(path: str) -> tuple[Any, bool]:
    """Parse a --parameters-file: (data, is_instance_xml). Format from the extension."""
    import json
    from pathlib import Path

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


def _deployment_hint(connection: slap, software: str, partition: Any, command: str) -> str:
    """Why an allocated instance has no connection parameters yet, from what the master says."""
    node = str(getattr(partition, "_computer_id", "") or "")
    where = f"{node}/{getattr(partition, '_partition_id', '?')}"
    if node and supply_state(connection, software, node) in ("absent", "destroyed"):
        return (
            f"allocated to {where}, but its software release is not supplied to {node} "
            f"({command} supply {software} {node})"
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


def _waiting_for(connection: slap, reference: str, static_hint: str, command: str) -> str:
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
            f"({command} explain {reference} tells more)"
        )
    return f"{where}, {state} by its node, no connection parameters published yet"


def run_request(args: argparse.Namespace, ctx: Context) -> int:
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
    request = _Request(args, ctx, connection, software, parameters, node)
    if args.wait:
        request.wait(ctx.clock)
    else:
        request.send()
    code = _report_request(
        args, ctx, schema, software, request.state, request.connection_parameters
    )
    if request.kept:
        log.warning("the instance stays %s: add --state started to start it", request.state)
    return code


class _Request:
    """One `slapos request`, sent again (it is idempotent) until the instance is ready."""

    def __init__(
        self,
        args: argparse.Namespace,
        ctx: Context,
        connection: slap,
        software: str,
        parameters: Any,
        node: Any,
    ) -> None:
        self.args, self.connection, self.software = args, connection, software
        self.order = connection.registerOpenOrder()
        self.request_parameters, self.node = parameters, node
        self.command = ctx.slapos_command()
        #: the instance's state (None: not allocated yet) and connection parameters
        self.state: str | None = None
        self.connection_parameters: dict[str, Any] | None = None
        #: the state the master keeps, when a request without --state says "started"
        self.kept: str | None = None
        self.hint = ""
        self.answered = False
        #: why the master did not answer the last time, if it did not
        self.down: Exception | None = None
        self.said_down = False

    def send(self) -> bool:
        """Send the request once; True when the instance is ready."""
        args = self.args
        partition = _send(self.order, self.software, args, self.request_parameters, self.node)
        self.answered = True
        state, self.connection_parameters = _instance_status(partition)
        if state == "started" and self.kept is None:
            self.kept = _kept_state(self.connection, partition, args)
        self.state = self.kept or state
        if self.state is not None and not self.hint and not args.slave:
            self.hint = _deployment_hint(self.connection, self.software, partition, self.command)
            if "not supplied" in self.hint:
                log.warning("%s: %s", args.reference, self.hint)
        return self.state is not None and (
            self.state != "started" or bool(self.connection_parameters)
        )

    def wait(self, clock: Clock) -> None:
        """--wait: send until the instance is ready or --timeout has passed; a master that
        still does not answer then is a failure."""
        from slapos.system import wait_until

        timeout = self.args.timeout
        ready = wait_until(
            self.ready,
            timeout,
            clock=clock,
            pause=1.0,
            backoff=1.5,
            max_pause=10.0,
            on_wait=self.say_waiting,
        )
        if not ready and self.down is not None:
            raise MasterError(
                f"gave up waiting for {self.args.reference} after {timeout:g}s: {self.down}"
            )

    def ready(self) -> bool:
        """send(), for --wait: a master that answered once and stops answering is
        restarting, and is asked again; one that never answered fails at once (bad URL)."""
        from slapos.slap import ConnectionError as MasterConnectionError

        try:
            ready = self.send()
        except MasterConnectionError as exc:
            if not self.answered:
                raise
            self.down = exc
            return False
        self.down, self.said_down = None, False
        return ready

    def say_waiting(self, remaining: float) -> None:
        """What --wait is waiting for: said once while the master does not answer."""
        reference = self.args.reference
        if self.down is not None:
            if not self.said_down:
                log.warning(
                    "the master does not answer (%s); still waiting for %s (%ds left)",
                    self.down,
                    reference,
                    int(remaining),
                )
            self.said_down = True
            return
        if self.state is None:
            what = "not allocated to a partition yet"
        else:
            why = _waiting_for(self.connection, reference, self.hint, self.command)
            what = f"{self.state}, {why}"
        log.info("waiting for %s: %s (%ds left)", reference, what, max(0, int(remaining)))


def _send(
    order: Any, software: str, args: argparse.Namespace, parameters: Any, node: Any
) -> ComputerPartition:
    from slapos.slap import NotFoundError

    try:
        partition: ComputerPartition = order.request(
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
    return partition


def _kept_state(connection: slap, partition: Any, args: argparse.Namespace) -> str:
    """A request without a state keeps the stored one while its answer says "started"
    (protocol.md §8.14 item 3): the state the master keeps when it differs, else ""."""
    node = getattr(partition, "_computer_id", None)
    partition_id = getattr(partition, "_partition_id", None)
    if args.state is not None or args.slave or not node or not partition_id:
        return ""
    try:
        kept = connection.registerComputerPartition(node, partition_id).getState()
    except Exception as exc:  # a better report, never a failure of the request
        log.debug("cannot read the stored state of %s: %s", partition_id, exc)
        return ""
    return "" if kept == "started" else kept


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
        import pprint

        ctx.stdout.write(pprint.pformat(shown) + "\n")
        log.info("You can rerun the command to get up-to-date information.")
    if args.wait and state == "started" and not connection_dict:
        log.warning("timed out after %ss waiting for connection parameters", args.timeout)
        return ExitCode.USAGE
    return ExitCode.OK
