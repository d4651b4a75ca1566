"""Kernel rules for Services in kube-proxy's own layout: iptables-restore text and nft scripts (pure functions).

The lab feeds one node's view of every Service port to `iptables_ruleset` (iptables-nft and iptables-legacy)
or `nft_ruleset` (table ``ip kube-proxy``) and loads the text atomically with ``iptables-restore`` / ``nft -f``.
Names, comments and chain layout follow kube-proxy (see `pi_cluster.kubeproxy_names`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pi_cluster import kubeproxy_names as kp

MASQ_MARK = "0x4000"
AFFINITY_SECONDS = 10800  # kube-proxy's default sessionAffinityConfig.clientIP.timeoutSeconds


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str


@dataclass
class PortRule:
    """One Service port as kube-proxy sees it (ClusterIP None: headless, no rules)."""

    namespace: str
    name: str
    port_name: str | None
    protocol: str  # "tcp" | "udp"
    cluster_ip: str | None
    port: int
    node_port: int | None = None
    lb_ips: list[str] = field(default_factory=list)
    affinity: bool = False
    local: bool = False  # externalTrafficPolicy: Local
    endpoints: list[Endpoint] = field(default_factory=list)

    @property
    def spn(self) -> str:
        return kp.service_port_name(self.namespace, self.name, self.port_name)

    @property
    def external(self) -> bool:
        return bool(self.node_port or self.lb_ips)


@dataclass
class NodeView:
    name: str
    address: str
    cluster_cidr: str
    service_cidr: str


def _q(comment: str) -> str:
    return f'"{comment}"' if " " in comment else comment


def _prob(n_left: int) -> str:
    return f"{1.0 / n_left:0.10f}"


# ------------------------------------------------------------------------------------------------ iptables


def iptables_ruleset(node: NodeView, ports: list[PortRule]) -> str:
    """The complete nat and filter tables of one node (load with ``iptables-restore``, no --noflush)."""
    nat_chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    nat: list[str] = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}",
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    flt: list[str] = [
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" '
        "-j KUBE-PROXY-FIREWALL",
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" '
        "-j KUBE-EXTERNAL-SERVICES",
        "-A INPUT -j KUBE-FIREWALL",
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" '
        "-j KUBE-PROXY-FIREWALL",
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" '
        "-j KUBE-EXTERNAL-SERVICES",
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" '
        "-j KUBE-PROXY-FIREWALL",
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-A OUTPUT -j KUBE-FIREWALL",
        '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 '
        "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {MASQ_MARK}/{MASQ_MARK} '
        "-j ACCEPT",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack '
        "--ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    services: list[str] = []  # nat KUBE-SERVICES, in order
    for pr in ports:
        if pr.cluster_ip is None:
            continue
        spn, proto = pr.spn, pr.protocol
        m = f"-m {proto} -p {proto}"
        svc, ext, svl = kp.svc_chain(spn, proto), kp.ext_chain(spn, proto), kp.svl_chain(spn, proto)
        if not pr.endpoints:
            flt.append(f'-A KUBE-SERVICES -m comment --comment "{spn} has no endpoints" {m} -d {pr.cluster_ip}/32 '
                       f"--dport {pr.port} -j REJECT")
            flt.extend(_external_filter(pr, m, "has no endpoints", "REJECT"))
            continue
        nat_chains.append(svc)
        services.append(f'-A KUBE-SERVICES -m comment --comment "{spn} cluster IP" {m} -d {pr.cluster_ip}/32 '
                        f"--dport {pr.port} -j {svc}")
        nat.append(f'-A {svc} -m comment --comment "{spn} cluster IP" {m} -d {pr.cluster_ip}/32 --dport {pr.port} '
                   f"! -s {node.cluster_cidr} -j KUBE-MARK-MASQ")
        nat.extend(_iptables_lb(svc, pr, pr.endpoints))
        for ep in pr.endpoints:
            sep = kp.sep_chain(spn, proto, f"{ep.ip}:{ep.port}")
            nat_chains.append(sep)
            nat.append(f"-A {sep} -m comment --comment {_q(spn)} -s {ep.ip}/32 -j KUBE-MARK-MASQ")
            rec = f" -m recent --name {sep} --set" if pr.affinity else ""
            nat.append(f"-A {sep} -m comment --comment {_q(spn)}{rec} {m} -j DNAT --to-destination {ep.ip}:{ep.port}")
        if not pr.external:
            continue
        nat_chains.append(ext)
        if pr.node_port:
            nat.append(f"-A KUBE-NODEPORTS -m comment --comment {_q(spn)} {m} --dport {pr.node_port} -j {ext}")
        for ip in pr.lb_ips:
            services.append(f'-A KUBE-SERVICES -m comment --comment "{spn} loadbalancer IP" {m} -d {ip}/32 '
                            f"--dport {pr.port} -j {ext}")
        if not pr.local:
            nat.append(f'-A {ext} -m comment --comment "masquerade traffic for {spn} external destinations" '
                       "-j KUBE-MARK-MASQ")
            nat.append(f"-A {ext} -j {svc}")
            continue
        local = [ep for ep in pr.endpoints if ep.node == node.name]
        nat.append(f'-A {ext} -m comment --comment "pod traffic for {spn} external destinations" '
                   f"-s {node.cluster_cidr} -j {svc}")
        nat.append(f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {spn} external destinations" '
                   "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ")
        nat.append(f'-A {ext} -m comment --comment "route LOCAL traffic for {spn} external destinations" '
                   f"-m addrtype --src-type LOCAL -j {svc}")
        if local:
            nat_chains.append(svl)
            nat.append(f"-A {ext} -j {svl}")
            nat.extend(_iptables_lb(svl, pr, local))
        else:
            flt.extend(_external_filter(pr, m, "has no local endpoints", "DROP"))
    services.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
                    'last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    filter_chains = ["KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL", "KUBE-FORWARD", "KUBE-NODEPORTS",
                     "KUBE-PROXY-FIREWALL", "KUBE-SERVICES"]
    out = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    out += [f":{c} - [0:0]" for c in filter_chains]
    out += [*flt, "COMMIT", "*nat"]
    out += [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")]
    out += [f":{c} - [0:0]" for c in dict.fromkeys(nat_chains)]
    out += nat + services + ["COMMIT", ""]
    return "\n".join(out)


def _iptables_lb(chain: str, pr: PortRule, eps: list[Endpoint]) -> list[str]:
    spn, proto = pr.spn, pr.protocol
    lines = []
    if pr.affinity:
        for ep in eps:
            sep = kp.sep_chain(spn, proto, f"{ep.ip}:{ep.port}")
            lines.append(f'-A {chain} -m comment --comment "{spn} -> {ep.ip}:{ep.port}" -m recent --name {sep} '
                         f"--rcheck --seconds {AFFINITY_SECONDS} --reap -j {sep}")
    n = len(eps)
    for i, ep in enumerate(eps):
        sep = kp.sep_chain(spn, proto, f"{ep.ip}:{ep.port}")
        stat = f" -m statistic --mode random --probability {_prob(n - i)}" if i < n - 1 else ""
        lines.append(f'-A {chain} -m comment --comment "{spn} -> {ep.ip}:{ep.port}"{stat} -j {sep}')
    return lines


def iptables_empty() -> str:
    """nat and filter tables with no lab rules (the "drop-rules" fault and teardown)."""
    return "\n".join([
        "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "COMMIT",
        "*nat", *(f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")), "COMMIT", "",
    ])


# ------------------------------------------------------------------------------------------------ nftables

T = "ip kube-proxy"


def nft_ruleset(node: NodeView, ports: list[PortRule]) -> str:
    """An ``nft -f`` script replacing table ``ip kube-proxy`` atomically with this node's rules."""
    o: list[str] = [
        f"add table {T}",
        f"delete table {T}",
        f'add table {T} {{ comment "rules for kube-proxy" ; }}',
        f"add chain {T} mark-for-masquerade",
        f"add rule {T} mark-for-masquerade mark set mark or {MASQ_MARK}",
        f"add chain {T} masquerading",
        f"add rule {T} masquerading mark and {MASQ_MARK} == 0 return",
        f"add rule {T} masquerading mark set mark xor {MASQ_MARK}",
        f"add rule {T} masquerading masquerade fully-random",
        f'add chain {T} reject-chain {{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }}',
        f"add rule {T} reject-chain reject",
        f'add set {T} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}',
        f'add set {T} nodeport-ips {{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }}',
        f"add element {T} nodeport-ips {{ {node.address} }}",
        f"add map {T} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
        f'add map {T} service-nodeports {{ type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }}',
        f"add map {T} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to services with no endpoints" ; }',
        f"add map {T} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }',
        f"add chain {T} services",
        f"add rule {T} services ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule {T} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        f"add chain {T} service-endpoints-check",
        f"add rule {T} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        f"add chain {T} nodeport-endpoints-check",
        f"add rule {T} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport "
        "vmap @no-endpoint-nodeports",
        f"add chain {T} cluster-ips-check",
        f'add rule {T} cluster-ips-check ip daddr @cluster-ips reject comment '
        '"Reject traffic to invalid ports of ClusterIPs"',
        f'add rule {T} cluster-ips-check ip daddr {{ {node.service_cidr} }} drop comment '
        '"Drop traffic to unallocated ClusterIPs"',
        f"add chain {T} filter-forward {{ type filter hook forward priority -110 ; }}",
        f"add rule {T} filter-forward ct state new jump service-endpoints-check",
        f"add rule {T} filter-forward ct state new jump cluster-ips-check",
        f"add chain {T} filter-input {{ type filter hook input priority -110 ; }}",
        f"add rule {T} filter-input ct state new jump nodeport-endpoints-check",
        f"add rule {T} filter-input ct state new jump service-endpoints-check",
        f"add chain {T} filter-output {{ type filter hook output priority -110 ; }}",
        f"add rule {T} filter-output ct state new jump service-endpoints-check",
        f"add chain {T} filter-output-post-dnat {{ type filter hook output priority -90 ; }}",
        f"add rule {T} filter-output-post-dnat ct state new jump cluster-ips-check",
        f"add chain {T} nat-prerouting {{ type nat hook prerouting priority -100 ; }}",
        f"add rule {T} nat-prerouting jump services",
        f"add chain {T} nat-output {{ type nat hook output priority -100 ; }}",
        f"add rule {T} nat-output jump services",
        f"add chain {T} nat-postrouting {{ type nat hook postrouting priority 100 ; }}",
        f"add rule {T} nat-postrouting jump masquerading",
    ]
    elements: list[str] = []
    for pr in ports:
        if pr.cluster_ip is None:
            continue
        args = (pr.namespace, pr.name, pr.protocol, pr.port_name)
        proto = pr.protocol
        svc = kp.nft_service_chain(*args)
        ext = kp.nft_external_chain(*args)
        elements.append(f"add element {T} cluster-ips {{ {pr.cluster_ip} }}")
        if not pr.endpoints:
            elements.append(f"add element {T} no-endpoint-services {{ {pr.cluster_ip} . {proto} . {pr.port} : "
                            "goto reject-chain }")
            if pr.node_port:
                elements.append(f"add element {T} no-endpoint-nodeports {{ {proto} . {pr.node_port} : "
                                "goto reject-chain }")
            for ip in pr.lb_ips:
                elements.append(f"add element {T} no-endpoint-services {{ {ip} . {proto} . {pr.port} : "
                                "goto reject-chain }")
            continue
        if pr.affinity:
            for ep in pr.endpoints:
                aff = kp.nft_affinity_set(*args, ep.ip, ep.port)
                o.append(f"add set {T} {aff} {{ type ipv4_addr ; flags dynamic,timeout ; "
                         f"timeout {AFFINITY_SECONDS}s ; }}")
        o.append(f"add chain {T} {svc}")
        o.append(f"add rule {T} {svc} ip daddr {pr.cluster_ip} {proto} dport {pr.port} "
                 f"ip saddr != {node.cluster_cidr} jump mark-for-masquerade")
        o.extend(_nft_lb(svc, pr, pr.endpoints))
        for ep in pr.endpoints:
            epc = kp.nft_endpoint_chain(*args, ep.ip, ep.port)
            o.append(f"add chain {T} {epc}")
            o.append(f"add rule {T} {epc} ip saddr {ep.ip} jump mark-for-masquerade")
            if pr.affinity:
                aff = kp.nft_affinity_set(*args, ep.ip, ep.port)
                o.append(f"add rule {T} {epc} update @{aff} {{ ip saddr }}")
            o.append(f"add rule {T} {epc} meta l4proto {proto} dnat to {ep.ip}:{ep.port}")
        elements.append(f"add element {T} service-ips {{ {pr.cluster_ip} . {proto} . {pr.port} : goto {svc} }}")
        if not pr.external:
            continue
        o.append(f"add chain {T} {ext}")
        if pr.node_port:
            elements.append(f"add element {T} service-nodeports {{ {proto} . {pr.node_port} : goto {ext} }}")
        for ip in pr.lb_ips:
            elements.append(f"add element {T} service-ips {{ {ip} . {proto} . {pr.port} : goto {ext} }}")
        if not pr.local:
            o.append(f'add rule {T} {ext} jump mark-for-masquerade comment "masquerade traffic for {pr.spn} '
                     'external destinations"')
            o.append(f"add rule {T} {ext} goto {svc}")
            continue
        o.append(f'add rule {T} {ext} ip saddr {node.cluster_cidr} goto {svc} comment "short-circuit pod traffic"')
        o.append(f'add rule {T} {ext} fib saddr type local jump mark-for-masquerade comment '
                 '"masquerade local traffic"')
        o.append(f'add rule {T} {ext} fib saddr type local goto {svc} comment "short-circuit local traffic"')
        local = [ep for ep in pr.endpoints if ep.node == node.name]
        if local:
            loc = kp.nft_local_chain(*args)
            o.append(f"add chain {T} {loc}")
            o.extend(_nft_lb(loc, pr, local))
            o.append(f"add rule {T} {ext} goto {loc}")
        else:
            o.append(f'add rule {T} {ext} drop comment "{pr.spn} has no local endpoints"')
    head, rest = o[:3], o[3:]
    decls = [line for line in rest if line.startswith(("add chain", "add set", "add map"))]
    rules = [line for line in rest if not line.startswith(("add chain", "add set", "add map"))]
    return "\n".join(head + decls + rules + elements + [""])


