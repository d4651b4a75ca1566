"""local-policy: a NodePort Service with ``externalTrafficPolicy: Local`` whose only endpoint is pinned to
one node. From outside (the workstation) only that node answers, and the answer shows the client IP
preserved (no SNAT); the other nodes must not answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pi_cluster.conformance import workload as wl
from pi_cluster.conformance.batch import WORKSTATION
from pi_cluster.conformance.checks import tries_summary
from pi_cluster.conformance.report import Result

if TYPE_CHECKING:
    from pi_cluster.conformance.run import CheckRun

SCENARIO = "local-policy"
SERVICE = wl.SVC_LOCAL  # the Service these checks probe


def plan(run: CheckRun) -> None:
    port = run.node_port(SERVICE)
    if not port:
        return
    for b in run.nodes:
        run.add(SCENARIO, WORKSTATION, b, {"kind": "http", "host": run.ip(b), "port": port, "path": "/",
                                           "tries": 1, "timeout": run.options.request_timeout})


def evaluate(run: CheckRun) -> list[Result]:
    port = run.node_port(SERVICE)
    w = run.w
    if not port or w is None:
        return [Result(SCENARIO, n, "local", "fail", target=wl.SVC_LOCAL, expected="a nodePort",
                       seen="the probe Service has no nodePort") for n in run.nodes]
    if w.local is None:
        return [Result(SCENARIO, n, "local", "fail", target=wl.SVC_LOCAL, expected="the pinned pod ready",
                       seen=f"pod {wl.LOCAL} not ready on {w.local_node}") for n in run.nodes]
    out: list[Result] = []
    for b in run.nodes:
        target = f"{run.ip(b)}:{port} ({wl.SVC_LOCAL})"
        if run.unreachable(WORKSTATION):
            out.append(Result(SCENARIO, b, "from workstation", "fail", src=WORKSTATION, via=[b], peers=[b],
                              target=target, seen=f"local probes failed: {run.unreachable(WORKSTATION)}"))
            continue
        answered, _total, bodies, err = tries_summary(run.res(SCENARIO, WORKSTATION, b))
        mine = run.workstation_ip_towards(run.ip(b))
        if b == w.local.node:
            client = bodies[0].rsplit(":", 1)[0] if bodies else ""
            ok = answered == 1 and client == mine
            seen = (f"answered, client IP seen {client}" if answered else f"no answer: {err}")
            out.append(Result(SCENARIO, b, "local endpoint answers", "pass" if ok else "fail", src=WORKSTATION,
                              via=[b], peers=[b], target=target,
                              expected=f"answers with the client IP preserved ({mine})", seen=seen))
        else:
            ok = answered == 0
            out.append(Result(SCENARIO, b, "no local endpoint", "pass" if ok else "fail", src=WORKSTATION,
                              via=[b], peers=[b], target=target,
                              expected=f"no answer (the only endpoint is on {w.local.node})",
                              seen=f"no answer ({err})" if ok else f"answered {bodies[0]!r}"))
    return out


def test_local_policy(host: Any, conformance: Any) -> None:
    """externalTrafficPolicy: Local keeps traffic on nodes with endpoints and preserves the client IP."""
    conformance.verdict(SCENARIO, host)
