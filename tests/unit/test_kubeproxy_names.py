"""kube-proxy chain names: the test vectors from kube-proxy's own expectations (DESIGN section 7)."""

from pi_cluster import kubeproxy_names as kp


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
