"""Unit tests of the kubectl stand-in's object model and argument handling (pi_cluster.lab.kube / kubectl / control).

They run against `LabAPITestDouble`, a TEST DOUBLE of the part-1 Lab API (pods and services kept in memory, no
namespaces or kernel rules). The same behaviour on a real lab, over SSH, is tested in tests/lab/test_kubectl.py.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pi_cluster.lab import kubectl
from pi_cluster.lab.kube import KubeCluster, Result, parse_duration, parse_selector
from pi_cluster.lab.models import ContainerSpec, LabNode, PodState, ServicePort, ServiceSpec, ServiceState

TYPES = SimpleNamespace(ContainerSpec=ContainerSpec, ServicePort=ServicePort, ServiceSpec=ServiceSpec)


class LabAPITestDouble:
    """TEST DOUBLE of `pi_cluster.lab.Lab` (the part-1 API): in-memory pods/services, IPs handed out lowest-free
    first (so an IP freed by a deleted pod would be reused at once, the worst case for the replacement rule)."""

    def __init__(self, state_dir: Path, nodes: int = 3) -> None:
        self.name = "double"
        self.state_dir = state_dir
        self._nodes = [LabNode(name=f"node{i}", role="server" if i == 1 else "agent", address=f"192.0.2.{10 + i}",
                               netns=f"double-node{i}", pod_cidr=f"10.42.{i}.0/24") for i in range(1, nodes + 1)]
        self._pods: list[PodState] = []
        self._services: list[ServiceState] = []
        self.settings: dict[str, Any] = {"service_cidr": "10.43.0.0/16", "cluster_cidr": "10.42.0.0/16",
                                         "k3s_version": "v1.31.4+k3s1"}
        self.calls: list[str] = []

    @property
    def nodes(self) -> list[LabNode]:
        return list(self._nodes)

    def add_pod(self, namespace: str, name: str, node: str, labels: dict[str, str],
                containers: list[ContainerSpec]) -> PodState:
        n = next(x for x in self._nodes if x.name == node)
        used = {p.ip for p in self._pods}
        ip = next(str(h) for h in ipaddress.ip_network(n.pod_cidr).hosts() if str(h) not in used and
                  not str(h).endswith(".1"))
        pod = PodState(namespace=namespace, name=name, node=node, ip=ip, netns=f"pod-{name}", labels=labels,
                       containers=containers, ready=True, created=f"2026-01-01T00:00:{len(self.calls) % 60:02d}Z",
                       uid=str(uuid.uuid4()))
        self._pods.append(pod)
        self.calls.append(f"add_pod {namespace}/{name}@{node}")
        return pod

    def add_pods(self, requests: list[tuple[str, str, str, dict[str, str], list[ContainerSpec]]]
                 ) -> list[PodState | Exception]:
        """The batch form: one add_pod per request, in order; a failing pod's error in its place."""
        out: list[PodState | Exception] = []
        for r in requests:
            try:
                out.append(self.add_pod(*r))
            except Exception as e:
                out.append(e)
        return out

    def delete_pod(self, namespace: str, name: str) -> None:
        self._pods = [p for p in self._pods if not (p.namespace == namespace and p.name == name)]
        self.calls.append(f"delete_pod {namespace}/{name}")

    def delete_pods(self, pods: list[tuple[str, str]]) -> None:
        """The batch form: one delete_pod per pod, in order."""
        for namespace, name in pods:
            self.delete_pod(namespace, name)

    def pods(self) -> list[PodState]:
        return [p.model_copy() for p in self._pods]

    def apply_service(self, spec: ServiceSpec) -> ServiceState:
        old = next((s for s in self._services if s.spec.namespace == spec.namespace and s.spec.name == spec.name),
                   None)
        spec = spec.model_copy(deep=True)
        if not spec.headless:
            used = {s.spec.cluster_ip for s in self._services}
            spec.cluster_ip = spec.cluster_ip or (old.spec.cluster_ip if old else None) or next(
                str(h) for h in list(ipaddress.ip_network("10.43.0.0/16").hosts())[20:] if str(h) not in used)
        if spec.type in ("NodePort", "LoadBalancer"):
            used_np = {p.node_port for s in self._services for p in s.spec.ports}
            for i, p in enumerate(spec.ports):
                if p.node_port is None:
                    p.node_port = (old.spec.ports[i].node_port if old and i < len(old.spec.ports) else None) or next(
                        x for x in range(30000, 32768) if x not in used_np)
                    used_np.add(p.node_port)
        state = ServiceState(spec=spec, uid=old.uid if old else str(uuid.uuid4()), created="2026-01-01T00:00:00Z",
                             lb_ingress=[n.address for n in self._nodes] if spec.type == "LoadBalancer" else [])
        self._services = [s for s in self._services if s is not old] + [state]
        self.calls.append(f"apply_service {spec.namespace}/{spec.name}")
        return state

    def delete_service(self, namespace: str, name: str) -> None:
        self._services = [s for s in self._services if not (s.spec.namespace == namespace and s.spec.name == name)]
        self.calls.append(f"delete_service {namespace}/{name}")

    def apply_services(self, specs: list[ServiceSpec]) -> list[ServiceState | Exception]:
        """The batch form: one apply_service per spec, in order, stopping at the first error."""
        out: list[ServiceState | Exception] = []
        for spec in specs:
            try:
                out.append(self.apply_service(spec))
            except Exception as e:
                out.append(e)
                break
        return out

    def delete_services(self, services: list[tuple[str, str]]) -> None:
        """The batch form: one delete_service per Service, in order."""
        for namespace, name in services:
            self.delete_service(namespace, name)

    def services(self) -> list[ServiceState]:
        return list(self._services)


