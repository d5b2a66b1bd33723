"""Who may do what on the proxy: identities fail closed, on every API.

A call's principal comes from its client certificate when `tls_ca` is set (the common
name the server layer puts under `PEER_KEY`), and is a user otherwise:

* `<computer_id>/<partition_id>`: a partition. It acts only on that partition: its own
  description and certificate, its connection parameters (and those of the shared
  instances it hosts), its status reports, bang and rename, and requests made as itself;
* `computer:<computer_id>`: a node. It acts only on that computer and its partitions;
* `user:<name>`: a user, with full access;
* any other name is refused (403), and so is a revoked one.

A name may end in `#<n>`: the proxy issues `COMP/slappart0#1` after `COMP/slappart0` was
revoked (revocation is by common name, the one thing the server layer passes on).

A call may also declare a partition identity, as upstream's library does on every POST
of a `ComputerPartition` (`Authorization: X-SlapPartition computer_id=.., ...`), the
legacy API and JSON-RPC alike. The declared partition then acts, under the partition
rules: a declaration that names partition A on a call aimed at partition B is refused
(403), with or without TLS, except what the protocol lets A do to B (requesting or
updating its own child, publishing for a shared instance it hosts). With TLS, the
declaration must be the certificate's own partition, or a partition of the certificate's
computer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slapos.proxy.model import Forbidden
from slapos.proxy.wsgi import PEER_KEY  # the client certificate's common name

if TYPE_CHECKING:
    from slapos.proxy.app import ProxyApp
    from slapos.proxy.request import Request
    from slapos.proxy.service import Master

COMPUTER_PREFIX = "computer:"
USER_PREFIX = "user:"
FORMS = "<computer>/<partition>, computer:<computer> or user:<name>"

#: legacy routes a partition may call, and the form fields naming the partition acted on
PARTITION_ROUTES = {
    "/registerComputerPartition": ("computer_reference", "computer_partition_reference"),
    "/getComputerPartitionCertificate": ("computer_id", "computer_partition_id"),
    "/getHostingSubscriptionIpList": ("computer_id", "computer_partition_id"),
    "/setComputerPartitionConnectionXml": ("computer_id", "computer_partition_id"),
    "/softwareInstanceError": ("computer_id", "computer_partition_id"),
    "/softwareInstanceBang": ("computer_id", "computer_partition_id"),
    "/softwareInstanceRename": ("computer_id", "computer_partition_id"),
    "/startedComputerPartition": ("computer_id", "computer_partition_id"),
    "/stoppedComputerPartition": ("computer_id", "computer_partition_id"),
    "/destroyedComputerPartition": ("computer_id", "computer_partition_id"),
    "/updateComputerPartitionRelatedInstanceList": ("computer_id", "computer_partition_id"),
    "/requestComputerPartition": ("computer_id", "computer_partition_id"),
}
#: legacy routes a computer may call, each naming the computer it acts on
COMPUTER_ROUTES = frozenset(PARTITION_ROUTES) - {"/requestComputerPartition"} | {
    "/" + name
    for name in (
        "getFullComputerInformation", "getComputerInformation", "getComputerPartitionStatus",
        "getComputerStatus", "supplySupply", "loadComputerConfigurationFromXML",
        "buildingSoftwareRelease", "availableSoftwareRelease", "softwareReleaseError",
        "destroyedSoftwareRelease", "useComputer", "computerBang", "requestComputer",
        "generateComputerCertificate", "revokeComputerCertificate",
    )
}  # fmt: skip
#: legacy routes whose computer is named by another field than `computer_id`
_COMPUTER_FIELD = {
    "/registerComputerPartition": "computer_reference",
    "/requestComputer": "computer_title",
}
#: calls anyone may make: they name nothing
ANYONE = frozenset(
    {"/", "/getHateoasUrl", "/getRunId", "/getSoftwareReleaseListFromSoftwareProduct"}
)
_JSONRPC_ANYONE = frozenset({"/slapos.get.v0.hateoas_url"})
#: JSON-RPC methods that act on one instance (`instance_guid`), as a partition may
_JSONRPC_INSTANCE = frozenset(
    "/slapos." + name
    for name in (
        "get.v0.software_instance",
        "put.v0.software_instance_reported_state",
        "put.v0.software_instance_error",
        "put.v0.software_instance_connection_parameter",
        "put.v0.software_instance_bang",
        "put.v0.software_instance_title",
        "get.v0.software_instance_certificate",
    )
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: kind "user", "computer" or "partition", and what it is named."""

    kind: str
    computer_id: str = ""
    partition_id: str = ""
    common_name: str = ""

    def describe(self) -> str:
        if self.kind == "partition":
            return f"partition {self.computer_id}/{self.partition_id}"
        if self.kind == "computer":
            return f"computer {self.computer_id}"
        return f"user {self.common_name or '(no certificate)'}"


