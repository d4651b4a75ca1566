"""The probe workload: a namespace of its own with an echo DaemonSet (one backend per node), a client
DaemonSet (pod-side probes), one pinned pod for externalTrafficPolicy: Local, and the Services the
scenarios probe. Deployed with ``k3s kubectl apply`` on the first reachable server; always deleted at the
end unless the user keeps it.

No Service exposes netexec's ``/shell``: every Service targets an extra netexec instance whose every path
answers ``/hostname`` (8081) or ``/clientip`` (8082) (``--http-override``); the full netexec on 8080 (``/dial``,
``/echo``, ``/shell``) is only ever reached on a pod's own IP, and ``/shell`` only on a client pod's.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pi_cluster.conformance.kube import Kube, KubeError, node_internal_ip, node_ready, pod_ready

DEFAULT_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
# Architectures the agnhost images are published for (32-bit arm was dropped in 2.40).
AGNHOST_ARCHES = {"amd64", "arm64", "ppc64le", "s390x"}
AGNHOST_LEGACY_ARCHES = AGNHOST_ARCHES | {"arm"}
NS_PREFIX = "pi-cluster-probe-"
LABEL = "pi-cluster.io/probe"

ECHO, CLIENT, LOCAL = "echo", "client", "local"
SVC_CLUSTERIP, SVC_NODEPORT, SVC_LB = "web", "web-nodeport", "web-lb"
SVC_HEADLESS, SVC_AFFINITY, SVC_LOCAL = "web-headless", "web-affinity", "web-local"
LB_PORT = 18081


class WorkloadError(Exception):
    """The probe workload could not be deployed (a setup error: exit 2)."""


def image_arches(image: str) -> set[str] | None:
    """Architectures ``image`` is known to support, or None when unknown (a custom image)."""
    repo, _, tag = image.rpartition(":")
    if not repo.endswith("e2e-test-images/agnhost"):
        return None
    try:
        major, minor = (int(x) for x in tag.split(".")[:2])
    except ValueError:
        return AGNHOST_ARCHES
    return AGNHOST_LEGACY_ARCHES if (major, minor) < (2, 40) else AGNHOST_ARCHES


def _netexec(name: str, port: int, override: str | None = None) -> dict[str, Any]:
    args = ["netexec", f"--http-port={port}", "--udp-port=-1"]
    if override:
        args.append(f"--http-override={override}")
    return {"name": name, "image": "IMAGE", "args": args, "ports": [{"containerPort": port}],
            "readinessProbe": {"httpGet": {"path": "/hostname" if not override else "/", "port": port},
                               "periodSeconds": 2}}


def manifests(namespace: str, image: str, local_node: str) -> list[dict[str, Any]]:
    """Every object of the workload, in apply order."""
    meta = {"namespace": namespace, "labels": {LABEL: "true"}}
    tolerations = [{"operator": "Exists"}]  # probe every node, servers with taints too

    def ds(name: str, containers: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, **meta},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, LABEL: "true"}},
                                  "spec": {"tolerations": tolerations, "terminationGracePeriodSeconds": 1,
                                           "containers": containers}}},
        }

    def svc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, **meta}, "spec": spec}

    echo_containers = [_netexec("netexec", 8080), _netexec("hostname", 8081, "/hostname"),
                       _netexec("clientip", 8082, "/clientip")]
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {LABEL: "true"}}},
        ds(ECHO, echo_containers),
        ds(CLIENT, [_netexec("netexec", 8080)]),
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": LOCAL, **meta, "labels": {"app": LOCAL, LABEL: "true"}},
         "spec": {"nodeName": local_node, "tolerations": tolerations, "terminationGracePeriodSeconds": 1,
                  "containers": [_netexec("clientip", 8082, "/clientip")]}},
        svc(SVC_CLUSTERIP, {"type": "ClusterIP", "selector": {"app": ECHO}, "ports": [
            {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8081}]}),
        svc(SVC_NODEPORT, {"type": "NodePort", "selector": {"app": ECHO}, "ports": [
            {"protocol": "TCP", "port": 80, "targetPort": 8081}]}),
        svc(SVC_LB, {"type": "LoadBalancer", "selector": {"app": ECHO}, "ports": [
            {"protocol": "TCP", "port": LB_PORT, "targetPort": 8081}]}),
        svc(SVC_HEADLESS, {"clusterIP": "None", "selector": {"app": ECHO}, "ports": [
            {"protocol": "TCP", "port": 8081, "targetPort": 8081}]}),
        svc(SVC_AFFINITY, {"type": "ClusterIP", "selector": {"app": ECHO}, "sessionAffinity": "ClientIP",
                           "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8081}]}),
        svc(SVC_LOCAL, {"type": "NodePort", "selector": {"app": LOCAL}, "externalTrafficPolicy": "Local",
                        "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8082}]}),
    ]
    text = json.dumps(objs).replace('"IMAGE"', json.dumps(image))
    return list(json.loads(text))


@dataclass
class PodInfo:
    name: str
    node: str
    ip: str
    uid: str = ""
    app: str = ""


@dataclass
class PortInfo:
    name: str | None
    protocol: str
    port: int
    target_port: int
    node_port: int | None = None


@dataclass
class ServiceInfo:
    name: str
    type: str
    cluster_ip: str | None
    ports: list[PortInfo]
    lb_ips: list[str] = field(default_factory=list)
    session_affinity: str = "None"
    external_traffic_policy: str = "Cluster"

    def port_name(self, namespace: str, port: PortInfo) -> str:
        """kube-proxy's service port name: ``ns/svc`` plus ``:name`` only when the port is named."""
        return f"{namespace}/{self.name}" + (f":{port.name}" if port.name else "")


