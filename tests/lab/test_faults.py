"""Faults break what they should, and `heal` restores it (iptables mode, real kernel state)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from labutil import sh

from pi_cluster.lab import ContainerSpec, Lab, ServicePort, ServiceSpec

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(make_lab: Callable[..., Lab]) -> Iterator[Lab]:
    lab = make_lab("f", nodes=3, proxy_mode="iptables")
    for n in lab.nodes:
        lab.add_pod("probe", f"echo-{n.name}", n.name, {"app": "echo"}, [ContainerSpec()])
    lab.add_pod("probe", "client", "node1", {"app": "client"}, [ContainerSpec()])
    lab.apply_service(ServiceSpec(namespace="probe", name="web", type="NodePort", selector={"app": "echo"},
                                  ports=[ServicePort(port=80, target_port=8080)]))
    yield lab
    Lab.down(lab.name)


@pytest.fixture(autouse=True)
def healed(lab: Lab) -> Iterator[None]:
    yield
    lab.heal()


def vip(lab: Lab) -> str:
    ip = next(s for s in lab.services() if s.spec.name == "web").spec.cluster_ip
    assert ip
    return ip


def ok(lab: Lab, target: str, url: str) -> bool:
    return sh(lab, target, f"curl -sf -m 2 {url} >/dev/null").returncode == 0


def test_drop_rules_breaks_only_that_node(lab: Lab) -> None:
    url = f"http://{vip(lab)}/hostname"
    assert ok(lab, "node2", url)
    lab.fault("drop-rules", node="node2")
    assert "KUBE-SERVICES" not in sh(lab, "node2", "iptables-save -t nat").stdout
    assert not ok(lab, "node2", url)
    assert ok(lab, "node1", url)
    lab.add_pod("probe", "late", "node3", {"app": "other"}, [ContainerSpec()])  # a re-sync keeps the fault
    assert "KUBE-SERVICES" not in sh(lab, "node2", "iptables-save -t nat").stdout
    lab.delete_pod("probe", "late")
    lab.heal()
    assert ok(lab, "node2", url)


def test_stop_dns(lab: Lab) -> None:
    q = "dig +short +time=1 +tries=1 @10.43.0.10 web.probe.svc.cluster.local"
    assert sh(lab, "node1", q).stdout.split() == [vip(lab)]
    lab.fault("stop-dns")
    assert sh(lab, "node1", q).stdout.split() != [vip(lab)]
    assert not next(p for p in lab.pods() if p.name == "coredns-lab").ready
    lab.heal()
    assert sh(lab, "node1", q).stdout.split() == [vip(lab)]


def test_kill_pod_leaves_every_nodes_rules(lab: Lab) -> None:
    victim = next(p for p in lab.pods() if p.name == "echo-node3")
    for n in lab.nodes:
        assert f"{victim.ip}:8080" in sh(lab, n.name, "iptables-save -t nat").stdout
    lab.fault("kill-pod", namespace="probe", name="echo-node3")
    for n in lab.nodes:
        assert victim.ip not in sh(lab, n.name, "iptables-save -t nat").stdout
    got = sh(lab, "probe/client", f"for i in $(seq 20); do curl -s -m 2 {vip(lab)}/hostname; echo; done").stdout
    assert "echo-node3" not in got and got.count("echo-") == 20
    lab.heal()
    for n in lab.nodes:
        assert f"{victim.ip}:8080" in sh(lab, n.name, "iptables-save -t nat").stdout
    assert ok(lab, "probe/client", f"http://{victim.ip}:8080/hostname")


def test_cut_node(lab: Lab) -> None:
    node3 = lab.node("node3")
    np = next(s for s in lab.services() if s.spec.name == "web").spec.ports[0].node_port
    assert sh(lab, "node1", f"ping -c1 -W1 {node3.address}").returncode == 0
    # through the CLI, as a user would
    r = subprocess.run([sys.executable, "-m", "pi_cluster.cli.main", "lab", "fault", "cut-node", "node3",
                        "--name", lab.name], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert sh(lab, "node1", f"ping -c1 -W1 {node3.address}").returncode != 0
    assert subprocess.run(["curl", "-sf", "-m", "2", f"http://{node3.address}:{np}/"], check=False).returncode != 0
    r = subprocess.run([sys.executable, "-m", "pi_cluster.cli.main", "lab", "heal", "--name", lab.name],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and "cut-node" in r.stdout
    assert sh(lab, "node1", f"ping -c1 -W2 {node3.address}").returncode == 0
    assert subprocess.run(["curl", "-sf", "-m", "3", f"http://{node3.address}:{np}/"], check=False).returncode == 0


def test_mtu_blackhole_drops_large_packets_only(lab: Lab) -> None:
    target = next(p for p in lab.pods() if p.name == "echo-node3")
    small = f"http://{target.ip}:8080/echo?msg=hi"
    large = f"http://{target.ip}:8080/echo?msg={'x' * 4000}"
    assert ok(lab, "probe/client", large)
    lab.fault("mtu-blackhole", node="node3")
    assert ok(lab, "probe/client", small)
    assert not ok(lab, "probe/client", large)
    assert ok(lab, "probe/client", f"http://{next(p for p in lab.pods() if p.name == 'echo-node1').ip}:8080/echo?"
                                   f"msg={'x' * 4000}")  # other nodes unaffected
    # the node's own traffic (ssh: key exchange packets are large) is not the pod network's: it still works
    node3 = lab.node("node3")
    r = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-i", str(lab.ssh_key), "-o",
                        f"UserKnownHostsFile={lab.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                        f"root@{node3.address}", "hostname"], capture_output=True, text=True, timeout=30, check=False)
    assert r.stdout.strip() == "node3", r.stderr
    lab.heal()
    assert ok(lab, "probe/client", large)


def test_unknown_fault_and_missing_args_are_clear(lab: Lab) -> None:
    from pi_cluster.lab import LabError

    with pytest.raises(LabError, match="unknown fault"):
        lab.fault("explode")
    with pytest.raises(LabError, match="needs node"):
        lab.fault("cut-node")
    with pytest.raises(LabError, match="no node"):
        lab.fault("cut-node", node="node9")
