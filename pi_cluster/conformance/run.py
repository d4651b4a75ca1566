"""A check run: inventory -> plan -> remote -> results.

:class:`CheckRun` connects to the nodes, deploys the probe workload, asks each selected scenario module
(``test_<scenario>.py``) for the probes it needs, runs ONE batch per node (all nodes in parallel, plus the
workstation's own probes locally), lets each scenario turn its probes' outcomes into
:class:`~pi_cluster.conformance.report.Result` s, attributes causes, and removes the workload.

The pytest plugin drives it from a session fixture; ``pi-cluster check`` runs pytest in-process.
Nothing here prints: progress goes to the ``progress`` callback.
"""

from __future__ import annotations

import importlib
import ipaddress
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pi_cluster.conformance import workload as wl
from pi_cluster.conformance.batch import WORKSTATION, Batch, run_batches
from pi_cluster.conformance.kube import Kube, KubeError
from pi_cluster.conformance.report import SCENARIOS, Report, Result
from pi_cluster.inventory import Cluster
from pi_cluster.remote import Pool

NEEDS_NO_WORKLOAD = {"nodes", "security"}


class SetupError(Exception):
    """The run cannot start (no server answers kubectl, unsupported architecture, workload not applied)."""


def module_name(scenario: str) -> str:
    return "pi_cluster.conformance.test_" + scenario.replace("-", "_")


def scenario_module(scenario: str) -> ModuleType:
    return importlib.import_module(module_name(scenario))


