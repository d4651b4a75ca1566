"""The `k3s kubectl` stand-in on a real lab: over SSH to the server node, with real kernel rules and DNS.

Issue 4's acceptance: apply the probe workload, `rollout status`, `get -o json` shapes, rules and DNS on every node;
delete a pod (replacement with a new IP, VIP unchanged, slices and rules converge, the VIP keeps answering);
delete the namespace (pods, rules and DNS names go); unsupported input refused with exit 1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

PROBE = Path(__file__).with_name("kubectl_probe.yaml")


def _root_ok() -> bool:
    return os.geteuid() == 0


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request: pytest.FixtureRequest) -> Iterator[Any]:
    if not _root_ok():
        pytest.skip("the lab needs root")
    from pi_cluster.lab import Lab

    name = f"k{os.getpid() % 100000}{request.param[0]}"
    try:
        yield Lab.up(name=name, nodes=3, servers=1, proxy_mode=request.param)
    finally:
        Lab.down(name)


def ssh(lab: Any, command: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command on the lab's first server over SSH, with the lab's key and known_hosts (host keys checked)."""
    server = next(n for n in lab.nodes if n.role == "server")
    argv = ["ssh", "-i", str(lab.ssh_key), "-o", f"UserKnownHostsFile={lab.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            f"root@{server.address}", command]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def kubectl_json(lab: Any, args: str) -> Any:
    r = ssh(lab, f"k3s kubectl {args} -o json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def on_node(lab: Any, node: str, argv: list[str], timeout: float = 30) -> str:
    r = subprocess.run(lab.exec_argv(node) + argv, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{argv} on {node}: {r.stderr}"
    return r.stdout


def nat_rules(lab: Any, node: str) -> str:
    if lab.proxy_mode == "nftables":
        return on_node(lab, node, ["nft", "list", "table", "ip", "kube-proxy"])
    return on_node(lab, node, ["iptables-save", "-t", "nat"])


def has_vip(lab: Any, rules: str, vip: str, port: int) -> bool:
    if lab.proxy_mode == "nftables":
        return f"{vip} . tcp . {port} :" in rules
    return f"-d {vip}/32" in rules and f"--dport {port}" in rules


def has_endpoint(lab: Any, rules: str, ip: str, port: int) -> bool:
    if lab.proxy_mode == "nftables":
        return f"{ip}/{port}" in rules
    return f"{ip}:{port}" in rules


def dig(lab: Any, node: str, name: str) -> list[str]:
    dns = str(lab.settings["cluster_dns"])
    out = on_node(lab, node, ["dig", "+short", "+time=2", "+tries=2", f"@{dns}", name])
    return sorted(line for line in out.split() if re.fullmatch(r"[\d.]+", line))


def until(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def ready(obj: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in obj["status"]["conditions"])


@pytest.fixture(scope="module")
def probe(lab: Any) -> dict[str, Any]:
    r = ssh(lab, "k3s kubectl apply -f -", stdin=PROBE.read_text())
    assert r.returncode == 0, r.stderr
    assert "daemonset.apps/echo created" in r.stdout
    r = ssh(lab, "k3s kubectl rollout status daemonset/echo -n probe --timeout=60s")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith('daemon set "echo" successfully rolled out')
    return {"svcs": {s["metadata"]["name"]: s for s in kubectl_json(lab, "get services -n probe")["items"]}}


def test_apply_rollout_and_objects_read_like_a_cluster(lab: Any, probe: dict[str, Any]) -> None:
    nodes = kubectl_json(lab, "get nodes")
    assert nodes["kind"] == "List"
    assert [n["metadata"]["name"] for n in nodes["items"]] == [n.name for n in lab.nodes]
    for n, want in zip(nodes["items"], lab.nodes, strict=True):
        assert {"type": "InternalIP", "address": want.address} in n["status"]["addresses"]
        assert n["status"]["nodeInfo"]["architecture"] == "arm64"
        assert n["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
        assert ready(n)
    pods = kubectl_json(lab, "get pods -n probe -l app=echo")["items"]
    lab_pods = {p.name: p for p in lab.pods()}
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(n.name for n in lab.nodes)
    for p in pods:
        assert ready(p) and p["status"]["phase"] == "Running"
        assert p["status"]["podIP"] == lab_pods[p["metadata"]["name"]].ip
        assert p["metadata"]["uid"] and p["metadata"]["creationTimestamp"]
    ips = sorted(p["status"]["podIP"] for p in pods)
    svcs = probe["svcs"]
    vip = svcs["echo"]["spec"]["clusterIP"]
    assert vip in {s.spec.cluster_ip for s in lab.services()}
    assert svcs["echo-np"]["spec"]["ports"][0]["nodePort"] == 30080
    lb_ips = [i["ip"] for i in svcs["echo-lb"]["status"]["loadBalancer"]["ingress"]]
    assert lb_ips and set(lb_ips) <= {n.address for n in lab.nodes}
    assert svcs["echo-headless"]["spec"]["clusterIP"] == "None"
    slices = kubectl_json(lab, "get endpointslices -n probe -l kubernetes.io/service-name=echo")["items"]
    assert sorted(e["addresses"][0] for e in slices[0]["endpoints"]) == ips
    assert all(e["conditions"]["ready"] and e["nodeName"] for e in slices[0]["endpoints"])
    dom = lab.settings["cluster_domain"]
    for n in lab.nodes:
        rules = nat_rules(lab, n.name)
        assert has_vip(lab, rules, vip, 80), n.name
        for ip in ips:
            assert has_endpoint(lab, rules, ip, 8080), (n.name, ip)
        assert dig(lab, n.name, f"echo.probe.svc.{dom}") == [vip]
        assert dig(lab, n.name, f"echo-headless.probe.svc.{dom}") == ips
    # the VIP and the NodePort answer with the pods' names (hostname = pod name)
    names = {p["metadata"]["name"] for p in pods}
    out = on_node(lab, lab.nodes[1].name, ["curl", "-s", "-m", "3", f"http://{vip}/hostname"])
    assert out.strip() in names
    out = on_node(lab, lab.nodes[0].name, ["curl", "-s", "-m", "3", f"http://{lab.nodes[2].address}:30080/hostname"])
    assert out.strip() in names


def test_delete_pod_is_replaced_and_the_vip_keeps_answering(lab: Any, probe: dict[str, Any]) -> None:
    vip = probe["svcs"]["echo"]["spec"]["clusterIP"]
    before = kubectl_json(lab, "get pods -n probe -l app=echo")["items"]
    victim = next(p for p in before if p["spec"]["nodeName"] == lab.nodes[1].name)
    results: list[str] = []
    loop = ("for i in $(seq 1 40); do curl -s -o /dev/null -m 2 -w '%{http_code}\\n' "
            f"http://{vip}/hostname || echo fail; sleep 0.1; done")

    def traffic() -> None:
        results.extend(on_node(lab, lab.nodes[2].name, ["sh", "-c", loop], timeout=120).split())

    t = threading.Thread(target=traffic)
    t.start()
    time.sleep(0.5)
    r = ssh(lab, f"k3s kubectl delete pod {victim['metadata']['name']} -n probe")
    t.join()
    assert r.returncode == 0 and f'pod "{victim["metadata"]["name"]}" deleted' in r.stdout
    after = kubectl_json(lab, "get pods -n probe -l app=echo")["items"]
    assert len(after) == 3
    new = next(p for p in after if p["spec"]["nodeName"] == victim["spec"]["nodeName"])
    assert new["metadata"]["name"] != victim["metadata"]["name"]
    assert new["status"]["podIP"] != victim["status"]["podIP"]
    assert ready(new)
    assert kubectl_json(lab, "get service echo -n probe")["spec"]["clusterIP"] == vip
    ips = sorted(p["status"]["podIP"] for p in after)
    slices = kubectl_json(lab, "get endpointslices -n probe -l kubernetes.io/service-name=echo")["items"]
    assert sorted(e["addresses"][0] for e in slices[0]["endpoints"]) == ips
    for n in lab.nodes:
        rules = nat_rules(lab, n.name)
        assert has_endpoint(lab, rules, new["status"]["podIP"], 8080)
        assert not has_endpoint(lab, rules, victim["status"]["podIP"], 8080)
    assert len(results) == 40
    assert results.count("200") == 40, f"failed requests during churn: {[x for x in results if x != '200']}"


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: probe}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions: [{key: kubernetes.io/hostname, operator: NotIn, values: [NODE]}]
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: agnhost
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: [netexec, --http-port=9376]
"""


def test_deployment_replicas_affinity_and_wait(lab: Any, probe: dict[str, Any]) -> None:
    excluded = lab.nodes[0].name
    r = ssh(lab, "kubectl apply -f -", stdin=DEPLOYMENT.replace("NODE", excluded))
    assert (r.returncode, r.stdout) == (0, "deployment.apps/web created\n"), r.stderr
    r = ssh(lab, "kubectl rollout status deployment/web -n probe --timeout=30s")
    assert r.returncode == 0 and 'deployment "web" successfully rolled out' in r.stdout, r.stderr
    r = ssh(lab, "kubectl wait --for=condition=Ready pod -l app=web -n probe --timeout=30s")
    assert r.returncode == 0 and r.stdout.count("condition met") == 2, r.stderr
    pods = kubectl_json(lab, "get pods -n probe -l app=web")["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(n.name for n in lab.nodes[1:])
    for p in pods:  # the pod's server listens on the port its args ask for, and answers with the pod's name
        out = on_node(lab, excluded, ["curl", "-s", "-m", "3", f"http://{p['status']['podIP']}:9376/hostname"])
        assert out.strip() == p["metadata"]["name"]
    dep = kubectl_json(lab, "get deployment web -n probe")
    assert (dep["status"]["readyReplicas"], dep["status"]["updatedReplicas"]) == (2, 2)
    r = ssh(lab, "kubectl delete deployment web -n probe")
    assert r.returncode == 0, r.stderr
    assert [p for p in lab.pods() if p.labels.get("app") == "web"] == []


def test_unsupported_input_is_refused_over_ssh(lab: Any) -> None:
    for cmd, named in (("k3s kubectl exec -it x -- sh", "exec"),
                       ("k3s kubectl get configmaps -o json", "configmaps"),
                       ("kubectl get pods --sort-by=.metadata.name", "--sort-by"),
                       ("k3s kubectl get pods -o jsonpath='{.items}'", "jsonpath"),
                       ("k3s server", "server")):
        r = ssh(lab, cmd)
        assert r.returncode == 1, (cmd, r.stdout)
        assert named in r.stderr, (cmd, r.stderr)
    r = ssh(lab, "k3s kubectl apply -f -", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    assert r.returncode == 1 and "ConfigMap" in r.stderr
    r = ssh(lab, "kubectl --help")
    assert r.returncode == 0 and "TEST DOUBLE" in r.stdout


def test_delete_namespace_removes_pods_rules_and_dns(lab: Any, probe: dict[str, Any]) -> None:
    vip = probe["svcs"]["echo"]["spec"]["clusterIP"]
    r = ssh(lab, "k3s kubectl delete namespace probe")
    assert r.returncode == 0 and 'namespace "probe" deleted' in r.stdout, r.stderr
    assert [p for p in lab.pods() if p.namespace == "probe"] == []
    assert kubectl_json(lab, "get pods -n probe")["items"] == []
    r = ssh(lab, "k3s kubectl get namespace probe -o json")
    assert r.returncode == 1 and "NotFound" in r.stderr
    dom = lab.settings["cluster_domain"]
    for n in lab.nodes:
        assert not has_vip(lab, nat_rules(lab, n.name), vip, 80)
        assert dig(lab, n.name, f"echo.probe.svc.{dom}") == []
    # the system Services stay
    assert {s["metadata"]["name"] for s in kubectl_json(lab, "get services -A")["items"]} == {"kubernetes", "kube-dns"}
