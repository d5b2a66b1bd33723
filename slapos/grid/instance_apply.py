"""One partition's processing in `slapos node instance`: carry out the plan
slapos.grid.instance_plan made for it (deploy, stop, destroy, or only check an up-to-date
partition's promises), tell the master, and record what was done in the partition's
.slapgrid/ (for the next plan and for `node explain`). The engine (slapos.grid.instance)
runs one PartitionJob per partition.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from slapos.errors import PromiseError, SlapOSError
from slapos.grid import instance_plan as plan
from slapos.grid import partition as part
from slapos.grid.instance_io import (
    InstanceOptions,
    Node,
    Outcome,
    ServiceControl,
    clean_free_partition,
    local_partition,
    partition_log,
    read_last_report,
    write_last_report,
)
from slapos.grid.instance_observe import service_states
from slapos.grid.instance_plan import DESTROYED, STARTED, STOPPED
from slapos.grid.master import MasterPartition, offline_errors, parameters_of, retention_delay_of
from slapos.grid.runrecord import Applied, RunRecord, Step, failing_step, promise_step

log = logging.getLogger(__name__)


def refresh_certificates(node: Node, cp: MasterPartition, p: part.Partition) -> None:
    """Write the partition's certificate and key from the master (when the node keeps them)."""
    if node.config.certificate_repository_path is None:
        return
    certs = cp.getCertificate()
    p.write_certificates(certs["certificate"], certs["key"], node.is_root)


def run_promises(
    node: Node,
    p: part.Partition,
    *,
    force: bool,
    anomaly: bool = False,
    cp: MasterPartition | None = None,
) -> None:
    """Run the partition's promises; raise the first failure (a bang first, given `cp`)."""
    from slapos.grid import buildout
    from slapos.grid import promise as prom

    run = prom.PromiseRun(
        partition=p.path,
        partition_id=p.partition_id,
        timeout=float(node.config.promise_timeout),
        environ=buildout.clean_environment(node.environ, p.path),
        force=force,
        anomaly=anomaly,
        computer_id=node.config.computer_id,
        master_url=node.config.master_url,
        partition_key=str(p.key_file or ""),
        partition_cert=str(p.cert_file or ""),
    )
    results = prom.run_promises(run, node.runner, node.clock)
    error = prom.first_failure(results)
    banging = [r for r in results if r.bang]
    if banging and cp is not None:
        # upstream: at most one bang per run, in the failing plugin's words
        with contextlib.suppress(SlapOSError):
            cp.bang(f"Promise {banging[0].title} is failing")
    if error is not None:
        raise error


class ProgramStates:
    """supervisord's programs by partition, read once per run when a partition needs them."""

    def __init__(self, instance_root: Path) -> None:
        self.instance_root = instance_root
        self._by_group: dict[str, dict[str, Any]] | None = None

    def forget(self) -> None:
        """The services changed: read them again when next asked."""
        self._by_group = None

    def problem(self, partition_id: str) -> Step | None:
        """A program of the partition that supervisord does not keep running, if any."""
        if self._by_group is None:
            states = service_states(self.instance_root, detail=True)
            self._by_group = {} if states is None else states
        for name, info in sorted(self._by_group.get(partition_id, {}).items()):
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


class PartitionJob:
    """One partition's processing: what it did is told to the master and recorded."""

    def __init__(
        self,
        node: Node,
        options: InstanceOptions,
        services: ServiceControl,
        programs: ProgramStates,
    ) -> None:
        self.node = node
        self.config = node.config
        self.options = options
        self.services = services
        self.programs = programs
        self._told: list[str] = []  # what this partition's processing told the master
        self._services_done = "keep"  # what it did to its services

    def execute(
        self, cp: MasterPartition, obs: plan.Observation, decision: plan.PartitionPlan, start: float
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
            self.programs.forget()  # the services just started: their states now
            step = self.programs.problem(pid) or promise_step(str(exc))
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

    def _post_error(self, cp: MasterPartition, message: str) -> None:
        try:
            cp.error(message)
            self._told.append("error")
        except offline_errors():
            raise
        except SlapOSError as exc:
            log.warning("%s: could not report the error to the master: %s", cp.getId(), exc)

    def _skip(
        self, cp: MasterPartition, p: part.Partition, decision: plan.PartitionPlan
    ) -> Step | None:
        """An up-to-date partition: only its promises, in anomaly mode, when started.

        A program supervisord does not keep running is remembered (for `node explain`)
        even when no promise notices it: the run does not restart it.
        """
        if not decision.check_promises:
            return None
        error = self._check_anomaly(cp, p)
        problem = self.programs.problem(p.partition_id)
        if problem is not None:
            return problem
        return None if error is None else promise_step(str(error))

    def _process(
        self,
        cp: MasterPartition,
        p: part.Partition,
        decision: plan.PartitionPlan,
        obs: plan.Observation,
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
            refresh_certificates(self.node, cp, p)
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
                        run_promises(self.node, p, force=True)
                raise
        self._applied(cp, decision, timestamp)
        if timestamp is not None:
            p.timestamp_file.write_text(timestamp)

    def _applied(
        self, cp: MasterPartition, decision: plan.PartitionPlan, timestamp: str | None
    ) -> None:
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

    def _connection(self, cp: MasterPartition, p: part.Partition) -> part.SlapConnection:
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

    def _install(self, cp: MasterPartition, p: part.Partition) -> None:
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

    def _deploy(self, cp: MasterPartition, p: part.Partition, decision: plan.PartitionPlan) -> None:
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
            run_promises(self.node, p, force=True)
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

    def _send_transaction(self, cp: MasterPartition, p: part.Partition) -> None:
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

    def _check_anomaly(self, cp: MasterPartition, p: part.Partition) -> PromiseError | None:
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
            run_promises(self.node, p, force=False, anomaly=True, cp=cp)
        except PromiseError as exc:
            log.error("%s: %s", p.partition_id, exc)
            if (status is None and last != "error") or (status is not None and not is_error):
                refresh_certificates(self.node, cp, p)
                self._post_error(cp, str(exc))
                write_last_report(p, "error")
            return exc
        if (status is None and last != "started") or is_error:
            refresh_certificates(self.node, cp, p)
            cp.started()
            self._told.append("started")
            write_last_report(p, "started")
        return None
