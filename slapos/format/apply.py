"""node format's I/O shell: read the host, then carry out a plan.

`prepare()` reads the previous computer description, the users, groups, directories, files
and network of the host (a host.py `HostState`), and asks plan.py for the plan.
`apply_plan()` runs its commands through the Runner and does its file-system changes;
`post_configuration()` tells the master.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import platform
import pwd
import random
import shutil
import time
import warnings
import zipfile
from pathlib import Path

from slapos.errors import ConfigError, MasterError, SlapOSError
from slapos.format import actions as act
from slapos.format.config import FormatConfig, FormatError
from slapos.format.host import HostState, PathEntry, UserEntry
from slapos.format.model import (
    RESOURCE_FILE,
    Address,
    Computer,
    Ipv6Range,
    Partition,
    User,
    VirtualInterface,
    computer_from_dict,
    loads_xml,
    marshal,
    read_definition,
)
from slapos.format.netif import NetworkState, read_network
from slapos.format.plan import FormatPlan, initial_partitions, plan_format
from slapos.system import Runner, write_file_atomic

log = logging.getLogger(__name__)


def load_previous(config: FormatConfig) -> Computer | None:
    """The computer description written by the previous run, if any."""
    path = config.computer_xml
    if not path.exists():
        log.warning("creating new computer data with id %r", config.computer_id)
        return None
    log.debug("loading previous computer data from %s", path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return computer_from_dict(loads_xml(data, path), path)


def definition_partitions(config: FormatConfig, path: Path) -> tuple[Computer, list[Partition]]:
    """Partitions described by an input definition file (-i)."""
    from slapos.format.addressing import netmask6

    log.info("using definition file %s", path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read definition file {path}: {exc.strerror}") from None
    computer_values, sections = read_definition(text, path, config.partition_amount)
    address = netmask = None
    if computer_values.get("address"):
        address, _, netmask = computer_values["address"].partition("/")
    partitions = []
    for index, values in enumerate(sections):
        addresses = []
        for item in values["address"].split():
            addr, _, mask = item.partition("/")
            addresses.append(Address(addr, mask))
        rng = None
        if values.get("ipv6_range"):
            addr, _, plen = values["ipv6_range"].partition("/")
            rng = Ipv6Range(addr, netmask6(int(plen)), values["ipv6_range"], int(plen))
        caps = values.get("capability_list")
        partitions.append(
            Partition(
                reference=values["pathname"],
                path=str(config.instance_root / values["pathname"]),
                user=User(values["user"]),
                tap=VirtualInterface(values["network_interface"]),
                address_list=tuple(addresses),
                ipv6_range=rng,
                tun=VirtualInterface(f"slaptun{index}") if config.create_tun else None,
                capability_list=tuple(c.strip() for c in caps.splitlines() if c.strip())
                if caps
                else None,
            )
        )
    computer = Computer(
        reference=config.computer_id,
        software_root=str(config.software_root),
        instance_root=str(config.instance_root),
        address=address,
        netmask=netmask,
        software_user=computer_values.get("software_user", "slapsoft"),
    )
    return computer, partitions


def _os_type() -> str:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    return json.dumps(
        (
            platform.platform(),
            release.get("ID", ""),
            release.get("VERSION_ID", ""),
            release.get("NAME", ""),
        )
    )


def read_host_state(
    config: FormatConfig, runner: Runner, paths: list[str], files: list[str]
) -> HostState:
    """Users, groups, the given paths and files, the network (when it matters)."""
    from slapos.version import __version__

    users = {}
    members: dict[str, set[str]] = {}
    for group in grp.getgrall():
        for member in group.gr_mem:
            members.setdefault(member, set()).add(group.gr_name)
    for entry in pwd.getpwall():
        users[entry.pw_name] = UserEntry(
            entry.pw_name,
            entry.pw_uid,
            entry.pw_gid,
            entry.pw_dir,
            entry.pw_shell,
            frozenset(members.get(entry.pw_name, ())),
        )
    groups = {g.gr_name: g.gr_gid for g in grp.getgrall()}
    path_entries = {}
    for path in paths:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            path_entries[path] = PathEntry(st.st_uid, st.st_gid, st.st_mode & 0o7777)
    contents = {}
    for file in files:
        with contextlib.suppress(OSError):
            contents[file] = Path(file).read_bytes()
    network = NetworkState()
    if config.alter_network or config.interface_name:
        try:
            network = read_network(runner)
        except SlapOSError:
            if config.alter_network:
                raise
            log.debug("cannot read the network; going on since alter_network is false")
    storage: list[str] = []
    if config.instance_storage_home is not None:
        with contextlib.suppress(OSError):
            for child in sorted(config.instance_storage_home.iterdir()):
                suffix = child.name[len("data") :]
                if child.name.startswith("data") and suffix.isdigit() and child.is_dir():
                    storage.append(str(child))
    return HostState(
        users=users,
        groups=groups,
        paths=path_entries,
        files=contents,
        network=network,
        storage_dirs=tuple(storage),
        os_type=_os_type(),
        python_version=platform.python_version(),
        slapos_version=__version__,
    )


def prepare(config: FormatConfig, runner: Runner, rng: random.Random | None = None) -> FormatPlan:
    """Read everything, plan everything; change nothing."""
    rng = rng or random.Random()
    given: list[Partition] | None = None
    previous: Computer | None
    if config.input_definition_file is not None:
        previous, given = definition_partitions(config, config.input_definition_file)
        partitions = given
    else:
        previous = load_previous(config)
        partitions = initial_partitions(config, previous)
    paths = [str(config.instance_root), str(config.software_root)]
    paths += [str(config.instance_root / p.reference) for p in partitions]
    if config.certificate_repository_path is not None:
        paths.append(str(config.certificate_repository_path))
    files = [str(config.computer_xml), *(f"{p}/{RESOURCE_FILE}" for p in paths[2:])]
    if config.computer_json is not None:
        files.append(str(config.computer_json))
    paths.append(f"{config.computer_xml}.zip")
    host = read_host_state(config, runner, paths, files)
    if config.instance_storage_home is not None:
        for data in host.storage_dirs:
            paths += [f"{data}/{p.reference}" for p in partitions]
        host = read_host_state(config, runner, paths, files)
    plan = plan_format(config, previous, host, rng, partitions=given)
    for warning in plan.warnings:
        log.warning("%s", warning)
    return plan


# ---- applying ------------------------------------------------------------------------


def _ids(user: str, group: str) -> tuple[int, int]:
    try:
        uid = pwd.getpwnam(user).pw_uid
        gid = grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise FormatError(f"cannot change owner to {user}:{group}: {exc.args[0]}") from None
    return uid, gid


def _archive(path: Path, archive: Path) -> None:
    """Add the content of `path` to `archive` as `<name>.YYYYMMDD-HH:MM` (upstream's names:
    two versions archived in the same minute share a name, both are kept)."""
    name = f"{path.name}.{time.strftime('%Y%m%d-%H:%M')}"
    content = path.read_bytes()

    def add() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
            with zipfile.ZipFile(archive, "a") as zf:
                zf.writestr(name, content, zipfile.ZIP_DEFLATED)

    try:
        add()
    except (zipfile.BadZipFile, OSError):
        broken = archive.with_name(archive.name + time.strftime("_broken_%Y%m%d-%H:%M"))
        log.warning("%s is not a valid zip archive: moved to %s", archive, broken)
        shutil.move(archive, broken)
        add()


def apply_action(action: act.Action, runner: Runner) -> None:
    """Carry out one action; raise FormatError if it fails."""
    log.debug("%s", action.describe())
    try:
        if isinstance(action, act.MakeDir):
            if action.parents:
                Path(action.path).mkdir(mode=action.mode, parents=True, exist_ok=True)
            else:
                os.mkdir(action.path, action.mode)
            os.chmod(action.path, action.mode)
        elif isinstance(action, act.ChangeMode):
            os.chmod(action.path, action.mode)
        elif isinstance(action, act.ChangeOwner):
            os.chown(action.path, *_ids(action.user, action.group))
        elif isinstance(action, act.WriteFile):
            target = Path(action.path)
            archive = Path(action.archive) if action.archive else None
            if archive and target.exists():
                _archive(target, archive)
            write_file_atomic_bytes(target, action.content, action.mode)
            if archive and not archive.exists():  # the history starts with this version
                _archive(target, archive)
        else:
            done = runner.run(action.argv(), timeout=120)
            if not done.ok:
                raise FormatError(
                    f"{action.describe()} failed (exit {done.returncode}): "
                    f"{done.tail(3).strip() or 'no output'}"
                )
    except OSError as exc:
        raise FormatError(f"{action.describe()} failed: {exc.strerror or exc}") from None


def write_file_atomic_bytes(path: Path, content: bytes, mode: int) -> None:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        return
    write_file_atomic(path, text, mode)


def apply_plan(plan: FormatPlan, runner: Runner) -> None:
    """Carry out every action in order; stop at the first failure."""
    for action in plan.actions:
        apply_action(action, runner)


def post_configuration(config: FormatConfig, computer: Computer) -> None:
    """Send the computer description to the master (loadComputerConfigurationFromXML)."""
    from slapos.slap import NotFoundError
    from slapos.slap.entry import connect

    try:
        remote = connect(config.master).registerComputer(config.computer_id)
        remote.updateConfiguration(marshal(computer))
    except NotFoundError as exc:
        raise MasterError(
            f"{config.master_url} does not know computer {config.computer_id!r} ({exc}): check "
            "computer_id and the certificates of slapos.cfg"
        ) from None
