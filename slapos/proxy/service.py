"""What the stand-alone master does (protocol.md §8), independent of HTTP encodings.

Both the legacy SLAP routes and the JSON-RPC methods call these functions inside one
database transaction. Failures raise `ProxyHTTPError` subclasses (`slapos.proxy.model`)
carrying the HTTP status and a one-line reason. Objects handed to the node are
`WireObject`s shaped exactly like upstream's proxy answers (`slapos.proxy.documents`, §4.7).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

from slapos.proxy.documents import partition_object, shared_entries, software_release
from slapos.proxy.model import (
    USER,
    BadRequest,
    Forbidden,
    Forwarder,
    ForwardNeeded,
    InstanceRequest,
    NotFound,
    Requester,
    RequestResult,
)
from slapos.proxy.store import Store
from slapos.slap.instance_xml import dict2xml, xml2dict
from slapos.slap.marshal import WireObject, dumps

log = logging.getLogger(__name__)

STATES = ("started", "stopped", "destroyed")
SUPPLY_STATES = ("available", "destroyed")
DEFAULT_SOFTWARE_TYPE = "default"
APACHE_FRONTEND_URL = (
    "http://git.erp5.org/gitweb/slapos.git/blob_plain/HEAD:/software/apache-frontend/software.cfg"
)
KVM_FRONTEND_URL = (
    "http://git.erp5.org/gitweb/slapos.git/blob_plain/refs/tags/slapos-0.92:/software/kvm/"
    "software.cfg"
)


class Master:
    """The proxy's business rules over one Store (one transaction)."""

    def __init__(
        self,
        store: Store,
        computer_id: str,
        now: Callable[[], float],
        *,
        forward_target: Callable[[InstanceRequest], str | None] | None = None,
        forwarder: Forwarder | None = None,
        strict_hosting: bool = False,
    ) -> None:
        self.store = store
        #: only a shared instance's host may publish its connection parameters (with TLS
        #: identities); upstream lets any partition publish, and so become the host
        self.strict_hosting = strict_hosting
        self.computer_id = computer_id
        self.now = now
        self.forward_target = forward_target
        self.forwarder = forwarder

    # ---- identity -----------------------------------------------------------------------
    def requester(
        self, computer_id: str | None, partition_id: str | None, *, strict: bool
    ) -> Requester:
        """The requester named by a header (strict: must exist) or a form."""
        if partition_id is None:
            return USER
        row = self.store.partition(partition_id, computer_id or "") if computer_id else None
        if row is None and strict:
            raise BadRequest(
                f"No partition matching the authorization header: ({computer_id} / {partition_id})"
            )
        root = ""
        if row is not None:
            root = row["requested_by"] or row["partition_reference"] or ""
        return Requester(partition_id, root, computer_id)

    def partition_or_404(self, partition_id: str, computer_id: str) -> Any:
        row = self.store.partition(partition_id, computer_id)
        if row is None:
            raise NotFound(f"unknown partition {partition_id!r} on computer {computer_id!r}")
        return row

    # ---- node view ----------------------------------------------------------------------
    def computer_document(self, computer_id: str) -> WireObject:
        """The Computer answered by getFullComputerInformation (§3.2, §4.7.1)."""
        if self.store.computer(computer_id) is None and computer_id != self.computer_id:
            raise NotFound(f"computer {computer_id!r} is not registered")
        software = []
        for row in self.store.software_list(computer_id):
            release = software_release(row["url"], computer_id)
            release.state["_requested_state"] = row["requested_state"]
            software.append(release)
        addresses = self.store.addresses_by_partition(computer_id)
        partitions = [
            partition_object(row, addresses.get(row["reference"], []))
            for row in self.store.partitions(computer_id)
        ]
        return WireObject(
            "Computer",
            (computer_id,),
            {
                "_computer_id": computer_id,
                "_computer_partition_list": partitions,
                "_software_release_list": software,
            },
        )

    def partition_document(self, partition_id: str, computer_id: str) -> WireObject:
        row = self.partition_or_404(partition_id, computer_id)
        return partition_object(row, self.store.addresses(partition_id, computer_id))

    # ---- supply -------------------------------------------------------------------------
    def supply(self, computer_id: str, url: str, state: str) -> None:
        if state not in SUPPLY_STATES:
            raise BadRequest(f"state must be available or destroyed, not {state!r}")
        if not url:
            raise BadRequest("software release url is empty")
        self.store.supply(computer_id, url, state)

    # ---- format -------------------------------------------------------------------------
    def format(
        self,
        computer_id: str,
        partitions: list[tuple[str, list[tuple[str, str, str | None]]]],
        address: str | None = None,
        netmask: str | None = None,
    ) -> None:
        if not computer_id:
            raise BadRequest("computer reference is empty")
        seen: set[str] = set()
        for partition_id, _ in partitions:
            if not partition_id or partition_id in seen:
                raise BadRequest(f"bad or repeated partition reference {partition_id!r}")
            seen.add(partition_id)
        self.store.format_computer(computer_id, address, netmask, partitions)

    # ---- request ------------------------------------------------------------------------
    def request(self, spec: InstanceRequest, who: Requester) -> RequestResult:
        """Allocate or update an instance (§8.4), a shared instance (§8.7), or forward."""
        result = self._request(spec, who)
        result.requested_by = who.requested_by
        return result

    def _request(self, spec: InstanceRequest, who: Requester) -> RequestResult:
        if not spec.title:
            raise BadRequest("partition_reference (the instance title) is empty")
        if not spec.software_release:
            raise BadRequest("software_release is empty")
        if spec.state is not None and spec.state not in STATES:
            raise BadRequest(f"state must be started, stopped or destroyed, not {spec.state!r}")
        if not spec.software_type:
            spec.software_type = DEFAULT_SOFTWARE_TYPE
        if spec.shared:
            fake = self._frontend_shortcut(spec)
            if fake is not None:
                return RequestResult(fake, "fake")
            computer = str(spec.filter_kw.get("computer_guid") or self.computer_id)
            reference = f"{who.requested_by}_{spec.title}"
            existing = self.store.shared(reference, computer)
        else:
            computer = str(spec.filter_kw.get("computer_guid") or self.computer_id)
            existing = self.store.instance(spec.title, who.requested_by)
        if existing is None and self.forward_target is not None:
            target = self.forward_target(spec)
            if target is not None:
                return self._forward(target, spec, who)
        if spec.shared:
            return self._request_shared(spec, who, computer)
        return self._request_instance(spec, who, computer, existing)

    def _forward(self, target: str, spec: InstanceRequest, who: Requester) -> RequestResult:
        if self.forwarder is None:
            # the caller forwards outside the transaction, then calls forwarded()
            raise ForwardNeeded(target, who)
        wire = self.forwarder(target, spec, who)
        return self.forwarded(target, spec, who, wire)

    def forwarded(
        self, target: str, spec: InstanceRequest, who: Requester, wire: WireObject
    ) -> RequestResult:
        """Remember a request another master answered."""
        self.store.remember_forward(
            f"{who.requester_id}_{spec.title}", target, forget=spec.state == "destroyed"
        )
        return RequestResult(
            wire, "forwarded", state=spec.state or "started", requested_by=who.requested_by
        )

    def _request_instance(
        self, spec: InstanceRequest, who: Requester, computer: str, row: Any
    ) -> RequestResult:
        store = self.store
        state = spec.state
        values: dict[str, Any] = {}
        if row is None:
            row = store.free_partition(computer)
            if row is None:
                log.warning("No more free computer partition (request of %r)", spec.title)
                raise NotFound(f"No free computer partition found for: {spec.title}")
            values.update(slap_state="busy", partition_reference=spec.title)
            if who.requested_by:
                values["requested_by"] = who.requested_by
            if who.requester_id:
                values["requester_id"] = who.requester_id
        else:
            if who.requested_by:
                root = store.instance(who.requested_by, "")
                if root is not None and root["requested_state"] != "started":
                    # a stopped or destroyed tree takes its children along (§8.5)
                    state = root["requested_state"]
            if who.requester_id and row["requester_id"] != who.requester_id:
                values["requester_id"] = who.requester_id
        xml = dict2xml(spec.parameters)
        changed = row["timestamp"] is None
        for column, value in (
            ("requested_state", state or row["requested_state"]),
            ("software_release", spec.software_release),
            ("software_type", spec.software_type),
            ("xml", xml),
        ):
            if row[column] != value:
                values[column] = value
                changed = True
        timestamp = row["timestamp"]
        if changed:
            timestamp = self.now()
            values["timestamp"] = timestamp
        store.update_partition(row["reference"], row["computer_reference"], **values)
        row = {**dict(row), **values}  # what a new SELECT would return
        addresses = store.addresses(row["reference"], row["computer_reference"])
        parameters: dict[str, Any] = dict(xml2dict(row["xml"]))
        parameters["timestamp"] = str(row["timestamp"])
        wire = WireObject(
            "SoftwareInstance",
            (),
            {
                "_connection_dict": xml2dict(row["connection_xml"]),
                "_parameter_dict": parameters,
                "connection_xml": row["connection_xml"],
                "slap_computer_id": row["computer_reference"],
                "slap_computer_partition_id": row["reference"],
                "slap_software_release_url": row["software_release"],
                "slap_server_url": "slap_server_url",
                "slap_software_type": row["software_type"],
                "_instance_guid": f"{row['computer_reference']}-{row['reference']}",
                "_requested_state": state or "started",
                "ip_list": addresses,
            },
        )
        return RequestResult(wire, "instance", row, state or "started", timestamp)

    def _request_shared(
        self, spec: InstanceRequest, who: Requester, computer: str
    ) -> RequestResult:
        store = self.store
        instance_guid = spec.filter_kw.get("instance_guid")
        host_reference = None
        if instance_guid is not None:
            host_reference = str(instance_guid)
            if host_reference.startswith(computer):
                host_reference = host_reference[len(computer) + 1 :]
        host = store.host_candidates(
            computer, spec.software_release, spec.software_type, host_reference
        )
        if host is None:
            criteria = [spec.software_release, computer, spec.software_type]
            if host_reference is not None:
                criteria.append(host_reference)
            log.warning("No partition corresponding to slave request: %s", criteria)
            raise NotFound(f"No partition corresponding to slave request: {criteria}")
        reference = f"{who.requested_by}_{spec.title}"
        entry: dict[str, Any] = {
            "slave_title": reference,
            "slap_software_type": spec.software_type,
            "slave_reference": reference,
        }
        entry.update(spec.parameters)
        entries = shared_entries(host["slave_instance_list"])
        changed = False
        if spec.state == "destroyed":
            kept = [e for e in entries if e.get("slave_reference") != reference]
            changed = len(kept) != len(entries)
            entries = kept
        else:
            for index, existing in enumerate(entries):
                if existing.get("slave_reference") == reference:
                    if existing != entry:
                        entries[index] = entry
                        changed = True
                    break
            else:
                entries.append(entry)
                changed = True
        values: dict[str, Any] = {"slave_instance_list": dumps(entries)}
        if changed:
            values["timestamp"] = self.now()
        store.update_partition(host["reference"], computer, **values)
        row = store.shared(reference, computer)
        if spec.state == "destroyed":
            # Upstream keeps the row of a destroyed shared instance forever, so that it
            # keeps being listed; we forget it (docs/proxy.rst).
            if row is not None:
                store.remove_shared(reference, computer)
        elif row is None:
            store.add_shared(reference, computer, host["reference"], who.requester_id)
            row = store.shared(reference, computer)
        elif who.requester_id and row["requester_id"] != who.requester_id:
            store.update_shared(reference, computer, requester_id=who.requester_id)
        hosted_by = row["hosted_by"] if row is not None else host["reference"]
        connection = xml2dict(row["connection_xml"]) if row is not None else {}
        wire = WireObject(
            "SoftwareInstance",
            (),
            {
                "_connection_dict": connection,
                "_parameter_dict": xml2dict(dict2xml(spec.parameters)),
                "slap_computer_id": host["computer_reference"],
                "slap_computer_partition_id": hosted_by,
                "slap_software_release_url": host["software_release"],
                "slap_server_url": "slap_server_url",
                "slap_software_type": host["software_type"],
                "ip_list": store.addresses(host["reference"], computer),
            },
        )
        return RequestResult(wire, "shared", host, "started")

    def _frontend_shortcut(self, spec: InstanceRequest) -> WireObject | None:
        """Historic frontends the proxy cannot provide: answer with the backend URL (§8.7)."""
        params = spec.parameters
        if self.forward_target is not None and self.forward_target(spec) is not None:
            return None
        connection: dict[str, Any] | None = None
        label = ""
        if spec.software_release == APACHE_FRONTEND_URL and spec.software_type in (
            "",
            "RootSoftwareInstance",
            DEFAULT_SOFTWARE_TYPE,
        ):
            url = params.get("url")
            if url:
                connection = {"secure_access": url, "domain": urlparse(str(url)).netloc}
                label = f"Fake frontend for {url}"
        elif spec.software_release == KVM_FRONTEND_URL and spec.software_type == "frontend":
            host, port = params.get("host"), params.get("port")
            if host and port:
                host = str(host)
                if ":" in host and not host.startswith("["):
                    host = f"[{host}]"
                url = f"https://{host}:{port}/"
                connection = {"url": url, "domainname": host, "port": port, "path": "/"}
                label = f"Fake KVM VNC frontend for {url}"
        if connection is None:
            return None
        log.warning("bypassing frontend request %r: %s", spec.title, label)
        return WireObject(
            "ComputerPartition",
            ("", label, None),
            {
                "_computer_id": "",
                "_partition_id": label,
                "_request_dict": None,
                "slap_computer_id": "",
                "slap_computer_partition_id": "",
                "_parameter_dict": {},
                "_connection_dict": connection,
            },
        )

    # ---- connection parameters --------------------------------------------------------------
    def publish(
        self,
        computer_id: str,
        partition_id: str,
        parameters: Mapping[str, Any],
        shared_reference: str | None,
    ) -> None:
        xml = dict2xml(parameters)
        row = self.partition_or_404(partition_id, computer_id)
        if not shared_reference:
            if row["connection_xml"] != xml:
                self.store.update_partition(partition_id, computer_id, connection_xml=xml)
                self._touch_requester(row["requester_id"], computer_id, row["requested_by"])
            return
        self.publish_shared(shared_reference, xml, hosted_by=partition_id, computer_id=computer_id)

    def publish_shared(
        self,
        reference: str,
        xml: str,
        *,
        hosted_by: str | None = None,
        computer_id: str | None = None,
    ) -> None:
        row = self.store.shared(reference, computer_id)
        if row is None:
            # The host may publish for a shared instance destroyed meanwhile: nothing to do.
            log.info("connection parameters for unknown shared instance %r ignored", reference)
            return
        if self.strict_hosting and hosted_by is not None and row["hosted_by"] != hosted_by:
            raise Forbidden(f"shared instance {reference!r} is hosted by {row['hosted_by']!r}")
        values: dict[str, Any] = {"connection_xml": xml}
        if hosted_by is not None:
            values["hosted_by"] = hosted_by
        self.store.update_shared(reference, row["computer_reference"], **values)
        if row["connection_xml"] != xml and row["requester_id"]:
            # reference is '<tree root title>_<title>': the requester is in that tree
            self._touch_requester(
                row["requester_id"], row["computer_reference"], None, shared=reference
            )

    def _touch_requester(
        self,
        requester_id: str,
        computer_id: str,
        tree: str | None,
        *,
        shared: str | None = None,
    ) -> None:
        """Wake the partition that requested an instance up (its node processes it again
        and reads the new connection parameters). `requester_id` is a partition reference
        only: on a master with several computers, the requester is the partition of that
        reference in the same instance tree, on whichever computer it is."""
        if not requester_id:
            return
        now = self.now()
        found = [
            row
            for row in self.store.busy_references(requester_id)
            if (tree and tree in (row["requested_by"], row["partition_reference"]))
            or (
                shared is not None
                and shared.startswith(f"{row['requested_by'] or row['partition_reference']}_")
            )
        ]
        if not found:  # a tree we cannot tell: the requester's own computer, as upstream
            self.store.touch(requester_id, computer_id, now)
        for row in found:
            self.store.touch(row["reference"], row["computer_reference"], now)

    def publish_instance(
        self, title: str, requested_by: str, parameters: Mapping[str, Any]
    ) -> None:
        row = self.store.instance(title, requested_by)
        if row is None:
            raise Forbidden(f"No software instance {title} found.")
        xml = dict2xml(parameters)
        if row["connection_xml"] != xml:
            self.store.update_partition(
                row["reference"], row["computer_reference"], connection_xml=xml
            )
            self._touch_requester(
                row["requester_id"], row["computer_reference"], row["requested_by"]
            )

    # ---- destruction, bang, rename -------------------------------------------------------------
    def destroyed(self, partition_id: str, computer_id: str) -> str | None:
        """Free the partition; a root with children answers why not (still a success)."""
        row = self.partition_or_404(partition_id, computer_id)
        if row["slap_state"] != "free" and not row["requested_by"] and row["partition_reference"]:
            children = self.store.children_titles(row["partition_reference"])
            if children:
                self.store.destroy_children(row["partition_reference"])
                return (
                    "Not destroying yet because this partition has child partitions: "
                    + ", ".join(children)
                )
        self.store.free(partition_id, computer_id)
        return None

    def bang(self, partition_id: str, computer_id: str) -> None:
        row = self.partition_or_404(partition_id, computer_id)
        root = row["requested_by"] or row["partition_reference"]
        if root:
            self.store.touch_tree(root, self.now())

    def bang_instance(self, title: str, requested_by: str) -> None:
        """JSON-RPC bang: the instance itself plus the tree it is the root of."""
        now = self.now()
        row = self.store.instance(title, requested_by)
        if row is None:
            raise Forbidden(f"No software instance {title} found.")
        self.store.touch(row["reference"], row["computer_reference"], now)
        for child in self.store.tree_partitions(title) if not requested_by else []:
            self.store.touch(child["reference"], child["computer_reference"], now)

    def rename(self, partition_id: str, computer_id: str, new_title: str) -> None:
        row = self.partition_or_404(partition_id, computer_id)
        if not new_title:
            raise BadRequest("new_name is empty")
        if row["slap_state"] == "free":
            raise NotFound(f"partition {partition_id!r} on {computer_id!r} holds no instance")
        if self.store.instance(new_title, row["requested_by"]) is not None:
            raise BadRequest(f"an instance named {new_title!r} already exists in this tree")
        if not row["requested_by"]:
            self.store.repoint_tree(row["partition_reference"], new_title)
        self.store.rename(partition_id, computer_id, new_title)

    # ---- misc ----------------------------------------------------------------------------------
    def tree_addresses(self, partition_id: str, computer_id: str) -> list[tuple[str, str]]:
        """Addresses of every partition of the calling partition's instance tree."""
        row = self.partition_or_404(partition_id, computer_id)
        root = row["requested_by"] or row["partition_reference"]
        if not root:
            return self.store.addresses(partition_id, computer_id)
        result: list[tuple[str, str]] = []
        for member in self.store.tree_partitions(root):
            result.extend(self.store.addresses(member["reference"], member["computer_reference"]))
        return result
