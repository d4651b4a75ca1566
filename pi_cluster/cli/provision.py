"""`pi-cluster provision | upgrade | reset | reboot`: run a playbook on the inventory's nodes with live
progress per host, then a recap; failures as host + task + Ansible's message, exit 1."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from pi_cluster import provision as prov
from pi_cluster.cli.common import (
    EXIT_FAILED,
    InventoryOpt,
    console,
    err_console,
    fail,
    load_cluster,
    render_problems,
    user_errors,
)
from pi_cluster.inventory import Cluster

LimitOpt = Annotated[
    str | None, typer.Option("--limit", "-l", help="Only these hosts or groups (an Ansible pattern, like -l).")
]
CheckOpt = Annotated[bool, typer.Option("--check", help="Dry run: report what would change, change nothing.")]
DiffOpt = Annotated[bool, typer.Option("--diff", help="Show the changes made to files (with --check: would make).")]
ExtraVarsOpt = Annotated[
    list[str] | None,
    typer.Option("--extra-vars", "-e", help="Extra variables, as for ansible-playbook -e (key=value or @file)."),
]
TagsOpt = Annotated[str | None, typer.Option("--tags", "-t", help="Only tasks with these tags (comma-separated).")]

_STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "unreachable": "bold magenta"}


def progress_table(state: prov.RunState) -> Table:
    """The live view: one row per host with its current task and its counters so far."""
    table = Table(title=f"{state.playbook}: {state.play}" if state.play else state.playbook, title_justify="left",
                  expand=False)
    table.add_column("host", style="bold")
    table.add_column("current task", overflow="ellipsis", max_width=60)
    for col in ("ok", "changed", "failed", "unreachable"):
        table.add_column(col, justify="right")
    for h in sorted(state.hosts.values(), key=lambda p: p.host):
        task = h.task or ("done" if state.finished else "waiting")
        table.add_row(Text(h.host), Text(task), str(h.ok), _count(h.changed, "changed"), _count(h.failed, "failed"),
                      _count(h.unreachable, "unreachable"))
    return table


def recap_table(result: prov.RunResult) -> Table:
    """Ansible's PLAY RECAP as a table, one row per host, with its outcome."""
    table = Table(title=f"recap: {result.playbook}", title_justify="left")
    table.add_column("host", style="bold")
    table.add_column("result")
    hosts = sorted(result.hosts.values(), key=lambda p: p.host)
    extra = [c for c in ("rescued", "ignored") if any(getattr(h, c) for h in hosts)]  # shown when used
    for col in ("ok", "changed", "failed", "unreachable", "skipped", *extra):
        table.add_column(col, justify="right")
    for h in hosts:
        table.add_row(Text(h.host), Text(h.status, style=_STYLE[h.status]), str(h.ok), _count(h.changed, "changed"),
                      _count(h.failed, "failed"), _count(h.unreachable, "unreachable"), str(h.skipped),
                      *(str(getattr(h, c)) for c in extra))
    return table


def failures_view(result: prov.RunResult) -> RenderableType:
    panels = [
        Panel(Text(f.message),
              title=f"[bold]{escape(f.host)}[/] {'unreachable' if f.unreachable else 'failed'}: {escape(f.task)}",
              title_align="left", border_style="red")
        for f in result.failures
    ]
    return Group(*panels)


def _count(n: int, kind: str) -> Text:
    return Text(str(n), style=_STYLE[kind] if n else "")


def _run(playbook: str, cluster: Cluster, *, limit: str | None = None, check: bool = False,
         diff: bool = False, tags: str | None = None, extra_vars: list[str] | None = None) -> None:
    with user_errors():
        if cluster.warnings:
            render_problems(cluster.warnings, cluster.source)
        names = [n.name for n in cluster.nodes]
        live = Live(console=console, refresh_per_second=8, transient=True, auto_refresh=console.is_terminal)
        try:
            with live:
                result = prov.run_playbook(
                    playbook, cluster.source, limit=limit, check=check, diff=diff, tags=tags,
                    extra_args=[a for v in extra_vars or [] for a in ("-e", v)],
                    hosts=None if limit else names,
                    on_progress=lambda state: live.update(progress_table(state)),
                )
        except prov.ProvisionError as e:
            fail(str(e))
    if diff:
        for c in result.changes:
            if c.diff:
                console.print(f"[bold]{escape(c.host)}[/] [yellow]changed[/]: {escape(c.task)}", highlight=False)
                console.print(Syntax(c.diff, "diff", theme="ansi_dark", background_color="default"))
    console.print(recap_table(result))
    if not result.ok:
        err_console.print(failures_view(result))
        err_console.print(f"[bold red]{playbook} failed[/] on {len({f.host for f in result.failures})} host(s)",
                          highlight=False)
        raise typer.Exit(EXIT_FAILED)
    what = "would be" if check else "were"
    changed = sum(h.changed for h in result.hosts.values())
    console.print(f"[green]{playbook} done[/]: {changed} change(s) {what} made on {len(result.hosts)} host(s)",
                  highlight=False)


def provision(inventory: InventoryOpt = None, limit: LimitOpt = None, check: CheckOpt = False,
              diff: DiffOpt = False, tags: TagsOpt = None, extra_vars: ExtraVarsOpt = None) -> None:
    """Provision the cluster: OS preparation, k3s servers, agents, kubeconfig (playbooks/site.yml)."""
    _run("site", load_cluster(inventory), limit=limit, check=check, diff=diff, tags=tags, extra_vars=extra_vars)


def upgrade(inventory: InventoryOpt = None, limit: LimitOpt = None, check: CheckOpt = False,
            diff: DiffOpt = False, extra_vars: ExtraVarsOpt = None) -> None:
    """Upgrade k3s to the inventory's k3s_version, one node at a time, servers first (playbooks/upgrade.yml)."""
    _run("upgrade", load_cluster(inventory), limit=limit, check=check, diff=diff, extra_vars=extra_vars)


def reset(
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    extra_vars: ExtraVarsOpt = None,
) -> None:
    """Remove k3s and its data from the nodes, leaving SSH and the OS intact (playbooks/reset.yml)."""
    cluster = load_cluster(inventory)
    if not yes:
        target = f"the hosts matching {limit!r}" if limit else ", ".join(n.name for n in cluster.nodes)
        if not typer.confirm(f"Remove k3s and all cluster data from {target}?", default=False):
            err_console.print("reset cancelled: nothing was changed")
            raise typer.Exit(EXIT_FAILED)
    _run("reset", cluster, limit=limit, extra_vars=extra_vars)


def reboot(inventory: InventoryOpt = None, limit: LimitOpt = None, extra_vars: ExtraVarsOpt = None) -> None:
    """Reboot the nodes one at a time, servers first, each Ready again before the next (playbooks/reboot.yml)."""
    _run("reboot", load_cluster(inventory), limit=limit, extra_vars=extra_vars)
