"""`slap`, the library's entry point, and the objects it hands out that never travel on
the wire: `OpenOrder` (request instances as a user), `Supply`, `Token` and
`SoftwareProductCollection`.

Upstream defines them in `slapos.slap.slap`, and code imports them from there or from
`slapos.slap`: both still work (`slapos.slap.slap` looks these names up here on first use).
The wire documents themselves (`Computer`, `ComputerPartition`, `SoftwareRelease`,
`SoftwareInstance`) stay in `slapos.slap.slap`, whose name the wire format carries.

`connect(config.master)` is how slapos itself reaches a master: one `slap` connected as a
node, client or format configuration's `slapos.config.MasterAccess` says.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from slapos.slap import wire
from slapos.slap.exception import NotFoundError, ServerError, SlapException
from slapos.slap.request import build_request_dict
from slapos.slap.slap import (
    Computer,
    ComputerPartition,
    SlapDocument,
    SlapRequester,
    SoftwareRelease,
)

if TYPE_CHECKING:
    from slapos.config import MasterAccess

log = logging.getLogger(__name__)


class SoftwareProductCollection:
    """`product.NAME` -> the best software release URL of that product."""

    def __init__(self, logger: logging.Logger | None, slap: slap) -> None:
        self.logger = logger or log
        self.slap = slap
        self.get = self.__getattr__

    def __getattr__(self, software_product: str) -> str:
        if software_product.startswith("__"):
            raise AttributeError(software_product)
        self.logger.info("Getting best Software Release corresponding to this Software Product...")
        urls = self.slap.getSoftwareReleaseListFromSoftwareProduct(software_product)
        if not urls:
            raise AttributeError(
                f"No Software Release corresponding to the Software Product "
                f"{software_product!r} has been found."
            )
        self.logger.info("Found as %s.", urls[0])
        return str(urls[0])


class Supply(SlapDocument):
    def supply(
        self, software_release: str, computer_guid: str | None = None, state: str = "available"
    ) -> None:
        """Ask `computer_guid` to install (`available`) or remove (`destroyed`) a release."""
        try:
            self._connection().post(
                wire.SUPPLY_SUPPLY,
                {"url": software_release, "computer_id": computer_guid, "state": state},
            )
        except NotFoundError as exc:
            raise NotFoundError(
                f"Computer {computer_guid} has not been found by SlapOS Master."
            ) from exc


class Token(SlapDocument):
    def request(self) -> str:
        return str(self._navigator().getToken())


class OpenOrder(SlapRequester):
    """Requests instances as a user (not from inside a partition)."""

    def request(
        self,
        software_release: str,
        partition_reference: str,
        partition_parameter_kw: Mapping[str, Any] | None = None,
        software_type: str | None = None,
        filter_kw: Mapping[str, Any] | None = None,
        state: str | None = None,
        shared: bool = False,
    ) -> ComputerPartition:
        request_dict = build_request_dict(
            software_release,
            partition_reference,
            partition_parameter_kw,
            software_type,
            filter_kw,
            state,
            shared,
        )
        return self._requestComputerPartition(request_dict)

    def requestComputer(self, computer_reference: str) -> Computer:
        computer = self._connection().post_document(
            wire.REQUEST_COMPUTER, {"computer_title": computer_reference}
        )
        self._attach(computer)
        return computer  # type: ignore[no-any-return]


class slap:
    """Entry point: `s = slap(); s.initializeConnection(url, key, cert)`, then register*."""

    def initializeConnection(
        self,
        slapgrid_uri: str,
        key_file: str | None = None,
        cert_file: str | None = None,
        master_ca_file: str | None = None,
        timeout: float | None = 60,
        slapgrid_rest_uri: str | None = None,
        *,
        master_tls_verify: bool = True,
        max_answer_size: int | None = None,
    ) -> None:
        """Connect to `slapgrid_uri`. Ours only: `master_tls_verify=False` skips checking the
        master's certificate; `max_answer_size` (bytes) bounds the answers taken."""
        from slapos.slap.hateoas import SlapHateoasNavigator
        from slapos.slap.session import MasterSession
        from slapos.slap.transport import DEFAULT_MAX_ANSWER, TLSSettings

        self._connection_helper = MasterSession(
            slapgrid_uri,
            tls=TLSSettings(cert_file, key_file, master_ca_file, master_tls_verify),
            timeout=timeout,
            max_answer_size=max_answer_size or DEFAULT_MAX_ANSWER,
        )
        self._hateoas_navigator = SlapHateoasNavigator(self._connection_helper, slapgrid_rest_uri)

    def _connection(self) -> Any:
        helper = getattr(self, "_connection_helper", None)
        if helper is None:
            raise SlapException("call initializeConnection() first")
        return helper

    def _documents(self) -> dict[str, Any]:
        self._connection()
        return {
            "connection_helper": self._connection_helper,
            "hateoas_navigator": self._hateoas_navigator,
        }

    def registerSoftwareRelease(self, software_release: str) -> SoftwareRelease:
        return SoftwareRelease(software_release=software_release, **self._documents())

    def registerToken(self) -> Token:
        return Token(**self._documents())

    def registerComputer(self, computer_guid: str) -> Computer:
        return Computer(computer_guid, **self._documents())

    def registerComputerPartition(self, computer_guid: str, partition_id: str) -> ComputerPartition:
        if not computer_guid or not partition_id:
            raise NotFoundError("registerComputerPartition needs a computer and a partition id")
        return ComputerPartition(computer_guid, partition_id, **self._documents())

    def registerOpenOrder(self) -> OpenOrder:
        return OpenOrder(**self._documents())

    def registerSupply(self) -> Supply:
        return Supply(**self._documents())

    def getSoftwareReleaseListFromSoftwareProduct(
        self, software_product_reference: str | None = None, software_release_url: str | None = None
    ) -> list[str]:
        if software_product_reference:
            if software_release_url is not None:
                raise AttributeError(
                    "Both software_product_reference and software_release_url parameters "
                    "are specified."
                )
            params = {"software_product_reference": software_product_reference}
        elif software_release_url is not None:
            params = {"software_release_url": software_release_url}
        else:
            raise AttributeError(
                "None of software_product_reference and software_release_url parameters "
                "are specified."
            )
        result = self._connection().get_document(
            wire.GET_SOFTWARE_RELEASE_LIST_FROM_SOFTWARE_PRODUCT, params
        )
        if not isinstance(result, list):
            raise ServerError(
                f"master answered {wire.GET_SOFTWARE_RELEASE_LIST_FROM_SOFTWARE_PRODUCT} "
                f"with {type(result).__name__}, not a list"
            )
        return result

    def getOpenOrderDict(self) -> dict[str, Any]:
        self._connection()
        return self._hateoas_navigator.getInstanceTreeDict()  # type: ignore[no-any-return]

    def getComputerDict(self) -> dict[str, Any]:
        self._connection()
        return self._hateoas_navigator.getComputerDict()  # type: ignore[no-any-return]


def connect(master: MasterAccess) -> slap:
    """A `slap` connected to `master`: its certificate and key, the CA that checks the
    master's certificate (or no check), the answer size limit, and its timeout for each
    call (a node configuration's is 60 s, a client's [slapos] timeout)."""
    connection = slap()
    connection.initializeConnection(  # upstream's positional order, then ours
        *(master.url, master.key_file, master.cert_file, master.ca_file, master.timeout),
        slapgrid_rest_uri=master.rest_url,
        master_tls_verify=master.tls_verify,
        max_answer_size=master.max_answer_mb << 20,
    )
    return connection
