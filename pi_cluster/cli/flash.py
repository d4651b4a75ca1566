"""`pi-cluster flash` and `pi-cluster devices`: parse, call pi_cluster.flash.core, render with rich."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from pi_cluster.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    InventoryOpt,
    console,
    err_console,
    fail,
    load_cluster,
)
from pi_cluster.flash import core, source, target, writer

InitFormatOpt = Annotated[
    str,
    typer.Option("--init-format", help="First-boot format: auto (from the image), cloud-init, firstrun, legacy.",
                 case_sensitive=False),
]
_FORMATS = ("auto", "cloud-init", "firstrun", "legacy")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for it in items:
        node, sep, tgt = it.partition("=")
        if not sep or not node or not tgt:
            fail(f"{it!r} is not NODE=TARGET", "e.g. node1=/dev/sdb or node1=node1.img")
        out.append((node, tgt))
    return out


def _check_format(fmt: str) -> core.InitFormat:
    f = fmt.lower()
    if f not in _FORMATS:
        fail(f"unknown --init-format {fmt!r}", "auto, cloud-init, firstrun or legacy")
    return f  # type: ignore[return-value]


def flash(
    image: Annotated[str, typer.Argument(help="Image: .img, .img.xz, .img.gz, .img.zst or a .zip with one .img.",
                                          show_default=False)],
    assignments: Annotated[list[str], typer.Argument(
        metavar="NODE=TARGET...", help="Inventory node and where its card goes: a block device or a file.",
        show_default=False)],
    inventory: InventoryOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Write without asking.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip reading the targets back.")] = False,
    init_format: InitFormatOpt = "auto",
    allow_non_removable: Annotated[bool, typer.Option(
        "--allow-non-removable", help="Allow a drive that is not removable (e.g. an SSD in a USB-SATA case "
        "reported as fixed). The system disk and mounted drives are always refused.")] = False,
) -> None:
    """Write IMAGE to one card per node, each with its own first-boot configuration from the inventory.

    Example: pi-cluster flash raspios.img.xz node1=/dev/sdb node2=/dev/sdc -i inventory/mycluster
    """
    fmt = _check_format(init_format)
    pairs = _pairs(assignments)
    with contextlib.ExitStack() as stack:
        stream = None
        if yes:  # no question to wait for: start decompressing while the inventory loads and targets are checked
            try:
                stream = stack.enter_context(core.prefetched(image))
            except core.FlashError as e:
                fail(str(e), e.hint)
        cluster = load_cluster(inventory)
        try:
            p = core.plan(image, pairs, cluster, allow_non_removable=allow_non_removable,
                          info=stream.info if stream else None)
        except core.FlashError as e:
            fail(str(e), e.hint)
        report = _run(p, yes=yes, verify=not no_verify, fmt=fmt, stream=stream)
    _render_report(report)
    if report.interrupted:
        err_console.print("[yellow]interrupted[/]: unfinished targets were left unbootable (first MiB zeroed)")
        raise typer.Exit(130)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _run(p: core.Plan, *, yes: bool, verify: bool, fmt: core.InitFormat,
         stream: source.Stream | None) -> core.FlashReport:
    _render_plan(p, verify=verify, fmt=fmt)
    if not yes:
        if not sys.stdin.isatty():
            fail("not asking on a non-interactive input: add --yes to write")
        if not typer.confirm("Everything on these targets will be overwritten. Write?", default=False):
            err_console.print("nothing written")
            raise typer.Exit(EXIT_BAD_INPUT)

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                  TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[phase]}"),
                  console=err_console, transient=False) as bar:
        tasks: dict[str, TaskID] = {
            a.target.spec: bar.add_task(f"{a.node} → {a.target.spec}", total=p.image.size, phase="waiting")
            for a in p.assignments
        }

        def on_event(ev: writer.Event) -> None:
            tid = tasks[ev.key]
            if ev.phase in ("write", "verify"):
                if ev.phase == "verify" and ev.done == 0:
                    bar.reset(tid, total=ev.total, phase="verify")
                bar.update(tid, completed=ev.done, total=ev.total, phase=ev.phase)
            elif ev.phase == "failed":
                bar.update(tid, phase="[red]failed[/]")
                bar.stop_task(tid)
            elif ev.phase == "done":
                bar.update(tid, phase="[green]done[/]")
                bar.stop_task(tid)
            else:
                bar.update(tid, phase=ev.phase)

        return core.flash(p, verify=verify, init_format=fmt, emit=on_event, stream=stream)


def _render_plan(p: core.Plan, *, verify: bool, fmt: str) -> None:
    t = Table(title=f"flash {p.image.path} ({p.image.kind}, {_size(p.image.size)})", title_justify="left")
    for col in ("node", "target", "kind", "size", "model", "address", "user"):
        t.add_column(col)
    for a in p.assignments:
        d = a.target.drive
        addr = a.config.address or "dhcp"
        t.add_row(a.node, a.target.spec, "device" if a.target.is_device else "file",
                  _size(a.target.size) if a.target.is_device else "-", d.model if d else "-", addr, a.config.user)
    err_console.print(t)
    err_console.print(f"first-boot format: {fmt}; verify: {'on' if verify else 'off'}", highlight=False)


def _render_report(r: core.FlashReport) -> None:
    t = Table(title="summary", title_justify="left")
    for col in ("node", "target", "result", "format", "written", "time", "verified"):
        t.add_column(col, no_wrap=col in ("node", "target", "result", "format"))
    notes = []
    for tr in r.targets:
        c = tr.customisation
        res = "[green]ok[/]" if tr.ok else "[red]FAILED[/]"
        t.add_row(tr.node, tr.target, res, c.format if c else "-", _size(tr.written) if tr.written else "-",
                  f"{tr.seconds:.1f}s", "yes" if tr.verified else "no")
        if not tr.ok:
            notes.append(f"[red]{tr.node} → {tr.target}[/]: {tr.error}")
        for w in c.warnings if c else []:
            notes.append(f"[yellow]{tr.node} → {tr.target}[/]: {w}")
    console.print(t)
    for n in notes:
        console.print(n, highlight=False)
    ok = sum(t.ok for t in r.targets)
    console.print(f"{ok} of {len(r.targets)} target(s) written", highlight=False)


def devices(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    all_drives: Annotated[bool, typer.Option("--all", help="Also list drives that are not candidates.")] = False,
) -> None:
    """List drives that could be flashed (removable, not mounted, not the system disk).

    Example: pi-cluster devices --json
    """
    try:
        drives = target.list_drives()
    except (OSError, ValueError) as e:
        fail(f"cannot list drives: {e}")
    shown = drives if all_drives or as_json else [d for d in drives if d.candidate or d.removable]
    if as_json:
        print(json.dumps([d.as_dict() | {"candidate": d.candidate} for d in shown], indent=2))
        return
    if not shown:
        console.print("no removable drives found (insert a card, or use --all to see every drive)")
        return
    t = Table(title="drives" + ("" if all_drives else " (removable; --all for every drive)"), title_justify="left")
    for col in ("path", "size", "model", "transport", "removable", "mounted", "system", "candidate"):
        t.add_column(col, no_wrap=col in ("path", "size", "removable", "candidate"))
    yn = {True: "yes", False: "no"}
    for d in shown:
        t.add_row(d.path, _size(d.size), d.model or "-", d.transport or "-", yn[d.removable],
                  ", ".join(d.mountpoints) or "no", yn[d.system],
                  "[green]yes[/]" if d.candidate else "no")
    console.print(t)
