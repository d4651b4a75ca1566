"""The lab's Service dataplane, end to end through real kernel rules, in iptables and nftables mode.

Acceptance (issue 3): from every node and from a pod on every node the VIP answers and, over 20 requests,
reaches pods on more than one node; the NodePort answers on every node from every node and from the
workstation; DNS resolves from nodes (via the DNS VIP) and pods (via the search path); ping to a VIP fails.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from labutil import populate, sh

from pi_cluster import inventory
from pi_cluster import kubeproxy_names as kp
from pi_cluster.lab import ContainerSpec, Lab, ServiceSpec, ServiceState

pytestmark = pytest.mark.lab
Cluster = tuple[Lab, dict[str, ServiceSpec]]


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def cluster(request: pytest.FixtureRequest, make_lab: Callable[..., Lab]) -> Iterator[Cluster]:
    mode = request.param
    lab = make_lab("d" if mode == "iptables" else "n", nodes=3, servers=1, proxy_mode=mode)
    specs = populate(lab)
    yield lab, specs
    Lab.down(lab.name)


def svc(lab: Lab, name: str, ns: str = "probe") -> ServiceState:
    return next(s for s in lab.services() if s.spec.name == name and s.spec.namespace == ns)


def hostnames(lab: Lab, target: str, url: str, n: int = 20) -> list[str]:
    """`n` GETs of url from target, one line each (ERR on failure), in one process."""
    r = sh(lab, target, f'for i in $(seq {n}); do curl -s -m 2 {url} || printf ERR; echo; done')
    return r.stdout.split()


def test_vip_from_every_node_and_pod_reaches_several_nodes(cluster: Cluster) -> None:
    lab, _ = cluster
    vip = svc(lab, "web").spec.cluster_ip
    sources = [n.name for n in lab.nodes] + [f"probe/client-{n.name}" for n in lab.nodes]
    for src in sources:
        got = hostnames(lab, src, f"http://{vip}/hostname")
        assert "ERR" not in got and len(got) == 20, (src, got)
        backends = {h.removeprefix("echo-") for h in got}
        assert len(backends) > 1, (src, Counter(got))
        assert backends <= {n.name for n in lab.nodes}


def test_nodeport_mesh_and_from_workstation(cluster: Cluster) -> None:
    lab, _ = cluster
    np = svc(lab, "web").spec.ports[0].node_port
    for src in lab.nodes:
        urls = " ".join(f"http://{dst.address}:{np}/hostname" for dst in lab.nodes)
        r = sh(lab, src.name, f"for u in {urls}; do curl -s -m 2 $u || printf ERR; echo; done")
        assert r.stdout.split() and "ERR" not in r.stdout, (src.name, r.stdout)
        assert len(r.stdout.split()) == len(lab.nodes)
    for dst in lab.nodes:  # this process is the workstation: the root namespace
        seen = set()
        for _ in range(8):
            with urllib.request.urlopen(f"http://{dst.address}:{np}/hostname", timeout=3) as resp:
                seen.add(resp.read().decode())
        assert seen and all(h.startswith("echo-") for h in seen)


def test_loadbalancer_on_node_ips(cluster: Cluster) -> None:
    lab, _ = cluster
    s = svc(lab, "lb")
    assert s.lb_ingress == [n.address for n in lab.nodes]
    for ip in s.lb_ingress:
        with urllib.request.urlopen(f"http://{ip}:8000/hostname", timeout=3) as resp:
            assert resp.read().decode().startswith("echo-")


def test_dns_from_nodes_and_pods(cluster: Cluster) -> None:
    lab, _ = cluster
    vip = svc(lab, "web").spec.cluster_ip
    pod_ips = sorted(p.ip for p in lab.endpoints("probe", "hl"))
    for n in lab.nodes:
        for tcp in ("", "+tcp"):
            r = sh(lab, n.name, f"dig +short {tcp} +time=2 +tries=2 @10.43.0.10 web.probe.svc.cluster.local")
            assert r.stdout.split() == [vip], (n.name, tcp, r.stdout, r.stderr)
        r = sh(lab, n.name, "dig +short +time=2 @10.43.0.10 kubernetes.default.svc.cluster.local")
        assert r.stdout.split() == ["10.43.0.1"]
    for n in lab.nodes:
        pod = f"probe/client-{n.name}"
        assert sh(lab, pod, "getent ahostsv4 web | head -1").stdout.split()[:1] == [vip]  # search path
        assert sh(lab, pod, "getent hosts kubernetes.default").stdout.split()[:1] == ["10.43.0.1"]
        r = sh(lab, pod, "dig +short +search hl")
        assert sorted(r.stdout.split()) == pod_ips, r.stdout
        assert "ndots:5" in sh(lab, pod, "cat /etc/resolv.conf").stdout


def test_ping_to_a_vip_fails(cluster: Cluster) -> None:
    lab, _ = cluster
    vip = svc(lab, "web").spec.cluster_ip
    assert sh(lab, "node1", f"ping -c1 -W1 {vip}").returncode != 0
    assert sh(lab, "probe/client-node2", f"ping -c1 -W1 {vip}").returncode != 0
    # while the pod IP itself answers ping: the failure is the VIP's, not the network's
    echo_ip = next(p.ip for p in lab.pods() if p.name == "echo-node3")
    assert sh(lab, "node1", f"ping -c1 -W2 {echo_ip}").returncode == 0


def test_session_affinity_sticks(cluster: Cluster) -> None:
    lab, _ = cluster
    vip = svc(lab, "sticky").spec.cluster_ip
    got = hostnames(lab, "probe/client-node1", f"http://{vip}/hostname", 12)
    assert "ERR" not in got and len(set(got)) == 1, got


def test_local_policy_only_local_nodes_answer_and_keep_client_ip(cluster: Cluster) -> None:
    lab, _ = cluster
    np = svc(lab, "local").spec.ports[0].node_port
    local_node = next(p.node for p in lab.pods() if p.name == "local-echo")
    for n in lab.nodes:
        url = f"http://{n.address}:{np}/clientip"
        if n.name == local_node:
            with urllib.request.urlopen(url, timeout=3) as resp:
                assert resp.read().decode().split(":")[0] == lab.workstation_address
        else:
            with pytest.raises(OSError):
                urllib.request.urlopen(url, timeout=2)


def test_rules_use_kube_proxy_names(cluster: Cluster) -> None:
    lab, _ = cluster
    spn = kp.service_port_name("probe", "web", "http")
    for n in lab.nodes:
        if lab.proxy_mode == "nftables":
            text = sh(lab, n.name, "nft list table ip kube-proxy").stdout
            assert kp.nft_service_chain("probe", "web", "tcp", "http") in text
            assert kp.nft_service_chain("kube-system", "kube-dns", "udp", "dns") in text
            assert "map service-ips" in text and "map service-nodeports" in text and "set cluster-ips" in text
            assert "numgen random mod 3 vmap" in text
        else:
            text = sh(lab, n.name, "iptables-save -t nat").stdout
            assert f"-j {kp.svc_chain(spn, 'tcp')}" in text
            assert "KUBE-SVC-TCOU7JCQXEZGVUNU" in text and "KUBE-SVC-NPX46M4PTMTKRN6Y" in text
            assert f'--comment "{spn} cluster IP"' in text
            assert "-m statistic --mode random --probability" in text
            assert "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS" in text


def test_pod_changes_resync_every_node(cluster: Cluster) -> None:
    lab, _ = cluster
    pod = lab.add_pod("probe", "echo-extra", "node3", {"app": "echo"}, [ContainerSpec()])
    dump = "nft list table ip kube-proxy" if lab.proxy_mode == "nftables" else "iptables-save -t nat"
    try:
        for n in lab.nodes:
            assert f"{pod.ip}:8080" in sh(lab, n.name, dump).stdout
    finally:
        lab.delete_pod("probe", "echo-extra")
    for n in lab.nodes:
        assert pod.ip not in sh(lab, n.name, dump).stdout
    assert not any(p.name == "echo-extra" for p in lab.pods())


def test_ssh_inventory_and_node_identity(cluster: Cluster) -> None:
    lab, _ = cluster
    cl = inventory.load(str(lab.inventory_path))
    assert [n.name for n in cl.nodes] == [n.name for n in lab.nodes]
    assert cl.settings.kube_proxy_mode == ("nftables" if lab.proxy_mode == "nftables" else "iptables")
    for node in cl.nodes:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-i", str(node.ssh_private_key_file),
                *node.ssh_common_args.split(), f"{node.user}@{node.address}",
                "hostname; cat /etc/hostname; grep -o cgroup_enable=memory /boot/firmware/cmdline.txt; "
                "curl -s 127.0.0.1:10249/proxyMode"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [node.name, node.name, "cgroup_enable=memory",
                                    cl.settings.kube_proxy_mode], r.stdout
    # host key checking stays on: an unknown known_hosts refuses the connection
    n0 = cl.nodes[0]
    r = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=/dev/null", "-o",
                        "StrictHostKeyChecking=yes", "-i", str(n0.ssh_private_key_file), f"root@{n0.address}", "true"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode != 0 and "Host key verification failed" in r.stderr


def test_netexec_dial_and_large_echo_across_nodes(cluster: Cluster) -> None:
    lab, _ = cluster
    target = next(p for p in lab.pods() if p.name == "echo-node3")
    r = sh(lab, "probe/client-node1",
           f"curl -s 'http://127.0.0.1:8080/dial?request=hostname&protocol=http&host={target.ip}&port=8080&tries=3'")
    assert json.loads(r.stdout) == {"responses": ["echo-node3"] * 3}
    big = "x" * 6000
    r = sh(lab, "probe/client-node1", f"curl -s -m 5 'http://{target.ip}:8080/echo?msg={big}'")
    assert r.stdout == big


def test_kubelet_and_api_refuse_anonymous_requests(cluster: Cluster) -> None:
    lab, _ = cluster
    for n in lab.nodes:
        ports = [10250] + ([int(lab.settings["api_port"])] if n.role == "server" else [])
        for port in ports:
            r = subprocess.run(["curl", "-sk", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
                                f"https://{n.address}:{port}/pods"], capture_output=True, text=True, check=False)
            assert r.stdout == "401", (n.name, port, r.stdout)
    r = sh(lab, "probe/client-node2", "curl -sk -m 3 -o /dev/null -w '%{http_code}' https://kubernetes.default/api")
    assert r.stdout == "401"


def test_backend_replacement_without_failed_requests(cluster: Cluster) -> None:
    """Churn: the endpoint leaves the rules before its pod terminates, so the VIP keeps answering."""
    lab, _ = cluster
    vip = svc(lab, "web").spec.cluster_ip
    loop = subprocess.Popen([*lab.exec_argv("node1"), "sh", "-c",
                             f"for i in $(seq 60); do curl -s -m 1 -o /dev/null -w '%{{http_code}}\\n' {vip}/hostname;"
                             " sleep 0.03; done"], stdout=subprocess.PIPE, text=True)
    try:
        lab.delete_pod("probe", "echo-node2")
        lab.add_pod("probe", "echo-node2", "node2", {"app": "echo"}, [ContainerSpec()])
    finally:
        out, _ = loop.communicate(timeout=120)
    codes = out.split()
    assert len(codes) == 60 and set(codes) == {"200"}, Counter(codes)