USER = Principal("user")


def identity_of(common_name: str) -> str:
    """The identity a certificate name stands for: `COMP/slappart0#2` -> `COMP/slappart0`."""
    base, sep, generation = common_name.rpartition("#")
    return base if sep and base and generation.isdigit() else common_name


def parse_common_name(common_name: str | None) -> Principal | None:
    """The principal a certificate name denotes, or None if it is no SlapOS identity."""
    if not common_name:
        return None
    name = identity_of(common_name)
    if name.startswith(USER_PREFIX):
        user = name[len(USER_PREFIX) :]
        return Principal("user", common_name=common_name) if user else None
    if name.startswith(COMPUTER_PREFIX):
        computer = name[len(COMPUTER_PREFIX) :]
        if not computer or "/" in computer:
            return None
        return Principal("computer", computer, common_name=common_name)
    if name.count("/") == 1:
        computer, partition = name.split("/")
        if computer and partition and ":" not in computer:
            return Principal("partition", computer, partition, common_name)
    return None


def certificate_identity(computer_id: str, partition_id: str | None) -> str:
    """The identity the proxy issues a node or partition certificate for."""
    if partition_id:
        return f"{computer_id}/{partition_id}"
    return f"{COMPUTER_PREFIX}{computer_id}"


def authorize(app: ProxyApp, request: Request) -> None:
    """Refuse (403, one line) what the caller may not do; see the module docstring."""
    declared = request.partition_header()
    tls = app.config.tls is not None and app.config.tls.ca is not None
    if not tls and declared is None:
        return  # plain HTTP, nothing declared: a user, full access
    principal = _certificate_principal(app, request) if tls else USER
    if declared is not None:
        principal = _declared(principal, declared)
    if principal.kind == "user":
        return
    path = request.path
    if path in ANYONE or path in _JSONRPC_ANYONE:
        return
    if path.startswith("/slapos."):
        _authorize_jsonrpc(app, request, principal, declared is not None)
    elif principal.kind == "partition":
        _authorize_partition(request, principal, declared is not None)
    else:
        _authorize_computer(request, principal)


def _certificate_principal(app: ProxyApp, request: Request) -> Principal:
    common_name = request.environ.get(PEER_KEY)
    principal = parse_common_name(common_name)
    if principal is None:
        raise Forbidden(
            f"certificate name {common_name!r} is not a SlapOS identity of this proxy "
            f"(expected {FORMS})"
        )
    if app.read(lambda m: m.store.is_revoked(str(common_name))):
        raise Forbidden(f"certificate {common_name!r} has been revoked")
    return principal


def _declared(principal: Principal, declared: tuple[str | None, str | None]) -> Principal:
    """The partition a call declares (X-SlapPartition), as far as `principal` may."""
    computer_id, partition_id = declared
    if not computer_id or not partition_id:
        raise Forbidden("X-SlapPartition must name computer_id and computer_partition_id")
    acting = Principal("partition", computer_id, partition_id)
    if principal.kind == "partition" and acting != Principal(
        "partition", principal.computer_id, principal.partition_id
    ):
        raise Forbidden(
            f"the certificate of {principal.describe()} may not act as partition "
            f"{computer_id}/{partition_id}"
        )
    if principal.kind == "computer" and computer_id != principal.computer_id:
        raise Forbidden(
            f"the certificate of {principal.describe()} may not act as partition "
            f"{computer_id}/{partition_id}"
        )
    return acting


def _refuse(principal: Principal, what: str) -> Forbidden:
    return Forbidden(f"{principal.describe()} may only act on itself, not on {what}")


