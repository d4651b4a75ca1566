"""Talking to the cluster: ``k3s kubectl ... -o json`` on the first reachable server, over SSH.

No kubeconfig or API access from the workstation is needed; k3s ships kubectl.

>>> kube = Kube.connect(pool, cluster.servers)               # doctest: +SKIP
>>> [n["metadata"]["name"] for n in kube.get("nodes")]       # doctest: +SKIP
['node1', 'node2', 'node3']
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from typing import Any

from pi_cluster.remote import Pool

_MARK = "--pi-cluster-kubectl-rc--"


class KubeError(Exception):
    """kubectl could not be run or failed (message names the server and the command)."""


class Kube:
    def __init__(self, pool: Pool, server: str, timeout: float = 30) -> None:
        self.pool, self.server, self.timeout = pool, server, timeout

    @classmethod
    def connect(cls, pool: Pool, servers: Iterable[str], timeout: float = 30) -> Kube:
        """The first server on which ``k3s kubectl get nodes`` works; KubeError listing why each failed."""
        problems = []
        for name in servers:
            kube = cls(pool, name, timeout)
            try:
                kube.kubectl(["version", "--client"])
                return kube
            except KubeError as e:
                problems.append(str(e))
        raise KubeError("no server could run `k3s kubectl`: " + "; ".join(problems or ["no servers in inventory"]))

    def kubectl(self, args: list[str], stdin: str | None = None, timeout: float | None = None) -> str:
        target = self.pool.targets[self.server]
        cmd = target.privileged("k3s kubectl " + " ".join(shlex.quote(a) for a in args))
        r = self.pool.run(self.server, cmd, stdin=stdin, timeout=timeout or self.timeout)
        what = f"`k3s kubectl {' '.join(args[:3])}` on {self.server}"
        if r.error:
            raise KubeError(f"{what}: {r.error}")
        if r.rc != 0:
            msg = (r.stderr.strip() or r.stdout.strip() or f"exit status {r.rc}").splitlines()[-1]
            if "sudo" in r.stderr and "password" in r.stderr:
                msg = "sudo needs a password (passwordless sudo or root is needed)"
            raise KubeError(f"{what} failed: {msg[:300]}")
        return r.stdout

    def get(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        out = self.kubectl(args)
        try:
            data = json.loads(out)
        except ValueError as e:
            raise KubeError(f"`k3s kubectl get {kind}` on {self.server} did not return JSON") from e
        items = data.get("items")
        return list(items) if isinstance(items, list) else [data]

    def get_many(self, queries: list[tuple[str, str | None]]) -> list[list[dict[str, Any]]]:
        """Several ``get KIND [-n NS] -o json`` in ONE SSH round trip (kubectl runs once per kind)."""
        target = self.pool.targets[self.server]
        parts = []
        for kind, ns in queries:
            args = ["get", kind, "-o", "json"] + (["-n", ns] if ns else [])
            cmd = target.privileged("k3s kubectl " + " ".join(shlex.quote(a) for a in args))
            parts.append(f"{cmd}; printf '\\n{_MARK} %d\\n' $?")
        r = self.pool.run(self.server, "; ".join(parts), timeout=self.timeout)
        what = f"`k3s kubectl get {','.join(k for k, _ in queries)}` on {self.server}"
        if r.error:
            raise KubeError(f"{what}: {r.error}")
        chunks: list[tuple[str, int]] = []
        buf: list[str] = []
        for line in r.stdout.splitlines():
            if line.startswith(_MARK + " "):
                chunks.append(("\n".join(buf), int(line.split()[1])))
                buf = []
            else:
                buf.append(line)
        if len(chunks) != len(queries):
            raise KubeError(f"{what}: unexpected output")
        out = []
        for (text, rc), (kind, _ns) in zip(chunks, queries, strict=True):
            if rc != 0:
                msg = (r.stderr.strip().splitlines() or [f"exit status {rc}"])[-1]
                raise KubeError(f"`k3s kubectl get {kind}` on {self.server} failed: {msg[:300]}")
            try:
                items = json.loads(text).get("items")
            except ValueError as e:
                raise KubeError(f"`k3s kubectl get {kind}` on {self.server} did not return JSON") from e
            out.append(list(items or []))
        return out

    def apply(self, manifest: str) -> None:
        self.kubectl(["apply", "-f", "-"], stdin=manifest)

    def delete_namespace(self, namespace: str) -> None:
        self.kubectl(["delete", "namespace", namespace, "--ignore-not-found", "--wait=false"])

    def delete_pod(self, namespace: str, name: str) -> None:
        self.kubectl(["delete", "pod", name, "-n", namespace, "--wait=false"])


def node_ready(node: dict[str, Any]) -> bool:
    for c in node.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def node_internal_ip(node: dict[str, Any]) -> str | None:
    for a in node.get("status", {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            return str(a.get("address"))
    return None


def pod_ready(pod: dict[str, Any]) -> bool:
    st = pod.get("status", {})
    if st.get("phase") != "Running" or not st.get("podIP"):
        return False
    conds = st.get("conditions")
    if not conds:
        return True
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