@dataclass
class Workload:
    """What was deployed, as the cluster reports it."""

    namespace: str
    image: str
    echo: dict[str, PodInfo] = field(default_factory=dict)  # by node
    client: dict[str, PodInfo] = field(default_factory=dict)  # by node
    local: PodInfo | None = None
    local_node: str = ""
    services: dict[str, ServiceInfo] = field(default_factory=dict)
    system_services: list[tuple[str, ServiceInfo]] = field(default_factory=list)  # (namespace, svc)
    nodes: list[dict[str, Any]] = field(default_factory=list)  # `get nodes` items
    missing: dict[str, str] = field(default_factory=dict)  # node -> why its probe pods are not ready
    system_endpoints: dict[str, list[str]] = field(default_factory=dict)  # "kube-system/kube-dns" -> ready IPs
    deploy_seconds: float = 0.0


def new_namespace() -> str:
    return NS_PREFIX + secrets.token_hex(3)


def parse_service(item: dict[str, Any]) -> ServiceInfo:
    spec = item.get("spec", {})
    ports = [PortInfo(name=p.get("name") or None, protocol=(p.get("protocol") or "TCP"), port=int(p["port"]),
                      target_port=int(p.get("targetPort") or p["port"]) if str(p.get("targetPort", "")).isdigit()
                      or isinstance(p.get("targetPort"), int) else int(p["port"]),
                      node_port=p.get("nodePort")) for p in spec.get("ports") or []]
    ingress = (item.get("status", {}).get("loadBalancer", {}) or {}).get("ingress") or []
    cip = spec.get("clusterIP")
    return ServiceInfo(
        name=item["metadata"]["name"], type=spec.get("type", "ClusterIP"),
        cluster_ip=None if cip in (None, "", "None") else str(cip), ports=ports,
        lb_ips=[str(i["ip"]) for i in ingress if i.get("ip")],
        session_affinity=spec.get("sessionAffinity") or "None",
        external_traffic_policy=spec.get("externalTrafficPolicy") or "Cluster",
    )


def deploy(
    kube: Kube,
    namespace: str,
    image: str,
    node_names: list[str],
    timeout: float = 60,
    lb_deadline: float = 30,
    want_lb: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Workload:
    """Apply the workload and wait until every node's echo and client pods are ready (or ``timeout``).
    Nodes whose pods do not come up are recorded in ``Workload.missing`` (their checks fail with that
    reason); a workload that cannot be applied at all raises WorkloadError."""
    start = time.monotonic()
    note = progress or (lambda _msg: None)
    local_node = node_names[-1]
    try:
        kube.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests(namespace, image, local_node)}))
    except KubeError as e:
        raise WorkloadError(f"could not deploy the probe workload: {e}") from e
    note(f"applied the probe workload in namespace {namespace}")
    w = Workload(namespace=namespace, image=image, local_node=local_node)
    deadline = start + timeout
    lb_until = start + lb_deadline
    while True:
        pods, svcs = kube.get_many([("pods", namespace), ("services", namespace)])
        w.echo, w.client, w.local = {}, {}, None
        for p in pods:
            if not pod_ready(p):
                continue
            app = p["metadata"].get("labels", {}).get("app", "")
            info = PodInfo(name=p["metadata"]["name"], node=p.get("spec", {}).get("nodeName", ""),
                           ip=p["status"]["podIP"], uid=p["metadata"].get("uid", ""), app=app)
            if app == ECHO:
                w.echo[info.node] = info
            elif app == CLIENT:
                w.client[info.node] = info
            elif app == LOCAL:
                w.local = info
        w.services = {s.name: s for s in (parse_service(i) for i in svcs)}
        pods_ok = all(n in w.echo and n in w.client for n in node_names) and w.local is not None
        lb = w.services.get(SVC_LB)
        lb_ok = not want_lb or (lb is not None and bool(lb.lb_ips))
        now = time.monotonic()
        if pods_ok and (lb_ok or now > lb_until):
            break
        if now > deadline:
            break
        time.sleep(0.3)
    for n in node_names:
        lacking = [what for what, d in (("echo", w.echo), ("client", w.client)) if n not in d]
        if lacking:
            w.missing[n] = f"probe pod(s) {', '.join(lacking)} not ready on {n} after {timeout:.0f} s"
    w.deploy_seconds = time.monotonic() - start
    note(f"probe pods ready on {len(node_names) - len(w.missing)} of {len(node_names)} nodes")
    return w


def load_cluster_facts(kube: Kube, w: Workload) -> None:
    """Nodes and the system Services every node must program (default/kubernetes, kube-system/kube-dns)."""
    w.nodes, default, system, slices = kube.get_many([("nodes", None), ("services", "default"),
                                                      ("services", "kube-system"), ("endpointslices", "kube-system")])
    for ns, items in (("default", default), ("kube-system", system)):
        for item in items:
            s = parse_service(item)
            if s.cluster_ip:
                w.system_services.append((ns, s))
    for sl in slices:
        svc = sl.get("metadata", {}).get("labels", {}).get("kubernetes.io/service-name")
        if svc:
            ready = [a for ep in sl.get("endpoints") or [] if (ep.get("conditions") or {}).get("ready", True)
                     for a in ep.get("addresses") or []]
            w.system_endpoints.setdefault(f"kube-system/{svc}", []).extend(ready)


def node_summary(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["metadata"]["name"]: {"ready": node_ready(i), "ip": node_internal_ip(i),
                                   "arch": i.get("status", {}).get("nodeInfo", {}).get("architecture")}
            for i in items}


def remove(kube: Kube, namespace: str) -> None:
    kube.delete_namespace(namespace)
