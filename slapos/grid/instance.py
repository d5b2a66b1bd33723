"""`slapos node instance` and `slapos node promise`: deploy the partitions the master
asks for, keep their services running, check their promises (node.md §5, §6, §10).

The master's partition list drives everything; each partition is processed on its own
and a failure never stops the others. The result says which partitions failed and why,
and its exit code follows upstream's precedence: failure (1) > promise failure (2) >
offline (3) > ok (0).

Must not import slapos.cli.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slapos.config import NodeConfig
from slapos.errors import ExitCode, PromiseError, SlapOSError
from slapos.grid import partition as part
from slapos.grid import supervisor as sv
from slapos.grid.utils import software_hash
from slapos.system import Clock, Runner

log = logging.getLogger(__name__)

INSTANCE_LOG_ROTATE = 20 * 1024 * 1024
STARTED, STOPPED, DESTROYED = "started", "stopped", "destroyed"


class UnknownPartitionError(SlapOSError):
    """--only-cp names partitions the master does not know."""


@dataclass(frozen=True)
class InstanceOptions:
    force: bool = False
    force_stop: bool = False
    only_cp: tuple[str, ...] = ()
    buildout_debug: bool = False
    supervisord: bool = True  # False: forbid_supervisord_automatic_launch


@dataclass(frozen=True)
class Outcome:
    partition_id: str
    status: str  # processed | skipped | failed | promise-failed | free
    seconds: float = 0.0
    error: str = ""
    software_type: str = ""
    log_file: Path | None = None


@dataclass
class ProcessResult:
    outcomes: list[Outcome] = field(default_factory=list)
    offline: bool = False
    offline_failed: bool = False

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def promise_failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "promise-failed"]

    @property
    def exit_code(self) -> int:
        if self.failed or self.offline_failed:
            return ExitCode.FAILURE
        if self.promise_failed:
            return ExitCode.PROMISE_FAILURE
        if self.offline:
            return ExitCode.OFFLINE_SUCCESS
        return ExitCode.OK


@dataclass(frozen=True)
class Node:
    """The world the engine acts in: configuration plus injected OS objects."""

    config: NodeConfig
    runner: Runner
    clock: Clock
    environ: Mapping[str, str]
    is_root: bool


def connect_master(config: NodeConfig) -> Any:
    """The slap library's Computer object for this node (upstream's API)."""
    from slapos import slap

    s = slap.slap()
    s.initializeConnection(
        config.master_url,
        key_file=config.key_file,
        cert_file=config.cert_file,
        master_ca_file=config.master_ca_file,
        master_tls_verify=config.master_tls_verify,
        max_answer_size=config.master_max_answer_mb << 20,
    )
    return s.registerComputer(config.computer_id)


def offline_errors() -> tuple[type[BaseException], ...]:
    """Errors meaning "the master cannot be reached": go offline rather than fail.

    The slap library reports every transport failure as its ConnectionError.
    """
    from slapos.slap import exception as slap_exc

    return (slap_exc.ConnectionError, slap_exc.ServerError)


def software_url_of(cp: Any) -> str | None:
    try:
        sr = cp.getSoftwareRelease()
        url = sr.getURI() if sr is not None else None
    except (SlapOSError, AttributeError):  # a free partition has no release
        return None
    return url or None


def parameters_of(cp: Any) -> dict[str, Any]:
    try:
        return dict(cp.getInstanceParameterDict() or {})
    except (SlapOSError, AttributeError):
        return {}


def filter_dict_of(cp: Any) -> dict[str, Any]:
    value = getattr(cp, "_filter_dict", None)
    return dict(value) if isinstance(value, dict) else {}


def retention_delay_of(cp: Any) -> float:
    raw = filter_dict_of(cp).get("retention_delay", "0")
    try:
        return float(raw)
    except (TypeError, ValueError):
        log.warning("%s: invalid retention_delay %r, using 0", cp.getId(), raw)
        return 0.0


def software_type_of(cp: Any) -> str:
    return str(parameters_of(cp).get("slap_software_type") or "")


def local_partition(config: NodeConfig, cp: Any) -> part.Partition:
    url = software_url_of(cp)
    return part.Partition(
        partition_id=cp.getId(),
        path=config.instance_root / cp.getId(),
        software_url=url,
        software_path=config.software_root / software_hash(url) if url else None,
        certificate_repository=config.certificate_repository_path,
    )


def is_free(cp: Any) -> bool:
    return bool(cp.getState() == DESTROYED and software_url_of(cp) is None)


def clean_free_partition(path: Path) -> None:
    """A free partition keeps no slapgrid state (node.md §5.3)."""
    import shutil

    for name in (".slapgrid", ".timestamp"):
        p = path / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()
    with contextlib.suppress(FileNotFoundError):
        left = [n for n in os.listdir(path) if n != ".slapos-resource"]
        if left:
            log.warning("free partition %s is not empty: %s", path.name, ", ".join(sorted(left)))


def read_last_report(p: part.Partition) -> str | None:
    try:
        return (p.path / ".slapgrid" / "last-report").read_text().strip()
    except OSError:
        return None


def write_last_report(p: part.Partition, state: str) -> None:
    path = p.path / ".slapgrid" / "last-report"
    with contextlib.suppress(OSError):  # only an optimisation: the worst case is one more call
        path.parent.mkdir(exist_ok=True)
        path.write_text(state + "\n")


@contextlib.contextmanager
def partition_log(partition: part.Partition, is_root: bool) -> Iterator[Path]:
    """Copy slapos.grid logging to <partition>/.slapgrid/log/instance.log meanwhile."""
    path = partition.instance_log
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if is_root:
        st = partition.path.stat()
        for p in (path.parent.parent, path.parent):
            os.chown(p, st.st_uid, st.st_gid)
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size >= INSTANCE_LOG_ROTATE:
            os.replace(path, path.with_name(path.name + ".1"))
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)-8s %(name)s %(message)s"))
    logger = logging.getLogger("slapos.grid")
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.DEBUG)  # the file gets everything; console handlers filter
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


class Services:
    """The engine's view of supervisord; tests pass a fake with the same methods."""

    def prepare(self, node: Node, watchdog_command: str, launch: bool) -> None:
        root = node.config.instance_root
        paths = sv.write_supervisord_config(root, watchdog_command)
        if not launch:
            return
        if not paths.changed and sv.supervisord_alive(root):
            # Nothing to tell it: spare the XML-RPC round trips of a run with nothing to do.
            return
        sv.ensure_supervisord(root, node.runner)

    def start(self, instance_root: Path, partition_id: str, path: Path) -> None:
        sv.start_partition(instance_root, partition_id, path)

    def stop(self, instance_root: Path, partition_id: str, all_files: bool = False) -> None:
        sv.stop_partition(instance_root, partition_id, all_files=all_files)

    def start_all(self, instance_root: Path) -> None:
        with sv.connect(instance_root) as s:
            s.reload()
            s.start_all(wait=False)

    def states(self, instance_root: Path, names: list[str]) -> dict[str, str]:
        return sv.process_states(instance_root, names)


