"""proxy: kube-proxy's mode on each node matches the inventory, and every Service VIP (the probe Services
and the system ones: default/kubernetes, kube-system/kube-dns) and every NodePort is programmed on every
node, read from ``iptables-save -t nat`` or ``nft -j list table ip kube-proxy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pi_cluster.conformance import rules
from pi_cluster.conformance.report import Result

if TYPE_CHECKING:
    from pi_cluster.conformance.run import CheckRun
    from pi_cluster.conformance.workload import ServiceInfo

SCENARIO = "proxy"


def plan(run: CheckRun) -> None:
    for n in run.nodes:
        run.add(SCENARIO, n, "mode", {"kind": "http", "host": "127.0.0.1", "port": 10249, "path": "/proxyMode",
                                      "timeout": run.options.request_timeout})
        for table in ("nat", "filter"):
            run.add(SCENARIO, n, f"ipt {table}", {"kind": "cmd", "argv": ["iptables-save", "-t", table]})
            run.add(SCENARIO, n, f"ipt-legacy {table}", {"kind": "cmd", "argv": ["iptables-legacy-save", "-t", table]})
        run.add(SCENARIO, n, "nft", {"kind": "cmd", "argv": ["nft", "-j", "list", "table", "ip", "kube-proxy"]})


def services(run: CheckRun) -> list[tuple[str, ServiceInfo]]:
    w = run.w
    assert w is not None
    out = [(w.namespace, s) for s in w.services.values() if s.cluster_ip]
    return out + list(w.system_services)


def evaluate(run: CheckRun) -> list[Result]:
    out: list[Result] = []
    want = run.cluster.settings.kube_proxy_mode
    for n in run.nodes:
        if run.unreachable(n):
            out.append(run.not_probed(SCENARIO, n, "mode"))
            continue
        ipt_text = "".join((run.res(SCENARIO, n, f"{k} {t}") or {}).get("stdout") or ""
                           for k in ("ipt", "ipt-legacy") for t in ("nat", "filter"))
        chains = rules.parse_iptables_save(ipt_text)
        nft_res = run.res(SCENARIO, n, "nft") or {}
        try:
            table = rules.parse_nft(nft_res.get("stdout") or "") if nft_res.get("rc") == 0 else rules.parse_nft("")
        except (ValueError, KeyError, TypeError):
            table = rules.parse_nft("")
        has_ipt, has_nft = bool(chains.get("KUBE-SERVICES")), bool(table["chains"])
        mode_res = run.res(SCENARIO, n, "mode") or {}
        tries = mode_res.get("tries") or [{}]
        reported = (tries[0].get("body") or "").strip() if tries[0].get("status") == 200 else ""
        if reported:
            seen, mode = f"kube-proxy reports {reported!r} on 127.0.0.1:10249/proxyMode", reported
        else:
            mode = "nftables" if has_nft else "iptables" if has_ipt else "none"
            seen = (f"rules found: {mode} (127.0.0.1:10249/proxyMode: "
                    f"{tries[0].get('error') or 'HTTP ' + str(tries[0].get('status'))})")
        out.append(Result(SCENARIO, n, "mode", "pass" if mode == want else "fail", target="kube-proxy mode",
                          expected=want, seen=seen))
        use_nft = mode == "nftables" or (not has_ipt and has_nft)
        where = "nft table ip kube-proxy" if use_nft else "KUBE-SERVICES"
        for ns, svc in services(run):
            for p in svc.ports:
                pn = svc.port_name(ns, p)
                if use_nft:
                    got = rules.nft_lookup(table, ns, svc.name, svc.cluster_ip, p.port, p.protocol, p.name,
                                           p.node_port)
                else:
                    got = rules.iptables_lookup(chains, svc.cluster_ip, p.port, p.protocol, pn, p.node_port)
                target = f"{svc.cluster_ip}:{p.port}/{p.protocol.lower()} ({pn})"
                ok = got.vip or got.no_endpoints
                seen = (f"VIP programmed, {got.endpoints} endpoint(s)" if got.vip
                        else "VIP programmed as a Service without endpoints (rejects)" if ok
                        else f"VIP absent from {n}'s {where}" + ("" if got.where else " (no kube-proxy rules at all)"))
                out.append(Result(SCENARIO, n, f"vip {pn}", "pass" if ok else "fail", target=target,
                                  expected=f"rule in {where}", seen=seen, service=svc.name))
                if p.node_port:
                    okp = got.node_port
                    out.append(Result(SCENARIO, n, f"nodeport {pn}", "pass" if okp else "fail",
                                      target=f"{n}:{p.node_port}/{p.protocol.lower()}", service=svc.name,
                                      expected="NodePort rule", seen="programmed" if okp else
                                      f"NodePort {p.node_port} absent from {n}'s "
                                      f"{'service-nodeports map' if use_nft else 'KUBE-NODEPORTS'}"))
    return out


def test_proxy(host: Any, conformance: Any) -> None:
    """kube-proxy programs every Service on every node."""
    conformance.verdict(SCENARIO, host)

