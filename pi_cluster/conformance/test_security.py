"""security: the kubelet (10250) on every node and the API server (6443) on every server refuse anonymous
requests (HTTP 401 or 403), probed from the workstation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pi_cluster.conformance.batch import WORKSTATION
from pi_cluster.conformance.report import Result

if TYPE_CHECKING:
    from pi_cluster.conformance.run import CheckRun

SCENARIO = "security"
KUBELET = 10250


def plan(run: CheckRun) -> None:
    for n in run.cluster.nodes:
        run.add(SCENARIO, WORKSTATION, f"kubelet {n.name}", {"kind": "http", "https": True, "host": n.address,
                                                            "port": KUBELET, "path": "/pods", "timeout": 3})
        if n.role == "server":
            run.add(SCENARIO, WORKSTATION, f"api {n.name}", {"kind": "http", "https": True, "host": n.address,
                                                            "port": run.cluster.settings.api_port,
                                                            "path": "/api/v1/namespaces", "timeout": 3})


def _judge(node: str, check: str, target: str, res: dict[str, Any] | None) -> Result:
    t = ((res or {}).get("tries") or [{}])[0]
    kw: dict[str, Any] = {"src": WORKSTATION, "target": target, "expected": "HTTP 401 or 403 for an anonymous request",
                          "via": [], "explains": False}
    if t.get("ok"):
        status = t.get("status")
        ok = status in (401, 403)
        return Result(SCENARIO, node, check, "pass" if ok else "fail", seen=f"HTTP {status}"
                      + ("" if ok else " (anonymous access allowed!)"), **kw)
    err = str(t.get("error") or (res or {}).get("error") or "no result")
    if "refused" in err:
        return Result(SCENARIO, node, check, "skip", seen=f"nothing listens on {target} ({err}): not checkable",
                      **kw)
    return Result(SCENARIO, node, check, "fail", seen=err, **kw)


def evaluate(run: CheckRun) -> list[Result]:
    out: list[Result] = []
    for n in run.cluster.nodes:
        out.append(_judge(n.name, "kubelet anonymous", f"https://{n.address}:{KUBELET}/pods",
                          run.res(SCENARIO, WORKSTATION, f"kubelet {n.name}")))
        if n.role == "server":
            port = run.cluster.settings.api_port
            out.append(_judge(n.name, "api anonymous", f"https://{n.address}:{port}/api/v1/namespaces",
                              run.res(SCENARIO, WORKSTATION, f"api {n.name}")))
    return out


def test_security(host: Any, conformance: Any) -> None:
    """No anonymous access to the kubelet or the API."""
    conformance.verdict(SCENARIO, host)