def select(only: list[str] | None, skip: list[str] | None) -> list[str]:
    """The scenarios to run, in dependency order; ValueError naming unknown ones."""
    unknown = [s for s in [*(only or []), *(skip or [])] if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    chosen = [s for s in SCENARIOS if (not only or s in only) and s not in (skip or [])]
    if not chosen:
        raise ValueError("no scenario left to run")
    return chosen


@dataclass
class Options:
    timeout: float = 120.0  # the whole run, probes included
    request_timeout: float = 2.0  # one HTTP/TCP/DNS try
    tries: int = 3
    spread_tries: int = 10  # requests to a VIP to see more than one backend
    keep_workload: bool = False
    image: str = wl.DEFAULT_IMAGE
    lb_deadline: float = 30.0
    churn_window: float = 2.0
    churn_deadline: float = 30.0
    max_skew: float = 2.0


Progress = Callable[[str, str, str], None]  # (phase, node, message)


@dataclass
class CheckRun:
    cluster: Cluster
    scenarios: list[str]
    options: Options = field(default_factory=Options)
    progress: Progress | None = None
    pool: Pool | None = None

    def __post_init__(self) -> None:
        self.report = Report(nodes=[n.name for n in self.cluster.nodes])
        if self.pool is None:
            self.pool = Pool(self.cluster.nodes, connect_timeout=min(10.0, max(3.0, self.options.timeout / 6)))
        self.kube: Kube | None = None
        self.w: wl.Workload | None = None
        self.namespace: str | None = None
        self.plans: dict[str, list[dict[str, Any]]] = {}
        self.ids: dict[tuple[str, str, str], str] = {}
        self.batches: dict[str, Batch] = {}
        self.started = time.monotonic()
        self.finished = False
        self._counter = 0
        self._lock = threading.Lock()
        self.cleanup_error: str | None = None

    # -- helpers scenarios use ------------------------------------------------------------------------
    @property
    def nodes(self) -> list[str]:
        return [n.name for n in self.cluster.nodes]

    def ip(self, node: str) -> str:
        return self.cluster.node(node).address

    def note(self, phase: str, node: str, msg: str) -> None:
        if self.progress:
            self.progress(phase, node, msg)

    def remaining(self) -> float:
        return max(1.0, self.options.timeout - (time.monotonic() - self.started))

    def add(self, scenario: str, src: str, key: str, probe: dict[str, Any]) -> str:
        """Queue a probe to run on ``src`` (a node or WORKSTATION) in this run's batch, known to the
        scenario as ``key``; returns its id."""
        with self._lock:
            self._counter += 1
            pid = f"{scenario}:{self._counter}"
            self.ids[(scenario, src, key)] = pid
        self.plans.setdefault(src, []).append({"id": pid, **probe})
        return pid

    def res(self, scenario: str, src: str, key: str) -> dict[str, Any] | None:
        """The result of the probe ``add`` queued as ``key`` (None if it did not run)."""
        pid = self.ids.get((scenario, src, key))
        b = self.batches.get(src)
        return None if b is None or pid is None else b.results.get(pid)

    def unreachable(self, src: str) -> str | None:
        """Why ``src``'s batch gave no results (None if it did)."""
        if src == WORKSTATION:
            b = self.batches.get(src)
            return b.error if b else None
        b = self.batches.get(src)
        if b is None:
            return "not probed"
        return b.error

    def not_probed(self, scenario: str, node: str, check: str, target: str = "", **kw: Any) -> Result:
        """The result for a check whose probe could not run because its source node is unreachable."""
        why = self.unreachable(kw.get("src", node)) or "no result"
        return Result(scenario, node, check, "fail", target=target, expected="a probe result",
                      seen=f"not probed: {why}", cause=f"{kw.get('src', node)} unreachable ({why})",
                      **kw)

    def workstation_ip_towards(self, address: str) -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((address, 9))
                return str(s.getsockname()[0])
            except OSError:
                return ""

    def service(self, name: str) -> wl.ServiceInfo | None:
        return self.w.services.get(name) if self.w else None

    def node_port(self, name: str) -> int | None:
        """The NodePort of the probe Service ``name`` (its first port), None before it exists."""
        svc = self.service(name)
        return svc.ports[0].node_port if svc and svc.ports else None

    # -- the phases -----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Connect to a server, check architectures, deploy the workload. SetupError on failure."""
        assert self.pool is not None
        servers = [n.name for n in self.cluster.servers]
        self.note("setup", servers[0] if servers else "", "connecting to the first reachable server")
        t0 = time.monotonic()
        self.pool.warm_up()  # every node's SSH connection opens while the server deploys the workload
        self.w = wl.Workload(namespace="", image=self.options.image)
        problems = []
        for server in servers:  # the first server that answers kubectl (one round trip: nodes + services)
            kube = Kube(self.pool, server, timeout=min(30.0, self.remaining()))
            try:
                wl.load_cluster_facts(kube, self.w)
                self.kube = kube
                break
            except KubeError as e:
                problems.append(str(e))
        if self.kube is None:
            raise SetupError("no server could run `k3s kubectl`: " + "; ".join(problems or ["no servers"]))
        nodes = wl.node_summary(self.w.nodes)
        self.report.facts["connect_seconds"] = round(time.monotonic() - t0, 2)
        supported = wl.image_arches(self.options.image)
        if supported is not None:
            bad = {n: i["arch"] for n, i in nodes.items() if i["arch"] and i["arch"] not in supported}
            if bad:
                listing = ", ".join(f"{n} ({a})" for n, a in sorted(bad.items()))
                raise SetupError(
                    f"probe image {self.options.image} has no build for node architecture(s): {listing}; "
                    f"it supports {', '.join(sorted(supported))}. Use --image with a multi-arch image that "
                    "has agnhost's netexec (e.g. agnhost:2.39 for 32-bit arm).")
        if not set(self.scenarios) - NEEDS_NO_WORKLOAD:
            return
        self.namespace = wl.new_namespace()
        self.w.namespace = self.namespace
        ready_nodes = [n for n in self.nodes if nodes.get(n, {}).get("ready")]
        self.note("setup", self.kube.server, f"deploying the probe workload ({self.options.image})")
        try:
            dep = wl.deploy(self.kube, self.namespace, self.options.image, ready_nodes or self.nodes,
                            timeout=min(60.0, self.remaining() / 2), lb_deadline=self.options.lb_deadline,
                            want_lb="loadbalancer" in self.scenarios and self.cluster.settings.servicelb,
                            progress=lambda m: self.note("setup", "", m))
        except (wl.WorkloadError, KubeError) as e:
            raise SetupError(str(e)) from e
        dep.nodes, dep.system_services, dep.system_endpoints = (self.w.nodes, self.w.system_services,
                                                                self.w.system_endpoints)
        for n in self.nodes:
            if n not in ready_nodes:
                dep.missing[n] = f"{n} is not Ready in the API, no probe pods on it"
        self.w = dep
        self.report.facts.update(namespace=self.namespace, image=self.options.image,
                                 deploy_seconds=round(dep.deploy_seconds, 2), server=self.kube.server)

    def probe(self) -> None:
        """Plan every selected scenario's probes and run them: one batch per node, all in parallel."""
        assert self.pool is not None
        mods = [scenario_module(s) for s in self.scenarios]
        for m in mods:
            m.plan(self)
        # a tiny probe for every node, so that reachability and the clock are known for all of them
        for n in self.nodes:
            self.plans.setdefault(n, [])
        t0 = time.monotonic()
        self.note("probe", "", f"running {sum(len(p) for p in self.plans.values())} probes on "
                               f"{len(self.plans)} hosts in parallel")
        self.batches = run_batches(self.pool, self.plans, timeout=self.remaining(),
                                   on_done=lambda b: self.note("probe", b.node, b.error or
                                                               f"{len(b.results)} probes done"))
        self.report.facts["probe_seconds"] = round(time.monotonic() - t0, 2)
        self.report.facts["probes"] = sum(len(p) for p in self.plans.values())
        def tagged(m: ModuleType, results: list[Result]) -> list[Result]:
            for r in results:
                r.service = r.service or getattr(m, "SERVICE", "")
            return results

        def guarded(m: ModuleType, fn: Callable[[CheckRun], list[Result]]) -> list[Result]:
            try:
                return tagged(m, fn(self))
            except KubeError as e:
                why = str(e)
            except Exception as e:  # a bug in a scenario must fail loudly, never pass silently
                why = f"internal error: {type(e).__name__}: {e}"
            return [Result(m.SCENARIO, n, "evaluate", "fail", expected="the scenario ran", seen=why, explains=False)
                    for n in self.nodes]

        for m in mods:
            self.report.extend(guarded(m, m.evaluate))
        for m in mods:  # phases that disturb the workload (churn) run after every other probe
            extra = getattr(m, "after", None)
            if extra is not None:
                t1 = time.monotonic()
                self.report.extend(guarded(m, extra))
                self.report.facts[f"{m.SCENARIO}_seconds"] = round(time.monotonic() - t1, 2)
        self.report.attribute_causes()

    def teardown(self) -> None:
        """Remove the probe namespace (unless kept) and close connections. Safe to call twice."""
        if self.finished:
            return
        self.finished = True
        # a second Ctrl-C must not leave the namespace behind: ignore SIGINT while cleaning up (bounded by
        # the kubectl timeout)
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if self.namespace and self.kube and not self.options.keep_workload:
                self.note("cleanup", self.kube.server, f"deleting namespace {self.namespace}")
                try:
                    wl.remove(self.kube, self.namespace)
                except KubeError as e:
                    self.cleanup_error = f"could not delete probe namespace {self.namespace}: {e}"
            elif self.namespace and self.options.keep_workload:
                self.report.facts["kept_namespace"] = self.namespace
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if self.pool is not None:
                self.pool.close()
            self.report.facts["total_seconds"] = round(time.monotonic() - self.started, 2)

    def execute(self) -> Report:
        """setup + probe + teardown; setup errors land in ``report.setup_error``."""
        try:
            self.setup()
            self.probe()
        except SetupError as e:
            self.report.setup_error = str(e)
        finally:
            self.teardown()
        return self.report


def in_cidr(ip: str, cidr: Any) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(str(cidr))
    except ValueError:
        return False
