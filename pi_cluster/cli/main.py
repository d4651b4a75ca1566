"""The `pi-cluster` typer app: one sub-command group per module."""

from __future__ import annotations

from typing import Annotated

import typer

from pi_cluster import __version__

app = typer.Typer(
    name="pi-cluster",
    help="Flash Raspberry Pis, provision k3s on them, and prove the cluster's Service networking works.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

def _version(value: bool) -> None:
    if value:
        print(f"pi-cluster {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """pi-cluster: one inventory; flash, provision, check; and a virtual lab cluster to rehearse on."""


from pi_cluster.cli import check, flash, image, inventory, lab, provision  # noqa: E402

app.add_typer(inventory.app, name="inventory")
app.add_typer(lab.app, name="lab")
app.add_typer(image.app, name="image")
for command in (flash.flash, flash.devices, provision.provision, provision.upgrade, provision.reset,
                provision.reboot, check.check):
    app.command()(command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
