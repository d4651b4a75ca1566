"""The pytest plugin behind the conformance tests::

    pytest -p pi_cluster.conformance.plugin -p no:cacheprovider --pyargs pi_cluster.conformance --inventory INV

Options: ``--inventory INV`` (required), ``--pi-only S1,S2``, ``--pi-skip S``, ``--pi-json FILE``,
``--pi-junit FILE``, ``--keep-workload``, ``--check-timeout SECONDS``, ``--probe-image IMAGE``.

Hosts are the inventory's nodes: testinfra's ``host`` fixture is parametrised with one host per node
(connection ``picluster://<node>``: the inventory's SSH settings, host key checking on), so the user's own
testinfra files run against the same hosts. The session fixture ``conformance`` runs the whole check
(deploy, one batch per node, evaluate) once; each scenario test then asserts on its node's results.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import testinfra.backend

from pi_cluster import inventory as inv
from pi_cluster.conformance import run as cr
from pi_cluster.conformance.report import SCENARIOS, Report
from pi_cluster.remote import StrictParamikoBackend, Target

_TARGETS: dict[str, Target] = {}
BACKEND = "picluster"


class InventoryBackend(StrictParamikoBackend):
    """testinfra backend for ``picluster://<node>``: the node's inventory connection settings."""

    NAME = BACKEND

    def __init__(self, hostspec: str, *args: Any, **kwargs: Any) -> None:
        name = hostspec.split("://", 1)[-1]
        if name not in _TARGETS:
            raise RuntimeError(f"node {name!r} is not in the inventory")
        self.node_name = name
        super().__init__(_TARGETS[name])

    def get_pytest_id(self) -> str:
        return self.node_name

    @classmethod
    def get_hosts(cls, host: str, **kwargs: Any) -> list[str]:
        return [host]


testinfra.backend.BACKENDS[BACKEND] = f"{__name__}.InventoryBackend"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("pi-cluster", "pi-cluster conformance checks")
    g.addoption("--inventory", dest="pi_inventory", default=None,
                help="Ansible inventory of the cluster (default: $PI_CLUSTER_INVENTORY)")
    g.addoption("--pi-only", dest="pi_only", default=None, help="only these scenarios (comma separated)")
    g.addoption("--pi-skip", dest="pi_skip", default=None, help="skip these scenarios (comma separated)")
    g.addoption("--pi-json", dest="pi_json", default=None, help="write the JSON report here")
    g.addoption("--pi-junit", dest="pi_junit", default=None, help="write the JUnit XML report here")
    g.addoption("--keep-workload", dest="pi_keep", action="store_true", help="leave the probe namespace")
    g.addoption("--check-timeout", dest="pi_timeout", type=float, default=120.0, help="seconds for the whole run")
    g.addoption("--probe-image", dest="pi_image", default=None, help="probe workload image (agnhost)")


def _split(v: str | None) -> list[str] | None:
    return [s.strip() for s in v.split(",") if s.strip()] if v else None


def pytest_configure(config: pytest.Config) -> None:
    source = config.getoption("pi_inventory") or os.environ.get(inv.ENV_VAR)
    if not source:
        return
    try:
        cluster = inv.load(source)
    except inv.InventoryError as e:
        raise pytest.UsageError(f"inventory {e.source or source}:\n" + str(e)) from None
    try:
        scenarios = cr.select(_split(config.getoption("pi_only")), _split(config.getoption("pi_skip")))
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    _TARGETS.clear()
    _TARGETS.update({n.name: Target.from_node(n) for n in cluster.nodes})
    if config.option.hosts is None:
        config.option.hosts = ",".join(f"{BACKEND}://{n.name}" for n in cluster.nodes)
    config.stash[_STATE] = {"cluster": cluster, "scenarios": scenarios, "run": None}


_STATE = pytest.StashKey[dict[str, Any]]()


def _scenario_of(item: pytest.Item) -> str | None:
    mod = getattr(item, "module", None)
    name = getattr(mod, "SCENARIO", None) if mod is not None and mod.__name__.startswith(__package__ or "") else None
    return name if name in SCENARIOS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    chosen = state["scenarios"]
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for it in items:
        s = _scenario_of(it)
        (drop if s is not None and s not in chosen else keep).append(it)
    if drop:
        config.hook.pytest_deselected(items=drop)
    order = {s: i for i, s in enumerate(SCENARIOS)}
    nodes = [n.name for n in state["cluster"].nodes]
    items[:] = sorted(keep, key=lambda it: (order.get(_scenario_of(it) or "", len(order)),
                                            next((i for i, n in enumerate(nodes) if f"[{n}]" in it.name), 0)))
    state["scenarios"] = [s for s in chosen if any(_scenario_of(it) == s for it in items)] or chosen


class Conformance:
    """What each scenario test asks: the verdict for (scenario, node)."""

    def __init__(self, run: cr.CheckRun) -> None:
        self.run = run

    def node_of(self, host: Any) -> str:
        name = getattr(host.backend, "node_name", None) or host.backend.get_hostname()
        for n in self.run.cluster.nodes:
            if name in (n.name, n.address):
                return n.name
        raise LookupError(f"host {name} is not a node of the inventory")

    def verdict(self, scenario: str, host: Any) -> None:
        node = self.node_of(host)
        rep = self.run.report
        if rep.setup_error:
            pytest.fail(f"setup error: {rep.setup_error}", pytrace=False)
        rs = [r for r in rep.of(scenario, node) if not r.info]
        if not rs:
            pytest.skip(f"{scenario}: no check applies to {node}")
        fails = [r for r in rs if r.status == "fail"]
        if fails:
            fails.sort(key=lambda r: r.cause is not None)
            pytest.fail("\n".join(r.message() for r in fails), pytrace=False)
        if all(r.status == "skip" for r in rs):
            pytest.skip("; ".join(sorted({r.seen for r in rs})))


@pytest.fixture(scope="session")
def conformance(request: pytest.FixtureRequest) -> Any:
    state = request.config.stash.get(_STATE, None)
    if state is None:
        pytest.skip("no inventory: pass --inventory INV (or set $PI_CLUSTER_INVENTORY)")
    opts = cr.Options(timeout=request.config.getoption("pi_timeout"), keep_workload=request.config.getoption("pi_keep"))
    if request.config.getoption("pi_image"):
        opts.image = request.config.getoption("pi_image")
    run = cr.CheckRun(state["cluster"], state["scenarios"], options=opts,
                      progress=getattr(request.config, "_pi_progress", None))
    state["run"] = run
    previous = signal.getsignal(signal.SIGTERM)

    def _term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _term)
    try:
        try:
            run.setup()
            run.probe()
        except cr.SetupError as e:
            run.report.setup_error = str(e)
        except Exception as e:  # never let a broken run look like a passing one
            run.report.setup_error = f"the check run failed: {type(e).__name__}: {e}"
        yield Conformance(run)
    finally:
        run.teardown()
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, previous)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None or state["run"] is None:
        return
    run: cr.CheckRun = state["run"]
    run.teardown()  # also after Ctrl-C (idempotent)
    rep: Report = run.report
    if run.cleanup_error:
        rep.facts["cleanup_error"] = run.cleanup_error
    if session.config.getoption("pi_json"):
        rep.write_json(session.config.getoption("pi_json"))
    if session.config.getoption("pi_junit"):
        rep.write_junit(session.config.getoption("pi_junit"))
    if rep.setup_error:
        session.exitstatus = 2
