"""churn: delete a backend pod while every node keeps requesting the ClusterIP. The VIP stays the same,
the replacement pod gets a new IP, the endpoints converge within a deadline, and the VIP keeps answering
throughout (failed requests are counted; an outage of a full second fails the check).

Runs after the main batch (it disturbs the backends the other scenarios probe).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from pi_cluster.conformance import workload as wl
from pi_cluster.conformance.batch import Batch, run_batches
from pi_cluster.conformance.kube import KubeError, pod_ready
from pi_cluster.conformance.report import Result

if TYPE_CHECKING:
    from pi_cluster.conformance.run import CheckRun

SCENARIO = "churn"
SERVICE = wl.SVC_CLUSTERIP  # the Service these checks probe


def plan(run: CheckRun) -> None:
    """Nothing in the main batch: churn runs its own phase in :func:`after`."""


def evaluate(run: CheckRun) -> list[Result]:
    return []


def slice_ips(slices: list[dict[str, Any]], service: str) -> list[str]:
    """Ready endpoint addresses of ``service`` in EndpointSlices."""
    ips: list[str] = []
    for s in slices:
        if s.get("metadata", {}).get("labels", {}).get("kubernetes.io/service-name") != service:
            continue
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True):
                ips += list(ep.get("addresses") or [])
    return ips


def endpoint_ips(run: CheckRun, service: str) -> list[str] | None:
    assert run.kube is not None and run.w is not None
    ns = run.w.namespace
    try:
        return slice_ips(run.kube.get("endpointslices", ns), service)
    except KubeError:
        pass
    try:
        for e in run.kube.get("endpoints", ns):
            if e.get("metadata", {}).get("name") == service:
                return [a["ip"] for sub in e.get("subsets") or [] for a in sub.get("addresses") or []]
        return []
    except KubeError:
        return None


def after(run: CheckRun) -> list[Result]:
    w, kube, pool = run.w, run.kube, run.pool
    assert w is not None and kube is not None and pool is not None
    svc = run.service(wl.SVC_CLUSTERIP)
    out: list[Result] = []
    if svc is None or not svc.cluster_ip or not w.echo:
        return [Result(SCENARIO, n, "churn", "fail", expected="a ClusterIP with backends",
                       seen="no ClusterIP Service or no echo pods to churn") for n in run.nodes]
    victim_node = sorted(w.echo)[-1]
    victim = w.echo[victim_node]
    sources = [n for n in run.nodes if not run.unreachable(n)]
    window = run.options.churn_window
    loop = {"id": "loop", "kind": "loop", "host": svc.cluster_ip, "port": 80, "path": "/hostname",
            "duration": window, "interval": 0.1, "timeout": 1}
    batches: dict[str, Batch] = {}
    t = threading.Thread(target=lambda: batches.update(
        run_batches(pool, {n: [loop] for n in sources}, timeout=window + 20)), daemon=True)
    run.note("churn", victim_node, f"deleting backend {victim.name} while every node requests the VIP")
    t.start()
    time.sleep(min(0.5, window / 4))
    deleted_at = time.monotonic()
    try:
        kube.delete_pod(w.namespace, victim.name)
        delete_error = None
    except KubeError as e:
        delete_error = str(e)
    replacement = None
    converged_after = None
    eps: list[str] | None = []
    now_vip: str | None = None
    deadline = deleted_at + run.options.churn_deadline
    while delete_error is None and time.monotonic() < deadline:
        try:
            pods, slices, svcs = kube.get_many([("pods", w.namespace), ("endpointslices", w.namespace),
                                                ("services", w.namespace)])
        except KubeError:  # no EndpointSlice API: fall back to one call per kind
            pods, slices, svcs = kube.get("pods", w.namespace), [], kube.get("services", w.namespace)
            eps = endpoint_ips(run, wl.SVC_CLUSTERIP)
        else:
            eps = slice_ips(slices, wl.SVC_CLUSTERIP)
        now_vip = next((wl.parse_service(i).cluster_ip for i in svcs if i["metadata"]["name"] == wl.SVC_CLUSTERIP),
                       None)
        if replacement is None:
            for p in pods:
                md = p.get("metadata", {})
                if md.get("labels", {}).get("app") == wl.ECHO and p.get("spec", {}).get("nodeName") == victim_node \
                        and md.get("name") != victim.name and pod_ready(p):
                    replacement = (md["name"], p["status"]["podIP"])
        if replacement is not None and (eps is None or (replacement[1] in eps and victim.ip not in eps)):
            converged_after = time.monotonic() - deleted_at
            break
        time.sleep(0.25)
    t.join(timeout=window + 25)
    target = f"{svc.cluster_ip}:80 ({wl.SVC_CLUSTERIP})"
    R = lambda check, status, **kw: Result(SCENARIO, victim_node, check, status, src=victim_node, **kw)  # noqa: E731
    if delete_error:
        return [R("delete backend", "fail", target=victim.name, expected="pod deleted", seen=delete_error)]
    out.append(R("vip stable", "pass" if now_vip == svc.cluster_ip else "fail", target=wl.SVC_CLUSTERIP,
                 expected=f"ClusterIP stays {svc.cluster_ip}", seen=f"ClusterIP {now_vip}", explains=False))
    if replacement is None:
        out.append(R("replacement", "fail", target=f"echo pod on {victim_node}", explains=False,
                     expected=f"a new ready pod within {run.options.churn_deadline:g} s",
                     seen=f"no replacement for {victim.name} appeared"))
    else:
        new_ip = replacement[1] != victim.ip
        out.append(R("replacement", "pass" if new_ip else "fail", target=f"echo pod on {victim_node}",
                     expected="a new pod with a new IP", explains=False,
                     seen=f"{replacement[0]} at {replacement[1]} (was {victim.name} at {victim.ip})"))
        if eps is None:
            out.append(R("endpoints converge", "skip", target=wl.SVC_CLUSTERIP,
                         seen="neither endpointslices nor endpoints could be read", explains=False))
        else:
            ok = converged_after is not None
            out.append(R("endpoints converge", "pass" if ok else "fail", target=wl.SVC_CLUSTERIP, explains=False,
                         expected=f"new IP in, old IP out within {run.options.churn_deadline:g} s",
                         seen=f"converged {converged_after:.1f} s after the delete" if ok else
                         f"endpoints still {sorted(eps)}"))
    for n in run.nodes:
        b = batches.get(n)
        if n not in sources or b is None or b.error:
            why = run.unreachable(n) or (b.error if b else "no result")
            out.append(Result(SCENARIO, n, "vip answers throughout", "fail", target=target, expected="answers",
                              seen=f"not probed: {why}"))
            continue
        samples = (b.results.get("loop") or {}).get("samples") or []
        failed = [s for s in samples if not s[1]]
        longest, start = 0.0, None
        for ts, ok, _ in samples:
            if not ok:
                start = ts if start is None else start
                longest = max(longest, ts - start)
            else:
                start = None
        good = bool(samples) and longest < 1.0 and bool(samples[-1][1])
        out.append(Result(SCENARIO, n, "vip answers throughout", "pass" if good else "fail", target=target,
                          peers=sorted(w.echo),
                          expected="no outage of 1 s or more while a backend is replaced",
                          seen=f"{len(failed)} of {len(samples)} requests failed, longest outage {longest:.1f} s"
                          + (f" (last error: {failed[-1][2]})" if failed else "")))
    return out


def test_churn(host: Any, conformance: Any) -> None:
    """Deleting a backend does not break the Service."""
    conformance.verdict(SCENARIO, host)
