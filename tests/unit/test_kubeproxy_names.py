"""kube-proxy chain names: the test vectors from kube-proxy's own expectations (DESIGN section 7)."""

from pi_cluster import kubeproxy_names as kp
from pi_cluster.lab import rules


def test_service_port_name_named_and_unnamed() -> None:
    assert kp.service_port_name("ns1", "svc1", "p80") == "ns1/svc1:p80"
    assert kp.service_port_name("default", "web", None) == "default/web"
    assert kp.service_port_name("default", "web", "") == "default/web"


def test_iptables_chain_names() -> None:
    assert kp.svc_chain("ns1/svc1:p80", "tcp") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert kp.svc_chain("ns1/svc1:p80", "TCP") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert kp.sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert kp.svc_chain("kube-system/kube-dns:dns", "udp") == "KUBE-SVC-TCOU7JCQXEZGVUNU"
    assert kp.svc_chain("default/kubernetes:https", "tcp") == "KUBE-SVC-NPX46M4PTMTKRN6Y"
    # the other per-port chains share the hash and differ by prefix only
    for f, prefix in ((kp.ext_chain, "KUBE-EXT-"), (kp.fw_chain, "KUBE-FW-"), (kp.svl_chain, "KUBE-SVL-")):
        assert f("ns1/svc1:p80", "tcp") == prefix + "XPGD46QRK7WJZT7O"


def test_nftables_chain_names() -> None:
    assert kp.nft_service_chain("ns1", "svc1", "tcp", "p80") == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert kp.nft_external_chain("ns1", "svc1", "TCP", "p80") == "external-ULMVA6XW-ns1/svc1/tcp/p80"
    ep = kp.nft_endpoint_chain("ns1", "svc1", "tcp", "p80", "10.180.0.1", 80)
    assert ep.startswith("endpoint-") and ep.endswith("-ns1/svc1/tcp/p80__10.180.0.1/80")
    assert len(ep.split("-")[1]) == 8


def test_nft_names_are_truncated_to_fit() -> None:
    long = kp.nft_service_chain("ns", "s" * 300, "tcp", "p")
    assert len(long) <= 256 and long.endswith("...")


# --- the lab's rule generator writes these names in kube-proxy's layout (no root needed: pure text) -------

NODE = rules.NodeView("node1", "192.0.2.11", "10.42.0.0/16", "10.43.0.0/16")


def _svc1(**kw: object) -> rules.PortRule:
    args: dict = dict(namespace="ns1", name="svc1", port_name="p80", protocol="tcp", cluster_ip="172.30.0.41",
                      port=80, endpoints=[rules.Endpoint("10.180.0.1", 80, "node1")])
    args.update(kw)
    return rules.PortRule(**args)  # type: ignore[arg-type]


def test_iptables_layout_matches_kube_proxy() -> None:
    text = rules.iptables_ruleset(NODE, [_svc1()])
    lines = text.splitlines()
    assert ('-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41/32 '
            "--dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O") in lines
    assert "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1/32 -j KUBE-MARK-MASQ" in lines
    assert ("-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT "
            "--to-destination 10.180.0.1:80") in lines
    nat = lines[lines.index("*nat"):]
    services = [x for x in nat if x.startswith("-A KUBE-SERVICES")]
    assert services[-1].endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    assert "NOTE: this must be the last rule in this chain" in services[-1]
    assert '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in lines
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000" in lines


def test_iptables_probabilities_and_no_endpoints() -> None:
    eps = [rules.Endpoint(f"10.42.{i}.5", 8080, f"node{i + 1}") for i in range(3)]
    text = rules.iptables_ruleset(NODE, [_svc1(endpoints=eps), _svc1(name="empty", endpoints=[], node_port=30001)])
    assert "--probability 0.3333333333" in text and "--probability 0.5000000000" in text
    assert text.count("-m statistic") == 2
    assert '"ns1/empty:p80 has no endpoints"' in text and "-j REJECT" in text


def test_nft_layout_matches_kube_proxy() -> None:
    eps = [rules.Endpoint("10.42.0.5", 8080, "node1"), rules.Endpoint("10.42.1.5", 8080, "node2")]
    text = rules.nft_ruleset(NODE, [_svc1(endpoints=eps, node_port=30080)])
    svc = "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert f"add element ip kube-proxy service-ips {{ 172.30.0.41 . tcp . 80 : goto {svc} }}" in text
    assert "add element ip kube-proxy cluster-ips { 172.30.0.41 }" in text
    assert "service-nodeports { tcp . 30080 : goto external-ULMVA6XW-ns1/svc1/tcp/p80 }" in text
    assert "numgen random mod 2 vmap { 0 : goto endpoint-" in text
    assert 'add table ip kube-proxy { comment "rules for kube-proxy" ; }' in text
    # every chain is declared before any rule uses it (one atomic nft -f)
    lines = text.splitlines()
    first_rule = next(i for i, x in enumerate(lines) if x.startswith("add rule"))
    assert all(not x.startswith("add chain") for x in lines[first_rule:])


def test_headless_has_no_rules() -> None:
    assert "svc1" not in rules.iptables_ruleset(NODE, [_svc1(cluster_ip=None)])
    assert "svc1" not in rules.nft_ruleset(NODE, [_svc1(cluster_ip=None)])
