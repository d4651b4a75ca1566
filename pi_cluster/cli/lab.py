"""`pi-cluster lab ...`: a virtual Pi cluster on this machine (thin: parse, call pi_cluster.lab, render)."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from pi_cluster.cli.common import console, err_console, fail, user_errors

app = typer.Typer(help="A virtual Pi cluster on this machine: network namespaces, real sshd, real kernel rules.",
                  no_args_is_help=True)

NameOpt = Annotated[str, typer.Option("--name", "-n", help="Lab name (namespaces are <name>-<node>).")]


def _lab_errors() -> contextlib.AbstractContextManager[None]:
    from pi_cluster.lab import LabError

    return user_errors(LabError)


@app.command()
def up(
    name: NameOpt = "pilab",
    nodes: Annotated[int, typer.Option("--nodes", help="Number of nodes (1-100).")] = 3,
    servers: Annotated[int, typer.Option("--servers", help="How many of them are servers.")] = 1,
    proxy_mode: Annotated[str, typer.Option("--proxy-mode",
                                            help="iptables | iptables-legacy | nftables")] = "iptables",
    lan: Annotated[str | None, typer.Option("--lan", help="LAN /24 (default: the first free TEST-NET range).",
                                            show_default=False)] = None,
) -> None:
    """Build the lab (harmless if it is already up)."""
    from pi_cluster.lab import Lab

    t0 = time.monotonic()
    with _lab_errors(), err_console.status("building the lab") as status:
        lab = Lab.up(name=name, nodes=nodes, servers=servers, proxy_mode=proxy_mode, lan=lan,
                     progress=lambda msg: status.update(f"lab {name}: {msg}"))
    console.print(f"[green]lab {lab.name} is up[/] ({len(lab.nodes)} nodes, {lab.proxy_mode}, LAN {lab.lan}) "
                  f"in {time.monotonic() - t0:.1f} s", highlight=False)
    _render_nodes(lab.status())
    console.print(f"inventory: {lab.inventory_path}\n  e.g. pi-cluster check -i {lab.inventory_path}",
                  highlight=False)


@app.command()
def down(name: NameOpt = "pilab") -> None:
    """Remove every namespace, link, process and file of the lab (also after a crash)."""
    from pi_cluster.lab import Lab

    with _lab_errors():
        removed = Lab.down(name)
    if removed:
        console.print(f"lab {name} removed ({sum(1 for r in removed if r.startswith('netns'))} namespaces)")
    else:
        console.print(f"lab {name} was not up")


@app.command()
def status(
    name: NameOpt = "pilab",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the lab: nodes, pods, Services, faults, and the inventory to use."""
    from pi_cluster.lab import Lab

    with _lab_errors():
        st = Lab.load(name).status()
    if as_json:
        print(json.dumps(st, indent=2))
        return
    console.print(f"lab [bold]{st['name']}[/] ({st['status']}): proxy mode {st['proxy_mode']}, LAN {st['lan']}, "
                  f"workstation {st['workstation']}", highlight=False)
    _render_nodes(st)
    t = Table("namespace/pod", "node", "IP", "ready", title="pods")
    for p in st["pods"]:
        t.add_row(f"{p['namespace']}/{p['name']}", p["node"], p["ip"], "yes" if p["ready"] else "[red]no[/]")
    console.print(t)
    t = Table("namespace/service", "type", "cluster IP", "ports", "external", title="services")
    for s in st["services"]:
        ports = ", ".join(f"{p['port']}/{p['protocol']}" + (f":{p['node_port']}" if p["node_port"] else "")
                          for p in s["ports"])
        t.add_row(f"{s['namespace']}/{s['name']}", s["type"], s["cluster_ip"] or "None", ports,
                  ", ".join(s["lb_ingress"]))
    console.print(t)
    if st["faults"]:
        console.print("[yellow]faults:[/] " + ", ".join(
            f["kind"] + "(" + ", ".join(f"{k}={v}" for k, v in f["args"].items()) + ")" for f in st["faults"]))
    console.print(f"inventory: {st['inventory']}", highlight=False)


def _render_nodes(st: dict[str, Any]) -> None:
    t = Table("node", "role", "address", "netns", "pod CIDR", "sshd")
    for n in st["nodes"]:
        t.add_row(n["name"], n["role"], n["address"], n["netns"], n["pod_cidr"],
                  "up" if n["sshd_alive"] else "[red]down[/]")
    console.print(t)


FAULT_HELP = """Inject a fault, undone by `pi-cluster lab heal`:

  drop-rules NODE      remove the node's Service rules (as if its kube-proxy died)\n
  stop-dns             stop the cluster DNS server\n
  kill-pod NS/POD      kill a pod's processes (it leaves every node's rules)\n
  cut-node NODE        unplug the node from the LAN\n
  mtu-blackhole NODE   silently drop large packets to/from the node (MTU blackhole)"""


@app.command(help=FAULT_HELP)
def fault(
    kind: Annotated[str, typer.Argument(help="drop-rules | stop-dns | kill-pod | cut-node | mtu-blackhole")],
    target: Annotated[str | None, typer.Argument(help="NODE, or NS/POD for kill-pod", show_default=False)] = None,
    name: NameOpt = "pilab",
) -> None:
    from pi_cluster.lab import Lab

    args: dict[str, str] = {}
    if kind == "kill-pod":
        if not target:
            fail("kill-pod needs the pod: NAMESPACE/POD", "e.g. pi-cluster lab fault kill-pod default/web-0")
        ns, _, pod = target.rpartition("/")
        args = {"namespace": ns or "default", "name": pod}
    elif kind in ("drop-rules", "cut-node", "mtu-blackhole"):
        if not target:
            fail(f"{kind} needs a node name", f"e.g. pi-cluster lab fault {kind} node2")
        args = {"node": target}
    with _lab_errors():
        f = Lab.load(name).fault(kind, **args)
    console.print(f"[yellow]fault injected:[/] {f.kind} {' '.join(f.args.values())}  "
                  f"(undo: pi-cluster lab heal --name {name})", highlight=False)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_cmd(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="NODE (its network, mount and UTS namespaces) or NS/POD")],
    name: NameOpt = "pilab",
) -> None:
    """Run a command on a lab node or in a pod: `pi-cluster lab exec node1 -- curl -s 10.43.0.1`."""
    import os

    from pi_cluster.lab import Lab

    cmd = list(ctx.args) or [os.environ.get("SHELL", "/bin/sh")]
    with _lab_errors():
        argv = Lab.load(name).exec_argv(target) + cmd
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        fail(f"cannot run {argv[0]}: {e}")


@app.command()
def heal(name: NameOpt = "pilab") -> None:
    """Undo every injected fault."""
    from pi_cluster.lab import Lab

    with _lab_errors():
        healed = Lab.load(name).heal()
    console.print(f"healed {len(healed)} fault(s)" + (": " + ", ".join(f.kind for f in healed) if healed else ""))
