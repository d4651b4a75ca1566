"""nodeport: every node -> every node's IP:NodePort (the full mesh), and the workstation -> every node.
The NodePort Service's backends answer their pod name on every path, never netexec's /shell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pi_cluster.conformance import workload as wl
from pi_cluster.conformance.batch import WORKSTATION
from pi_cluster.conformance.checks import tries_summary
from pi_cluster.conformance.report import Result

if TYPE_CHECKING:
    from pi_cluster.conformance.run import CheckRun

SCENARIO = "nodeport"
SERVICE = wl.SVC_NODEPORT  # the Service these checks probe


def plan(run: CheckRun) -> None:
    port = run.node_port(SERVICE)
    if not port:
        return
    for a in [*run.nodes, WORKSTATION]:
        for b in run.nodes:
            run.add(SCENARIO, a, b, {"kind": "http", "host": run.ip(b), "port": port, "path": "/",
                                     "tries": run.options.tries, "timeout": run.options.request_timeout,
                                     "parallel": True})


def evaluate(run: CheckRun) -> list[Result]:
    port = run.node_port(SERVICE)
    out: list[Result] = []
    if not port:
        return [Result(SCENARIO, n, "nodeport", "fail", target=wl.SVC_NODEPORT, expected="a nodePort",
                       seen="the probe Service has no nodePort") for n in run.nodes]
    names = {p.name for p in run.w.echo.values()} if run.w else set()
    backends = sorted(run.w.echo) if run.w else []
    for a in [*run.nodes, WORKSTATION]:
        for b in run.nodes:
            target = f"{b} {run.ip(b)}:{port}"
            row = b if a == WORKSTATION else a
            check = "from workstation" if a == WORKSTATION else f"-> {b}"
            if run.unreachable(a):
                if a == WORKSTATION:
                    out.append(Result(SCENARIO, row, check, "fail", src=a, peers=[b], target=target, via=[b],
                                      expected="answers", seen=f"local probes failed: {run.unreachable(a)}"))
                else:
                    out.append(run.not_probed(SCENARIO, row, check, target=target, peers=[b], via=[b]))
                continue
            answered, total, bodies, err = tries_summary(run.res(SCENARIO, a, b))
            bad = [x for x in bodies if x not in names]
            ok = answered == total and total > 0 and not bad
            seen = (f"{answered}/{total} answered" if ok else
                    f"{err}, {total - answered} of {total} tries" if answered < total else
                    f"unexpected answers {bad[:2]}")
            peers = [b, *(n for n in backends if n != b)]  # the node, then every node a backend may be on
            out.append(Result(SCENARIO, row, check, "pass" if ok else "fail", src=a, peers=peers, target=target,
                              expected="every try answered by a probe echo pod", seen=seen, via=[b]))
    return out


def test_nodeport(host: Any, conformance: Any) -> None:
    """The NodePort answers on every node, from every node and from the workstation."""
    conformance.verdict(SCENARIO, host)
