"""Rule parsing against real `iptables-save` and `nft -j` output of kube-proxy-style rules programmed in a
network namespace this test creates (and removes)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from pi_cluster import kubeproxy_names as kp
from pi_cluster.conformance import rules

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2")

SPN = "ns1/svc1:p80"
SVC = kp.svc_chain(SPN, "tcp")
EXT = kp.ext_chain(SPN, "tcp")
SEP1 = kp.sep_chain(SPN, "tcp", "10.180.0.1:80")
SEP2 = kp.sep_chain(SPN, "tcp", "10.180.0.2:80")

LAST = ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in '
        'this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
IPTABLES = f"""*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-MARK-MASQ - [0:0]
:{SVC} - [0:0]
:{EXT} - [0:0]
:{SEP1} - [0:0]
:{SEP2} - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment "{SPN} cluster IP" -m tcp --dport 80 -j {SVC}
-A KUBE-NODEPORTS -p tcp -m comment --comment {SPN} -m tcp --dport 30080 -j {EXT}
-A {EXT} -j KUBE-MARK-MASQ
-A {EXT} -j {SVC}
-A {SVC} -m comment --comment "{SPN} -> 10.180.0.1:80" -m statistic --mode random --probability 0.5 -j {SEP1}
-A {SVC} -m comment --comment "{SPN} -> 10.180.0.2:80" -j {SEP2}
-A {SEP1} -p tcp -m comment --comment {SPN} -m tcp -j DNAT --to-destination 10.180.0.1:80
-A {SEP2} -p tcp -m comment --comment {SPN} -m tcp -j DNAT --to-destination 10.180.0.2:80
{LAST}
COMMIT
"""

SVCN = kp.nft_service_chain("ns1", "svc1", "tcp", "p80")
EXTN = kp.nft_external_chain("ns1", "svc1", "tcp", "p80")
EP1 = kp.nft_endpoint_chain("ns1", "svc1", "tcp", "p80", "10.180.0.1", 80)
EP2 = kp.nft_endpoint_chain("ns1", "svc1", "tcp", "p80", "10.180.0.2", 80)
T = "ip kube-proxy"
NFT = "\n".join([
    f'add table {T} {{ comment "rules for kube-proxy" ; }}',
    f"add map {T} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
    f"add map {T} service-nodeports {{ type inet_proto . inet_service : verdict ; }}",
    f"add set {T} cluster-ips {{ type ipv4_addr ; }}",
    f"add chain {T} services",
    f"add rule {T} services ip daddr . meta l4proto . th dport vmap @service-ips",
    f"add chain {T} {EP1}", f"add rule {T} {EP1} meta l4proto tcp dnat to 10.180.0.1:80",
    f"add chain {T} {EP2}", f"add rule {T} {EP2} meta l4proto tcp dnat to 10.180.0.2:80",
    f"add chain {T} {SVCN}",
    f"add rule {T} {SVCN} numgen random mod 2 vmap {{ 0 : goto {EP1} , 1 : goto {EP2} }}",
    f"add chain {T} {EXTN}", f"add rule {T} {EXTN} goto {SVCN}",
    f"add element {T} cluster-ips {{ 172.30.0.41 }}",
    f"add element {T} service-ips {{ 172.30.0.41 . tcp . 80 : goto {SVCN} }}",
    f"add element {T} service-nodeports {{ tcp . 30080 : goto {EXTN} }}",
]) + "\n"


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"pct-rules-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def ns(name: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(["ip", "netns", "exec", name, *argv], input=stdin, capture_output=True, text=True,
                          check=True).stdout


def test_names_match_kube_proxy() -> None:
    assert rules.svc_chain("ns1/svc1:p80", "tcp") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert rules.nft_service_chain("ns1", "svc1", "TCP", "p80") == "service-ULMVA6XW-ns1/svc1/tcp/p80"


@pytest.mark.parametrize("save", ["iptables-save", "iptables-legacy-save"])
def test_iptables_save_parsed_by_option(netns: str, save: str) -> None:
    restore = save.replace("-save", "-restore")
    if not shutil.which(restore):
        pytest.skip(f"{restore} not installed")
    ns(netns, restore, stdin=IPTABLES)
    text = ns(netns, save, "-t", "nat")
    assert "172.30.0.41/32" in text  # the kernel's own formatting, not ours
    chains = rules.parse_iptables_save(text)
    got = rules.iptables_lookup(chains, "172.30.0.41", 80, "TCP", SPN, 30080)
    assert (got.vip, got.endpoints, got.node_port, got.where) == (True, 2, True, "iptables")
    # another VIP, another port, the other protocol, another NodePort: all absent
    assert not rules.iptables_lookup(chains, "172.30.0.42", 80, "TCP", SPN, None).vip
    assert not rules.iptables_lookup(chains, "172.30.0.41", 81, "TCP", SPN, None).vip
    assert not rules.iptables_lookup(chains, "172.30.0.41", 80, "UDP", SPN, None).vip
    assert not rules.iptables_lookup(chains, "172.30.0.41", 80, "TCP", SPN, 30081).node_port


def test_empty_iptables_means_no_kube_proxy(netns: str) -> None:
    chains = rules.parse_iptables_save(ns(netns, "iptables-save", "-t", "nat"))
    got = rules.iptables_lookup(chains, "172.30.0.41", 80, "TCP", SPN, 30080)
    assert (got.vip, got.node_port, got.where) == (False, False, "")


def test_nft_json_parsed(netns: str) -> None:
    ns(netns, "nft", "-f", "-", stdin=NFT)
    table = rules.parse_nft(ns(netns, "nft", "-j", "list", "table", "ip", "kube-proxy"))
    got = rules.nft_lookup(table, "ns1", "svc1", "172.30.0.41", 80, "TCP", "p80", 30080)
    assert (got.vip, got.endpoints, got.node_port, got.where) == (True, 2, True, "nftables")
    assert not rules.nft_lookup(table, "ns1", "svc1", "172.30.0.41", 8080, "TCP", "p80", None).vip
    assert not rules.nft_lookup(table, "ns1", "other", "172.30.0.41", 80, "TCP", "p80", 30080).vip
    assert not rules.nft_lookup(table, "ns1", "svc1", "172.30.0.41", 80, "TCP", "p80", 30099).node_port
    assert rules.parse_nft("") == {"chains": {}, "maps": {}}
