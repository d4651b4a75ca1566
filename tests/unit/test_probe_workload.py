"""The probe workload's manifests: what each Service reaches, and that no node-exposed port runs commands."""

from __future__ import annotations

from pi_cluster.conformance import workload as wl


def containers_by_port(objs: list[dict], app: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for o in objs:
        if o["kind"] not in ("DaemonSet", "Pod"):
            continue
        spec = o["spec"].get("template", {}).get("spec") if o["kind"] == "DaemonSet" else o["spec"]
        labels = (o["spec"].get("template", {}).get("metadata", {}) if o["kind"] == "DaemonSet" else o["metadata"]
                  ).get("labels", {})
        if labels.get("app") == app:
            for c in spec["containers"]:
                out[c["ports"][0]["containerPort"]] = c["args"]
    return out


def test_no_node_exposed_service_reaches_shell() -> None:
    objs = wl.manifests("pi-cluster-probe-abc123", wl.DEFAULT_IMAGE, "node3")
    services = [o for o in objs if o["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {wl.SVC_CLUSTERIP, wl.SVC_NODEPORT, wl.SVC_LB,
                                                          wl.SVC_HEADLESS, wl.SVC_AFFINITY, wl.SVC_LOCAL}
    for s in services:  # ClusterIP and headless too: no Service reaches a port that runs commands
        ports = containers_by_port(objs, s["spec"]["selector"]["app"])
        for p in s["spec"]["ports"]:
            args = ports[p["targetPort"]]
            assert any(a.startswith("--http-override=/") for a in args), (s["metadata"]["name"], args)
            assert "/shell" not in " ".join(args)


def test_workload_shape() -> None:
    objs = wl.manifests("ns-x", "example.org/agnhost:1.0", "node3")
    assert objs[0] == {"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": "ns-x", "labels": {wl.LABEL: "true"}}}
    assert all(o["metadata"].get("namespace", "ns-x") == "ns-x" for o in objs)
    images = {c["image"] for o in objs if o["kind"] in ("DaemonSet", "Pod")
              for c in (o["spec"].get("template", {}).get("spec") or o["spec"])["containers"]}
    assert images == {"example.org/agnhost:1.0"}
    local = next(o for o in objs if o["kind"] == "Pod")
    assert local["spec"]["nodeName"] == "node3"
    svc = {o["metadata"]["name"]: o["spec"] for o in objs if o["kind"] == "Service"}
    assert svc[wl.SVC_LOCAL]["externalTrafficPolicy"] == "Local"
    assert svc[wl.SVC_AFFINITY]["sessionAffinity"] == "ClientIP"
    assert svc[wl.SVC_HEADLESS]["clusterIP"] == "None"
    assert svc[wl.SVC_CLUSTERIP]["ports"][0]["name"] == "http"  # a named port: KUBE-SVC hash of ns/web:http
    assert wl.new_namespace().startswith(wl.NS_PREFIX) and wl.new_namespace() != wl.new_namespace()


def test_image_architectures() -> None:
    assert wl.image_arches("registry.k8s.io/e2e-test-images/agnhost:2.53") == wl.AGNHOST_ARCHES
    assert "arm" in (wl.image_arches("registry.k8s.io/e2e-test-images/agnhost:2.39") or set())
    assert "arm" not in wl.AGNHOST_ARCHES
    assert wl.image_arches("example.org/my-netexec:1") is None


def test_parse_service() -> None:
    item = {"metadata": {"name": "web-lb"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.7", "ports": [
                {"name": "http", "protocol": "TCP", "port": 18081, "targetPort": 8081, "nodePort": 31000}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.11"}, {"ip": "198.18.0.12"}]}}}
    s = wl.parse_service(item)
    assert (s.cluster_ip, s.ports[0].node_port, s.lb_ips) == ("10.43.0.7", 31000, ["198.18.0.11", "198.18.0.12"])
    assert s.port_name("ns", s.ports[0]) == "ns/web-lb:http"
    headless = wl.parse_service({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [
        {"port": 8080, "targetPort": "http"}]}})
    assert headless.cluster_ip is None and headless.ports[0].target_port == 8080
