"""One result model for a check run; the rich table, JUnit XML and JSON are three views of it.

Every check outcome is a :class:`Result` (scenario, node, check, status, target, expected, seen, cause).
:meth:`Report.attribute_causes` walks the scenarios in dependency order (nodes -> podnet -> proxy -> the
Service scenarios) and marks each higher-layer failure that a lower-layer failure explains with that cause,
so the first line a user reads is the cause, not a consequence.

>>> r = Report()
>>> r.add(Result("podnet", "node2", "pod->pod", "fail", src="node2", peers=["node3"], target="10.42.3.4:8080",
...              expected="echo-x answers", seen="timed out after 2 s"))
>>> r.add(Result("clusterip", "node2", "host->vip", "fail", src="node2", peers=["node1", "node3"],
...              target="10.43.0.20:80", expected="answers", seen="1 of 3 tries timed out"))
>>> r.attribute_causes()
>>> r.results[1].cause
'podnet node2 -> node3 failed (10.42.3.4:8080: timed out after 2 s)'
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.table import Table
from rich.text import Text

Status = Literal["pass", "fail", "skip"]

SCENARIOS = ("nodes", "podnet", "proxy", "clusterip", "nodeport", "loadbalancer", "dns", "churn", "affinity",
             "local-policy", "security")
LAYER = {"nodes": 0, "podnet": 1, "proxy": 2}
WORKSTATION = "workstation"

# Anything that looks like a k3s token (K10<hex>::server:<secret>) or a long secret is masked in every view.
_TOKEN_RE = re.compile(r"K10[0-9a-f]{16,}::[^\s\"']+|(?i:token[=:]\s*)[^\s\"']+")


def layer(scenario: str) -> int:
    return LAYER.get(scenario, 3)


@dataclass
class Result:
    """One check of one scenario for one node.

    ``node`` is the row the result belongs to; ``src`` is where the probe ran (a node or the workstation);
    ``peers`` are the other nodes the outcome depends on (a backend's node, a NodePort's node); ``via`` the
    nodes whose kube-proxy rules carry the traffic (default: ``src``). A failure
    with ``explains`` set (lower layers only) is offered as the cause of higher-layer failures involving
    the same nodes. ``info`` results never fail a run (e.g. ping to a VIP, expected to fail)."""

    scenario: str
    node: str
    check: str
    status: Status
    target: str = ""
    expected: str = ""
    seen: str = ""
    cause: str | None = None
    src: str = ""
    peers: list[str] = field(default_factory=list)
    explains: bool = True
    info: bool = False
    via: list[str] = field(default_factory=list)  # nodes whose kube-proxy rules carry this traffic
    service: str = ""  # the Service probed or checked (a proxy failure for the same one is the likelier cause)

    def __post_init__(self) -> None:
        if not self.src:
            self.src = self.node
        if not self.via and self.src != WORKSTATION:
            self.via = [self.src]

    @property
    def label(self) -> str:
        return f"{self.scenario} {self.check}"

    def message(self) -> str:
        """``node2 -> 10.43.12.7:80 (clusterip host->vip): timed out ...; expected ...``"""
        where = f"{self.src} -> {self.target}" if self.target else self.src
        text = f"{where} ({self.scenario} {self.check}): {self.seen or self.status}"
        if self.status == "fail" and self.expected:
            text += f"; expected {self.expected}"
        if self.cause:
            text += f"; caused by: {self.cause}"
        return mask(text)

    def short_cause(self) -> str:
        """How this failure is named when it is the cause of others."""
        if self.scenario == "nodes" and self.check == "reachable":
            return f"{self.node} unreachable ({self.seen})"
        if self.scenario == "nodes":
            return f"nodes {self.node}: {self.check} failed ({self.seen})"
        peer = self.peers[0] if self.peers else ""
        pair = f"{self.src} -> {peer}" if peer and peer != self.src else self.src
        return f"{self.scenario} {pair} failed ({self.target + ': ' if self.target else ''}{self.seen})"


def mask(text: str) -> str:
    return _TOKEN_RE.sub("********", text)


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    setup_error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # namespace, image, durations...

    def add(self, r: Result) -> None:
        self.results.append(r)

    def extend(self, rs: Iterable[Result]) -> None:
        self.results.extend(rs)

    def of(self, scenario: str, node: str) -> list[Result]:
        return [r for r in self.results if r.scenario == scenario and r.node == node]

    def scenarios(self) -> list[str]:
        seen = {r.scenario for r in self.results}
        return [s for s in SCENARIOS if s in seen] + sorted(seen - set(SCENARIOS))

    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status == "fail" and not r.info]

    # -- diagnosis ------------------------------------------------------------------------------------
    def attribute_causes(self) -> None:
        """Name, on each higher-layer failure, the lower-layer failure that explains it (lowest layer
        first). A failure seen from other nodes that involves an unreachable node names that node."""
        lower = sorted((r for r in self.failures() if r.explains and layer(r.scenario) < 3),
                       key=lambda r: layer(r.scenario))
        for r in self.results:
            if r.status != "fail" or r.cause:
                continue
            # among proxy failures, those about the same Service (NodePort rules for a NodePort check) first
            same = [c for c in lower if c.scenario == "proxy" and r.service and c.service == r.service]
            lower_r = [c for c in lower if c.scenario != "proxy"] + same + [c for c in lower if c not in same
                                                                            and c.scenario == "proxy"]
            involved = {r.src, r.node, *r.peers}
            for c in lower_r:
                if c is r or layer(c.scenario) >= layer(r.scenario):
                    continue
                if c.scenario == "nodes":
                    hit = c.node in involved and c.node != r.node if r.scenario == "nodes" else c.node in involved
                elif c.scenario == "podnet":
                    hit = c.src == r.src and any(p in involved for p in c.peers) and r.src != WORKSTATION
                else:  # proxy on a node explains Service failures whose traffic its rules carry
                    hit = c.node in r.via
                if hit:
                    r.cause = c.short_cause()
                    break

    def cell(self, scenario: str, node: str) -> tuple[Status | None, str]:
        rs = [r for r in self.of(scenario, node) if not r.info]
        if not rs:
            info = self.of(scenario, node)
            return (None, "") if not info else ("pass", "informational only")
        fails = [r for r in rs if r.status == "fail"]
        if fails:
            roots = [r for r in fails if not r.cause] or fails
            first = roots[0]
            more = f" (+{len(fails) - 1} more)" if len(fails) > 1 else ""
            why = f"caused by: {first.cause}" if first.cause else first.message()
            return "fail", mask(why + more)
        passes = [r for r in rs if r.status == "pass"]
        if passes:
            skipped = [r for r in rs if r.status == "skip"]
            note = f"{len(passes)} passed" + (f", {len(skipped)} skipped" if skipped else "")
            return "pass", note
        return "skip", mask(rs[0].seen)

    def counts(self) -> dict[str, int]:
        c = {"pass": 0, "fail": 0, "skip": 0}
        for r in self.results:
            if not r.info:
                c[r.status] += 1
        return c

    def summary_line(self) -> str:
        c = self.counts()
        roots = [r for r in self.failures() if not r.cause]
        if self.setup_error:
            return mask(f"setup error: {self.setup_error}")
        verdict = "FAILED" if c["fail"] else "PASSED"
        text = f"{verdict}: {c['pass']} passed, {c['fail']} failed, {c['skip']} skipped"
        if c["fail"]:
            text += f" ({len(roots)} root cause(s), {c['fail'] - len(roots)} consequence(s))"
        return text

    def exit_code(self) -> int:
        if self.setup_error:
            return 2
        return 1 if self.failures() else 0

    # -- views ----------------------------------------------------------------------------------------
    def table(self) -> Table:
        """Scenario x node, each cell pass/fail/skip with the reason."""
        cols = [n for n in self.nodes] + ([WORKSTATION] if any(r.node == WORKSTATION for r in self.results) else [])
        t = Table(title="pi-cluster check", show_lines=True)
        t.add_column("scenario", style="bold")
        for n in cols:
            t.add_column(n, overflow="fold")
        style = {"pass": "green", "fail": "red", "skip": "yellow"}
        for s in self.scenarios():
            row: list[Text | str] = [s]
            for n in cols:
                status, why = self.cell(s, n)
                if status is None:
                    row.append(Text("-", style="dim"))
                else:
                    row.append(Text(f"{status}", style=f"bold {style[status]}") + Text(f"\n{why}" if why else ""))
            t.add_row(*row)
        return t

    def root_failures(self) -> list[Result]:
        fails = self.failures()
        return sorted((r for r in fails if not r.cause), key=lambda r: layer(r.scenario)) + \
            [r for r in fails if r.cause]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(mask(json.dumps({
            "summary": self.summary_line(), "exit_code": self.exit_code(), "counts": self.counts(),
            "setup_error": self.setup_error, "nodes": self.nodes, "facts": self.facts,
            "results": [asdict(r) for r in self.results],
        })))

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def junit(self) -> ET.Element:
        """JUnit XML: one testsuite per scenario, one testcase per (scenario, node) with every failed
        check in its failure message."""
        suites = ET.Element("testsuites", name="pi-cluster check")
        total = {"tests": 0, "failures": 0, "skipped": 0}
        if self.setup_error:
            s = ET.SubElement(suites, "testsuite", name="setup", tests="1", failures="0", errors="1", skipped="0")
            tc = ET.SubElement(s, "testcase", classname="pi-cluster.setup", name="setup")
            ET.SubElement(tc, "error", message=mask(self.setup_error))
        for scen in self.scenarios():
            nodes = [n for n in [*self.nodes, WORKSTATION] if self.of(scen, n)]
            s = ET.SubElement(suites, "testsuite", name=scen)
            counts = {"tests": 0, "failures": 0, "skipped": 0}
            for n in nodes:
                status, why = self.cell(scen, n)
                tc = ET.SubElement(s, "testcase", classname=f"pi-cluster.{scen}", name=f"{scen}[{n}]")
                counts["tests"] += 1
                lines = [r.message() for r in self.of(scen, n)]
                if status == "fail":
                    counts["failures"] += 1
                    fails = [r for r in self.of(scen, n) if r.status == "fail" and not r.info]
                    f = ET.SubElement(tc, "failure", message=why)
                    f.text = "\n".join(r.message() for r in fails)
                elif status == "skip":
                    counts["skipped"] += 1
                    ET.SubElement(tc, "skipped", message=why)
                out = ET.SubElement(tc, "system-out")
                out.text = mask("\n".join(f"[{r.status}] {ln}" for r, ln in zip(self.of(scen, n), lines,
                                                                              strict=True)))
            for k, v in counts.items():
                s.set(k, str(v))
                total[k] += v
            s.set("errors", "0")
        for k, v in total.items():
            suites.set(k, str(v))
        return suites

    def write_junit(self, path: str | Path) -> None:
        tree = ET.ElementTree(self.junit())
        ET.indent(tree)
        tree.write(str(path), encoding="utf-8", xml_declaration=True)
