"""clusterip: from every node's host network and from a probe pod on every node, the VIP answers and,
over several tries, reaches endpoints on more than one node. Ping to the VIP is informational: in
iptables/nftables mode a VIP is no real host and is expected not to answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pi_cluster.conformance import workload as wl
from pi_cluster.conformance.checks import describe_failures, dial_summary, spread, tries_summary
from pi_cluster.conformance.report import Result

if TYPE_CHECKING:
    from pi_cluster.conformance.run import CheckRun

SCENARIO = "clusterip"
SERVICE = wl.SVC_CLUSTERIP  # the Service these checks probe


def plan(run: CheckRun) -> None:
    svc = run.service(wl.SVC_CLUSTERIP)
    if svc is None or not svc.cluster_ip:
        return
    n_tries, t = run.options.spread_tries, run.options.request_timeout
    for a in run.nodes:
        run.add(SCENARIO, a, "host", {"kind": "http", "host": svc.cluster_ip, "port": 80, "path": "/hostname",
                                      "tries": n_tries, "timeout": t, "parallel": True})
        client = run.w.client.get(a) if run.w else None
        if client:
            run.add(SCENARIO, a, "pod", {"kind": "dial", "pod": client.ip, "host": svc.cluster_ip, "port": 80,
                                         "tries": n_tries, "timeout": t, "mode": "parallel"})
        run.add(SCENARIO, a, "ping", {"kind": "ping", "host": svc.cluster_ip, "timeout": 1})


def judge(run: CheckRun, bodies: list[str], answered: int, total: int, err: str) -> tuple[bool, str]:
    w = run.w
    assert w is not None
    by_name = {p.name: node for node, p in w.echo.items()}
    backend_nodes = {by_name.get(b, "?") for b in bodies}
    want_spread = len(w.echo) > 1
    if answered < total:
        return False, describe_failures(answered, total, err) + (f"; answers: {spread(bodies)}" if bodies else "")
    if want_spread and len(backend_nodes) < 2:
        return False, f"all {total} answers from one node ({spread(bodies)})"
    return True, f"{answered}/{total} answered, backends on {', '.join(sorted(backend_nodes))}"


def evaluate(run: CheckRun) -> list[Result]:
    w = run.w
    svc = run.service(wl.SVC_CLUSTERIP)
    out: list[Result] = []
    if w is None or svc is None or not svc.cluster_ip:
        return [Result(SCENARIO, n, "vip", "fail", target=f"service {wl.SVC_CLUSTERIP}", expected="a ClusterIP",
                       seen="the probe Service has no ClusterIP") for n in run.nodes]
    vip = f"{svc.cluster_ip}:80"
    peers = sorted(w.echo)
    expect = "every try answers; backends on more than one node" if len(peers) > 1 else "every try answers"
    for a in run.nodes:
        if run.unreachable(a):
            out.append(run.not_probed(SCENARIO, a, "host->vip", target=vip, peers=peers))
            continue
        answered, total, bodies, err = tries_summary(run.res(SCENARIO, a, "host"))
        ok, seen = judge(run, bodies, answered, total, err)
        out.append(Result(SCENARIO, a, "host->vip", "pass" if ok else "fail", target=f"{vip} ({wl.SVC_CLUSTERIP})",
                          expected=expect, seen=seen, peers=peers))
        client = w.client.get(a)
        if client is None:
            out.append(Result(SCENARIO, a, "pod->vip", "fail", target=vip, expected=expect, peers=peers,
                              seen=w.missing.get(a, "no ready client pod")))
        else:
            resp, errs, terr = dial_summary(run.res(SCENARIO, a, "pod"))
            if terr:
                ok, seen = False, terr
            else:
                ok, seen = judge(run, resp, len(resp), len(resp) + len(errs), errs[0] if errs else "")
            out.append(Result(SCENARIO, a, "pod->vip", "pass" if ok else "fail", peers=peers,
                              target=f"{client.name} -> {vip} ({wl.SVC_CLUSTERIP})", expected=expect, seen=seen))
        ping = run.res(SCENARIO, a, "ping") or {}
        out.append(Result(SCENARIO, a, "ping vip", "pass", target=svc.cluster_ip, info=True,
                          expected="no answer (a VIP is not a host; informational)",
                          seen="answered ping (unusual: IPVS mode or a real host at the VIP?)" if ping.get("ok")
                          else "no ping answer, as expected"))
    return out


def test_clusterip(host: Any, conformance: Any) -> None:
    """The ClusterIP answers from every node and pod, and spreads over nodes."""
    conformance.verdict(SCENARIO, host)
