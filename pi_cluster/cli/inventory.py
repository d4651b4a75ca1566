"""`pi-cluster inventory check|show`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from pi_cluster.cli.common import InventoryOpt, console, err_console, load_cluster, render_problems

app = typer.Typer(help="Validate and show the cluster inventory.", no_args_is_help=True)


@app.command("check")
def check(inventory: InventoryOpt = None) -> None:
    """Validate the inventory: exit 0 with a summary, or 2 with every problem (file, host, field).

    Example: pi-cluster inventory check -i inventory/example
    """
    cluster = load_cluster(inventory)
    if cluster.warnings:
        render_problems(cluster.warnings, cluster.source)
    s = cluster.summary()
    console.print(f"[green]ok[/] {s['source']}: {len(cluster.servers)} server(s) {', '.join(s['servers'])}; "
                  f"{len(cluster.agents)} agent(s) {', '.join(s['agents']) or '-'}", highlight=False)
    console.print(f"   k3s {s['k3s_version']}, API {s['api_endpoint']}, pods {s['cluster_cidr']}, "
                  f"services {s['service_cidr']}, DNS {s['cluster_dns']}, proxy {s['kube_proxy_mode']}, "
                  f"flannel {s['flannel_backend']}, servicelb {'on' if s['servicelb'] else 'off'}",
                  highlight=False)


@app.command("show")
def show(
    inventory: InventoryOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (secrets masked).")] = False,
) -> None:
    """Show the resolved settings per node, secrets masked.

    Example: pi-cluster inventory show -i inventory/example --json
    """
    cluster = load_cluster(inventory)
    data: dict[str, Any] = {
        "cluster": cluster.summary(),
        "nodes": [
            {"name": n.name, "role": n.role, "address": n.address, "user": n.user, "vars": n.masked_vars()}
            for n in cluster.nodes
        ],
    }
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    if cluster.warnings:
        render_problems(cluster.warnings, cluster.source)
    t = Table(title=f"cluster {cluster.source}")
    t.add_column("setting")
    t.add_column("value")
    for k, v in data["cluster"].items():
        t.add_row(k, ", ".join(v) if isinstance(v, list) else str(v))
    console.print(t)
    for n in data["nodes"]:
        nt = Table(title=f"{n['name']} ({n['role']}, {n['address']})", show_header=False)
        for k, v in sorted(n["vars"].items()):
            nt.add_row(k, json.dumps(v, default=str) if not isinstance(v, str) else v)
        console.print(nt)
    _ = err_console
