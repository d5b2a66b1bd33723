"""Multi-master forwarding (protocol.md §8.9): requests for other masters are relayed.

A new request is forwarded when its SLA names a `master_url` listed in a
`[multimaster/<url>]` section (and that URL is not this proxy), or when its software
release is in a section's `software_release_list`. The answer is the remote instance as a
`ComputerPartition`, like upstream's proxy relays it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slapos.proxy.model import (
    InstanceRequest,
    NotFound,
    NotReady,
    Requester,
    UpstreamRefused,
    UpstreamUnreachable,
)
from slapos.slap.marshal import MarshalError, WireObject, dumps, loads

if TYPE_CHECKING:
    from collections.abc import Callable

    from slapos.proxy.app import ProxyApp
    from slapos.proxy.config import MultimasterEntry
    from slapos.proxy.request import Request

log = logging.getLogger(__name__)
TIMEOUT = 60.0


def _same(url: str, base: str) -> bool:
    return url.rstrip("/") == base.rstrip("/")


def is_self(app: ProxyApp, request: Request, url: str) -> bool:
    """Whether `url` reaches this very proxy: same base URL, or same /getRunId answer.

    Remembered on the request: call it before opening a transaction, so that no database
    lock is held during the HTTP call.
    """
    known: dict[str, bool] = request.environ.setdefault("slapos.proxy.self_urls", {})
    if url not in known:
        if _same(url, request.base_url):
            known[url] = True
        else:
            import requests

            try:
                answer = requests.get(url.rstrip("/") + "/getRunId", timeout=5, verify=False)
                known[url] = answer.status_code == 200 and answer.text == app.run_id
            except requests.RequestException:
                known[url] = False
    return known[url]


def target_finder(
    app: ProxyApp, request: Request
) -> Callable[[InstanceRequest], str | None] | None:
    multimaster = app.config.multimaster

    def self_url(url: str) -> bool:
        return is_self(app, request, url)

    def find(spec: InstanceRequest) -> str | None:
        master_url = spec.filter_kw.get("master_url")
        if master_url:
            master_url = str(master_url)
            if master_url in multimaster:
                return None if self_url(master_url) else master_url
            if self_url(master_url):
                return None
            log.warning(
                "External SlapOS Master URL %s is not listed in multimaster list.", master_url
            )
            raise NotFound(
                f"External SlapOS Master URL {master_url} is not listed in multimaster list."
            )
        for url, entry in multimaster.items():
            if spec.software_release in entry.software_release_list:
                return url
        return None

    return find


def forwarder(app: ProxyApp) -> Callable[[str, InstanceRequest, Requester], WireObject]:
    def forward(url: str, spec: InstanceRequest, who: Requester) -> WireObject:
        entry = app.config.multimaster.get(url)
        if url.startswith("https") and not (entry and entry.key and entry.cert):
            raise NotFound(
                f"External master {url} configuration did not specify key or certificate."
            )
        title = f"{who.requester_id}_{spec.title}"
        form, headers = _request_form(spec, title, entry)
        log.info("forwarding request of %s (state=%s) to %s", title, spec.state, url)
        remote = _post_request(url, entry, form, headers, title)
        return _as_partition(url, spec, remote)

    return forward


def _request_form(
    spec: InstanceRequest, title: str, entry: MultimasterEntry | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The form and headers of requestComputerPartition asking `spec` of another master."""
    filter_kw = dict(spec.filter_kw)
    form: dict[str, Any] = {
        "software_release": spec.software_release,
        "software_type": spec.software_type,
        "partition_reference": title,
        "partition_parameter_xml": dumps(spec.parameters),
        "state": dumps(spec.state),
        "shared_xml": dumps(spec.shared),
    }
    headers = {}
    if entry and entry.computer and entry.partition:
        form.update(computer_id=entry.computer, computer_partition_id=entry.partition)
        headers["Authorization"] = (
            f"X-SlapPartition computer_id={entry.computer}, computer_partition_id={entry.partition}"
        )
    else:
        filter_kw["source_instance_id"] = title
    form["filter_xml"] = dumps(filter_kw)
    return form, headers


def _post_request(
    url: str,
    entry: MultimasterEntry | None,
    form: dict[str, Any],
    headers: dict[str, str],
    title: str,
) -> WireObject:
    """POST the request to the master at `url`: the instance it answers, or why not."""
    import requests

    key = entry.key if entry else None
    cert = entry.cert if entry else None
    verify: bool | str = True
    if entry is not None:
        verify = (entry.master_ca_file or True) if entry.master_tls_verify else False
    if verify is False and url.startswith("https"):
        log.warning(
            "[multimaster/%s] master_tls_verify is off: its certificate is not checked", url
        )
    try:
        answer = requests.post(
            url.rstrip("/") + "/requestComputerPartition",
            data=form,
            headers=headers,
            timeout=TIMEOUT,
            verify=verify,
            cert=(cert, key) if url.startswith("https") and cert and key else None,
        )
    except requests.RequestException as exc:
        raise UpstreamUnreachable(f"cannot reach master {url}: {exc}") from None
    if answer.status_code == 408:
        raise NotReady(f"master {url} is provisioning {title}")
    if answer.status_code != 200:
        raise UpstreamRefused(
            f"master {url} answered {answer.status_code} to the request of {title}"
        )
    try:
        remote = loads(answer.content)
    except MarshalError as exc:
        raise UpstreamRefused(f"master {url} answered an unreadable document: {exc}") from None
    if not isinstance(remote, WireObject):
        raise UpstreamRefused(f"master {url} answered something else than an instance")
    return remote


def _as_partition(url: str, spec: InstanceRequest, remote: WireObject) -> WireObject:
    """The instance another master answered, as the ComputerPartition our caller reads."""
    computer_id = remote.state.get("slap_computer_id")
    partition_id = remote.state.get("slap_computer_partition_id")
    state: dict[str, Any] = {
        "_computer_id": computer_id,
        "_partition_id": partition_id,
        "_request_dict": None,
    }
    state.update(remote.state)
    if spec.shared:
        state["_synced"] = True
    state.update(
        _master_url=url,
        _connection_helper=None,
        _hateoas_navigator=None,
        _software_release_document=spec.software_release,
    )
    return WireObject("ComputerPartition", (computer_id, partition_id, None), state)
