"""dns: from a pod on every node, ``<svc>.<ns>.svc.<domain>`` resolves to the ClusterIP, the short name
works via the search path, a headless Service resolves to its pods' IPs and ``kubernetes.default``
resolves; from every node, the cluster DNS VIP answers over UDP and TCP.

Pod-side lookups run ``nslookup`` through the client pod's netexec ``/shell`` on the pod's own IP (agnhost
ships bind-tools); node-side lookups send hand-built DNS queries to the DNS VIP.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pi_cluster.conformance import workload as wl
from pi_cluster.conformance.report import Result

if TYPE_CHECKING:
    from pi_cluster.conformance.run import CheckRun

SCENARIO = "dns"
SERVICE = "kube-dns"  # the Service these checks probe
_IP = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b")


def nslookup_addresses(output: str) -> list[str]:
    """IPv4 answers in nslookup output (bind or busybox), ignoring the server's own address lines."""
    ips: list[str] = []
    after_name = False
    for line in output.splitlines():
        if line.strip().lower().startswith("name:"):
            after_name = True
            continue
        if after_name and "address" in line.lower():
            ips += [ip for ip in _IP.findall(line) if "#" not in line.split(ip, 1)[1][:1]]
    return ips


def _names(run: CheckRun) -> dict[str, tuple[str, set[str], bool]]:
    """key -> (name, expected IPs, exact): exact=False means 'resolves at all'."""
    w = run.w
    assert w is not None
    ns, dom = w.namespace, run.cluster.settings.cluster_domain
    web = run.service(wl.SVC_CLUSTERIP)
    vip = {web.cluster_ip} if web and web.cluster_ip else set()
    k8s = {s.cluster_ip for n, s in w.system_services if n == "default" and s.name == "kubernetes" and s.cluster_ip}
    return {
        "fqdn": (f"{wl.SVC_CLUSTERIP}.{ns}.svc.{dom}", vip, True),
        "short": (wl.SVC_CLUSTERIP, vip, True),
        "headless": (f"{wl.SVC_HEADLESS}.{ns}.svc.{dom}", {p.ip for p in w.echo.values()}, True),
        "kubernetes": ("kubernetes.default", k8s, bool(k8s)),
    }


def plan(run: CheckRun) -> None:
    w = run.w
    assert w is not None
    dns_ip = str(run.cluster.settings.cluster_dns)
    t = run.options.request_timeout
    names = _names(run)
    for a in run.nodes:
        client = w.client.get(a)
        if client:
            for key, (name, _ips, _exact) in names.items():
                run.add(SCENARIO, a, f"pod {key}", {"kind": "shell", "pod": client.ip, "cmd": f"nslookup {name}",
                                                    "timeout": t * 3})
        for proto in ("udp", "tcp"):
            for key in ("fqdn", "kubernetes"):
                name = names[key][0]
                fq = name if key == "fqdn" else f"kubernetes.default.svc.{run.cluster.settings.cluster_domain}"
                run.add(SCENARIO, a, f"node {key} {proto}", {"kind": "dns", "server": dns_ip, "name": fq,
                                                             "proto": proto, "timeout": t})


def _judge(got: list[str], want: set[str], exact: bool) -> bool:
    if not got:
        return False
    return set(got) == want if exact else True


def evaluate(run: CheckRun) -> list[Result]:
    w = run.w
    assert w is not None
    out: list[Result] = []
    names = _names(run)
    dns_ip = str(run.cluster.settings.cluster_dns)
    eps = w.system_endpoints.get("kube-system/kube-dns")
    why = (" (kube-system/kube-dns has no ready endpoints: is CoreDNS running?)" if eps is not None and not eps
           else "")
    for a in run.nodes:
        if run.unreachable(a):
            out.append(run.not_probed(SCENARIO, a, "resolve", target=dns_ip))
            continue
        client = w.client.get(a)
        for key, (name, want, exact) in names.items():
            check = f"pod {key}"
            expected = f"resolves to {', '.join(sorted(want))}" if exact and want else "resolves"
            if client is None:
                out.append(Result(SCENARIO, a, check, "fail", target=name, expected=expected,
                                  seen=w.missing.get(a, "no ready client pod")))
                continue
            res = run.res(SCENARIO, a, check) or {}
            output = str(res.get("output") or "")
            got = nslookup_addresses(output)
            ok = _judge(got, want, exact)
            if ok or got:
                seen = f"resolved to {', '.join(sorted(set(got)))}"
            else:
                tail = (output.strip().splitlines() or [str(res.get("error") or "no output")])[-1]
                seen = f"name did not resolve: {tail[:160]}{why}"
            out.append(Result(SCENARIO, a, check, "pass" if ok else "fail", target=f"{name} (from {client.name})",
                              expected=expected, seen=seen, peers=[]))
        for proto in ("udp", "tcp"):
            for key in ("fqdn", "kubernetes"):
                _name, want, exact = names[key]
                fq = _name if key == "fqdn" else f"kubernetes.default.svc.{run.cluster.settings.cluster_domain}"
                res = run.res(SCENARIO, a, f"node {key} {proto}") or {}
                got = list(res.get("answers") or [])
                ok = _judge(got, want, exact)
                seen = (f"resolved to {', '.join(got)}" if got else
                        f"name did not resolve: {res.get('error') or res.get('rcode') or 'no answer'}{why}")
                out.append(Result(SCENARIO, a, f"node {key} {proto}", "pass" if ok else "fail",
                                  target=f"{fq} @ {dns_ip}/{proto}", seen=seen,
                                  expected=f"resolves to {', '.join(sorted(want))}" if want else "resolves"))
    return out


def test_dns(host: Any, conformance: Any) -> None:
    """Cluster DNS from pods and from nodes."""
    conformance.verdict(SCENARIO, host)