def _authorize_partition(request: Request, principal: Principal, declared: bool) -> None:
    fields = PARTITION_ROUTES.get(request.path)
    if fields is None:
        raise Forbidden(f"{principal.describe()} may not call {request.path}")
    named = (request.form.get(fields[0]), request.form.get(fields[1]))
    if request.path == "/requestComputerPartition" and declared and named == (None, None):
        return  # requests as the partition it declared (the requester is the header's)
    if named != (principal.computer_id, principal.partition_id):
        raise _refuse(principal, f"partition {named[0]}/{named[1]}")


def _authorize_computer(request: Request, principal: Principal) -> None:
    path = request.path
    if path == "/shacache" or path.startswith("/shacache/"):
        if request.method in ("GET", "HEAD"):
            return  # a node downloads from the binary cache
        raise Forbidden(f"{principal.describe()} may not upload to the binary cache")
    if path not in COMPUTER_ROUTES:
        raise Forbidden(f"{principal.describe()} may not call {path}")
    if path == "/loadComputerConfigurationFromXML":
        named = _described_computer(request)
    else:
        named = request.form.get(_COMPUTER_FIELD.get(path, "computer_id"))
    if named != principal.computer_id:
        raise _refuse(principal, f"computer {named}")


def _described_computer(request: Request) -> str | None:
    from slapos.slap.marshal import MarshalError, loads

    try:
        data = loads(request.form.get("xml") or "")
    except MarshalError:
        return None  # the handler answers 400
    return str(data.get("reference")) if isinstance(data, dict) else None


def _authorize_jsonrpc(
    app: ProxyApp, request: Request, principal: Principal, declared: bool
) -> None:
    path = request.path
    try:
        body = json.loads(request.body() or b"null")
    except ValueError:
        return  # the handler answers 400
    if not isinstance(body, dict):
        return
    if path == "/slapos.post.v0.software_instance":
        if principal.kind == "partition" and declared:
            return  # requests a child as itself
        raise Forbidden(
            f"{principal.describe()} requests instances only as a partition, named in "
            "X-SlapPartition"
        )
    if path in _JSONRPC_INSTANCE:
        guid = body.get("instance_guid")
        target = app.read(lambda m: _instance_partition(m, str(guid)))
        if target is None:
            raise _refuse(principal, f"instance {guid}")
        if principal.kind == "partition" and target == (
            principal.computer_id,
            principal.partition_id,
        ):
            return
        if principal.kind == "computer" and target[0] == principal.computer_id:
            return
        raise _refuse(principal, f"instance {guid} (partition {target[0]}/{target[1]})")
    if principal.kind == "computer" and "computer_guid" in body:
        if body["computer_guid"] == principal.computer_id:
            return
        raise _refuse(principal, f"computer {body['computer_guid']}")
    raise Forbidden(f"{principal.describe()} may not call {path.lstrip('/')}")


def _instance_partition(master: Master, guid: str) -> tuple[str, str] | None:
    """(computer, partition) holding instance `guid`; a shared one's host partition."""
    parts = guid.split("___", 2)
    if len(parts) != 3:
        return None
    title, requested_by, shared = parts
    if shared == "1":
        row = master.store.shared(f"{requested_by}_{title}")
        if row is None:
            return None
        return str(row["computer_reference"]), str(row["hosted_by"])
    row = master.store.instance(title, requested_by)
    if row is None:
        return None
    return str(row["computer_reference"]), str(row["reference"])


def revoke(master: Master, name: str, now: float) -> list[str]:
    """Revoke the certificate of identity `name` (or the exact certificate name given);
    the common names refused from now on. A certificate the proxy issued is forgotten, so
    the next one it issues for that identity has a new name (`...#1`)."""
    import json as json_module

    identity = identity_of(name)
    store = master.store
    refused = []
    stored_key = f"certificate/{identity}"
    stored = store.get_config(stored_key)
    if stored is not None:
        issued_name = str(json_module.loads(stored).get("name") or identity)
        if name in (identity, issued_name):
            store.delete_config(stored_key)
            if store.revoke_certificate(issued_name, now):
                refused.append(issued_name)
    if not refused and store.revoke_certificate(name, now):
        refused.append(name)  # a certificate made outside the proxy, or an older one
    return refused