PROBE = """
apiVersion: v1
kind: Namespace
metadata: {name: probe}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: echo, namespace: probe, labels: {app: echo}}
spec:
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.52
        args: [netexec, --http-port=8080, --udp-port=-1]
        ports: [{containerPort: 8080, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: probe}
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-np, namespace: probe}
spec:
  type: NodePort
  selector: {app: echo}
  externalTrafficPolicy: Local
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-lb, namespace: probe}
spec:
  type: LoadBalancer
  selector: {app: echo}
  sessionAffinity: ClientIP
  ports: [{name: web, port: 8081, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-headless, namespace: probe}
spec:
  clusterIP: None
  selector: {app: echo}
  ports: [{port: 8080}]
"""


@pytest.fixture()
def lab(tmp_path: Path) -> LabAPITestDouble:
    return LabAPITestDouble(tmp_path)


@pytest.fixture()
def cluster(lab: LabAPITestDouble) -> KubeCluster:
    return KubeCluster(lab, TYPES, sleep=lambda s: None)


def k(cluster: KubeCluster, cmd: str, stdin: str = "") -> Result:
    return kubectl.run(cluster, ["kubectl", *shlex.split(cmd)], stdin)


def kj(cluster: KubeCluster, cmd: str) -> Any:
    r = k(cluster, cmd)
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)


def test_apply_probe_workload_runs_one_ready_pod_per_node(cluster: KubeCluster, lab: LabAPITestDouble) -> None:
    r = k(cluster, "apply -f -", PROBE)
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == ["namespace/probe created", "daemonset.apps/echo created", "service/echo created",
                                     "service/echo-np created", "service/echo-lb created",
                                     "service/echo-headless created"]
    pods = kj(cluster, "get pods -n probe -l app=echo -o json")
    assert pods["kind"] == "List"
    assert sorted(p["spec"]["nodeName"] for p in pods["items"]) == ["node1", "node2", "node3"]
    for p in pods["items"]:
        assert p["apiVersion"] == "v1" and p["kind"] == "Pod"
        assert p["metadata"]["name"].startswith("echo-") and len(p["metadata"]["name"]) == len("echo-") + 5
        assert p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
        assert p["status"]["phase"] == "Running"
        assert {"type": "Ready", "status": "True"}.items() <= next(
            c for c in p["status"]["conditions"] if c["type"] == "Ready").items()
        node = next(n for n in lab.nodes if n.name == p["spec"]["nodeName"])
        assert ipaddress.ip_address(p["status"]["podIP"]) in ipaddress.ip_network(node.pod_cidr)
        assert p["status"]["hostIP"] == node.address
        assert p["spec"]["containers"][0]["ports"][0]["containerPort"] == 8080
    # the containers were started with the port the manifest asks for, and the args passed on
    added = lab.pods()[0].containers[0]
    assert added.port == 8080 and "--http-port=8080" in added.args
    r = k(cluster, "rollout status daemonset/echo -n probe --timeout=5s")
    assert (r.code, r.stdout) == (0, 'daemon set "echo" successfully rolled out\n')
    ds = kj(cluster, "get daemonset echo -n probe -o json")
    assert ds["status"]["desiredNumberScheduled"] == ds["status"]["numberReady"] == 3
    assert ds["metadata"]["generation"] == 1
    # unchanged on re-apply
    assert k(cluster, "apply -f -", PROBE).stdout.count("unchanged") == 6


