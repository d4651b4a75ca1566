"""`pi-cluster image customize`: per-node first-boot configuration written into a raw image file."""

from __future__ import annotations

from typing import Annotated

import typer

from pi_cluster.cli.common import InventoryOpt, console, fail, load_cluster
from pi_cluster.cli.flash import InitFormatOpt, _check_format
from pi_cluster.flash import core

app = typer.Typer(help="Work on raw image files.", no_args_is_help=True)


@app.command("customize")
def customize(
    image_file: Annotated[str, typer.Argument(help="A raw .img file (edited in place).", show_default=False)],
    node: Annotated[str, typer.Option("--node", "-n", help="Inventory node whose settings to write.",
                                      show_default=False)],
    inventory: InventoryOpt = None,
    init_format: InitFormatOpt = "auto",
) -> None:
    """Write NODE's first-boot configuration into IMAGE_FILE's boot partition (no mounting, no root needed).

    Example: pi-cluster image customize node1.img --node node1 -i inventory/mycluster
    """
    fmt = _check_format(init_format)
    cluster = load_cluster(inventory)
    try:
        n = cluster.node(node)
    except KeyError:
        fail(f"node {node} is not in inventory {cluster.source}",
             "known nodes: " + ", ".join(x.name for x in cluster.nodes))
    try:
        cfg = core.node_config(n)
        c = core.customize_image(image_file, cfg, fmt)
    except core.FlashError as e:
        fail(str(e), e.hint)
    console.print(f"[green]ok[/] {image_file}: {c.format} for {node} ({', '.join(c.files)})", highlight=False)
    for w in c.warnings:
        console.print(f"[yellow]warning[/]: {w}", highlight=False)
