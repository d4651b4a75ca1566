"""What every command shares: consoles, the -i option, and turning user errors into exit code 2."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from pi_cluster import inventory as inv

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

InventoryOpt = Annotated[
    str | None,
    typer.Option(
        "--inventory",
        "-i",
        help="Inventory file or directory (like `ansible -i`). Default: $PI_CLUSTER_INVENTORY, else the "
        "`inventory` of ansible.cfg.",
        show_default=False,
    ),
]


class UserError(Exception):
    """Bad input or setup: shown as a message, exit code 2."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def fail(message: str, hint: str | None = None, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    if hint:
        err_console.print(f"  [dim]{hint}[/]", highlight=False)
    raise typer.Exit(code)


def render_problems(problems: list[inv.Problem], source: str) -> None:
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    if errors:
        err_console.print(f"[bold red]{len(errors)} problem(s)[/] in inventory {source}:", highlight=False)
    for p in errors + warnings:
        tag = "[red]error[/]" if p.severity == "error" else "[yellow]warning[/]"
        err_console.print(f"  {tag} {p.location()}: {p.message}", highlight=False, markup=True)
        if p.hint:
            err_console.print(f"        [dim]-> {p.hint}[/]", highlight=False)


def load_cluster(source: str | None) -> inv.Cluster:
    """Load the inventory or exit 2 with every problem listed."""
    try:
        cluster = inv.load(source)
    except inv.InventoryError as e:
        render_problems(e.problems, e.source)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    return cluster


@contextlib.contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Turn UserError (and the core's own bad-input errors, ``kinds``, which may carry a ``hint``) into exit
    code 2 with a message, and Ctrl-C into exit 130; never a traceback."""
    caught: tuple[type[Exception], ...] = (UserError, *kinds)
    try:
        yield
    except caught as e:
        fail(str(e), getattr(e, "hint", None))
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
