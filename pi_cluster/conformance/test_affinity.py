"""affinity: a Service with ``sessionAffinity: ClientIP`` sends every request from one client to the same
backend, from every node's host network and from a pod on every node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pi_cluster.conformance import workload as wl
from pi_cluster.conformance.checks import describe_failures, dial_summary, spread, tries_summary
from pi_cluster.conformance.report import Result

if TYPE_CHECKING:
    from pi_cluster.conformance.run import CheckRun

SCENARIO = "affinity"
SERVICE = wl.SVC_AFFINITY  # the Service these checks probe
TRIES = 6


def plan(run: CheckRun) -> None:
    svc = run.service(wl.SVC_AFFINITY)
    if svc is None or not svc.cluster_ip or run.w is None:
        return
    for a in run.nodes:
        run.add(SCENARIO, a, "host", {"kind": "http", "host": svc.cluster_ip, "port": 80, "path": "/",
                                      "tries": TRIES, "timeout": run.options.request_timeout, "stop_on_error": True})
        client = run.w.client.get(a)
        if client:
            run.add(SCENARIO, a, "pod", {"kind": "dial", "pod": client.ip, "host": svc.cluster_ip, "port": 80,
                                         "tries": TRIES, "mode": "sequential"})


def evaluate(run: CheckRun) -> list[Result]:
    svc = run.service(wl.SVC_AFFINITY)
    w = run.w
    if svc is None or not svc.cluster_ip or w is None:
        return [Result(SCENARIO, n, "affinity", "fail", target=wl.SVC_AFFINITY, expected="a ClusterIP",
                       seen="the probe Service has no ClusterIP") for n in run.nodes]
    out: list[Result] = []
    target = f"{svc.cluster_ip}:80 ({wl.SVC_AFFINITY}, sessionAffinity ClientIP)"
    peers = sorted(w.echo)
    for a in run.nodes:
        if run.unreachable(a):
            out.append(run.not_probed(SCENARIO, a, "host", target=target, peers=peers))
            continue
        answered, total, bodies, err = tries_summary(run.res(SCENARIO, a, "host"))
        results = [("host", answered, total, bodies, err)]
        if w.client.get(a):
            resp, errs, terr = dial_summary(run.res(SCENARIO, a, "pod"))
            results.append(("pod", len(resp), len(resp) + len(errs) if not terr else TRIES, resp,
                            terr or (errs[0] if errs else "")))
        for check, ok_n, n, bodies_, e in results:
            if ok_n < n or n == 0:
                ok, seen = False, describe_failures(ok_n, n, e or "no answer")
            else:
                ok = len(set(bodies_)) == 1
                seen = f"all {n} from {bodies_[0]}" if ok else f"spread over backends: {spread(bodies_)}"
            out.append(Result(SCENARIO, a, check, "pass" if ok else "fail", target=target, peers=peers,
                              expected=f"all {TRIES} requests reach the same backend", seen=seen))
    return out


def test_affinity(host: Any, conformance: Any) -> None:
    """ClientIP session affinity holds."""
    conformance.verdict(SCENARIO, host)
