"""The lab's Kubernetes object model: a TEST DOUBLE of the Kubernetes API for the lab's `k3s kubectl` stand-in.

It keeps what a real API server would keep for the objects the checks use (Namespaces, DaemonSets, Deployments,
Service manifests, pod ownership) in `<lab.state_dir>/kube.json`, turns desired state into pods and Services through
the lab's part-1 API (`add_pod`, `delete_pod`, `apply_service`, `delete_service`), and renders everything as the
Kubernetes API's JSON shapes (Node, Pod, Service, EndpointSlice, Namespace, DaemonSet, Deployment).

Pods and Services themselves are the lab's state (part 1); this module only remembers their Kubernetes extras.
Nothing here prints: the verbs return `Result(code, stdout, stderr)`; `kubectl.py` parses arguments.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SUPPORTED_APPLY_KINDS = {"Namespace": "v1", "Service": "v1", "Pod": "v1", "DaemonSet": "apps/v1",
                         "Deployment": "apps/v1"}
NODE_PORT_RANGE = (30000, 32767)
DEFAULT_K3S_VERSION = "v1.31.4+k3s1"
AGNHOST_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"
# kubernetes' rand.SafeEncodeString alphabet (no vowels, no confusable characters), used for generated names
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class KubeError(Exception):
    """A request the stand-in refuses or cannot complete; `message` is what kubectl would print."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Result:
    code: int = 0
    stdout: str = ""
    stderr: str = ""


class LabAPI(Protocol):
    """The part of `pi_cluster.lab.Lab` this module uses (see notes/LAB_API.md)."""

    name: str
    state_dir: Path

    @property
    def nodes(self) -> list[Any]: ...

    @property
    def settings(self) -> dict[str, Any]: ...

    def add_pod(self, namespace: str, name: str, node: str, labels: dict[str, str], containers: list[Any]) -> Any: ...

    def add_pods(self, requests: list[tuple[str, str, str, dict[str, str], list[Any]]]) -> list[Any]:
        """Several (namespace, name, node, labels, containers) in one batch; per pod the pod or its error."""
        ...

    def delete_pod(self, namespace: str, name: str) -> None: ...

    def delete_pods(self, pods: list[tuple[str, str]]) -> None:
        """Several (namespace, name) with one rules re-sync."""
        ...

    def delete_services(self, services: list[tuple[str, str]]) -> None:
        """Several (namespace, name) with one rules re-sync."""
        ...

    def pods(self) -> list[Any]: ...

    def apply_service(self, spec: Any) -> Any: ...

    def apply_services(self, specs: list[Any]) -> list[Any]:
        """Several in order with one rules re-sync; stops at the first refused (its error ends the list)."""
        ...

    def delete_service(self, namespace: str, name: str) -> None: ...

    def services(self) -> list[Any]: ...


class LabTypes(Protocol):
    """The constructors of the lab API's value types (the `pi_cluster.lab` module itself, or a test double)."""

    ContainerSpec: Callable[..., Any]
    ServicePort: Callable[..., Any]
    ServiceSpec: Callable[..., Any]


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Read a field from a lab value (dataclass / pydantic model) or from its JSON form (dict)."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe_suffix(n: int) -> str:
    return "".join(secrets.choice(_SAFE) for _ in range(n))


def _safe_hash(data: Any, n: int = 10) -> str:
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:n])


def parse_duration(text: str) -> float:
    """kubectl durations: `30s`, `2m`, `1m30s`, `1h`, `500ms`, or a bare number of seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise KubeError(f'error: invalid duration "{text}" (use e.g. 30s, 2m, 1m30s)')
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(a) * scale[b] for a, b in parts)


# ----------------------------------------------------------------------------------------------- label selectors

@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "exists", "!exists"
    value: str = ""

    def matches(self, labels: dict[str, str]) -> bool:
        if self.op == "=":
            return labels.get(self.key) == self.value
        if self.op == "!=":
            return labels.get(self.key) != self.value
        if self.op == "exists":
            return self.key in labels
        return self.key not in labels


def parse_selector(text: str) -> list[Requirement]:
    """Equality-based label selectors (`a=b,c!=d,e,!f`); set-based ones (`in`, `notin`) are refused."""
    reqs: list[Requirement] = []
    if not text.strip():
        return reqs
    if "(" in text or re.search(r"\s(in|notin)\s", f" {text} "):
        raise KubeError(f'error: set-based label selector "{text}" is not supported by the lab stand-in '
                        "(use key=value, key!=value, key, !key)")
    for term in text.split(","):
        term = term.strip()
        if m := re.fullmatch(r"([^=!]+)!=(.*)", term):
            key, op, value = m.group(1).strip(), "!=", m.group(2).strip()
        elif m := re.fullmatch(r"([^=!]+)==?(.*)", term):
            key, op, value = m.group(1).strip(), "=", m.group(2).strip()
        elif term.startswith("!"):
            key, op, value = term[1:].strip(), "!exists", ""
        else:
            key, op, value = term, "exists", ""
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise KubeError(f'error: unable to parse requirement "{term}" in label selector "{text}"')
        reqs.append(Requirement(key, op, value))
    return reqs


def selector_matches(reqs: Iterable[Requirement], labels: dict[str, str]) -> bool:
    return all(r.matches(labels) for r in reqs)


def label_selector_from_object(sel: dict[str, Any] | None, where: str) -> list[Requirement]:
    """A metav1.LabelSelector (matchLabels + matchExpressions In/NotIn/Exists/DoesNotExist) -> requirements.

    In/NotIn with several values are expanded only for a single value; more is refused (not needed by the checks).
    """
    reqs: list[Requirement] = []
    if not sel:
        return reqs
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append(Requirement(str(k), "=", str(v)))
    for expr in sel.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), str(expr.get("key")), [str(v) for v in expr.get("values") or []]
        if op == "Exists":
            reqs.append(Requirement(key, "exists"))
        elif op == "DoesNotExist":
            reqs.append(Requirement(key, "!exists"))
        elif op == "In" and len(values) == 1:
            reqs.append(Requirement(key, "=", values[0]))
        elif op == "NotIn":
            reqs.extend(Requirement(key, "!=", v) for v in values)
        else:
            raise KubeError(f"error: {where}: matchExpressions operator {op!r} with values {values} is not "
                            "supported by the lab stand-in")
    return reqs


# ---------------------------------------------------------------------------------------------------- the store

@dataclass
class Store:
    """Everything a real API server would persist that the lab's part 1 does not (serialised to kube.json)."""

    resource_version: int = 1
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    # kind -> "ns/name" -> {"manifest", "uid", "created", "generation", "resourceVersion"}
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # "ns/name" of a pod -> {"owner": {kind, name, uid}, "template": {...}, "hash": str, "generation": int}
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)

    def bump(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    def kind(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.objects.setdefault(kind, {})

    @classmethod
    def load(cls, path: Path) -> Store:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(resource_version=int(data.get("resourceVersion", 1)), namespaces=data.get("namespaces", {}),
                   objects=data.get("objects", {}), pods=data.get("pods", {}))

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"resourceVersion": self.resource_version, "namespaces": self.namespaces,
                                   "objects": self.objects, "pods": self.pods}, indent=1, sort_keys=True))
        os.replace(tmp, path)


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


# --------------------------------------------------------------------------------------------- the kube model

KIND_ALIASES = {
    "node": "Node", "nodes": "Node", "no": "Node",
    "pod": "Pod", "pods": "Pod", "po": "Pod",
    "service": "Service", "services": "Service", "svc": "Service",
    "endpointslice": "EndpointSlice", "endpointslices": "EndpointSlice",
    "endpointslices.discovery.k8s.io": "EndpointSlice", "endpointslice.discovery.k8s.io": "EndpointSlice",
    "namespace": "Namespace", "namespaces": "Namespace", "ns": "Namespace",
    "daemonset": "DaemonSet", "daemonsets": "DaemonSet", "ds": "DaemonSet",
    "daemonset.apps": "DaemonSet", "daemonsets.apps": "DaemonSet",
    "deployment": "Deployment", "deployments": "Deployment", "deploy": "Deployment",
    "deployment.apps": "Deployment", "deployments.apps": "Deployment",
    "endpoints": "Endpoints", "ep": "Endpoints",
}
API_VERSION = {"Endpoints": "v1",
               "Node": "v1", "Pod": "v1", "Service": "v1", "Namespace": "v1", "EndpointSlice": "discovery.k8s.io/v1",
               "DaemonSet": "apps/v1", "Deployment": "apps/v1"}
