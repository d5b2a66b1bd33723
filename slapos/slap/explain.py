"""`slapos explain INSTANCE_TITLE`, client side: an instance tree as the master knows it.

Through the master's JSON-RPC API (protocol.md §6), which our proxy, upstream's proxy and
a real master share: the tree's root (`get.v0.instance_tree`), its other instances (every
computer's `compute_node_instance_list`, kept when their `root_instance_title` is the
tree's), and what each instance's node last reported: `compute_node_status` lists it on
our proxy (status, message, time, last error); a real master gives
`access_status_message` (`#access ...` / `#error ...`); upstream's proxy keeps nothing,
and the explanation says so rather than showing nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from slapos.errors import MasterError, NotFoundError

log = logging.getLogger(__name__)

ERROR = "error"


@dataclass
class InstanceState:
    title: str
    instance_guid: str
    computer_guid: str | None
    partition_id: str | None
    requested_state: str
    software_url: str = ""
    software_type: str = ""
    shared: bool = False
    connection_parameters: dict[str, Any] = field(default_factory=dict)
    reported_state: str | None = None  # None: not known
    message: str = ""
    reported_at: str = ""
    last_error: str = ""
    last_error_at: str = ""

    @property
    def failing(self) -> bool:
        return self.reported_state == ERROR


@dataclass
class TreeExplanation:
    title: str
    master_url: str
    instances: list[InstanceState] = field(default_factory=list)
    #: True when the master keeps what nodes report (ours, a real master)
    statuses_kept: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def first_failing(self) -> InstanceState | None:
        return next((i for i in self.instances if i.failing), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        first = self.first_failing
        data["first_failing"] = first.title if first is not None else None
        return data


class JsonRpc:
    """JSON-RPC calls over the slap library's connection to the master (its TLS, proxies,
    timeouts and error mapping)."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def __call__(self, method: str, **body: Any) -> Any:
        from slapos.slap import exception as slap_exc

        try:
            response = self.session.request(
                "POST",
                self.session.url_for(method),
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                call=method,
            )
        except slap_exc.AuthenticationError as exc:  # 403: the API's "business" refusals
            raise NotFoundError(_title(getattr(exc, "body", "")) or str(exc)) from None
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise MasterError(f"master answered {method} with invalid JSON: {exc}") from None


def _title(body: Any) -> str:
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return str(json.loads(body).get("title") or "")
    return ""


def _connection(parameters: Any) -> dict[str, Any]:
    """Connection parameters, with the usual serialised JSON of `_` opened up."""
    if not isinstance(parameters, dict):
        return {}
    if set(parameters) == {"_"} and isinstance(parameters["_"], str):
        with contextlib.suppress(ValueError):
            inner = json.loads(parameters["_"])
            if isinstance(inner, dict):
                return inner
    return dict(parameters)


def _instance(document: dict[str, Any]) -> InstanceState:
    return InstanceState(
        title=str(document.get("title") or ""),
        instance_guid=str(document.get("instance_guid") or ""),
        computer_guid=document.get("computer_guid"),
        partition_id=document.get("compute_partition_id"),
        requested_state=str(document.get("state") or ""),
        software_url=str(document.get("software_release_uri") or ""),
        software_type=str(document.get("software_type") or ""),
        shared=bool(document.get("shared")),
        connection_parameters=_connection(document.get("connection_parameters")),
    )


def _members(rpc: JsonRpc, root: InstanceState) -> list[tuple[InstanceState, str]]:
    """The tree's other instances (and their access status), found computer by computer."""
    computers: list[str] = []
    try:
        listing = rpc("slapos.allDocs.WIP.compute_node_list")
        computers = [str(c["computer_guid"]) for c in listing.get("result_list", [])]
    except (MasterError, NotFoundError) as exc:
        log.debug("no computer list (%s): looking at the root's computer only", exc)
    if root.computer_guid and root.computer_guid not in computers:
        computers.append(root.computer_guid)
    found = []
    for computer in computers:
        try:
            entries = rpc("slapos.allDocs.v0.compute_node_instance_list", computer_guid=computer)
        except NotFoundError:
            continue
        for entry in entries.get("result_list", []):
            guid = str(entry.get("instance_guid") or "")
            if not guid or guid == root.instance_guid:
                continue
            try:
                document = rpc("slapos.get.v0.software_instance", instance_guid=guid)
            except NotFoundError:
                continue
            if document.get("root_instance_title") == root.title:
                found.append(
                    (_instance(document), str(document.get("access_status_message") or ""))
                )
    return found


def _apply_status(
    tree: TreeExplanation, rpc: JsonRpc, access: dict[str, str], command: str
) -> None:
    computers = {i.computer_guid for i in tree.instances if i.computer_guid}
    kept: dict[tuple[str, str], dict[str, Any]] = {}
    for computer in sorted(computers):
        try:
            answer = rpc("slapos.get.v0.compute_node_status", computer_guid=computer)
        except (MasterError, NotFoundError):
            continue
        if isinstance(answer, dict) and isinstance(answer.get("instance_list"), list):
            tree.statuses_kept = True
            for row in answer["instance_list"]:
                kept[(computer, str(row.get("reference")))] = row
    for instance in tree.instances:
        row = kept.get((instance.computer_guid or "", instance.partition_id or ""))
        if row is not None and row.get("title") == instance.title:
            instance.reported_state = str(row.get("status") or "") or None
            instance.message = str(row.get("message") or "")
            instance.reported_at = str(row.get("reported_at") or "")
            instance.last_error = str(row.get("error") or "")
            instance.last_error_at = str(row.get("error_at") or "")
            continue
        text = access.get(instance.instance_guid, "")
        if text.startswith("#error"):
            tree.statuses_kept = True
            instance.reported_state, instance.message = ERROR, text[len("#error") :].strip()
        elif text.startswith("#access"):
            tree.statuses_kept = True
            instance.reported_state, instance.message = "ok", text[len("#access") :].strip()
    if not tree.statuses_kept:
        tree.notes.append(
            "this master does not keep what nodes report (upstream's slapproxy throws it "
            f"away): reported states and errors are unknown; on the node, "
            f"'{command} node explain' tells"
        )


def explain_tree(session: Any, title: str, command: str = "slapos") -> TreeExplanation:
    """The instance tree `title`: instances, where they run, requested vs reported state;
    `command` is how notes name slapos (the script actually run)."""
    rpc = JsonRpc(session)
    root_doc = rpc("slapos.get.v0.instance_tree", title=title)
    root = _instance(root_doc)
    tree = TreeExplanation(title, str(getattr(session, "master_url", "")), [root])
    access = {root.instance_guid: str(root_doc.get("access_status_message") or "")}
    for member, text in _members(rpc, root):
        tree.instances.append(member)
        access[member.instance_guid] = text
    _apply_status(tree, rpc, access, command)
    return tree
