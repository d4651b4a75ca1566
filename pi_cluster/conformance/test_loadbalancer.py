"""loadbalancer: an external IP is assigned within a deadline (k3s ServiceLB puts the nodes' IPs there)
and answers, from every node and from the workstation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pi_cluster.conformance import workload as wl
from pi_cluster.conformance.batch import WORKSTATION
from pi_cluster.conformance.checks import tries_summary
from pi_cluster.conformance.report import Result

if TYPE_CHECKING:
    from pi_cluster.conformance.run import CheckRun

SCENARIO = "loadbalancer"
SERVICE = wl.SVC_LB  # the Service these checks probe


def _ips(run: CheckRun) -> list[str]:
    svc = run.service(wl.SVC_LB)
    return svc.lb_ips if svc else []


def plan(run: CheckRun) -> None:
    if not run.cluster.settings.servicelb:
        return
    for a in [*run.nodes, WORKSTATION]:
        for ip in _ips(run):
            run.add(SCENARIO, a, ip, {"kind": "http", "host": ip, "port": wl.LB_PORT, "path": "/",
                                      "tries": run.options.tries, "timeout": run.options.request_timeout,
                                      "parallel": True})


def evaluate(run: CheckRun) -> list[Result]:
    if not run.cluster.settings.servicelb:
        return [Result(SCENARIO, n, "external ip", "skip", seen="servicelb is disabled in the inventory "
                       "(no built-in LoadBalancer to check)") for n in run.nodes]
    ips = _ips(run)
    if not ips:
        return [Result(SCENARIO, n, "external ip", "fail", target=f"service {wl.SVC_LB}",
                       expected=f"an external IP within {run.options.lb_deadline:g} s",
                       seen="no external IP assigned (is ServiceLB running? is the port free?)") for n in run.nodes]
    by_ip = {run.ip(n): n for n in run.nodes}
    names = {p.name for p in run.w.echo.values()} if run.w else set()
    out = [Result(SCENARIO, n, "external ip", "pass", target=f"service {wl.SVC_LB}", expected="assigned",
                  seen=", ".join(ips), explains=False) for n in run.nodes]
    for a in [*run.nodes, WORKSTATION]:
        for ip in ips:
            owner = by_ip.get(ip)
            row = a if a != WORKSTATION else (owner or run.nodes[0])
            target = f"{ip}:{wl.LB_PORT}"
            via = [owner] if owner else []
            check = f"-> {ip}" if a != WORKSTATION else f"workstation -> {ip}"
            if run.unreachable(a):
                if a == WORKSTATION:
                    out.append(Result(SCENARIO, row, check, "fail", src=a, target=target, via=via,
                                      expected="answers", seen=f"local probes failed: {run.unreachable(a)}"))
                else:
                    out.append(run.not_probed(SCENARIO, row, check, target=target, via=via,
                                              peers=[owner] if owner else []))
                continue
            answered, total, bodies, err = tries_summary(run.res(SCENARIO, a, ip))
            ok = total > 0 and answered == total and all(b in names for b in bodies)
            peers = ([owner] if owner else []) + sorted(n for n in run.w.echo if n != owner) if run.w else []
            out.append(Result(SCENARIO, row, check, "pass" if ok else "fail", src=a, target=target, via=via,
                              peers=peers, expected="every try answered by a probe echo pod",
                              seen=f"{answered}/{total} answered" + ("" if ok or not err else f" ({err})")))
    return out


def test_loadbalancer(host: Any, conformance: Any) -> None:
    """The LoadBalancer gets an external IP that answers."""
    conformance.verdict(SCENARIO, host)
