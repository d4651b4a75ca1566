"""The `pi-cluster` typer app: one sub-command group per module."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from pi_cluster import __version__

app = typer.Typer(
    name="pi-cluster",
    help="Flash Raspberry Pis, provision k3s on them, and prove the cluster's Service networking works.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# (module, attribute, name): sub-command groups (typer apps) and plain commands, registered if present.
_GROUPS = [("inventory", "app", "inventory"), ("lab", "app", "lab"), ("image", "app", "image")]
_COMMANDS = [
    ("flash", "flash"), ("flash", "devices"),
    ("provision", "provision"), ("provision", "upgrade"), ("provision", "reset"), ("provision", "reboot"),
    ("check", "check"),
]


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


def _register() -> None:
    for module, attr, name in _GROUPS:
        try:
            mod = importlib.import_module(f"pi_cluster.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"pi_cluster.cli.{module}":
                raise
            continue
        if hasattr(mod, attr):
            app.add_typer(getattr(mod, attr), name=name)
    for module, func in _COMMANDS:
        try:
            mod = importlib.import_module(f"pi_cluster.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"pi_cluster.cli.{module}":
                raise
            continue
        if hasattr(mod, func):
            app.command(func.replace("_", "-"))(getattr(mod, func))


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