def _nft_lb(chain: str, pr: PortRule, eps: list[Endpoint]) -> list[str]:
    args = (pr.namespace, pr.name, pr.protocol, pr.port_name)
    lines = []
    if pr.affinity:
        for ep in eps:
            aff = kp.nft_affinity_set(*args, ep.ip, ep.port)
            lines.append(f"add rule {T} {chain} ip saddr @{aff} goto {kp.nft_endpoint_chain(*args, ep.ip, ep.port)}")
    vm = " , ".join(f"{i} : goto {kp.nft_endpoint_chain(*args, ep.ip, ep.port)}" for i, ep in enumerate(eps))
    lines.append(f"add rule {T} {chain} numgen random mod {len(eps)} vmap {{ {vm} }}")
    return lines


def nft_empty() -> str:
    return f"add table {T}\ndelete table {T}\n"


def _external_filter(pr: PortRule, m: str, why: str, target: str) -> list[str]:
    """KUBE-EXTERNAL-SERVICES rules that REJECT/DROP a service port's NodePort and LoadBalancer traffic."""
    out = []
    if pr.node_port:
        out.append(f'-A KUBE-EXTERNAL-SERVICES -m comment --comment "{pr.spn} {why}" -m addrtype '
                   f"--dst-type LOCAL {m} --dport {pr.node_port} -j {target}")
    for ip in pr.lb_ips:
        out.append(f'-A KUBE-EXTERNAL-SERVICES -m comment --comment "{pr.spn} {why}" {m} -d {ip}/32 '
                   f"--dport {pr.port} -j {target}")
    return out
