"""Helpers for lab tests: run commands on nodes and in pods, and a standard probe workload."""

from __future__ import annotations

import subprocess

from pi_cluster.lab import ContainerSpec, Lab, ServicePort, ServiceSpec


def sh(lab: Lab, target: str, cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a node (``node1``) or in a pod (``ns/pod``) of the lab."""
    return subprocess.run([*lab.exec_argv(target), "sh", "-c", cmd], capture_output=True, text=True,
                          timeout=timeout, check=False)


def populate(lab: Lab, ns: str = "probe") -> dict[str, ServiceSpec]:
    """An echo pod and a client pod on every node, and ClusterIP/NodePort/LB/headless/affinity/local Services."""
    for n in lab.nodes:
        lab.add_pod(ns, f"echo-{n.name}", n.name, {"app": "echo"}, [ContainerSpec(name="netexec", port=8080)])
        lab.add_pod(ns, f"client-{n.name}", n.name, {"app": "client"}, [ContainerSpec(name="netexec", port=8080)])
    local_node = lab.nodes[1 if len(lab.nodes) > 1 else 0].name
    lab.add_pod(ns, "local-echo", local_node, {"app": "local-echo"}, [ContainerSpec(name="netexec", port=8080)])
    p = [ServicePort(name="http", port=80, target_port=8080)]
    specs = {
        "web": ServiceSpec(namespace=ns, name="web", type="NodePort", selector={"app": "echo"}, ports=p),
        "lb": ServiceSpec(namespace=ns, name="lb", type="LoadBalancer", selector={"app": "echo"},
                          ports=[ServicePort(name="http", port=8000, target_port=8080)]),
        "hl": ServiceSpec(namespace=ns, name="hl", headless=True, selector={"app": "echo"}, ports=p),
        "sticky": ServiceSpec(namespace=ns, name="sticky", selector={"app": "echo"}, ports=p,
                              session_affinity="ClientIP"),
        "local": ServiceSpec(namespace=ns, name="local", type="NodePort", selector={"app": "local-echo"},
                             ports=p, external_traffic_policy="Local"),
    }
    for s in specs.values():
        lab.apply_service(s)
    return specs
