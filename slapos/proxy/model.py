"""What the master's rules speak of: who asks, what is asked, what is answered, and the
failures answered as HTTP statuses.

Shared by the rules (`slapos.proxy.service`) and every route module, which need these
words without the rules themselves.

Imports only the standard library and the wire codec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from slapos.slap.marshal import WireObject


class ProxyHTTPError(Exception):
    """An answer other than 200; the message is the one-line body."""

    status: ClassVar[int] = 500


class BadRequest(ProxyHTTPError):
    status = 400


class Forbidden(ProxyHTTPError):
    status = 403


class NotFound(ProxyHTTPError):
    status = 404


class NotReady(ProxyHTTPError):
    status = 408


class UpstreamUnreachable(ProxyHTTPError):
    status = 523


class UpstreamRefused(ProxyHTTPError):
    status = 502


class ForwardNeeded(Exception):
    """The request belongs to another master: forward it outside any transaction."""

    def __init__(self, target: str, who: Requester) -> None:
        super().__init__(target)
        self.target = target
        self.who = who


@dataclass(frozen=True)
class Requester:
    """Who asks: `requester_id` (a partition reference or 'user'), and its tree root."""

    requester_id: str = "user"
    requested_by: str = ""
    computer_id: str | None = None


#: a user's request (no partition behind it); Requester is immutable: one serves all
USER = Requester()


@dataclass
class InstanceRequest:
    title: str
    software_release: str
    software_type: str
    parameters: dict[str, Any] = field(default_factory=dict)
    filter_kw: dict[str, Any] = field(default_factory=dict)
    state: str | None = None
    shared: bool = False


@dataclass
class RequestResult:
    """`wire` is the legacy answer; `partition` the allocated (or hosting) partition row."""

    wire: WireObject
    kind: str  # instance | shared | fake | forwarded
    partition: Any = None
    state: str = "started"
    timestamp: float | None = None
    #: title of the requester's tree root ('' for a user)
    requested_by: str = ""


Forwarder = Callable[[str, InstanceRequest, Requester], WireObject]
