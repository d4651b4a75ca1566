"""The flash verb's core: plan (resolve nodes, targets and checks), then flash (write, customise, verify).

Nothing here prints; progress goes to the ``emit`` callback as :class:`~pi_cluster.flash.writer.Event`.

>>> cluster = inventory.load("inventory/example")                          # doctest: +SKIP
>>> p = plan("raspios.img.xz", [("node1", "/dev/sdb")], cluster)          # doctest: +SKIP
>>> report = flash(p, verify=True, emit=print)                            # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import pwd
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pi_cluster import inventory as inv
from pi_cluster.flash import bootfs, firstboot, source, target, writer
from pi_cluster.flash.firstboot import Customisation, NodeConfig

InitFormat = Literal["auto", "cloud-init", "firstrun", "legacy"]
KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")


class FlashError(Exception):
    """Bad input or a refused target: nothing was written (exit 2)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


# --------------------------------------------------------------------------------------------------
# per-node settings


def workstation_home() -> Path:
    """The invoking user's home (under sudo: the user who ran sudo, not root)."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user and os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            return Path(pwd.getpwnam(sudo_user).pw_dir)
    return Path.home()


def workstation_keys(home: Path | None = None) -> list[str]:
    keys = []
    ssh_dir = (home or workstation_home()) / ".ssh"
    for p in sorted(ssh_dir.glob("*.pub")) if ssh_dir.is_dir() else []:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for line in p.read_text().splitlines():
                if line.strip().startswith(KEY_PREFIXES):
                    keys.append(line.strip())
    return keys


def node_config(node: inv.Node, home: Path | None = None) -> NodeConfig:
    """The first-boot settings of ``node`` (inventory host and group vars), or FlashError."""
    if not node.user:
        raise FlashError(f"node {node.name}: ansible_user is not set",
                         "set ansible_user (the login created at flash time) in the inventory")
    keys = list(node.ssh_public_keys) or workstation_keys(home)
    if not keys:
        raise FlashError(
            f"node {node.name}: no SSH public key to install for user {node.user}",
            f"set ssh_public_keys in the inventory, or create a key pair (`ssh-keygen -t ed25519`) so that "
            f"{(home or workstation_home()) / '.ssh'}/*.pub exists; password login is off, so without a key "
            "nobody could log in",
        )
    bad = [k for k in keys if not k.strip().startswith(KEY_PREFIXES)]
    if bad:
        raise FlashError(f"node {node.name}: ssh_public_keys entry {bad[0][:40]!r}... is not an OpenSSH public key",
                         "each entry is one line of an id_*.pub file, e.g. 'ssh-ed25519 AAAA... me@laptop'")
    password = node.vars.get("pi_password")
    net = node.network
    return NodeConfig(
        hostname=node.name,
        user=node.user,
        keys=keys,
        password_hash=firstboot.hash_password(str(password)) if password else None,
        mode=net.mode,
        address=f"{net.address}/{net.prefix}" if net.mode == "static" else None,
        gateway=net.gateway,
        dns=list(net.dns),
        timezone=node.timezone,
        wifi_country=net.wifi_country,
        wifi_ssid=net.wifi_ssid,
        wifi_psk=net.wifi_psk.get_secret_value() if net.wifi_psk else None,
    )


# --------------------------------------------------------------------------------------------------
# plan


@dataclass
class Assignment:
    node: str
    target: target.Target
    config: NodeConfig
    precheck_error: str | None = None  # this target fails without being written; the others go ahead


@dataclass
class Plan:
    image: source.ImageInfo
    assignments: list[Assignment]


@contextlib.contextmanager
def prefetched(image: str | os.PathLike[str]) -> Iterator[source.Stream]:
    """Open ``image`` and start decompressing it in the background (into memory only; nothing is written
    anywhere) while the inventory is loaded and the targets are checked. Pass it to :func:`plan` and
    :func:`flash`; leaving the block stops the decoder."""
    info = inspect_image(image)
    with source.open_image(info.path, info) as stream:
        stream.prefetch()
        yield stream


def inspect_image(image: str | os.PathLike[str]) -> source.ImageInfo:
    try:
        return source.inspect(image)
    except source.SourceError as e:
        raise FlashError(str(e), "use an .img, .img.xz, .img.gz, .img.zst or a .zip holding one .img") from None


def plan(image: str | os.PathLike[str], pairs: list[tuple[str, str]], cluster: inv.Cluster, *,
         allow_non_removable: bool = False, lsblk_json: str | None = None, home: Path | None = None,
         info: source.ImageInfo | None = None) -> Plan:
    """Check everything before anything is written: the image, every node, every target.

    Raises FlashError (exit 2) for bad input or a refused target (system disk, mounted, not removable);
    a target that is only too small or not writable is marked (``precheck_error``) and fails alone."""
    if not pairs:
        raise FlashError("no NODE=TARGET given", "e.g. pi-cluster flash raspios.img.xz node1=/dev/sdb")
    info = info or inspect_image(image)
    if info.size is not None and info.size < 2 * writer.HEAD:
        raise FlashError(f"{image} is too small ({info.size} bytes) to be a disk image")
    names = [n for n, _ in pairs]
    for n in {n for n in names if names.count(n) > 1}:
        raise FlashError(f"node {n} is given more than once", "two cards with one hostname and address would clash")
    specs = [os.path.realpath(t) for _, t in pairs]
    for t in {t for t in specs if specs.count(t) > 1}:
        raise FlashError(f"target {t} is given more than once")
    if os.path.realpath(image) in specs:
        raise FlashError("a target is the image itself")
    missing = []
    for n in names:
        try:
            cluster.node(n)
        except KeyError:
            missing.append(n)
    if missing:
        known = ", ".join(x.name for x in cluster.nodes)
        raise FlashError(f"node(s) {', '.join(missing)} not in inventory {cluster.source}", f"known nodes: {known}")
    drives: list[target.Drive] | None = None
    assignments = []
    refusals = []
    for n, spec in pairs:
        cfg = node_config(cluster.node(n), home)
        try:
            if drives is None and Path(spec).is_block_device():
                drives = target.list_drives(lsblk_json)
            tgt = target.resolve(spec, drives=drives, allow_non_removable=allow_non_removable)
        except target.Refused as e:
            refusals.append(e)
            continue
        a = Assignment(n, tgt, cfg)
        try:
            target.check_writable(tgt, info.size)
        except target.Refused as e:
            a.precheck_error = "; ".join(e.reasons)
        assignments.append(a)
    if refusals:
        msg = "refusing to write: " + " | ".join(str(r) for r in refusals)
        hints = [r.hint for r in refusals if r.hint]
        raise FlashError(msg, hints[0] if hints else None)
    return Plan(info, assignments)


# --------------------------------------------------------------------------------------------------
# flash


@dataclass
class TargetReport:
    node: str
    target: str
    ok: bool
    error: str | None = None
    phase: str = ""
    written: int = 0
    seconds: float = 0.0
    verified: bool = False
    customisation: Customisation | None = None


@dataclass
class FlashReport:
    image: str
    image_size: int | None
    targets: list[TargetReport] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(t.ok for t in self.targets)


def _customiser(a: Assignment, fmt: InitFormat, out: dict[str, Customisation]) -> Callable[[str, bytes],
                                                                                            tuple[int, int]]:
    def run(path: str, head: bytes) -> tuple[int, int]:
        part = bootfs.boot_partition(head)
        if part.start < writer.HEAD:
            raise bootfs.BootFSError("the boot partition starts inside the first MiB; such images are not "
                                     "supported")
        fs = bootfs.BootFS(path, part.start)
        out[a.target.spec] = firstboot.customise(fs, a.config, fmt)
        return part.start, part.end

    return run


def flash(p: Plan, *, verify: bool = True, init_format: InitFormat = "auto",
          emit: Callable[[writer.Event], None] = lambda e: None, stream: source.Stream | None = None,
          ) -> FlashReport:
    """Decompress once, write every target of plan ``p``; a failing target does not stop the others.

    ``stream``: the image already opened (see :func:`prefetched`); else it is opened here."""
    report = FlashReport(str(p.image.path), p.image.size)
    custom: dict[str, Customisation] = {}
    jobs = []
    for a in p.assignments:
        if a.precheck_error:
            emit(writer.Event(a.target.spec, "failed", 0, p.image.size, a.precheck_error))
            continue
        jobs.append(writer.WriteJob(a.target.spec, str(a.target.path), a.target.is_device, a.target.size,
                                    _customiser(a, init_format, custom)))
    results: dict[str, writer.WriteResult] = {}
    if jobs:
        try:
            with contextlib.ExitStack() as stack:
                src = stream or stack.enter_context(source.open_image(p.image.path, p.image))
                res, report.interrupted = writer.write_all(src, jobs, verify=verify, emit=emit)
        except KeyboardInterrupt:  # between opening the source and the writers taking over
            report.interrupted = True
            res = []
        results = {r.key: r for r in res}
    for a in p.assignments:
        r = results.get(a.target.spec)
        if a.precheck_error or r is None:
            report.targets.append(TargetReport(a.node, a.target.spec, False, a.precheck_error or "not written",
                                               "check"))
            continue
        report.targets.append(TargetReport(a.node, a.target.spec, r.ok, r.error, r.phase, r.written, r.seconds,
                                           r.verified, custom.get(a.target.spec)))
    return report


# --------------------------------------------------------------------------------------------------
# image customize


def customize_image(path: str | os.PathLike[str], cfg: NodeConfig, init_format: InitFormat = "auto",
                    ) -> Customisation:
    """Customise the boot partition of an existing raw image file in place."""
    p = Path(path)
    if not p.is_file():
        raise FlashError(f"{p} is not a file", "give a raw .img file (decompress it first)")
    try:
        kind = source.detect_kind(p)
    except OSError as e:
        raise FlashError(f"cannot read {p}: {e.strerror}") from None
    if kind != "img":
        raise FlashError(f"{p} is a compressed .{kind} file, not a raw image",
                         "decompress it first (e.g. `xz -dk`), or use `pi-cluster flash IMAGE NODE=FILE`")
    try:
        fs = bootfs.BootFS.open_image(p)
        return firstboot.customise(fs, cfg, init_format)
    except (bootfs.BootFSError, firstboot.FirstBootError) as e:
        raise FlashError(f"{p}: {e}") from None