def test_service_shapes(cluster: KubeCluster) -> None:
    assert k(cluster, "apply -f -", PROBE).code == 0
    svcs = {s["metadata"]["name"]: s for s in kj(cluster, "get svc -n probe -o json")["items"]}
    cip = svcs["echo"]["spec"]
    assert cip["type"] == "ClusterIP" and ipaddress.ip_address(cip["clusterIP"]) in ipaddress.ip_network("10.43.0.0/16")
    assert cip["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": "http"}]
    np = svcs["echo-np"]["spec"]
    assert np["ports"][0]["nodePort"] == 30080 and np["externalTrafficPolicy"] == "Local"
    lb = svcs["echo-lb"]
    assert 30000 <= lb["spec"]["ports"][0]["nodePort"] <= 32767
    assert lb["spec"]["sessionAffinity"] == "ClientIP"
    assert lb["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert [i["ip"] for i in lb["status"]["loadBalancer"]["ingress"]] == ["192.0.2.11", "192.0.2.12", "192.0.2.13"]
    assert svcs["echo-headless"]["spec"]["clusterIP"] == "None"
    one = kj(cluster, "get service echo-np -n probe -o json")
    assert one["kind"] == "Service" and one["metadata"]["namespace"] == "probe"
    # the named targetPort was resolved from the DaemonSet's template for the dataplane
    assert k(cluster, "get endpointslices -n probe -l kubernetes.io/service-name=echo -o json").code == 0
    sl = kj(cluster, "get endpointslices -n probe -l kubernetes.io/service-name=echo -o json")["items"][0]
    assert sl["apiVersion"] == "discovery.k8s.io/v1" and sl["addressType"] == "IPv4"
    assert sl["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    assert sorted(e["nodeName"] for e in sl["endpoints"]) == ["node1", "node2", "node3"]
    assert all(e["conditions"]["ready"] for e in sl["endpoints"])
    assert all(e["targetRef"]["kind"] == "Pod" for e in sl["endpoints"])


def test_nodes_shape(cluster: KubeCluster) -> None:
    nodes = kj(cluster, "get nodes -o json")
    assert [n["metadata"]["name"] for n in nodes["items"]] == ["node1", "node2", "node3"]
    n1 = nodes["items"][0]
    assert {"type": "InternalIP", "address": "192.0.2.11"} in n1["status"]["addresses"]
    assert {"type": "Hostname", "address": "node1"} in n1["status"]["addresses"]
    assert n1["status"]["nodeInfo"]["architecture"] == "arm64"
    assert n1["status"]["nodeInfo"]["kubeletVersion"] == "v1.31.4+k3s1"
    assert next(c for c in n1["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
    assert n1["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == "true"
    assert "node-role.kubernetes.io/control-plane" not in nodes["items"][1]["metadata"]["labels"]
    assert kj(cluster, "get node node2 -o json")["spec"]["podCIDR"] == "10.42.2.0/24"


def test_deleting_a_daemonset_pod_gets_a_replacement_with_new_name_and_ip(cluster: KubeCluster,
                                                                          lab: LabAPITestDouble) -> None:
    assert k(cluster, "apply -f -", PROBE).code == 0
    vip = kj(cluster, "get svc echo -n probe -o json")["spec"]["clusterIP"]
    victim = next(p for p in kj(cluster, "get pods -n probe -o json")["items"] if p["spec"]["nodeName"] == "node2")
    r = k(cluster, f"delete pod {victim['metadata']['name']} -n probe")
    assert (r.code, r.stdout) == (0, f'pod "{victim["metadata"]["name"]}" deleted\n')
    pods = kj(cluster, "get pods -n probe -o json")["items"]
    assert len(pods) == 3
    new = next(p for p in pods if p["spec"]["nodeName"] == "node2")
    assert new["metadata"]["name"] != victim["metadata"]["name"]
    assert new["status"]["podIP"] != victim["status"]["podIP"]
    # the replacement was started before the old pod went away (no gap in endpoints)
    add = lab.calls.index(f"add_pod probe/{new['metadata']['name']}@node2")
    assert add < lab.calls.index(f"delete_pod probe/{victim['metadata']['name']}")
    assert kj(cluster, "get svc echo -n probe -o json")["spec"]["clusterIP"] == vip
    sl = kj(cluster, "get endpointslices -n probe -l kubernetes.io/service-name=echo -o json")["items"][0]
    assert sorted(e["addresses"][0] for e in sl["endpoints"]) == sorted(p["status"]["podIP"] for p in pods)


def test_changing_a_daemonset_template_rolls_every_pod(cluster: KubeCluster, lab: LabAPITestDouble) -> None:
    assert k(cluster, "apply -f -", PROBE).code == 0
    old = {p.name for p in lab.pods()}
    r = k(cluster, "apply -f -", PROBE.replace("--http-port=8080", "--http-port=9090"))
    assert "daemonset.apps/echo configured" in r.stdout and "service/echo unchanged" in r.stdout
    pods = lab.pods()
    assert len(pods) == 3 and not old & {p.name for p in pods}
    assert {p.containers[0].port for p in pods} == {9090}
    assert {p.labels["pod-template-generation"] for p in pods} == {"2"}
    ds = kj(cluster, "get ds echo -n probe -o json")
    assert (ds["metadata"]["generation"], ds["status"]["updatedNumberScheduled"]) == (2, 3)


def test_pod_deleted_behind_the_controllers_back_is_replaced(cluster: KubeCluster, lab: LabAPITestDouble) -> None:
    assert k(cluster, "apply -f -", PROBE).code == 0
    gone = lab.pods()[0]
    lab.delete_pod(gone.namespace, gone.name)
    cluster.reconcile_all()
    assert sorted(p.node for p in lab.pods()) == ["node1", "node2", "node3"]
    assert gone.name not in {p.name for p in lab.pods()}


DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - {name: c, image: agnhost, args: [netexec, --http-port=9376]}
"""


def test_deployment_replicas_and_hostname_anti_affinity(cluster: KubeCluster, lab: LabAPITestDouble) -> None:
    r = k(cluster, "apply -f -", DEPLOY.replace("REPLICAS", "2"))
    assert (r.code, r.stdout) == (0, "deployment.apps/web created\n")
    pods = kj(cluster, "get pods -l app=web -o json")["items"]
    assert len(pods) == 2 and len({p["spec"]["nodeName"] for p in pods}) == 2
    assert all(p["metadata"]["labels"]["pod-template-hash"] in p["metadata"]["name"] for p in pods)
    assert lab.pods()[0].containers[0].port == 9376
    assert k(cluster, "rollout status deployment/web --timeout=2s").stdout.endswith("successfully rolled out\n")
    # 4 replicas with one per node on 3 nodes: the fourth cannot be placed, rollout status times out
    assert k(cluster, "apply -f -", DEPLOY.replace("REPLICAS", "4")).stdout == "deployment.apps/web configured\n"
    assert len(lab.pods()) == 3
    r = k(cluster, "rollout status deployment/web --timeout=0.3s")
    assert r.code == 1 and "timed out" in r.stderr
    assert "3 out of 4 new replicas" in r.stdout
    d = kj(cluster, "get deploy web -o json")
    assert (d["status"]["replicas"], d["status"]["readyReplicas"], d["metadata"]["generation"]) == (3, 3, 2)
    assert k(cluster, "apply -f -", DEPLOY.replace("REPLICAS", "1")).code == 0
    assert len(lab.pods()) == 1


def test_node_selector_on_hostname(cluster: KubeCluster, lab: LabAPITestDouble) -> None:
    doc = PROBE.split("---")[1].replace("containers:",
                                        "nodeSelector: {kubernetes.io/hostname: node3}\n      containers:")
    assert k(cluster, "apply -f -", PROBE.split("---")[0] + "---" + doc).code == 0
    assert [p.node for p in lab.pods()] == ["node3"]
    assert kj(cluster, "get ds echo -n probe -o json")["status"]["desiredNumberScheduled"] == 1


def test_delete_namespace_removes_everything_in_it(cluster: KubeCluster, lab: LabAPITestDouble) -> None:
    assert k(cluster, "apply -f -", PROBE).code == 0
    assert k(cluster, "apply -f -", DEPLOY.replace("REPLICAS", "1")).code == 0
    r = k(cluster, "delete namespace probe")
    assert (r.code, r.stdout) == (0, 'namespace "probe" deleted\n')
    assert {p.namespace for p in lab.pods()} == {"default"}
    assert lab.services() == []
    assert k(cluster, "get ns probe -o json").code == 1
    assert kj(cluster, "get ds -A -o json")["items"] == []
    r = k(cluster, "delete namespace default")
    assert r.code == 1 and "may not be deleted" in r.stderr


def test_state_survives_a_new_controller(cluster: KubeCluster, lab: LabAPITestDouble) -> None:
    assert k(cluster, "apply -f -", PROBE).code == 0
    again = KubeCluster(lab, TYPES, sleep=lambda s: None)
    ds = kj(again, "get ds -n probe -o json")["items"]
    assert [d["metadata"]["name"] for d in ds] == ["echo"]
    assert ds[0]["metadata"]["uid"] == kj(cluster, "get ds echo -n probe -o json")["metadata"]["uid"]
    pods = kj(again, "get pods -n probe -o json")["items"]
    assert all(p["metadata"]["ownerReferences"][0]["name"] == "echo" for p in pods)


def test_wait_for_ready(cluster: KubeCluster) -> None:
    assert k(cluster, "apply -f -", PROBE).code == 0
    r = k(cluster, "wait --for=condition=Ready pod -l app=echo -n probe --timeout=2s")
    assert r.code == 0 and r.stdout.count("condition met") == 3
    r = k(cluster, "wait --for=condition=Ready pod -l app=nothing -n probe --timeout=1s")
    assert r.code == 1 and "no matching resources" in r.stderr


@pytest.mark.parametrize(("cmd", "stdin", "named"), [
    ("exec -it foo -- sh", "", "exec"),
    ("get configmaps -o json", "", "configmaps"),
    ("get pods --show-labels", "", "--show-labels"),
    ("get pods -o jsonpath={.items}", "", "jsonpath"),
    ("get pods -l 'app in (a,b)'", "", "set-based"),
    ("rollout restart ds/echo", "", "restart"),
    ("apply -f -", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "ConfigMap"),
    ("apply -f -", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ExternalName, "
                   "externalName: a.b}\n", "ExternalName"),
    ("apply -f -", PROBE.replace("containers:", "hostNetwork: true\n      containers:"), "hostNetwork"),
    ("apply --server-side -f -", PROBE, "--server-side"),
    ("wait --for=condition=Initialized pod -l a=b", "", "condition=Initialized"),
    ("delete endpointslices foo", "", "endpointslices"),
    ("--kubeconfig /x get pods", "", "--kubeconfig"),
    ("get pods --all", "", "--all"),
    ("delete pod x --ignore", "", "--ignore"),
])
def test_unsupported_input_is_refused(cluster: KubeCluster, cmd: str, stdin: str, named: str) -> None:
    r = k(cluster, cmd, stdin)
    assert r.code == 1
    assert named in r.stderr
    assert r.stdout == ""


def test_nothing_is_applied_when_one_document_is_bad(cluster: KubeCluster, lab: LabAPITestDouble) -> None:
    r = k(cluster, "apply -f -", PROBE + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")
    assert r.code == 1 and "Secret" in r.stderr
    assert lab.calls == [] and k(cluster, "get ns probe").code == 1


def test_missing_namespace_and_not_found(cluster: KubeCluster) -> None:
    r = k(cluster, "apply -f -", PROBE.split("---")[2])
    assert r.code == 1 and 'namespaces "probe" not found' in r.stderr
    r = k(cluster, "get pod nope -o json")
    assert (r.code, r.stderr) == (1, 'Error from server (NotFound): pods "nope" not found\n')
    assert k(cluster, "delete svc nope --ignore-not-found").code == 0


def test_help_says_test_double(cluster: KubeCluster) -> None:
    for argv in (["kubectl", "--help"], ["k3s", "--help"], ["kubectl", "get", "--help"]):
        r = kubectl.run(cluster, argv)
        assert r.code == 0 and "TEST DOUBLE" in r.stdout
    r = kubectl.run(cluster, ["k3s", "server"])
    assert r.code == 1 and '"server"' in r.stderr
    r = kubectl.run(cluster, ["k3s", "kubectl", "get", "nodes", "-o", "json"])
    assert r.code == 0 and len(json.loads(r.stdout)["items"]) == 3


def test_bare_pods_from_a_list_and_endpoints(cluster: KubeCluster, lab: LabAPITestDouble) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client-node2", "labels": {"app": "client"}},
         "spec": {"nodeName": "node2", "containers": [{"name": "c", "image": "agnhost", "args": ["netexec"]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loose", "labels": {"app": "client"}},
         "spec": {"containers": [{"name": "c", "image": "agnhost", "ports": [{"containerPort": 9000}]}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "client"},
         "spec": {"selector": {"app": "client"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
    ]}
    r = k(cluster, "apply -f -", json.dumps(doc))
    assert r.stdout.splitlines() == ["pod/client-node2 created", "pod/loose created", "service/client created"]
    assert {p.name: (p.node, p.containers[0].port) for p in lab.pods()} == {"client-node2": ("node2", 8080),
                                                                           "loose": ("node1", 9000)}
    assert k(cluster, "apply -f -", json.dumps(doc)).stdout.count("unchanged") == 3
    ep = kj(cluster, "get endpoints client -o json")
    assert ep["kind"] == "Endpoints"
    assert sorted(a["ip"] for a in ep["subsets"][0]["addresses"]) == sorted(p.ip for p in lab.pods())
    assert ep["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    pods = kj(cluster, "get pods --field-selector spec.nodeName=node2 -o json")["items"]
    assert [p["metadata"]["name"] for p in pods] == ["client-node2"]
    # a bare pod has no controller: deleting it does not bring it back
    assert k(cluster, "delete pod loose --wait=false").code == 0
    cluster.reconcile_all()
    assert [p.name for p in lab.pods()] == ["client-node2"]


def test_selectors_and_durations() -> None:
    reqs = parse_selector("a=b,c!=d,e,!f")
    assert [(r.key, r.op, r.value) for r in reqs] == [("a", "=", "b"), ("c", "!=", "d"), ("e", "exists", ""),
                                                        ("f", "!exists", "")]
    assert parse_duration("1m30s") == 90 and parse_duration("45") == 45 and parse_duration("500ms") == 0.5


def test_client_script_talks_to_the_controller_over_a_unix_socket(cluster: KubeCluster, tmp_path: Path) -> None:
    """The generated executables against the real daemon request handler (with the Lab API test double)."""
    from pi_cluster.lab import control

    sock = tmp_path / "kube.sock"
    server = control._Server(str(sock), "double", tmp_path)
    server._cluster = cluster
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        bins = kubectl.write_clients(tmp_path / "bin", sock)
        manifest = tmp_path / "probe.yaml"
        manifest.write_text(PROBE)
        r = subprocess.run([str(bins[0]), "kubectl", "apply", "-f", str(manifest)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        assert "daemonset.apps/echo created" in r.stdout
        r = subprocess.run([str(bins[1]), "apply", "-f", "-"], input=PROBE, capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and "unchanged" in r.stdout
        r = subprocess.run([str(bins[1]), "get", "pods", "-n", "probe", "-o", "json"], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert len(json.loads(r.stdout)["items"]) == 3
        r = subprocess.run([str(bins[1]), "frobnicate"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "frobnicate" in r.stderr
    finally:
        server.shutdown()
        server.server_close()
    r = subprocess.run([str(bins[1]), "get", "pods"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "not reachable" in r.stderr
