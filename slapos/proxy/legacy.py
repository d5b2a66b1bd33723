"""The legacy SLAP API (protocol.md §3): `/<methodName>`, form or query in, xml out.

Each handler parses its fields, runs one `Master` operation in a transaction and encodes
the answer like slapos.core 1.26.1's proxy, except that unknown computers and partitions
are 404 (upstream: 500) and bad input is 400 with a one-line reason.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slapos.proxy import status
from slapos.proxy.model import USER, BadRequest, InstanceRequest, NotFound, Requester
from slapos.proxy.service import Master
from slapos.slap.marshal import WireObject, dumps, loads

if TYPE_CHECKING:
    from slapos.proxy.app import Handler, ProxyApp, Response
    from slapos.proxy.request import Request

log = logging.getLogger(__name__)

GET, POST = frozenset({"GET"}), frozenset({"POST"})
ANY = frozenset({"GET", "POST"})


def _text(body: str, status: int = 200) -> Response:
    from slapos.proxy.app import text

    return text(body, status)


def _xml(body: str) -> Response:
    from slapos.proxy.app import xml

    return xml(body)


def _decode(request: Request, name: str, default: Any = None, *, required: bool = False) -> Any:
    raw = request.form.get(name)
    if raw is None:
        if required:
            raise BadRequest(f"missing parameter {name!r}")
        return default
    return loads(raw)


def _dict_field(request: Request, name: str) -> dict[str, Any]:
    value = _decode(request, name, {})
    if not isinstance(value, dict):
        raise BadRequest(f"{name} must be a marshalled dictionary")
    return {str(k): v for k, v in value.items()}


# ---- node: computer information --------------------------------------------------------


def full_computer_information(app: ProxyApp, request: Request) -> Response:
    computer_id = request.field("computer_id")
    cached = app.computer_cache.get(computer_id)
    if cached is not None and cached[0] == app.current_generation():
        return _xml(cached[1])
    # the generation read in the same snapshot as the document: exact, whoever wrote
    generation, document = app.read(
        lambda m: (m.store.generation(), m.computer_document(computer_id))
    )
    body = dumps(document)
    app.computer_cache[computer_id] = (generation, body)
    return _xml(body)


def register_partition(app: ProxyApp, request: Request) -> Response:
    computer_id = request.field("computer_reference")
    partition_id = request.field("computer_partition_reference")
    return _xml(dumps(app.read(lambda m: m.partition_document(partition_id, computer_id))))


def partition_certificate(app: ProxyApp, request: Request) -> Response:
    computer_id = request.field("computer_id")
    partition_id = request.field("computer_partition_id")
    app.read(lambda m: m.partition_or_404(partition_id, computer_id))
    return _xml(dumps(app.issue_certificate(computer_id, partition_id)))


def computer_status(app: ProxyApp, request: Request) -> Response:
    computer_id = request.field("computer_id")

    def status(m: Master) -> dict[str, str]:
        if m.store.computer(computer_id) is None and computer_id != m.computer_id:
            raise NotFound(f"computer {computer_id!r} is not registered")
        return {"text": "#access computer known to the stand-alone master", "user": "SlapOS Proxy"}

    return _xml(dumps(app.read(status)))


def hosting_ip_list(app: ProxyApp, request: Request) -> Response:
    computer_id = request.field("computer_id")
    partition_id = request.field("computer_partition_id")
    return _xml(dumps(app.read(lambda m: m.tree_addresses(partition_id, computer_id))))


def partition_status(app: ProxyApp, request: Request) -> Response:
    """The last report about a partition's instance, as a real master words it.

    Without a partition (what 1.26.1's proxy is asked) the answer stays its own."""
    computer_id = request.form.get("computer_id")
    partition_id = request.form.get("computer_partition_id")
    if not computer_id or not partition_id:
        return _xml(dumps("Not implemented."))

    def read(m: Master) -> dict[str, Any]:
        row = m.partition_or_404(partition_id, computer_id)
        found = status.of_instance(m.store.conn, computer_id, partition_id)
        if found is None or found.title != (row["partition_reference"] or ""):
            return {"text": f"#error no data found for {partition_id}", "no_data": 1}
        return {
            "text": status.access_status_message(found),
            "user": "SlapOS Proxy",
            "created_at": found.reported_at,
            "state": found.status,
            "last_error": found.error,
            "last_error_at": found.error_at,
        }

    return _xml(dumps(app.read(read)))


def software_products(app: ProxyApp, request: Request) -> Response:
    product = request.form.get("software_product_reference")
    url = request.form.get("software_release_url")
    if (product is None) == (url is None):
        raise BadRequest("give exactly one of software_product_reference and software_release_url")
    if url is not None:
        products = app.config.software_product_list
        return _xml(dumps([url] if url in products.values() else []))
    found = app.config.software_product_list.get(product or "")
    return _xml(dumps([found] if found else []))


# ---- node: format and software releases ---------------------------------------------------


def load_computer_configuration(app: ProxyApp, request: Request) -> Response:
    data = loads(request.field("xml"))
    if not isinstance(data, dict):
        raise BadRequest("xml must be a marshalled dictionary describing the computer")
    try:
        reference = str(data["reference"])
        partitions = []
        for entry in data.get("partition_list") or []:
            tap = entry.get("tap") or {}
            interface = (tap.get("name") if isinstance(tap, dict) else None) or entry["reference"]
            addresses = [
                (str(interface), str(item["addr"]), item.get("netmask"))
                for item in entry.get("address_list") or []
            ]
            partitions.append((str(entry["reference"]), addresses))
    except (KeyError, TypeError, AttributeError) as exc:
        raise BadRequest(f"computer description lacks {exc}") from None
    app.write(
        request, lambda m: m.format(reference, partitions, data.get("address"), data.get("netmask"))
    )
    return _text("done")


def supply(app: ProxyApp, request: Request) -> Response:
    url, computer_id, state = (request.field(k) for k in ("url", "computer_id", "state"))
    app.write(request, lambda m: m.supply(computer_id, url, state))
    return _text(f"Supplied {url!r} to be {state}")


def destroyed_software(app: ProxyApp, request: Request) -> Response:
    url, computer_id = request.field("url"), request.field("computer_id")

    def remove(m: Master) -> None:
        m.store.remove_software(computer_id, url)
        status.forget(m.store.conn, status.SOFTWARE, computer_id, url)

    app.write(request, remove)
    return _text("OK")


def software_report(state: str) -> Handler:
    """buildingSoftwareRelease, availableSoftwareRelease, softwareReleaseError: kept.

    The answer stays upstream's proxy's ("Ignored"): nodes do not read it."""

    def handler(app: ProxyApp, request: Request) -> Response:
        computer_id = request.field("computer_id")
        url = request.field("url")
        message = request.form.get("error_log") or ""

        def keep(m: Master) -> None:
            if m.store.computer(computer_id) is None and computer_id != m.computer_id:
                raise NotFound(f"computer {computer_id!r} is not registered")
            status.record(
                m.store.conn,
                status.SOFTWARE,
                computer_id,
                url,
                state,
                now=m.now(),
                message=message,
            )

        app.write(request, keep, report=True)
        return _text("Ignored")

    return handler


def partition_report(state: str) -> Handler:
    """startedComputerPartition, stoppedComputerPartition, softwareInstanceError: kept."""

    def handler(app: ProxyApp, request: Request) -> Response:
        computer_id = request.field("computer_id")
        partition_id = request.field("computer_partition_id")
        message = request.form.get("error_log") or ""

        def keep(conn: Any) -> bool:
            return status.record_instance(
                conn, computer_id, partition_id, state, now=app.now(), message=message
            )

        if not app.report(keep):
            app.read(lambda m: m.partition_or_404(partition_id, computer_id))  # 404
            app.write(request, lambda m: keep(m.store.conn), report=True)  # created meanwhile
        return _text("Ignored")

    return handler


def ignored_usage(app: ProxyApp, request: Request) -> Response:
    return _text("Ignored")


def related_instances(app: ProxyApp, request: Request) -> Response:
    return _text("")


# ---- instances ------------------------------------------------------------------------------


def _requester(master: Master, request: Request) -> Requester:
    header = request.partition_header()
    if header is not None:
        return master.requester(header[0], header[1], strict=True)
    partition_id = request.form.get("computer_partition_id")
    if partition_id is None:
        return USER
    return master.requester(request.form.get("computer_id"), partition_id, strict=False)


def request_partition(app: ProxyApp, request: Request) -> Response:
    state = _decode(request, "state", required=True)
    if state is not None and not isinstance(state, str):
        raise BadRequest("state must be a marshalled string or None")
    shared = _decode(request, "shared_xml", False)
    spec = InstanceRequest(
        title=request.field("partition_reference"),
        software_release=request.field("software_release"),
        software_type=request.field("software_type"),
        parameters=_dict_field(request, "partition_parameter_xml"),
        filter_kw=_dict_field(request, "filter_xml"),
        state=state,
        shared=bool(shared),
    )
    master_url = spec.filter_kw.get("master_url")
    if master_url:
        from slapos.proxy.forward import is_self

        is_self(app, request, str(master_url))  # the HTTP check, outside the transaction
    result = app.request_instance(request, spec, lambda m: _requester(m, request))
    return _xml(dumps(result.wire))


def publish_connection(app: ProxyApp, request: Request) -> Response:
    computer_id = request.field("computer_id")
    partition_id = request.field("computer_partition_id")
    parameters = _dict_field(request, "connection_xml")
    shared = request.form.get("slave_reference")
    if shared is not None and shared.strip().lower() in ("", "none"):
        shared = None
    app.write(request, lambda m: m.publish(computer_id, partition_id, parameters, shared))
    return _text("done")


def destroyed_partition(app: ProxyApp, request: Request) -> Response:
    computer_id = request.field("computer_id")
    partition_id = request.field("computer_partition_id")

    def destroy(m: Master) -> str | None:
        reason: str | None = m.destroyed(partition_id, computer_id)
        if not reason:
            status.forget(m.store.conn, status.INSTANCE, computer_id, partition_id)
        return reason

    reason = app.write(request, destroy)
    return _text(reason or "OK")


def bang(app: ProxyApp, request: Request) -> Response:
    computer_id = request.field("computer_id")
    partition_id = request.field("computer_partition_id")
    app.write(request, lambda m: m.bang(partition_id, computer_id))
    return _text("OK")


def rename(app: ProxyApp, request: Request) -> Response:
    computer_id = request.field("computer_id")
    partition_id = request.field("computer_partition_id")
    new_name = request.field("new_name")
    app.write(request, lambda m: m.rename(partition_id, computer_id, new_name))
    return _text("done")


def computer_bang(app: ProxyApp, request: Request) -> Response:
    return _xml(dumps(""))


def request_computer(app: ProxyApp, request: Request) -> Response:
    title = request.field("computer_title")
    if not title:
        raise BadRequest("computer_title is empty")
    app.write(request, lambda m: m.store.add_computer(title))
    return _xml(dumps(WireObject("Computer", (title,), {"_computer_id": title})))


def computer_certificate(app: ProxyApp, request: Request) -> Response:
    computer_id = request.field("computer_id")
    app.read(lambda m: m.computer_document(computer_id))
    return _xml(dumps(app.issue_certificate(computer_id, None)))


def revoke_certificate(app: ProxyApp, request: Request) -> Response:
    """Revoke the certificate the proxy issued to a computer (Computer.revokeCertificate)."""
    from slapos.proxy.identity import certificate_identity, revoke

    identity = certificate_identity(request.field("computer_id"), None)
    app.write(request, lambda m: revoke(m, identity, app.now()))
    return _text("")


def hateoas_url(app: ProxyApp, request: Request) -> Response:
    return _text(f"{request.base_url}/hateoas/")


def run_id(app: ProxyApp, request: Request) -> Response:
    return _text(app.run_id)


def routes() -> dict[str, tuple[frozenset[str], Handler]]:
    table: dict[str, tuple[frozenset[str], Handler]] = {
        "getFullComputerInformation": (GET, full_computer_information),
        "getComputerInformation": (GET, full_computer_information),
        "registerComputerPartition": (GET, register_partition),
        "getComputerPartitionCertificate": (GET, partition_certificate),
        "getComputerPartitionStatus": (GET, partition_status),
        "getComputerStatus": (GET, computer_status),
        "getHostingSubscriptionIpList": (GET, hosting_ip_list),
        "getSoftwareReleaseListFromSoftwareProduct": (GET, software_products),
        "getHateoasUrl": (GET, hateoas_url),
        "getRunId": (GET, run_id),
        "requestComputerPartition": (POST, request_partition),
        "supplySupply": (POST, supply),
        "loadComputerConfigurationFromXML": (POST, load_computer_configuration),
        "setComputerPartitionConnectionXml": (POST, publish_connection),
        "buildingSoftwareRelease": (POST, software_report("building")),
        "availableSoftwareRelease": (POST, software_report("available")),
        "softwareReleaseError": (POST, software_report(status.ERROR)),
        "destroyedSoftwareRelease": (POST, destroyed_software),
        "softwareInstanceError": (POST, partition_report(status.ERROR)),
        "startedComputerPartition": (POST, partition_report("started")),
        "stoppedComputerPartition": (POST, partition_report("stopped")),
        "destroyedComputerPartition": (POST, destroyed_partition),
        "useComputer": (POST, ignored_usage),
        "computerBang": (POST, computer_bang),
        "softwareInstanceBang": (POST, bang),
        "softwareInstanceRename": (POST, rename),
        "updateComputerPartitionRelatedInstanceList": (POST, related_instances),
        "requestComputer": (POST, request_computer),
        "generateComputerCertificate": (POST, computer_certificate),
        "revokeComputerCertificate": (POST, revoke_certificate),
    }
    return {f"/{name}": route for name, route in table.items()}