class InstanceEngine:
    """One `node instance` (or `node promise`) run."""

    def __init__(
        self,
        node: Node,
        options: InstanceOptions,
        computer: Any = None,
        progress: Callable[[str], None] | None = None,
        services: Services | None = None,
    ) -> None:
        self.services = services or Services()
        self.node = node
        self.config = node.config
        self.options = options
        self._computer = computer
        self.progress = progress or (lambda text: log.info("%s", text))

    # ---- top level -----------------------------------------------------------------

    def computer(self) -> Any:
        if self._computer is None:
            self._computer = connect_master(self.config)
        return self._computer

    def prepare_supervisord(self) -> None:
        command = sv.watchdog_command(
            self.config.master_url,
            self.config.computer_id,
            self.config.instance_root,
            self.config.certificate_repository_path,
            master_ca_file=self.config.master_ca_file,
            master_tls_verify=self.config.master_tls_verify,
        )
        launch = self.options.supervisord and not self.config.forbid_supervisord_automatic_launch
        self.services.prepare(self.node, command, launch)

    def run(self) -> ProcessResult:
        """Process every partition; fall back to offline mode when the master is down."""
        self.prepare_supervisord()
        errors = offline_errors()
        try:
            return self._run_online()
        except errors as exc:
            log.warning("master unreachable (%s): offline mode, starting local services", exc)
            return self.run_offline()

    def partitions(self) -> list[Any]:
        cps = list(self.computer().getComputerPartitionList())
        if self.options.only_cp:
            known = {cp.getId() for cp in cps}
            unknown = sorted(set(self.options.only_cp) - known)
            if unknown:
                raise UnknownPartitionError(
                    f"unknown partition(s): {', '.join(unknown)} (the master does not list them)"
                )
        return cps

    def _run_online(self) -> ProcessResult:
        result = ProcessResult()
        for cp in self.partitions():
            pid = cp.getId()
            if self.options.only_cp and pid not in self.options.only_cp:
                continue
            outcome = self.process_one(cp)
            result.outcomes.append(outcome)
            self._report_progress(outcome)
        self._summary(result)
        return result

    def _report_progress(self, o: Outcome) -> None:
        if o.status == "free":
            return
        label = f"{o.partition_id}[{o.software_type}]" if o.software_type else o.partition_id
        if o.status == "skipped":
            self.progress(f"{label}: skipped, up to date ({o.seconds:.1f}s)")
        elif o.status == "processed":
            self.progress(f"{label}: processed ({o.seconds:.1f}s)")
        else:
            what = "promise failed" if o.status == "promise-failed" else "failed"
            first = o.error.strip().splitlines()[0] if o.error.strip() else ""
            self.progress(f"{label}: {what} ({o.seconds:.1f}s): {first}")

    def _summary(self, result: ProcessResult) -> None:
        for title, items in (
            ("error while processing the following partitions:", result.failed),
            ("error with promises for the following partitions:", result.promise_failed),
        ):
            if not items:
                continue
            lines = [title]
            for o in items:
                first = o.error.strip().splitlines()[0] if o.error.strip() else ""
                where = f" (log: {o.log_file})" if o.log_file else ""
                lines.append(
                    f"  {o.partition_id}[{o.software_type or '(not ready)'}]: {first}{where}"
                )
            log.error("%s", "\n".join(lines))

    # ---- one partition -------------------------------------------------------------

    def process_one(self, cp: Any) -> Outcome:
        """Process one partition; errors become the outcome, connection loss propagates."""
        start = time.monotonic()
        pid = cp.getId()
        if is_free(cp):
            path = self.config.instance_root / pid
            if path.is_dir():
                clean_free_partition(path)
            return Outcome(pid, "free")
        stype = software_type_of(cp)
        p = local_partition(self.config, cp)
        if not p.path.is_dir():
            message = f"partition directory {p.path} does not exist (run 'slapos node format')"
            self._post_error(cp, message)
            return Outcome(pid, "failed", time.monotonic() - start, message, stype)
        log_file = p.instance_log
        try:
            status = self._process(cp, p)
        except PromiseError as exc:
            self._post_error(cp, str(exc))
            write_last_report(p, "error")
            return Outcome(
                pid, "promise-failed", time.monotonic() - start, str(exc), stype, log_file
            )
        except offline_errors():
            raise
        except (SlapOSError, OSError) as exc:
            message = str(exc) or type(exc).__name__
            self._post_error(cp, message)
            write_last_report(p, "error")
            return Outcome(pid, "failed", time.monotonic() - start, message, stype, log_file)
        except Exception as exc:
            # A bug met on one partition (a release's odd files...) must not stop the others:
            # reported like any failure, with the traceback in the partition's log.
            log.debug("%s: unexpected error", pid, exc_info=True)
            message = f"internal error: {type(exc).__name__}: {exc}"
            self._post_error(cp, message)
            return Outcome(pid, "failed", time.monotonic() - start, message, stype, log_file)
        return Outcome(pid, status, time.monotonic() - start, "", stype, log_file)

    def _post_error(self, cp: Any, message: str) -> None:
        try:
            cp.error(message)
        except offline_errors():
            raise
        except SlapOSError as exc:
            log.warning("%s: could not report the error to the master: %s", cp.getId(), exc)

    def _process(self, cp: Any, p: part.Partition) -> str:
        state = cp.getState()
        params = parameters_of(cp)
        timestamp = str(params["timestamp"]) if "timestamp" in params else None
        with contextlib.suppress(FileNotFoundError):
            p.transaction_file.unlink()
        periodicity = part.read_periodicity(p.software_path, self.config.maximum_periodicity)
        if self.options.force_stop and state == STARTED:
            timestamp = None
        if not self.options.force and part.is_up_to_date(
            p, timestamp, periodicity, self.node.clock.time()
        ):
            if state == STARTED and not self.options.force_stop:
                self._check_anomaly(cp, p)
            return "skipped"
        with partition_log(p, self.node.is_root):
            log.info("processing partition %s (requested state %s)", p.partition_id, state)
            self._refresh_certificates(cp, p)
            with contextlib.suppress(FileNotFoundError):
                p.error_log.unlink()
            try:
                self._deploy(cp, p, state)
            except PromiseError:
                raise
            except Exception as exc:
                p.error_log.write_text(str(exc))
                if state == STARTED and not isinstance(exc, offline_errors()):
                    with contextlib.suppress(PromiseError, SlapOSError, OSError):
                        self._run_promises(p, force=True)
                raise
        if timestamp is not None:
            p.timestamp_file.write_text(timestamp)
        return "processed"

    def _refresh_certificates(self, cp: Any, p: part.Partition) -> None:
        if self.config.certificate_repository_path is None:
            return
        certs = cp.getCertificate()
        p.write_certificates(certs["certificate"], certs["key"], self.node.is_root)

    def _connection(self, cp: Any, p: part.Partition) -> part.SlapConnection:
        c = self.config
        return part.SlapConnection(
            computer_id=c.computer_id,
            partition_id=p.partition_id,
            server_url=c.master_url,
            software_release_url=p.software_url or "",
            key_file=str(p.key_file) if p.key_file else "",
            cert_file=str(p.cert_file) if p.cert_file else "",
            shared_part_list=c.shared_part_list,
            build_time_part_list=c.build_time_part_list,
            requested_state=cp.getState(),
            storage_home=os.path.abspath(c.instance_storage_home)
            if c.instance_storage_home
            else "",
            global_ipv4_network=c.ipv4_global_network or "",
        )

    def _check_free_space(self, p: part.Partition) -> None:
        from slapos.grid.utils import free_space, human_size, parse_size

        wanted = parse_size(
            self.config.instance_min_free_space,
            f"{self.config.path}: [slapos] instance_min_free_space",
        )
        available = free_space(p.path)
        if available < wanted:
            raise part.PartitionError(
                f"not enough free space for {p.partition_id}: {human_size(available)} available, "
                f"instance_min_free_space is {human_size(wanted)}"
            )

    def _install(self, cp: Any, p: part.Partition) -> None:
        self._check_free_space(p)
        p.prepare(self._connection(cp, p), retention_delay_of(cp), self.node.is_root)
        env = dict(self.node.environ)
        env["SLAPGRID_INSTANCE_ROOT"] = str(self.config.instance_root)
        p.run_buildout(
            self.node.runner,
            env,
            timeout=self.config.partition_timeout,
            debug=self.options.buildout_debug or self.config.buildout_debug,
        )

    def _deploy(self, cp: Any, p: part.Partition, state: str) -> None:
        root = self.config.instance_root
        if state == STARTED:
            self._install(cp, p)
            if self.options.force_stop:
                self.services.stop(root, p.partition_id)
                return
            self.services.start(root, p.partition_id, p.path)
            self._run_promises(p, force=True)
            cp.started()
            write_last_report(p, "started")
            self._send_transaction(cp, p)
        elif state == STOPPED:
            try:
                self._install(cp, p)
            finally:
                self.services.stop(root, p.partition_id)
            with contextlib.suppress(SlapOSError):
                cp.stopped()
            self._send_transaction(cp, p)
        elif state == DESTROYED:
            self.services.stop(root, p.partition_id)
            with contextlib.suppress(SlapOSError):
                cp.stopped()
        else:
            raise SlapOSError(f"unsupported requested state {state!r}")

    def _send_transaction(self, cp: Any, p: part.Partition) -> None:
        try:
            lines = p.transaction_file.read_text().splitlines()
        except FileNotFoundError:
            return
        refs = [line.strip() for line in lines if line.strip()]
        try:
            cp.setComputerPartitionRelatedInstanceList(refs)
        except SlapOSError as exc:
            if "404" in str(exc) or type(exc).__name__ == "NotFoundError":
                log.debug("related instance list: feature not implemented on master")
            else:
                raise

    def _run_promises(
        self, p: part.Partition, *, force: bool, anomaly: bool = False, cp: Any = None
    ) -> None:
        from slapos.grid import buildout
        from slapos.grid import promise as prom

        run = prom.PromiseRun(
            partition=p.path,
            partition_id=p.partition_id,
            timeout=float(self.config.promise_timeout),
            environ=buildout.clean_environment(self.node.environ, p.path),
            force=force,
            anomaly=anomaly,
            computer_id=self.config.computer_id,
            master_url=self.config.master_url,
            partition_key=str(p.key_file or ""),
            partition_cert=str(p.cert_file or ""),
        )
        results = prom.run_promises(run, self.node.runner)
        error = prom.first_failure(results)
        banging = [r for r in results if r.bang]
        if banging and cp is not None:
            # upstream: at most one bang per run, in the failing plugin's words
            with contextlib.suppress(SlapOSError):
                cp.bang(f"Promise {banging[0].title} is failing")
        if error is not None:
            raise error

    def _check_anomaly(self, cp: Any, p: part.Partition) -> None:
        """Up-to-date started partition: promises in anomaly mode, report only changes."""
        try:
            status = cp.getAccessStatus()
        except (SlapOSError, AttributeError):
            status = None
        is_error = isinstance(status, str) and status.startswith("#error")
        # Upstream posts whenever the master gives no access status (slapproxy never does),
        # i.e. one useless call per partition per run. We post then only when the outcome
        # differs from the one we last reported, remembered in .slapgrid/last-report.
        last = read_last_report(p) if status is None else None
        try:
            self._run_promises(p, force=False, anomaly=True, cp=cp)
        except PromiseError as exc:
            log.error("%s: %s", p.partition_id, exc)
            if (status is None and last != "error") or (status is not None and not is_error):
                self._refresh_certificates(cp, p)
                self._post_error(cp, str(exc))
                write_last_report(p, "error")
            return
        if (status is None and last != "started") or is_error:
            self._refresh_certificates(cp, p)
            cp.started()
            write_last_report(p, "started")

    # ---- offline and promise-only runs ---------------------------------------------

    def run_offline(self) -> ProcessResult:
        root = self.config.instance_root
        for entry in sorted(os.listdir(root)):
            legacy = root / entry / ".requested_state"
            if legacy.is_file():
                wanted = legacy.read_text().strip()
                legacy.unlink()
                if wanted == STOPPED:
                    sv.remove_partition_group(root, entry, all_files=False)
        try:
            self.services.start_all(root)
        except (sv.SupervisorError, OSError) as exc:
            log.error("offline mode: cannot start local services: %s", exc)
            return ProcessResult(offline=True, offline_failed=True)
        return ProcessResult(offline=True)

    def run_promises_only(self) -> ProcessResult:
        """`node promise`: every started partition's promises, nothing reported."""
        result = ProcessResult()
        for cp in self.partitions():
            pid = cp.getId()
            if self.options.only_cp and pid not in self.options.only_cp:
                continue
            if is_free(cp) or cp.getState() != STARTED:
                continue
            p = local_partition(self.config, cp)
            start = time.monotonic()
            try:
                self._run_promises(p, force=True)
            except PromiseError as exc:
                o = Outcome(pid, "promise-failed", time.monotonic() - start, str(exc))
            except (SlapOSError, OSError) as exc:
                o = Outcome(pid, "promise-failed", time.monotonic() - start, str(exc))
            else:
                o = Outcome(pid, "processed", time.monotonic() - start)
            result.outcomes.append(o)
            if o.status == "processed":
                self.progress(f"{pid}: promises ok ({o.seconds:.1f}s)")
            else:
                self.progress(f"{pid}: {o.error}")
        return result
