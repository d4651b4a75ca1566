"""`pi-cluster check`: run the conformance checks (testinfra tests, in-process pytest) and render the
report: a live view while running, then a scenario x node table and a summary line."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pi_cluster.cli.common import EXIT_BAD_INPUT, InventoryOpt, console, err_console, fail, load_cluster
from pi_cluster.conformance.report import Report, Result, Status, mask

if TYPE_CHECKING:
    import pytest

# pytest and the check machinery (paramiko, testinfra) load only when `check` runs, not for every command
PKG_DIR = Path(__file__).resolve().parent.parent / "conformance"


class LiveView:
    """The live view: one line per host with its latest progress message."""

    def __init__(self, nodes: list[str]) -> None:
        self.lines: dict[str, tuple[str, str]] = {n: ("waiting", "") for n in nodes}
        self.phase = "starting"
        self.lock = threading.Lock()
        self.start = time.monotonic()

    def __call__(self, phase: str, node: str, message: str) -> None:
        with self.lock:
            self.phase = phase
            if node:
                self.lines[node] = (phase, mask(message))
            else:
                self.lines["(run)"] = (phase, mask(message))

    def __rich__(self) -> Table:
        t = Table(title=f"pi-cluster check - {self.phase} ({time.monotonic() - self.start:.1f} s)", box=None)
        t.add_column("host", style="bold")
        t.add_column("phase", style="cyan")
        t.add_column("status")
        with self.lock:
            for n, (ph, msg) in self.lines.items():
                t.add_row(n, ph, Text(msg))
        return t


class Bridge:
    """pytest plugin object: hands the live view to the run, collects the user's extra tests' outcomes."""

    def __init__(self, view: LiveView | None) -> None:
        self.view = view
        self.config: pytest.Config | None = None
        self.extra: list[Result] = []
        self.interrupted = False
        self.own: set[str] = set()

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for it in items:
            mod = getattr(it, "module", None)
            if mod is not None and mod.__name__.startswith("pi_cluster.conformance.") and hasattr(mod, "SCENARIO"):
                self.own.add(it.nodeid)

    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config
        config._pi_progress = self.view  # type: ignore[attr-defined]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid in self.own:
            return
        if report.when != "call" and not (report.failed or report.skipped):
            return
        node = report.nodeid.rsplit("[", 1)[-1].rstrip("]") if "[" in report.nodeid else "workstation"
        status: Status = "fail" if report.failed else "skip" if report.skipped else "pass"
        seen = ""
        if report.failed:
            seen = str(report.longrepr).strip().splitlines()[-1][:300] if report.longrepr else "failed"
        elif report.skipped and isinstance(report.longrepr, tuple):
            seen = str(report.longrepr[2])
        self.extra.append(Result("extra", node, report.nodeid.split("::")[-1].split("[")[0], status,
                                 target=report.nodeid.split("::")[0], seen=seen or status, explains=False))
        if self.view:
            self.view("extra", node, f"{report.nodeid.split('::')[-1]}: {status}")

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self.interrupted = True

    def report(self) -> Report | None:
        from pi_cluster.conformance.plugin import _STATE

        if self.config is None:
            return None
        state = self.config.stash.get(_STATE, None)
        run = state["run"] if state else None
        return run.report if run else None


def check(
    inventory: InventoryOpt = None,
    only: Annotated[str | None, typer.Option("--only", help="Run only these scenarios (comma separated).")] = None,
    skip: Annotated[str | None, typer.Option("--skip", help="Skip these scenarios (comma separated).")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    keep_workload: Annotated[bool, typer.Option("--keep-workload", help="Leave the probe namespace.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds for the whole run.", min=5)] = 120.0,
    extra_tests: Annotated[Path | None, typer.Option("--extra-tests", help="Also run your testinfra files "
                                                     "in this directory against the same hosts.")] = None,
    image: Annotated[str | None, typer.Option("--image", help="Probe workload image (agnhost netexec).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show pytest's own output too.")] = False,
) -> None:
    """Prove the cluster's Service networking works: nodes, pod network, kube-proxy, ClusterIP, NodePort,
    LoadBalancer, DNS, churn, affinity, externalTrafficPolicy: Local, anonymous access.

    Exit 0 all passed (skips allowed), 1 a check failed, 2 bad input or a setup error.
    Plain pytest equivalent:
    `pytest -p pi_cluster.conformance.plugin --pyargs pi_cluster.conformance --inventory INV`.
    """
    import pytest

    from pi_cluster.conformance import run as cr

    cluster = load_cluster(inventory)
    split = lambda v: [s.strip() for s in v.split(",") if s.strip()] if v else None  # noqa: E731
    try:
        cr.select(split(only), split(skip))
    except ValueError as e:
        fail(str(e), "use --only/--skip with scenario names")
    if extra_tests is not None and not extra_tests.is_dir():
        fail(f"--extra-tests {extra_tests}: not a directory")
    args = [str(PKG_DIR), "-p", "pi_cluster.conformance.plugin", "-p", "no:cacheprovider",
            "--rootdir", str(PKG_DIR), "-c", os.devnull,
            "--inventory", cluster.source, "--check-timeout", str(timeout), "-o", "python_files=test_*.py"]
    if extra_tests is not None:
        args.insert(1, str(extra_tests))
    if only:
        args += ["--pi-only", only]
    if skip:
        args += ["--pi-skip", skip]
    if keep_workload:
        args.append("--keep-workload")
    if image:
        args += ["--probe-image", image]
    if junit:
        args += ["--pi-junit", str(junit)]
    if json_file:
        args += ["--pi-json", str(json_file)]
    args += ["-q", "-rN"] if verbose else ["-p", "no:terminal"]
    view = LiveView([n.name for n in cluster.nodes] + ["workstation"])
    bridge = Bridge(view)
    if console.is_terminal and not verbose:
        with Live(view, console=err_console, refresh_per_second=8, transient=True):
            code = pytest.main(args, plugins=[bridge])
    else:
        code = pytest.main(args, plugins=[bridge])
    rep = bridge.report()
    if rep is not None and bridge.extra:
        rep.extend(bridge.extra)
        if junit:
            rep.write_junit(junit)
        if json_file:
            rep.write_json(json_file)
    if bridge.interrupted:
        err_console.print("[yellow]interrupted[/]: probe workload removed" if rep else "[yellow]interrupted[/]")
        raise typer.Exit(130)
    if rep is None:
        fail(f"the checks did not run (pytest exit code {int(code)})", "run with --verbose to see pytest's output",
             code=EXIT_BAD_INPUT)
    render(rep)
    code_out = rep.exit_code()
    if code_out == 0 and int(code) not in (0, 5):  # pytest saw errors the report does not explain
        err_console.print(f"[red]error:[/] pytest reported errors (exit code {int(code)}); run with --verbose")
        code_out = 2
    raise typer.Exit(code_out)


def render(rep: Report) -> None:
    console.print(rep.table())
    # causes first; at most 2 lines per (scenario, node, cause) so the first screen shows every cause
    shown: dict[tuple[str, str, str | None], int] = {}
    hidden = 0
    for r in rep.root_failures():
        key = (r.scenario, r.node, r.cause)
        shown[key] = shown.get(key, 0) + 1
        if shown[key] <= 2 and sum(min(v, 2) for v in shown.values()) <= 40:
            console.print(Text("FAIL ", style="bold red") + Text(r.message()))
        else:
            hidden += 1
    if hidden:
        console.print(f"... and {hidden} more failures like these (all of them in --json/--junit)")
    if rep.facts.get("cleanup_error"):
        err_console.print(f"[yellow]warning:[/] {mask(rep.facts['cleanup_error'])}")
    if rep.facts.get("kept_namespace"):
        console.print(f"probe workload kept in namespace {rep.facts['kept_namespace']} (--keep-workload)")
    style = "bold red" if rep.exit_code() else "bold green"
    timing = f" in {rep.facts['total_seconds']:.1f} s" if "total_seconds" in rep.facts else ""
    console.print(Text(rep.summary_line() + timing, style=style))