CLUSTER_SCOPED = {"Node", "Namespace"}
# how kubectl names a kind in its messages (`daemonset.apps/echo created`, `pod "x" deleted`)
KIND_REF = {"Endpoints": "endpoints", "Node": "node", "Pod": "pod", "Service": "service", "Namespace": "namespace",
            "EndpointSlice": "endpointslice.discovery.k8s.io", "DaemonSet": "daemonset.apps",
            "Deployment": "deployment.apps"}
PLURAL = {"Endpoints": "endpoints", "Node": "nodes", "Pod": "pods", "Service": "services", "Namespace": "namespaces",
          "EndpointSlice": "endpointslices.discovery.k8s.io", "DaemonSet": "daemonsets.apps",
          "Deployment": "deployments.apps"}


def resolve_kind(word: str, verb: str) -> str:
    kind = KIND_ALIASES.get(word.lower())
    if kind is None:
        supported = "nodes, pods, services, endpointslices, endpoints, namespaces, daemonsets, deployments"
        raise KubeError(f'error: the server doesn\'t have a resource type "{word}" '
                        f"(the pi-cluster lab kubectl stand-in supports {verb} on: {supported})")
    return kind


def container_port(container: dict[str, Any]) -> int:
    """The port the lab's netexec server listens on: agnhost's --http-port, else the first containerPort, else 8080."""
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    for i, a in enumerate(argv):
        if a.startswith("--http-port="):
            return int(a.split("=", 1)[1])
        if a == "--http-port" and i + 1 < len(argv):
            return int(argv[i + 1])
    for p in container.get("ports") or []:
        if p.get("containerPort"):
            return int(p["containerPort"])
    return 8080


