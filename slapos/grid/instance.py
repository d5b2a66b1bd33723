"""`slapos node instance` and `slapos node promise`: deploy the partitions the master
asks for, keep their services running, check their promises (node.md §5, §6, §10).

The master's partition list drives everything; each partition is processed on its own
and a failure never stops the others. The result says which partitions failed and why,
and its exit code follows upstream's precedence: failure (1) > promise failure (2) >
offline (3) > ok (0).

This module is the run over the partitions (and offline mode, `node promise`, the dry
run's plan); one partition's processing is slapos.grid.instance_apply's PartitionJob.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from slapos.errors import SlapOSError
from slapos.grid import instance_plan as plan
from slapos.grid import supervisor as sv
from slapos.grid.instance_apply import PartitionJob, ProgramStates, run_promises
from slapos.grid.instance_io import (
    InstanceOptions,
    Node,
    Outcome,
    ProcessResult,
    ServiceControl,
    Services,
    local_partition,
)
from slapos.grid.instance_observe import observe, service_states, supervisord_plan
from slapos.grid.instance_plan import STARTED, STOPPED
from slapos.grid.master import (
    MasterComputer,
    MasterPartition,
    connect_master,
    is_free,
    offline_errors,
)

log = logging.getLogger(__name__)


class UnknownPartitionError(SlapOSError):
    """--only-cp names partitions the master does not know."""


class InstanceEngine:
    """One `node instance` (or `node promise`) run."""

    def __init__(
        self,
        node: Node,
        options: InstanceOptions,
        computer: MasterComputer | None = None,
        progress: Callable[[str], None] | None = None,
        services: ServiceControl | None = None,
    ) -> None:
        self.services: ServiceControl = services or Services()
        self.node = node
        self.config = node.config
        self.options = options
        self._computer = computer
        self.progress = progress or (lambda text: log.info("%s", text))
        #: supervisord's programs, read once per run when a partition needs them
        self._programs = ProgramStates(self.config.instance_root)

    # ---- top level -----------------------------------------------------------------

    def computer(self) -> MasterComputer:
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

    def partitions(self) -> list[MasterPartition]:
        cps = list(self.computer().getComputerPartitionList())
        if self.options.only_cp:
            known = {cp.getId() for cp in cps}
            unknown = sorted(set(self.options.only_cp) - known)
            if unknown:
                one = len(unknown) == 1
                raise UnknownPartitionError(
                    f"unknown {'partition' if one else 'partitions'}: {', '.join(unknown)} "
                    f"(the master does not list {'it' if one else 'them'})"
                )
        return cps

    def _run_online(self) -> ProcessResult:
        result = ProcessResult()
        self._programs = ProgramStates(self.config.instance_root)
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
        self,
        cp: MasterPartition,
        services: dict[str, dict[str, str]] | None = None,
        *,
        dry: bool = False,
    ) -> plan.Observation:
        """What the node sees of `cp` (see slapos.grid.instance_observe)."""
        return observe(self.config, cp, services, dry=dry)

    def plan_options(self) -> plan.Options:
        return plan.Options(force=self.options.force, force_stop=self.options.force_stop)

    def process_one(self, cp: MasterPartition) -> Outcome:
        """Plan one partition, then carry the plan out."""
        start = self.node.clock.monotonic()
        obs = self.observe(cp)
        decision = plan.plan_partition(obs, self.plan_options(), self.node.clock.time())
        job = PartitionJob(self.node, self.options, self.services, self._programs)
        return job.execute(cp, obs, decision, start)

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
                run_promises(self.node, p, force=True)
            except (SlapOSError, OSError) as exc:
                o = Outcome(pid, "promise-failed", self.node.clock.monotonic() - start, str(exc))
            else:
                o = Outcome(pid, "processed", self.node.clock.monotonic() - start)
            result.outcomes.append(o)
            if o.status == "processed":
                self.progress(f"{pid}: promises ok ({o.seconds:.1f}s)")
            else:
                self.progress(f"{pid}: {o.error}")
        return result
