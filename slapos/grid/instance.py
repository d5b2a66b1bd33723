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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slapos.errors import PromiseError, SlapOSError
from slapos.grid import instance_plan as plan
from slapos.grid import partition as part
from slapos.grid import supervisor as sv
from slapos.grid.instance_io import (
    Node as Node,
)
from slapos.grid.instance_io import (
    Outcome as Outcome,
)
from slapos.grid.instance_io import (
    ProcessResult as ProcessResult,
)
from slapos.grid.instance_io import (
    ServiceControl as ServiceControl,
)
from slapos.grid.instance_io import (
    Services as Services,
)
from slapos.grid.instance_io import (
    clean_free_partition,
    connect_master,
    is_free,
    local_partition,
    offline_errors,
    parameters_of,
    partition_log,
    read_last_report,
    retention_delay_of,
    write_last_report,
)
from slapos.grid.instance_observe import observe, service_states, supervisord_plan
from slapos.grid.runrecord import Applied, RunRecord, Step, failing_step, promise_step

log = logging.getLogger(__name__)

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


class InstanceEngine:
    """One `node instance` (or `node promise`) run."""

    def __init__(
        self,
        node: Node,
        options: InstanceOptions,
        computer: Any = None,
        progress: Callable[[str], None] | None = None,
        services: ServiceControl | None = None,
    ) -> None:
        self.services: ServiceControl = services or Services()
        self.node = node
        self.config = node.config
        self.options = options
        self._computer = computer
        self.progress = progress or (lambda text: log.info("%s", text))
        self._told: list[str] = []  # what this partition's processing told the master
        self._services_done = "keep"  # what it did to its services
        #: supervisord's processes by group, read once per run when a skip needs them
        self._processes: dict[str, dict[str, Any]] | None = None

    # ---- top level -----------------------------------------------------------------

    def computer(self) -> Any:
        if self._computer is None:
            self._computer = connect_master(self.config)
        return self._computer

    def _watchdog_command(self) -> str:
        return sv.watchdog_command(
            self.config.master,
            self.config.computer_id,
            self.config.instance_root,
            self.config.certificate_repository_path,
        )

    def prepare_supervisord(self) -> None:
        command = self._watchdog_command()
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

    def plan_run(self) -> plan.NodePlan:
        """What a run with these options would do; reads, never writes (--dry-run)."""
        result = plan.NodePlan(self.config.computer_id, self.config.master_url)
        launch = self.options.supervisord and not self.config.forbid_supervisord_automatic_launch
        result.supervisord = supervisord_plan(self.config, self._watchdog_command(), launch)
        try:
            cps = self.partitions()
            services = service_states(self.config.instance_root)
            now = self.node.clock.time()
            for cp in cps:
                if self.options.only_cp and cp.getId() not in self.options.only_cp:
                    continue
                obs = self.observe(cp, services, dry=True)
                result.partitions.append(plan.plan_partition(obs, self.plan_options(), now))
        except offline_errors() as exc:
            result.offline = (
                f"master unreachable ({exc}): a real run goes offline and starts every "
                "service supervisord knows"
            )
        return result

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
        self._processes = None
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

    def observe(
        self, cp: Any, services: dict[str, dict[str, str]] | None = None, *, dry: bool = False
    ) -> plan.Observation:
        """What the node sees of `cp` (see slapos.grid.instance_observe)."""
        return observe(self.config, cp, services, dry=dry)

    def plan_options(self) -> plan.Options:
        return plan.Options(force=self.options.force, force_stop=self.options.force_stop)

    def process_one(self, cp: Any) -> Outcome:
        """Plan one partition, then carry the plan out."""
        start = self.node.clock.monotonic()
        obs = self.observe(cp)
        decision = plan.plan_partition(obs, self.plan_options(), self.node.clock.time())
        return self.execute(cp, obs, decision, start)

    def execute(
        self, cp: Any, obs: plan.Observation, decision: plan.PartitionPlan, start: float
    ) -> Outcome:
        """Carry out `decision`; errors become the outcome, connection loss propagates."""
        pid = decision.partition_id
        stype = decision.software_type
        if decision.action == plan.FREE:
            path = self.config.instance_root / pid
            if path.is_dir():
                clean_free_partition(path)
            return Outcome(pid, "free")
        p = local_partition(self.config, cp)
        if decision.action == plan.FAIL:
            message = f"partition directory {p.path} does not exist (run 'slapos node format')"
            self._post_error(cp, message)
            return Outcome(pid, "failed", self._since(start), message, stype)
        self._told = []
        self._services_done = "keep"
        log_file = p.instance_log
        step: Step | None = None
        try:
            if decision.action == plan.SKIP:
                step = self._skip(cp, p, decision)
                status = "skipped"
            else:
                self._process(cp, p, decision, obs)
                status = "processed"
        except PromiseError as exc:
            self._post_error(cp, str(exc))
            write_last_report(p, "error")
            outcome = Outcome(pid, "promise-failed", self._since(start), str(exc), stype, log_file)
            self._processes = None  # the services just started: their states now
            step = self._program_problem(pid) or promise_step(str(exc))
            return self._record(obs, decision, outcome, step)
        except offline_errors():
            raise
        except (SlapOSError, OSError) as exc:
            message = str(exc) or type(exc).__name__
            self._post_error(cp, message)
            write_last_report(p, "error")
            outcome = Outcome(pid, "failed", self._since(start), message, stype, log_file)
            return self._record(obs, decision, outcome, failing_step(exc, message))
        except Exception as exc:
            # A bug met on one partition (a release's odd files...) must not stop the others:
            # reported like any failure, with the traceback in the partition's log.
            log.debug("%s: unexpected error", pid, exc_info=True)
            message = f"internal error: {type(exc).__name__}: {exc}"
            self._post_error(cp, message)
            outcome = Outcome(pid, "failed", self._since(start), message, stype, log_file)
            return self._record(obs, decision, outcome, Step("partition", message=message))
        error = step.message if step is not None else ""
        outcome = Outcome(pid, status, self._since(start), "", stype, log_file)
        return self._record(obs, decision, outcome, step, error)

    def _record(
        self,
        obs: plan.Observation,
        decision: plan.PartitionPlan,
        outcome: Outcome,
        step: Step | None,
        error: str = "",
    ) -> Outcome:
        """Remember the outcome in .slapgrid/last-run.json (for `node explain`)."""
        record = RunRecord(
            partition_id=outcome.partition_id,
            status=outcome.status,
            at=self.node.clock.time(),
            seconds=round(outcome.seconds, 3),
            requested_state=decision.requested_state,
            software_url=decision.software_url,
            software_type=decision.software_type,
            action=decision.action,
            reasons=[r.code for r in decision.reasons],
            services=self._services_done,
            master=list(self._told),
            error=outcome.error or error,
            step=step,
            log=str(outcome.log_file or ""),
        )
        last = obs.last_run
        if (
            last is not None
            and outcome.status == "skipped"
            and last.status == "skipped"
            and (last.error, last.step, last.master) == (record.error, record.step, record.master)
        ):
            return outcome  # nothing new: spare a write per partition and run
        try:
            record.write(self.config.instance_root / outcome.partition_id / ".slapgrid")
        except OSError as exc:
            log.warning("%s: cannot record the run's outcome: %s", outcome.partition_id, exc)
        return outcome

    def _since(self, start: float) -> float:
        return self.node.clock.monotonic() - start

    def _post_error(self, cp: Any, message: str) -> None:
        try:
            cp.error(message)
            self._told.append("error")
        except offline_errors():
            raise
        except SlapOSError as exc:
            log.warning("%s: could not report the error to the master: %s", cp.getId(), exc)

    def _skip(self, cp: Any, p: part.Partition, decision: plan.PartitionPlan) -> Step | None:
        """An up-to-date partition: only its promises, in anomaly mode, when started.

        A program supervisord does not keep running is remembered (for `node explain`)
        even when no promise notices it: the run does not restart it.
        """
        if not decision.check_promises:
            return None
        error = self._check_anomaly(cp, p)
        problem = self._program_problem(p.partition_id)
        if problem is not None:
            return problem
        return None if error is None else promise_step(str(error))

    def _program_problem(self, partition_id: str) -> Step | None:
        """A program of the partition that supervisord does not keep running, if any."""
        if self._processes is None:
            states = service_states(self.config.instance_root, detail=True)
            self._processes = {} if states is None else states
        for name, info in sorted(self._processes.get(partition_id, {}).items()):
            if info["statename"] in ("RUNNING", "STARTING"):
                continue
            status = info.get("exitstatus")
            return Step(
                "supervisord",
                name=f"{partition_id}:{name}",
                message=f"{name} is {info['statename']}: {info.get('description') or ''}".strip(),
                exit_status=int(status) if isinstance(status, int) else None,
                state=str(info["statename"]),
            )
        return None

    def _process(
        self, cp: Any, p: part.Partition, decision: plan.PartitionPlan, obs: plan.Observation
    ) -> None:
        state = decision.requested_state
        params = parameters_of(cp)
        timestamp = str(params["timestamp"]) if "timestamp" in params else None
        with contextlib.suppress(FileNotFoundError):
            p.transaction_file.unlink()
        if self.options.force_stop and state == STARTED:
            timestamp = None
        if timestamp is not None and not self.options.force and obs.periodicity != 0:
            # not up to date: the old .timestamp is stale (upstream removes it too)
            with contextlib.suppress(FileNotFoundError):
                p.timestamp_file.unlink()
        with partition_log(p, self.node.is_root):
            log.info("processing partition %s (requested state %s)", p.partition_id, state)
            for reason in decision.reasons:
                log.info("%s: %s", p.partition_id, reason.text)
            self._refresh_certificates(cp, p)
            with contextlib.suppress(FileNotFoundError):
                p.error_log.unlink()
            try:
                self._deploy(cp, p, decision)
            except PromiseError:
                self._applied(cp, decision, timestamp)
                raise
            except Exception as exc:
                p.error_log.write_text(str(exc))
                if state == STARTED and not isinstance(exc, offline_errors()):
                    with contextlib.suppress(PromiseError, SlapOSError, OSError):
                        self._run_promises(p, force=True)
                raise
        self._applied(cp, decision, timestamp)
        if timestamp is not None:
            p.timestamp_file.write_text(timestamp)

    def _applied(self, cp: Any, decision: plan.PartitionPlan, timestamp: str | None) -> None:
        """Remember what this processing applied: the next plan says what changed since."""
        applied = Applied(
            requested_state=decision.requested_state,
            software_url=decision.software_url,
            software_type=decision.software_type,
            parameters=parameters_of(cp),
            timestamp=timestamp,
            at=self.node.clock.time(),
        )
        try:
            applied.write(self.config.instance_root / decision.partition_id / ".slapgrid")
        except OSError as exc:
            log.warning("%s: cannot record what was applied: %s", decision.partition_id, exc)

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

    def _deploy(self, cp: Any, p: part.Partition, decision: plan.PartitionPlan) -> None:
        root = self.config.instance_root
        state = decision.requested_state
        if state == STARTED:
            self._install(cp, p)
            if decision.services == "stop":
                self._services_done = "stop"
                self.services.stop(root, p.partition_id)
                return
            self._services_done = "start"
            self.services.start(root, p.partition_id, p.path)
            self._run_promises(p, force=True)
            cp.started()
            self._told.append("started")
            write_last_report(p, "started")
            self._send_transaction(cp, p)
        elif state == STOPPED:
            try:
                self._install(cp, p)
            finally:
                self._services_done = "stop"
                self.services.stop(root, p.partition_id)
            with contextlib.suppress(SlapOSError):
                cp.stopped()
                self._told.append("stopped")
            self._send_transaction(cp, p)
        elif state == DESTROYED:
            self._services_done = "stop"
            self.services.stop(root, p.partition_id)
            with contextlib.suppress(SlapOSError):
                cp.stopped()
                self._told.append("stopped")
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

    def _check_anomaly(self, cp: Any, p: part.Partition) -> PromiseError | None:
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
            return exc
        if (status is None and last != "started") or is_error:
            self._refresh_certificates(cp, p)
            cp.started()
            self._told.append("started")
            write_last_report(p, "started")
        return None

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
            start = self.node.clock.monotonic()
            try:
                self._run_promises(p, force=True)
            except PromiseError as exc:
                o = Outcome(pid, "promise-failed", self._since(start), str(exc))
            except (SlapOSError, OSError) as exc:
                o = Outcome(pid, "promise-failed", self._since(start), str(exc))
            else:
                o = Outcome(pid, "processed", self._since(start))
            result.outcomes.append(o)
            if o.status == "processed":
                self.progress(f"{pid}: promises ok ({o.seconds:.1f}s)")
            else:
                self.progress(f"{pid}: {o.error}")
        return result