class KubeCluster:
    """The object model + verbs. One instance per controller daemon; every verb runs under `self.lock`."""

    def __init__(self, lab: LabAPI, types: LabTypes, store_path: Path | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.lab = lab
        self.types = types
        self.store_path = store_path or Path(lab.state_dir) / "kube.json"
        self.store = Store.load(self.store_path)
        self.lock = threading.RLock()
        self.sleep = sleep
        self.reconcile_errors: dict[str, str] = {}
        with self.lock:
            changed = False
            for ns in SYSTEM_NAMESPACES:
                if ns not in self.store.namespaces:
                    self.store.namespaces[ns] = {"uid": str(uuid.uuid4()), "created": now_rfc3339(), "labels": {},
                                                 "resourceVersion": self.store.bump()}
                    changed = True
            if changed:
                self.save()

    def save(self) -> None:
        self.store.save(self.store_path)

    # ------------------------------------------------------------------------------------------ lab views
    def _k3s_version(self) -> str:
        return str(self.lab.settings.get("k3s_version") or DEFAULT_K3S_VERSION)

    def _nodes(self) -> list[Any]:
        return list(self.lab.nodes)

    def _pods(self) -> list[Any]:
        return list(self.lab.pods())

    def _services(self) -> list[Any]:
        return list(self.lab.services())

    def node_labels(self, node: Any) -> dict[str, str]:
        name, arch = str(_get(node, "name")), str(_get(node, "arch", "arm64"))
        labels = {"beta.kubernetes.io/arch": arch, "beta.kubernetes.io/instance-type": "k3s",
                  "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": arch, "kubernetes.io/hostname": name,
                  "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "k3s"}
        if _get(node, "role") == "server":
            labels["node-role.kubernetes.io/control-plane"] = "true"
            labels["node-role.kubernetes.io/master"] = "true"
        labels.update({str(k): str(v) for k, v in (_get(node, "labels") or {}).items()})
        return labels

    # ------------------------------------------------------------------------------------------ scheduling
    def _node_affinity_ok(self, spec: dict[str, Any], node: Any, where: str) -> bool:
        labels = self.node_labels(node)
        if not selector_matches([Requirement(str(k), "=", str(v)) for k, v in (spec.get("nodeSelector") or {}).items()],
                                labels):
            return False
        na = ((spec.get("affinity") or {}).get("nodeAffinity") or {})
        req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
        if not req:
            return True
        for term in req.get("nodeSelectorTerms") or []:
            ok = True
            for expr in term.get("matchExpressions") or []:
                ok = ok and self._node_expr(expr, labels, where)
            for expr in term.get("matchFields") or []:
                if expr.get("key") != "metadata.name":
                    raise KubeError(f"error: {where}: matchFields key {expr.get('key')!r} is not supported by the "
                                    "lab stand-in (only metadata.name)")
                ok = ok and self._node_expr(expr, {"metadata.name": str(_get(node, "name"))}, where)
            if ok:
                return True
        return False

    @staticmethod
    def _node_expr(expr: dict[str, Any], labels: dict[str, str], where: str) -> bool:
        key, op, values = str(expr.get("key")), expr.get("operator"), [str(v) for v in expr.get("values") or []]
        if op == "In":
            return labels.get(key) in values
        if op == "NotIn":
            return labels.get(key) not in values
        if op == "Exists":
            return key in labels
        if op == "DoesNotExist":
            return key not in labels
        raise KubeError(f"error: {where}: node affinity operator {op!r} is not supported by the lab stand-in "
                        "(In, NotIn, Exists, DoesNotExist)")

    def _pod_affinity_ok(self, namespace: str, spec: dict[str, Any], node: str, pods: list[Any],
                         exclude: set[str], where: str) -> bool:
        aff = spec.get("affinity") or {}
        for kind, want in (("podAffinity", True), ("podAntiAffinity", False)):
            for term in (aff.get(kind) or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []:
                if term.get("topologyKey") != "kubernetes.io/hostname":
                    raise KubeError(f"error: {where}: {kind} topologyKey {term.get('topologyKey')!r} is not "
                                    "supported by the lab stand-in (only kubernetes.io/hostname)")
                reqs = label_selector_from_object(term.get("labelSelector"), where)
                namespaces = set(term.get("namespaces") or [namespace])
                present = any(
                    _get(p, "node") == node and _get(p, "namespace") in namespaces
                    and _key(_get(p, "namespace"), _get(p, "name")) not in exclude
                    and selector_matches(reqs, dict(_get(p, "labels") or {}))
                    for p in pods)
                if present != want:
                    return False
        return True

    def check_pod_spec(self, spec: dict[str, Any], where: str) -> None:
        """Refuse pod-spec features the lab cannot honour (rather than silently ignoring them)."""
        if spec.get("hostNetwork"):
            raise KubeError(f"error: {where}: hostNetwork: true is not supported by the lab stand-in "
                            "(lab pods always get their own network namespace)")
        if not spec.get("containers"):
            raise KubeError(f"error: {where}: spec.template.spec.containers: Required value")
        if spec.get("initContainers"):
            raise KubeError(f"error: {where}: initContainers are not supported by the lab stand-in")
        for c in spec["containers"]:
            if not c.get("name"):
                raise KubeError(f"error: {where}: containers[].name: Required value")
            try:
                container_port(c)
            except ValueError as e:
                raise KubeError(f"error: {where}: container {c.get('name')!r}: bad --http-port: {e}") from e
        aff = spec.get("affinity") or {}
        for kind in ("podAffinity", "podAntiAffinity"):
            for term in (aff.get(kind) or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []:
                if term.get("topologyKey") != "kubernetes.io/hostname":
                    raise KubeError(f"error: {where}: {kind} topologyKey {term.get('topologyKey')!r} is not "
                                    "supported by the lab stand-in (only kubernetes.io/hostname)")
                label_selector_from_object(term.get("labelSelector"), where)
        for expr in ((aff.get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {}
                     ).get("nodeSelectorTerms") or []:
            for node_expr in expr.get("matchExpressions") or []:
                self._node_expr(node_expr, {}, where)

    # ------------------------------------------------------------------------------------------ pods
    def _create_pod(self, namespace: str, owner_kind: str, owner: dict[str, Any] | None, name: str, node: str,
                    template: dict[str, Any], tmpl_hash: str, extra_labels: dict[str, str]) -> None:
        error = self._create_pods(namespace, owner_kind, owner, [(name, node)], template, tmpl_hash, extra_labels)[0]
        if error is not None:
            raise error

    @staticmethod
    def _template_labels(template: dict[str, Any], extra_labels: dict[str, str]) -> dict[str, str]:
        labels = {str(k): str(v) for k, v in ((template.get("metadata") or {}).get("labels") or {}).items()}
        labels.update(extra_labels)
        return labels

    def _create_pods(self, namespace: str, owner_kind: str, owner: dict[str, Any] | None,
                     pods: list[tuple[str, str]], template: dict[str, Any], tmpl_hash: str,
                     extra_labels: dict[str, str]) -> list[Exception | None]:
        """Start the pods [(name, node)] of one template in one lab batch (all start, then all are waited for);
        one error (or None) per pod. A pod that fails leaves no ownership record."""
        if not pods:
            return []
        labels = self._template_labels(template, extra_labels)
        containers = []
        for c in template["spec"]["containers"]:
            argv = [str(a) for a in (c.get("command") or [])[1:] + (c.get("args") or [])]
            containers.append(self.types.ContainerSpec(name=str(c["name"]), port=container_port(c), args=argv))
        for name, _node in pods:
            self.store.pods[_key(namespace, name)] = {
                "owner": {"kind": owner_kind, "name": owner["manifest"]["metadata"]["name"], "uid": owner["uid"]}
                if owner else None,
                "template": template, "hash": tmpl_hash, "generation": owner["generation"] if owner else 1}
        self.save()
        try:
            results = self.lab.add_pods([(namespace, name, node, dict(labels), list(containers))
                                         for name, node in pods])
        except Exception:
            for name, _node in pods:
                self.store.pods.pop(_key(namespace, name), None)
            self.save()
            raise
        errors: list[Exception | None] = [r if isinstance(r, Exception) else None for r in results]
        for (name, _node), err in zip(pods, errors, strict=True):
            if err is not None:
                self.store.pods.pop(_key(namespace, name), None)
        if any(errors):
            self.save()
        return errors

    def _delete_lab_pod(self, namespace: str, name: str) -> None:
        self.lab.delete_pod(namespace, name)
        self.store.pods.pop(_key(namespace, name), None)
        self.save()

    def _owned_pods(self, kind: str, namespace: str, name: str, pods: list[Any]) -> list[Any]:
        out = []
        for p in pods:
            if _get(p, "namespace") != namespace:
                continue
            meta = self.store.pods.get(_key(namespace, _get(p, "name")))
            if meta and meta.get("owner") and meta["owner"]["kind"] == kind and meta["owner"]["name"] == name:
                out.append(p)
        return out

    def _workload_labels(self, kind: str, obj: dict[str, Any], tmpl_hash: str) -> dict[str, str]:
        if kind == "DaemonSet":
            return {"controller-revision-hash": tmpl_hash, "pod-template-generation": str(obj["generation"])}
        return {"pod-template-hash": tmpl_hash}

    def _pod_name(self, kind: str, name: str, tmpl_hash: str, taken: set[str] | None = None) -> str:
        """A fresh generated pod name; `taken`: names planned in the same batch (the new name is added)."""
        existing = {_get(p, "name") for p in self._pods()} | (taken or set())
        while True:
            cand = f"{name}-{_safe_suffix(5)}" if kind == "DaemonSet" else f"{name}-{tmpl_hash}-{_safe_suffix(5)}"
            if cand not in existing:
                if taken is not None:
                    taken.add(cand)
                return cand

    @staticmethod
    def template_hash(template: dict[str, Any]) -> str:
        return _safe_hash(template, 10)

    def reconcile(self, kind: str, namespace: str, name: str, replacing: set[str] | None = None) -> None:
        """Make the pods of one DaemonSet/Deployment match its spec (create missing, replace outdated, trim).

        `replacing`: pods about to be deleted; they do not count as running but stay until their replacement is up
        (as a terminating pod does on a real cluster), so the replacement never reuses their IP.
        """
        obj = self.store.kind(kind).get(_key(namespace, name))
        if obj is None:
            return
        replacing = replacing or set()
        manifest = obj["manifest"]
        template = manifest["spec"]["template"]
        spec = template["spec"]
        tmpl_hash = self.template_hash(template)
        where = f'{KIND_REF[kind]} "{name}"'
        pods = self._pods()
        owned = self._owned_pods(kind, namespace, name, pods)
        live = [p for p in owned if _key(namespace, _get(p, "name")) not in replacing]
        current = [p for p in live
                   if self.store.pods.get(_key(namespace, _get(p, "name")), {}).get("hash") == tmpl_hash]
        outdated = [p for p in live if p not in current]
        node_names = [str(_get(n, "name")) for n in self._nodes()]
        nodes = {str(_get(n, "name")): n for n in self._nodes()}
        extra = self._workload_labels(kind, obj, tmpl_hash)
        errors: list[str] = []
        if kind == "DaemonSet":
            eligible = [n for n in node_names if self._node_affinity_ok(spec, nodes[n], where)]
            taken: set[str] = set()
            missing = [(self._pod_name(kind, name, tmpl_hash, taken), node) for node in eligible
                       if not any(_get(p, "node") == node for p in current)]
            # every missing pod in one batch: the lab starts them all, then waits for all
            for (_pod, node), err in zip(missing, self._create_pods(namespace, kind, obj, missing, template,
                                                                      tmpl_hash, extra), strict=True):
                if err is not None:
                    errors.append(f"node {node}: {err}")
            for node in eligible:
                mine = [p for p in current if _get(p, "node") == node]
                for p in mine[1:]:
                    self._delete_lab_pod(namespace, _get(p, "name"))
            stale = outdated + [p for p in current if _get(p, "node") not in eligible]
        else:
            replicas = int(manifest["spec"].get("replicas", 1) if manifest["spec"].get("replicas") is not None else 1)
            # place every missing replica first (each placement sees the ones planned before it, as if they were
            # already running), then start them all in one batch
            planned: list[dict[str, Any]] = []
            taken = set()
            all_pods = self._pods()
            labels = self._template_labels(template, extra)
            while len(current) + len(planned) < replicas:
                counts = {n: sum(1 for p in [*current, *planned] if _get(p, "node") == n) for n in node_names}
                cands = [n for n in node_names if self._node_affinity_ok(spec, nodes[n], where)
                         and self._pod_affinity_ok(namespace, spec, n, [*all_pods, *planned], replacing, where)]
                if not cands:
                    errors.append(f"0/{len(node_names)} nodes are available for a new pod (node selector or "
                                  "affinity rules)")
                    break
                node = min(cands, key=lambda n: (counts[n], node_names.index(n)))
                planned.append({"name": self._pod_name(kind, name, tmpl_hash, taken), "node": node,
                                "namespace": namespace, "labels": labels})
            batch = [(p["name"], p["node"]) for p in planned]
            for (_pod, node), err in zip(batch, self._create_pods(namespace, kind, obj, batch, template, tmpl_hash,
                                                                    extra), strict=True):
                if err is not None:
                    errors.append(f"node {node}: {err}")
            have = [p for p in self._owned_pods(kind, namespace, name, self._pods())
                    if _key(namespace, _get(p, "name")) not in replacing
                    and self.store.pods.get(_key(namespace, _get(p, "name")), {}).get("hash") == tmpl_hash]
            newest_first = sorted(have, key=lambda p: str(_get(p, "created", "")), reverse=True)
            surplus = newest_first[:max(0, len(have) - replicas)]
            stale = outdated + surplus
        for p in stale:
            self._delete_lab_pod(namespace, _get(p, "name"))
        k = f"{kind}/{namespace}/{name}"
        if errors:
            self.reconcile_errors[k] = "; ".join(errors)
        else:
            self.reconcile_errors.pop(k, None)

    def reconcile_all(self) -> None:
        with self.lock:
            for kind in ("DaemonSet", "Deployment"):
                for key in list(self.store.kind(kind)):
                    ns, name = key.split("/", 1)
                    self.reconcile(kind, ns, name)
            # forget ownership records of pods that are gone
            live = {_key(_get(p, "namespace"), _get(p, "name")) for p in self._pods()}
            gone = [k for k in self.store.pods if k not in live]
            for k in gone:
                del self.store.pods[k]
            if gone:
                self.save()

    # ------------------------------------------------------------------------------------------ JSON shapes
    def node_json(self, node: Any) -> dict[str, Any]:
        name, addr = str(_get(node, "name")), str(_get(node, "address"))
        version = self._k3s_version()
        created = str(_get(node, "created") or self.store.namespaces["default"]["created"])
        cond = [
            {"type": t, "status": "False", "reason": r, "message": m, "lastHeartbeatTime": now_rfc3339(),
             "lastTransitionTime": created}
            for t, r, m in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))]
        cond.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                     "message": "kubelet is posting ready status", "lastHeartbeatTime": now_rfc3339(),
                     "lastTransitionTime": created})
        pod_cidr = str(_get(node, "pod_cidr", ""))
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"pi-cluster-lab:{self.lab.name}:node:{name}"))
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": name, "uid": uid, "resourceVersion": str(self.store.resource_version),
                "creationTimestamp": created, "labels": self.node_labels(node),
                "annotations": {"flannel.alpha.coreos.com/backend-type": "host-gw",
                                "flannel.alpha.coreos.com/public-ip": addr, "k3s.io/hostname": name,
                                "k3s.io/internal-ip": addr,
                                "pi-cluster.lab/test-double": "this node object comes from the pi-cluster lab"},
            },
            "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr] if pod_cidr else [], "providerID": f"k3s://{name}"},
            "status": {
                "addresses": [{"type": "InternalIP", "address": addr}, {"type": "Hostname", "address": name}],
                "allocatable": {"cpu": "4", "ephemeral-storage": "28447739107", "memory": "3880000Ki", "pods": "110"},
                "capacity": {"cpu": "4", "ephemeral-storage": "29243388Ki", "memory": "3880000Ki", "pods": "110"},
                "conditions": cond,
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "architecture": str(_get(node, "arch", "arm64")), "bootID": uid,
                    "containerRuntimeVersion": "containerd://1.7.23-k3s2", "kernelVersion": os.uname().release,
                    "kubeProxyVersion": version, "kubeletVersion": version, "machineID": uid.replace("-", ""),
                    "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": uid,
                },
            },
        }

    def _pod_containers(self, pod: Any, meta: dict[str, Any] | None) -> list[dict[str, Any]]:
        if meta:
            out = copy.deepcopy(meta["template"]["spec"]["containers"])
            for c in out:
                c.setdefault("imagePullPolicy", "IfNotPresent")
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                c.setdefault("terminationMessagePolicy", "File")
                c.setdefault("resources", {})
                for p in c.get("ports") or []:
                    p.setdefault("protocol", "TCP")
            return out
        out = []
        dns = _get(pod, "kind") == "dns"
        for c in _get(pod, "containers") or []:
            if dns:
                out.append({"name": str(_get(c, "name")), "image": "rancher/mirrored-coredns-coredns:1.11.3",
                            "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                      {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"}],
                            "resources": {}})
                continue
            out.append({"name": str(_get(c, "name")), "image": AGNHOST_IMAGE, "imagePullPolicy": "IfNotPresent",
                        "args": [str(a) for a in _get(c, "args") or []],
                        "ports": [{"containerPort": int(_get(c, "port", 8080)), "protocol": "TCP"}], "resources": {}})
        return out

    def pod_json(self, pod: Any, nodes: dict[str, Any] | None = None) -> dict[str, Any]:
        ns, name = str(_get(pod, "namespace")), str(_get(pod, "name"))
        meta = self.store.pods.get(_key(ns, name))
        nodes = nodes if nodes is not None else {str(_get(n, "name")): n for n in self._nodes()}
        node = str(_get(pod, "node"))
        host_ip = str(_get(nodes.get(node), "address", "")) if node in nodes else ""
        ready = bool(_get(pod, "ready", False))
        created = str(_get(pod, "created") or now_rfc3339())
        ip = str(_get(pod, "ip") or "")
        metadata: dict[str, Any] = {"name": name, "namespace": ns, "uid": str(_get(pod, "uid") or ""),
                                    "resourceVersion": str(self.store.resource_version), "creationTimestamp": created,
                                    "labels": dict(_get(pod, "labels") or {})}
        spec: dict[str, Any] = {"containers": self._pod_containers(pod, meta), "nodeName": node,
                                "restartPolicy": "Always", "schedulerName": "default-scheduler",
                                "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
                                "terminationGracePeriodSeconds": 30, "enableServiceLinks": True}
        if meta:
            owner = meta.get("owner") or {"kind": "Pod"}
            tspec = meta["template"]["spec"]
            for k in ("nodeSelector", "affinity", "tolerations", "dnsPolicy", "terminationGracePeriodSeconds"):
                if k in tspec:
                    spec[k] = copy.deepcopy(tspec[k])
            if owner["kind"] == "DaemonSet":
                metadata["generateName"] = f"{owner['name']}-"
                metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": owner["name"],
                                                "uid": owner["uid"], "controller": True, "blockOwnerDeletion": True}]
            elif owner["kind"] == "Deployment":
                rs = f"{owner['name']}-{meta['hash']}"
                metadata["generateName"] = f"{rs}-"
                metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, owner["uid"] + meta["hash"])),
                                                "controller": True, "blockOwnerDeletion": True}]
        status_word = "True" if ready else "False"
        conditions = [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": created},
            {"type": "Initialized", "status": "True", "lastTransitionTime": created},
            {"type": "Ready", "status": status_word, "lastTransitionTime": created},
            {"type": "ContainersReady", "status": status_word, "lastTransitionTime": created},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": created},
        ]
        cstatus = []
        for c in spec["containers"]:
            cs: dict[str, Any] = {"name": c["name"], "image": c.get("image", AGNHOST_IMAGE), "imageID": "",
                                  "containerID": f"containerd://{_safe_hash([ns, name, c['name']], 32)}",
                                  "ready": ready, "started": ready, "restartCount": 0}
            cs["state"] = {"running": {"startedAt": created}} if ready else {
                "waiting": {"reason": "ContainerCreating"}}
            cstatus.append(cs)
        status: dict[str, Any] = {"phase": "Running" if ready else "Pending", "conditions": conditions,
                                  "hostIP": host_ip, "hostIPs": [{"ip": host_ip}] if host_ip else [],
                                  "startTime": created, "containerStatuses": cstatus, "qosClass": "BestEffort"}
        if ip:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}

    def service_json(self, svc: Any) -> dict[str, Any]:
        spec = _get(svc, "spec")
        ns, name = str(_get(spec, "namespace")), str(_get(spec, "name"))
        stored = self.store.kind("Service").get(_key(ns, name))
        manifest = stored["manifest"] if stored else {}
        mspec = manifest.get("spec") or {}
        mports = mspec.get("ports") or []
        stype = str(_get(spec, "type", "ClusterIP"))
        headless = bool(_get(spec, "headless", False))
        cluster_ip = "None" if headless else str(_get(spec, "cluster_ip") or "")
        ports = []
        for i, p in enumerate(_get(spec, "ports") or []):
            target: Any = int(_get(p, "target_port"))
            if i < len(mports) and isinstance(mports[i].get("targetPort"), str):
                target = mports[i]["targetPort"]
            out: dict[str, Any] = {"port": int(_get(p, "port")), "protocol": str(_get(p, "protocol", "TCP")),
                                   "targetPort": target}
            if _get(p, "name"):
                out["name"] = str(_get(p, "name"))
            if stype in ("NodePort", "LoadBalancer") and _get(p, "node_port"):
                out["nodePort"] = int(_get(p, "node_port"))
            ports.append(out)
        affinity = str(_get(spec, "session_affinity", "None") or "None")
        s: dict[str, Any] = {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "internalTrafficPolicy": "Cluster",
                             "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "ports": ports,
                             "sessionAffinity": affinity, "type": stype}
        selector = dict(_get(spec, "selector") or {})
        if selector:
            s["selector"] = selector
        if affinity == "ClientIP":
            timeout = ((mspec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds", 10800)
            s["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": timeout}}
        if stype in ("NodePort", "LoadBalancer"):
            s["externalTrafficPolicy"] = str(_get(spec, "external_traffic_policy", "Cluster") or "Cluster")
        if stype == "LoadBalancer":
            s["allocateLoadBalancerNodePorts"] = True
        status: dict[str, Any] = {"loadBalancer": {}}
        if stype == "LoadBalancer":
            ingress = [{"ip": str(ip), "ipMode": "VIP"} for ip in _get(svc, "lb_ingress") or []]
            if ingress:
                status["loadBalancer"] = {"ingress": ingress}
        meta = manifest.get("metadata") or {}
        metadata: dict[str, Any] = {"name": name, "namespace": ns, "uid": str(_get(svc, "uid") or ""),
                                    "resourceVersion": str(stored["resourceVersion"] if stored else
                                                           self.store.resource_version),
                                    "creationTimestamp": str(_get(svc, "created") or now_rfc3339()),
                                    "labels": dict(_get(spec, "labels") or meta.get("labels") or {})}
        if meta.get("annotations"):
            metadata["annotations"] = dict(meta["annotations"])
        if ns == "default" and name == "kubernetes":
            metadata["labels"] = {"component": "apiserver", "provider": "kubernetes"}
        return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": s, "status": status}

    def endpointslice_json(self, svc: Any, pods: list[Any], nodes: dict[str, Any]) -> dict[str, Any] | None:
        spec = _get(svc, "spec")
        ns, name = str(_get(spec, "namespace")), str(_get(spec, "name"))
        selector = dict(_get(spec, "selector") or {})
        ports = list(_get(spec, "ports") or [])
        endpoints: list[dict[str, Any]] = []
        if ns == "default" and name == "kubernetes":
            for n in nodes.values():
                if _get(n, "role") == "server":
                    endpoints.append({"addresses": [str(_get(n, "address"))],
                                      "conditions": {"ready": True, "serving": True, "terminating": False}})
        elif not selector:
            return None
        else:
            for p in sorted(pods, key=lambda p: str(_get(p, "name"))):
                if _get(p, "namespace") != ns or not _get(p, "ip"):
                    continue
                if not selector_matches([Requirement(k, "=", v) for k, v in selector.items()],
                                        dict(_get(p, "labels") or {})):
                    continue
                ready = bool(_get(p, "ready", False))
                endpoints.append({"addresses": [str(_get(p, "ip"))],
                                  "conditions": {"ready": ready, "serving": ready, "terminating": False},
                                  "nodeName": str(_get(p, "node")),
                                  "targetRef": {"kind": "Pod", "name": str(_get(p, "name")), "namespace": ns,
                                                "uid": str(_get(p, "uid") or "")}})
        svc_uid = str(_get(svc, "uid") or "")
        labels = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                  "kubernetes.io/service-name": name}
        labels.update(dict(_get(spec, "labels") or {}))
        if _get(spec, "headless", False):
            labels["service.kubernetes.io/headless"] = ""
        slice_name = name if (ns == "default" and name == "kubernetes") else f"{name}-{_safe_hash(svc_uid, 5)}"
        return {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": slice_name, "namespace": ns, "generateName": f"{name}-",
                         "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"slice:{svc_uid}")),
                         "resourceVersion": str(self.store.resource_version),
                         "creationTimestamp": str(_get(svc, "created") or now_rfc3339()), "labels": labels,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc_uid,
                                              "controller": True, "blockOwnerDeletion": True}]},
            "endpoints": endpoints,
            "ports": [{"name": str(_get(p, "name") or ""), "port": int(_get(p, "target_port")),
                       "protocol": str(_get(p, "protocol", "TCP"))} for p in ports],
        }

    @staticmethod
    def endpoints_json(sl: dict[str, Any]) -> dict[str, Any]:
        """The v1 Endpoints object the endpoints controller keeps beside the EndpointSlice."""
        m = sl["metadata"]
        name = m["labels"]["kubernetes.io/service-name"]
        ready: list[dict[str, Any]] = []
        not_ready: list[dict[str, Any]] = []
        for e in sl["endpoints"]:
            addr: dict[str, Any] = {"ip": e["addresses"][0]}
            if "nodeName" in e:
                addr["nodeName"] = e["nodeName"]
            if "targetRef" in e:
                addr["targetRef"] = dict(e["targetRef"])
            (ready if e["conditions"]["ready"] else not_ready).append(addr)
        labels = {k: v for k, v in m["labels"].items() if k not in (
            "endpointslice.kubernetes.io/managed-by", "kubernetes.io/service-name")}
        out: dict[str, Any] = {"apiVersion": "v1", "kind": "Endpoints",
                               "metadata": {"name": name, "namespace": m["namespace"],
                                            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, "ep:" + m["uid"])),
                                            "resourceVersion": m["resourceVersion"],
                                            "creationTimestamp": m["creationTimestamp"], "labels": labels}}
        if ready or not_ready:
            subset: dict[str, Any] = {"ports": [dict(p) for p in sl["ports"]]}
            for p in subset["ports"]:
                if not p["name"]:
                    del p["name"]
            if ready:
                subset["addresses"] = ready
            if not_ready:
                subset["notReadyAddresses"] = not_ready
            out["subsets"] = [subset]
        return out

    def namespace_json(self, name: str) -> dict[str, Any]:
        ns = self.store.namespaces[name]
        labels = {"kubernetes.io/metadata.name": name}
        labels.update(ns.get("labels") or {})
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "uid": ns["uid"], "resourceVersion": ns.get("resourceVersion", "1"),
                             "creationTimestamp": ns["created"], "labels": labels},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

    def _workload_meta(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        m = obj["manifest"]["metadata"]
        meta: dict[str, Any] = {"name": m["name"], "namespace": m["namespace"], "uid": obj["uid"],
                                "resourceVersion": obj["resourceVersion"], "generation": obj["generation"],
                                "creationTimestamp": obj["created"], "labels": dict(m.get("labels") or {})}
        ann = dict(m.get("annotations") or {})
        if kind == "Deployment":
            ann["deployment.kubernetes.io/revision"] = str(obj.get("revision", 1))
        ann["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(obj["manifest"], sort_keys=True) + "\n"
        meta["annotations"] = ann
        return meta

    def workload_status(self, kind: str, obj: dict[str, Any], pods: list[Any] | None = None) -> dict[str, Any]:
        ns, name = obj["manifest"]["metadata"]["namespace"], obj["manifest"]["metadata"]["name"]
        pods = self._owned_pods(kind, ns, name, pods if pods is not None else self._pods())
        template = obj["manifest"]["spec"]["template"]
        tmpl_hash = self.template_hash(template)
        updated = [p for p in pods if self.store.pods.get(_key(ns, _get(p, "name")), {}).get("hash") == tmpl_hash]
        ready = [p for p in pods if _get(p, "ready")]
        updated_ready = [p for p in updated if _get(p, "ready")]
        if kind == "DaemonSet":
            where = f'daemonset "{name}"'
            desired = sum(1 for n in self._nodes() if self._node_affinity_ok(template["spec"], n, where))
            nodes_with = {_get(p, "node") for p in pods}
            return {"currentNumberScheduled": len(nodes_with), "desiredNumberScheduled": desired,
                    "numberAvailable": len(ready), "numberMisscheduled": 0, "numberReady": len(ready),
                    "numberUnavailable": max(0, desired - len(updated_ready)),
                    "observedGeneration": obj["generation"], "updatedNumberScheduled": len(updated)}
        replicas = obj["manifest"]["spec"].get("replicas")
        replicas = 1 if replicas is None else int(replicas)
        available = len(updated_ready) >= replicas
        err = self.reconcile_errors.get(f"Deployment/{ns}/{name}")
        st: dict[str, Any] = {
            "observedGeneration": obj["generation"], "replicas": len(pods), "updatedReplicas": len(updated),
            "readyReplicas": len(ready), "availableReplicas": len(ready),
            "unavailableReplicas": max(0, replicas - len(updated_ready)),
            "conditions": [
                {"type": "Available", "status": "True" if available else "False",
                 "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                 "message": "Deployment has minimum availability." if available else
                 "Deployment does not have minimum availability.",
                 "lastTransitionTime": obj["created"], "lastUpdateTime": obj["created"]},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable" if available else
                 "ReplicaSetUpdated", "message": err or f'ReplicaSet "{name}-{tmpl_hash}" is progressing.',
                 "lastTransitionTime": obj["created"], "lastUpdateTime": obj["created"]},
            ]}
        for k in ("readyReplicas", "availableReplicas", "unavailableReplicas"):
            if not st[k]:
                del st[k]
        return st

    def workload_json(self, kind: str, obj: dict[str, Any], pods: list[Any] | None = None) -> dict[str, Any]:
        spec = copy.deepcopy(obj["manifest"]["spec"])
        if kind == "DaemonSet":
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                               "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
        else:
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": self._workload_meta(kind, obj), "spec": spec,
                "status": self.workload_status(kind, obj, pods)}

    # ------------------------------------------------------------------------------------------ listing
    def list_objects(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        """All objects of a kind as API JSON; namespace None = every namespace."""
        def in_ns(ns: str) -> bool:
            return namespace is None or ns == namespace

        if kind == "Node":
            return [self.node_json(n) for n in self._nodes()]
        if kind == "Namespace":
            return [self.namespace_json(n) for n in sorted(self.store.namespaces)]
        nodes = {str(_get(n, "name")): n for n in self._nodes()}
        if kind == "Pod":
            pods = [p for p in self._pods() if in_ns(str(_get(p, "namespace")))]
            pods.sort(key=lambda p: (str(_get(p, "namespace")), str(_get(p, "name"))))
            return [self.pod_json(p, nodes) for p in pods]
        if kind in ("Service", "EndpointSlice", "Endpoints"):
            svcs = [s for s in self._services() if in_ns(str(_get(_get(s, "spec"), "namespace")))]
            svcs.sort(key=lambda s: (str(_get(_get(s, "spec"), "namespace")), str(_get(_get(s, "spec"), "name"))))
            if kind == "Service":
                return [self.service_json(s) for s in svcs]
            pods = self._pods()
            slices = [sl for s in svcs if (sl := self.endpointslice_json(s, pods, nodes)) is not None]
            if kind == "EndpointSlice":
                return slices
            return [self.endpoints_json(sl) for sl in slices]
        pods = self._pods()
        objs = [o for k, o in sorted(self.store.kind(kind).items()) if in_ns(k.split("/", 1)[0])]
        return [self.workload_json(kind, o, pods) for o in objs]

    def namespace_exists(self, ns: str) -> bool:
        return ns in self.store.namespaces

    # ------------------------------------------------------------------------------------------ apply
    def _validate_doc(self, doc: Any, source: str, default_ns: str, ns_flag: bool,
                      new_namespaces: set[str]) -> tuple[str, str, str, dict[str, Any]]:
        if not isinstance(doc, dict):
            raise KubeError(f'error: error validating "{source}": a document is not a mapping (got '
                            f"{type(doc).__name__})")
        kind, api = doc.get("kind"), doc.get("apiVersion")
        if not kind or not api:
            raise KubeError(f'error: error validating "{source}": apiVersion and kind must be set')
        if kind not in SUPPORTED_APPLY_KINDS:
            raise KubeError(f'error: the pi-cluster lab kubectl stand-in does not support kind "{kind}" '
                            f'(apiVersion "{api}") in "{source}"; supported: '
                            + ", ".join(SUPPORTED_APPLY_KINDS))
        if api != SUPPORTED_APPLY_KINDS[kind]:
            raise KubeError(f'error: resource mapping not found for name: "{(doc.get("metadata") or {}).get("name")}"'
                            f' namespace: "" from "{source}": no matches for kind "{kind}" in version "{api}"')
        doc = copy.deepcopy(doc)
        meta = doc.setdefault("metadata", {}) or {}
        doc["metadata"] = meta
        name = meta.get("name")
        if not name:
            raise KubeError(f'error: error when retrieving current configuration from "{source}": '
                            f"resource name may not be empty ({kind})")
        if kind == "Namespace" or kind == "Service":
            ok = bool(_DNS1123_LABEL.match(str(name)))
        else:
            ok = bool(_DNS1123_SUBDOMAIN.match(str(name)))
        if not ok:
            raise KubeError(f'The {kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": a lowercase '
                            "RFC 1123 label must consist of lower case alphanumeric characters or '-'")
        for k, v in (meta.get("labels") or {}).items():
            if not _LABEL_KEY.match(str(k)) or not _LABEL_VALUE.match(str(v)):
                raise KubeError(f'The {kind} "{name}" is invalid: metadata.labels: Invalid value: "{k}={v}"')
        if kind == "Namespace":
            meta.pop("namespace", None)
            return kind, "", str(name), doc
        ns = meta.get("namespace")
        if ns and ns_flag and ns != default_ns:
            raise KubeError(f'error: the namespace from the provided object "{ns}" does not match the namespace '
                            f'"{default_ns}". You must pass \'--namespace={ns}\' to perform this operation.')
        ns = str(ns or default_ns)
        meta["namespace"] = ns
        if ns not in self.store.namespaces and ns not in new_namespaces:
            raise KubeError(f'Error from server (NotFound): error when creating "{source}": namespaces "{ns}" '
                            "not found")
        where = f'{KIND_REF[kind]} "{name}"'
        if kind == "Service":
            self._service_spec(doc, where, check_only=True)
        elif kind == "Pod":
            self.check_pod_spec(doc.get("spec") or {}, where)
            node = (doc.get("spec") or {}).get("nodeName")
            if node and node not in {str(_get(n, "name")) for n in self._nodes()}:
                raise KubeError(f'error: {where}: spec.nodeName "{node}": no such node in the lab')
            if not _DNS1123_SUBDOMAIN.match(str(name)):
                raise KubeError(f'The Pod "{name}" is invalid: metadata.name: Invalid value')
        else:
            spec = doc.get("spec") or {}
            template = spec.get("template") or {}
            tlabels = (template.get("metadata") or {}).get("labels") or {}
            sel = label_selector_from_object(spec.get("selector"), where)
            if not sel:
                raise KubeError(f'The {kind} "{name}" is invalid: spec.selector: Required value')
            if not selector_matches(sel, {str(k): str(v) for k, v in tlabels.items()}):
                raise KubeError(f'The {kind} "{name}" is invalid: spec.template.metadata.labels: Invalid value: '
                                "`selector` does not match template `labels`")
            self.check_pod_spec(template.get("spec") or {}, where)
            if kind == "Deployment":
                r = spec.get("replicas", 1)
                if r is not None and (not isinstance(r, int) or r < 0):
                    raise KubeError(f'The Deployment "{name}" is invalid: spec.replicas: Invalid value: {r!r}')
            old = self.store.kind(kind).get(_key(ns, str(name)))
            if old and old["manifest"]["spec"].get("selector") != spec.get("selector"):
                raise KubeError(f'The {kind} "{name}" is invalid: spec.selector: Invalid value: field is immutable')
        return kind, ns, str(name), doc

    def _named_target_port(self, namespace: str, selector: dict[str, str], port_name: str) -> int | None:
        for kind in ("DaemonSet", "Deployment"):
            for key, obj in self.store.kind(kind).items():
                if key.split("/", 1)[0] != namespace:
                    continue
                tmpl = obj["manifest"]["spec"]["template"]
                labels = {str(k): str(v) for k, v in ((tmpl.get("metadata") or {}).get("labels") or {}).items()}
                if not selector or not selector_matches([Requirement(k, "=", v) for k, v in selector.items()], labels):
                    continue
                for c in tmpl["spec"]["containers"]:
                    for p in c.get("ports") or []:
                        if p.get("name") == port_name:
                            return int(p["containerPort"])
        return None

    def _service_spec(self, doc: dict[str, Any], where: str, check_only: bool = False) -> Any:
        meta, spec = doc["metadata"], doc.get("spec") or {}
        stype = spec.get("type", "ClusterIP")
        if stype not in ("ClusterIP", "NodePort", "LoadBalancer"):
            raise KubeError(f"error: {where}: Service type {stype!r} is not supported by the lab stand-in "
                            "(ClusterIP, NodePort, LoadBalancer)")
        for unsupported in ("externalIPs", "loadBalancerIP", "loadBalancerSourceRanges", "loadBalancerClass",
                            "externalName", "healthCheckNodePort"):
            if spec.get(unsupported):
                raise KubeError(f"error: {where}: spec.{unsupported} is not supported by the lab stand-in")
        if spec.get("publishNotReadyAddresses"):
            raise KubeError(f"error: {where}: spec.publishNotReadyAddresses is not supported by the lab stand-in")
        if spec.get("allocateLoadBalancerNodePorts") is False:
            raise KubeError(f"error: {where}: spec.allocateLoadBalancerNodePorts: false is not supported by the "
                            "lab stand-in")
        if spec.get("internalTrafficPolicy", "Cluster") != "Cluster":
            raise KubeError(f"error: {where}: spec.internalTrafficPolicy {spec['internalTrafficPolicy']!r} is not "
                            "supported by the lab stand-in (Cluster)")
        if any(f != "IPv4" for f in spec.get("ipFamilies") or []):
            raise KubeError(f"error: {where}: spec.ipFamilies other than IPv4 are not supported by the lab stand-in")
        affinity = spec.get("sessionAffinity", "None")
        if affinity not in ("None", "ClientIP"):
            raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.sessionAffinity: Unsupported value: '
                            f'"{affinity}": supported values: "ClientIP", "None"')
        etp = spec.get("externalTrafficPolicy")
        if etp is not None:
            if etp not in ("Cluster", "Local"):
                raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.externalTrafficPolicy: Unsupported '
                                f'value: "{etp}": supported values: "Cluster", "Local"')
            if stype == "ClusterIP":
                raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.externalTrafficPolicy: Invalid '
                                "value: may only be set for externally-accessible services")
        cluster_ip = spec.get("clusterIP")
        headless = cluster_ip == "None"
        if headless and stype != "ClusterIP":
            raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.clusterIPs[0]: Invalid value: "None": '
                            "may not be set to 'None' for LoadBalancer or NodePort services")
        if cluster_ip and not headless:
            try:
                addr = ipaddress.ip_address(cluster_ip)
            except ValueError as e:
                raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.clusterIP: Invalid value: '
                                f'"{cluster_ip}": must be a valid IP address') from e
            cidr = ipaddress.ip_network(str(self.lab.settings.get("service_cidr", "10.43.0.0/16")), strict=False)
            if addr not in cidr:
                raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.clusterIPs: Invalid value: '
                                f'"{cluster_ip}": failed to allocate IP {cluster_ip}: the provided IP '
                                f"({cluster_ip}) is not in the valid range. The range of valid IPs is {cidr}")
        ports_in = spec.get("ports") or []
        if not ports_in and not headless:
            raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.ports: Required value')
        selector = {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}
        ports = []
        seen_names: set[str] = set()
        for i, p in enumerate(ports_in):
            pname = p.get("name")
            if len(ports_in) > 1 and not pname:
                raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.ports[{i}].name: Required value')
            if pname in seen_names:
                raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.ports[{i}].name: Duplicate value: '
                                f'"{pname}"')
            seen_names.add(pname)
            proto = p.get("protocol", "TCP")
            if proto not in ("TCP", "UDP"):
                raise KubeError(f"error: {where}: protocol {proto!r} is not supported by the lab stand-in (TCP, UDP)")
            port = p.get("port")
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.ports[{i}].port: Invalid value: '
                                f"{port!r}: must be between 1 and 65535, inclusive")
            target = p.get("targetPort", port)
            if isinstance(target, str) and not target.isdigit():
                resolved = self._named_target_port(meta["namespace"], selector, target)
                if resolved is None and not check_only:
                    raise KubeError(f"error: {where}: named targetPort {target!r} matches no containerPort of a "
                                    "DaemonSet/Deployment in the namespace; the lab stand-in resolves named target "
                                    "ports from pod templates only")
                target_int = resolved or 0
            else:
                target_int = int(target)
            node_port = p.get("nodePort")
            if node_port is not None:
                if stype == "ClusterIP":
                    raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.ports[{i}].nodePort: '
                                    "Forbidden: may not be used when `type` is 'ClusterIP'")
                if not isinstance(node_port, int) or not NODE_PORT_RANGE[0] <= node_port <= NODE_PORT_RANGE[1]:
                    raise KubeError(f'The Service "{meta["name"]}" is invalid: spec.ports[{i}].nodePort: Invalid '
                                    f"value: {node_port!r}: provided port is not in the valid range. The range of "
                                    f"valid ports is {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}")
            ports.append(self.types.ServicePort(name=pname or None, protocol=proto, port=port,
                                                target_port=target_int, node_port=node_port))
        if check_only:
            return None
        return self.types.ServiceSpec(
            namespace=meta["namespace"], name=meta["name"], type=stype, headless=headless, selector=selector,
            ports=ports, session_affinity=affinity, external_traffic_policy=etp or "Cluster",
            cluster_ip=None if headless or not cluster_ip else cluster_ip,
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()})

    def apply(self, docs: list[tuple[str, Any]], default_ns: str, ns_flag: bool) -> Result:
        """Apply parsed YAML documents [(source, doc)]. Everything is validated before anything changes."""
        with self.lock:
            new_namespaces = {str((d.get("metadata") or {}).get("name")) for _, d in docs
                              if isinstance(d, dict) and d.get("kind") == "Namespace"}
            checked = [self._validate_doc(d, src, default_ns, ns_flag, new_namespaces) for src, d in docs if d]
            if not checked:
                raise KubeError("error: no objects passed to apply")
            lines: dict[int, str] = {}
            ordered = sorted(range(len(checked)), key=lambda i: {"Namespace": 0, "DaemonSet": 1, "Deployment": 1,
                                                                "Pod": 1, "Service": 2}[checked[i][0]])
            to_reconcile: list[tuple[str, str, str]] = []
            services: list[tuple[int, str, str, dict[str, Any], Any, bool]] = []
            for i in ordered:
                kind, ns, name, doc = checked[i]
                ref = KIND_REF[kind]
                if kind == "Namespace":
                    old = self.store.namespaces.get(name)
                    labels = {str(k): str(v) for k, v in (doc["metadata"].get("labels") or {}).items()}
                    if old is None:
                        self.store.namespaces[name] = {"uid": str(uuid.uuid4()), "created": now_rfc3339(),
                                                       "labels": labels, "resourceVersion": self.store.bump()}
                        lines[i] = f"{ref}/{name} created"
                    elif old.get("labels") != labels:
                        old["labels"] = labels
                        old["resourceVersion"] = self.store.bump()
                        lines[i] = f"{ref}/{name} configured"
                    else:
                        lines[i] = f"{ref}/{name} unchanged"
                    self.save()
                elif kind == "Pod":
                    lines[i] = self._apply_pod(ns, name, doc)
                elif kind == "Service":
                    where = f'{ref} "{name}"'
                    spec = self._service_spec(doc, where)
                    objs = self.store.kind("Service")
                    old = objs.get(_key(ns, name))
                    existed = any(str(_get(_get(s, "spec"), "namespace")) == ns
                                  and str(_get(_get(s, "spec"), "name")) == name for s in self._services())
                    if old is not None and old["manifest"] == doc and existed:
                        lines[i] = f"{ref}/{name} unchanged"
                        continue
                    services.append((i, ns, name, doc, spec, existed))  # applied together below
                    continue
                else:
                    objs = self.store.kind(kind)
                    old = objs.get(_key(ns, name))
                    if old is None:
                        objs[_key(ns, name)] = {"manifest": doc, "uid": str(uuid.uuid4()), "created": now_rfc3339(),
                                                "generation": 1, "revision": 1, "resourceVersion": self.store.bump()}
                        lines[i] = f"{ref}/{name} created"
                    elif old["manifest"] == doc:
                        lines[i] = f"{ref}/{name} unchanged"
                    else:
                        if old["manifest"].get("spec") != doc.get("spec"):
                            old["generation"] += 1
                            if old["manifest"]["spec"].get("template") != doc["spec"].get("template"):
                                old["revision"] = old.get("revision", 1) + 1
                        old["manifest"] = doc
                        old["resourceVersion"] = self.store.bump()
                        lines[i] = f"{ref}/{name} configured"
                    self.save()
                    to_reconcile.append((kind, ns, name))
            if services:  # every Service in one lab call: one rules re-sync, in order, stopping at a refusal
                try:
                    states = self.lab.apply_services([spec for _i, _ns, _n, _d, spec, _e in services])
                except Exception as e:
                    states = [e]
                for (i, ns, name, doc, _spec, existed), state in zip(services, states, strict=False):
                    if isinstance(state, Exception):
                        self.save()
                        raise KubeError(f'Error from server: error when applying "{name}": {state}') from state
                    self.store.kind("Service")[_key(ns, name)] = {"manifest": doc, "resourceVersion": self.store.bump()}
                    lines[i] = f"{KIND_REF['Service']}/{name} {'configured' if existed else 'created'}"
                self.save()
            for kind, ns, name in to_reconcile:
                self.reconcile(kind, ns, name)
            return Result(0, "".join(lines[i] + "\n" for i in range(len(checked))))

    def _apply_pod(self, ns: str, name: str, doc: dict[str, Any]) -> str:
        """A bare Pod (no controller): started on spec.nodeName, else on the least busy node that fits."""
        key = _key(ns, name)
        exists = any(_get(p, "namespace") == ns and _get(p, "name") == name for p in self._pods())
        if exists:
            meta = self.store.pods.get(key) or {}
            if meta.get("manifest") == doc:
                return f"pod/{name} unchanged"
            raise KubeError(f'The Pod "{name}" is invalid: spec: Forbidden: pod updates are not supported by the '
                            "lab stand-in (delete the pod and apply it again)")
        spec = doc.get("spec") or {}
        template = {"metadata": {"labels": (doc["metadata"].get("labels") or {})}, "spec": spec}
        where = f'pod "{name}"'
        node = spec.get("nodeName")
        if not node:
            pods = self._pods()
            names = [str(_get(n, "name")) for n in self._nodes()]
            nodes = {str(_get(n, "name")): n for n in self._nodes()}
            cands = [n for n in names if self._node_affinity_ok(spec, nodes[n], where)
                     and self._pod_affinity_ok(ns, spec, n, pods, set(), where)]
            if not cands:
                raise KubeError(f"error: {where}: 0/{len(names)} nodes are available (node selector or affinity)")
            node = min(cands, key=lambda n: (sum(1 for p in pods if _get(p, "node") == n), names.index(n)))
        try:
            self._create_pod(ns, "Pod", None, name, str(node), template, self.template_hash(template), {})
        except Exception as e:
            raise KubeError(f'Error from server: error when creating pod "{name}": {e}') from e
        self.store.pods[key]["manifest"] = doc
        self.save()
        return f"pod/{name} created"

    # ------------------------------------------------------------------------------------------ delete
    def delete(self, kind: str, namespace: str, names: list[str], ignore_not_found: bool) -> Result:
        with self.lock:
            out, err, code = [], [], 0
            for name in names:
                try:
                    self._delete_one(kind, namespace, name)
                    out.append(f'{KIND_REF[kind]} "{name}" deleted\n')
                except KubeError as e:
                    if e.code == 404 and ignore_not_found:
                        continue
                    err.append(e.message + "\n")
                    code = 1
            return Result(code, "".join(out), "".join(err))

    def _not_found(self, kind: str, name: str) -> KubeError:
        return KubeError(f'Error from server (NotFound): {PLURAL[kind]} "{name}" not found', code=404)

    def _delete_one(self, kind: str, namespace: str, name: str) -> None:
        if kind == "Pod":
            pod = next((p for p in self._pods() if _get(p, "namespace") == namespace and _get(p, "name") == name),
                       None)
            if pod is None:
                raise self._not_found(kind, name)
            meta = self.store.pods.get(_key(namespace, name))
            if meta and meta.get("owner"):
                # the owning controller starts a replacement while the old pod terminates (new name, new IP)
                self.reconcile(meta["owner"]["kind"], namespace, meta["owner"]["name"],
                               replacing={_key(namespace, name)})
            self._delete_lab_pod(namespace, name)
        elif kind == "Service":
            if not any(str(_get(_get(s, "spec"), "namespace")) == namespace and str(_get(_get(s, "spec"), "name"))
                       == name for s in self._services()):
                raise self._not_found(kind, name)
            self.lab.delete_service(namespace, name)
            self.store.kind("Service").pop(_key(namespace, name), None)
            self.save()
        elif kind in ("DaemonSet", "Deployment"):
            if self.store.kind(kind).pop(_key(namespace, name), None) is None:
                raise self._not_found(kind, name)
            self.save()
            owned = [str(_get(p, "name")) for p in self._owned_pods(kind, namespace, name, self._pods())]
            if owned:
                self.lab.delete_pods([(namespace, p) for p in owned])
                for p in owned:
                    self.store.pods.pop(_key(namespace, p), None)
                self.save()
            self.reconcile_errors.pop(f"{kind}/{namespace}/{name}", None)
        elif kind == "Namespace":
            if name not in self.store.namespaces:
                raise self._not_found(kind, name)
            if name in SYSTEM_NAMESPACES:
                raise KubeError(f'Error from server (Forbidden): namespaces "{name}" is forbidden: this namespace '
                                "may not be deleted")
            # everything in it at once: its workloads, then all its pods in one batch, then all its Services
            for wkind in ("DaemonSet", "Deployment"):
                for key in [k for k in self.store.kind(wkind) if k.split("/", 1)[0] == name]:
                    self.store.kind(wkind).pop(key, None)
                    self.reconcile_errors.pop(f"{wkind}/{key}", None)
            self.save()
            pods = [str(_get(p, "name")) for p in self._pods() if _get(p, "namespace") == name]
            if pods:
                self.lab.delete_pods([(name, p) for p in pods])
                for p in pods:
                    self.store.pods.pop(_key(name, p), None)
                self.save()
            svcs = [str(_get(_get(s, "spec"), "name")) for s in self._services()
                    if str(_get(_get(s, "spec"), "namespace")) == name]
            if svcs:
                self.lab.delete_services([(name, s) for s in svcs])
                for s in svcs:
                    self.store.kind("Service").pop(_key(name, s), None)
            del self.store.namespaces[name]
            self.save()
        else:
            raise KubeError(f'error: the pi-cluster lab kubectl stand-in cannot delete {PLURAL[kind]} '
                            "(supported: pod, service, namespace, daemonset, deployment)")

    # ------------------------------------------------------------------------------------------ rollout / wait
    def rollout_state(self, kind: str, namespace: str, name: str) -> tuple[bool, str]:
        with self.lock:
            obj = self.store.kind(kind).get(_key(namespace, name))
            if obj is None:
                raise self._not_found(kind, name)
            st = self.workload_status(kind, obj)
            err = self.reconcile_errors.get(f"{kind}/{namespace}/{name}")
            note = f" (lab: {err})" if err else ""
            if kind == "DaemonSet":
                want, upd, avail = st["desiredNumberScheduled"], st["updatedNumberScheduled"], st["numberAvailable"]
                if upd < want:
                    return False, (f'Waiting for daemon set "{name}" rollout to finish: {upd} out of {want} new pods '
                                   f"have been updated...{note}")
                if avail < want:
                    return False, (f'Waiting for daemon set "{name}" rollout to finish: {avail} of {want} updated '
                                   f"pods are available...{note}")
                return True, f'daemon set "{name}" successfully rolled out'
            replicas = obj["manifest"]["spec"].get("replicas")
            replicas = 1 if replicas is None else int(replicas)
            upd, total, avail = st["updatedReplicas"], st["replicas"], st.get("availableReplicas", 0)
            if upd < replicas:
                return False, (f'Waiting for deployment "{name}" rollout to finish: {upd} out of {replicas} new '
                               f"replicas have been updated...{note}")
            if total > upd:
                return False, (f'Waiting for deployment "{name}" rollout to finish: {total - upd} old replicas are '
                               f"pending termination...{note}")
            if avail < upd:
                return False, (f'Waiting for deployment "{name}" rollout to finish: {avail} of {upd} updated '
                               f"replicas are available...{note}")
            return True, f'deployment "{name}" successfully rolled out'

    def rollout_status(self, kind: str, namespace: str, name: str, timeout: float, watch: bool = True) -> Result:
        deadline = time.monotonic() + timeout if timeout > 0 else None
        shown: list[str] = []
        while True:
            done, msg = self.rollout_state(kind, namespace, name)
            if done:
                return Result(0, "".join(m + "\n" for m in shown) + msg + "\n")
            if not shown or shown[-1] != msg:
                shown.append(msg)
            if not watch:
                return Result(0, msg + "\n")
            if deadline is not None and time.monotonic() >= deadline:
                return Result(1, "".join(m + "\n" for m in shown), "error: timed out waiting for the condition\n")
            self.reconcile_all()
            self.sleep(0.2)

    def wait_pods(self, namespace: str | None, names: list[str], selector: list[Requirement], all_pods: bool,
                  condition: str, timeout: float) -> Result:
        """`kubectl wait --for=condition=Ready|delete pod ...`."""
        deadline = time.monotonic() + timeout

        def matching() -> list[Any]:
            with self.lock:
                pods = [p for p in self._pods() if namespace is None or _get(p, "namespace") == namespace]
            if names:
                return [p for p in pods if _get(p, "name") in names]
            return [p for p in pods if selector_matches(selector, dict(_get(p, "labels") or {}))]

        if condition == "delete":
            targets = matching()
            if names:
                found = {_get(p, "name") for p in targets}
                missing = [n for n in names if n not in found]
                if missing:
                    return Result(1, "", f'Error from server (NotFound): pods "{missing[0]}" not found\n')
            if not targets:
                return Result(1, "", "error: no matching resources found\n")
            while True:
                left = {(_get(p, "namespace"), _get(p, "name")) for p in matching()} & {
                    (_get(p, "namespace"), _get(p, "name")) for p in targets}
                if not left:
                    return Result(0, "".join(f"pod/{_get(p, 'name')} condition met\n" for p in targets))
                if time.monotonic() >= deadline:
                    n = sorted(left)[0][1]
                    return Result(1, "", f"error: timed out waiting for the condition on pods/{n}\n")
                self.sleep(0.2)
        while True:
            pods = matching()
            if names:
                found = {_get(p, "name") for p in pods}
                missing = [n for n in names if n not in found]
                if missing and time.monotonic() >= deadline:
                    return Result(1, "", f'Error from server (NotFound): pods "{missing[0]}" not found\n')
            if not pods and not names:
                return Result(1, "", "error: no matching resources found\n")
            if pods and all(_get(p, "ready") for p in pods) and not (names and len(pods) < len(set(names))):
                pods.sort(key=lambda p: str(_get(p, "name")))
                return Result(0, "".join(f"pod/{_get(p, 'name')} condition met\n" for p in pods))
            if time.monotonic() >= deadline:
                bad = sorted(str(_get(p, "name")) for p in pods if not _get(p, "ready"))
                return Result(1, "", f"error: timed out waiting for the condition on pods/{bad[0] if bad else '?'}\n")
            self.sleep(0.2)

    def version_json(self) -> dict[str, Any]:
        v = self._k3s_version()
        m = re.match(r"v(\d+)\.(\d+)", v)
        info = {"major": m.group(1) if m else "1", "minor": m.group(2) if m else "31", "gitVersion": v,
                "platform": "linux/arm64", "goVersion": "go1.22", "compiler": "gc",
                "gitCommit": "pi-cluster-lab-test-double", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z"}
        return {"clientVersion": info, "kustomizeVersion": "v5.4.2", "serverVersion": dict(info)}


def load_yaml_docs(text: str, source: str) -> list[tuple[str, Any]]:
    """YAML/JSON documents; a `kind: List` (or `...List`) with `items` is expanded into its items."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise KubeError(f"error: error parsing {source}: {e}") from e
    out: list[tuple[str, Any]] = []
    for d in docs:
        if isinstance(d, dict) and str(d.get("kind", "")).endswith("List") and isinstance(d.get("items"), list):
            out += [(source, item) for item in d["items"] if item is not None]
        else:
            out.append((source, d))
    return out
