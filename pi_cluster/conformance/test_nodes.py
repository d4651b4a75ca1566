"""nodes: SSH reachable, Ready in the API under the inventory name and IP, architecture, memory cgroup,
swap off, k3s unit active, clock skew across nodes, etcd servers not on SD cards (warning).

Run alone: ``pi-cluster check --only nodes`` or ``pytest --pyargs pi_cluster.conformance -k nodes --inventory INV``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pi_cluster.conformance import workload as wl
from pi_cluster.conformance.report import Result

if TYPE_CHECKING:
    from pi_cluster.conformance.run import CheckRun

SCENARIO = "nodes"
ETCD_DIR = "/var/lib/rancher/k3s/server/db/etcd"


def plan(run: CheckRun) -> None:
    for n in run.cluster.nodes:
        add = lambda key, probe, _n=n.name: run.add(SCENARIO, _n, key, probe)  # noqa: E731
        add("cgroup2", {"kind": "read", "path": "/sys/fs/cgroup/cgroup.controllers"})
        add("cgroup1", {"kind": "read", "path": "/proc/cgroups"})
        add("swaps", {"kind": "read", "path": "/proc/swaps"})
        add("systemd", {"kind": "mount", "path": "/run/systemd/system"})
        add("unit", {"kind": "cmd", "argv": ["systemctl", "is-active", "k3s" if n.role == "server" else "k3s-agent"],
                     "timeout": 5})
        if n.role == "server":
            add("etcd", {"kind": "mount", "path": ETCD_DIR})


def _memory_cgroup(run: CheckRun, node: str) -> tuple[bool | None, str]:
    v2 = run.res(SCENARIO, node, "cgroup2") or {}
    if v2.get("content") is not None:
        ctrls = v2["content"].split()
        return "memory" in ctrls, f"cgroup v2 controllers: {' '.join(ctrls) or '(none)'}"
    v1 = run.res(SCENARIO, node, "cgroup1") or {}
    for line in (v1.get("content") or "").splitlines():
        f = line.split()
        if f and f[0] == "memory":
            return f[-1] == "1", f"cgroup v1 memory enabled={f[-1]}"
    return False, "no memory controller in /sys/fs/cgroup/cgroup.controllers or /proc/cgroups"


def evaluate(run: CheckRun) -> list[Result]:
    out: list[Result] = []
    api: dict[str, dict[str, Any]] = wl.node_summary(run.w.nodes) if run.w else {}
    supported = wl.image_arches(run.options.image)
    skews: dict[str, float] = {}
    for n in run.cluster.nodes:
        name = n.name
        R = lambda check, status, _name=name, **kw: Result(SCENARIO, _name, check, status, **kw)  # noqa: E731
        err = run.unreachable(name)
        out.append(R("reachable", "fail" if err else "pass", target=f"{n.user or 'root'}@{n.address}:{n.port}",
                     expected="SSH login and the probe runner work", seen=err or "SSH ok, probes ran"))
        info = api.get(name)
        if info is None:
            out.append(R("registered", "fail", target="kubectl get nodes", expected=f"a node named {name}",
                         seen=f"no node {name} in the API (nodes: {', '.join(sorted(api)) or 'none'})"))
        else:
            ip_ok = info["ip"] == n.address
            out.append(R("registered", "pass" if ip_ok else "fail", target="kubectl get nodes",
                         expected=f"InternalIP {n.address}", seen=f"InternalIP {info['ip']}", explains=False))
            out.append(R("ready", "pass" if info["ready"] else "fail", target="kubectl get nodes",
                         expected="Ready=True", seen="Ready" if info["ready"] else "not Ready"))
            arch_ok = supported is None or info["arch"] in supported
            out.append(R("arch", "pass" if arch_ok else "fail", target=run.options.image,
                         expected=f"one of {', '.join(sorted(supported))}" if supported else "any",
                         seen=str(info["arch"]) + ("" if supported else " (image architectures unknown)"),
                         explains=False))
        if run.w and name in run.w.missing:
            out.append(R("probe pods", "fail", target=f"namespace {run.w.namespace}",
                         expected="echo and client pods ready", seen=run.w.missing[name]))
        elif run.w and run.w.namespace:
            out.append(R("probe pods", "pass", target=f"namespace {run.w.namespace}",
                         expected="echo and client pods ready", seen="ready"))
        if err:
            for check in ("memory cgroup", "swap off", "k3s unit", "clock"):
                out.append(run.not_probed(SCENARIO, name, check, explains=False))
            continue
        ok, seen = _memory_cgroup(run, name)
        out.append(R("memory cgroup", "pass" if ok else "fail", target="/sys/fs/cgroup", explains=False,
                     expected="memory controller enabled (cmdline: cgroup_memory=1 cgroup_enable=memory)",
                     seen=seen))
        swaps = (run.res(SCENARIO, name, "swaps") or {}).get("content")
        if swaps is None:
            out.append(R("swap off", "skip", target="/proc/swaps", seen="/proc/swaps unreadable", explains=False))
        else:
            active = [ln.split()[0] for ln in swaps.splitlines()[1:] if ln.strip()]
            out.append(R("swap off", "fail" if active else "pass", target="/proc/swaps", expected="no active swap",
                         seen=f"swap on {', '.join(active)}" if active else "no swap", explains=False))
        systemd = (run.res(SCENARIO, name, "systemd") or {}).get("exists")
        unit = run.res(SCENARIO, name, "unit") or {}
        unit_name = "k3s" if n.role == "server" else "k3s-agent"
        if not systemd:
            out.append(R("k3s unit", "skip", target=f"{unit_name}.service", explains=False,
                         seen="systemd is not running on this node (no /run/systemd/system): unit not checkable"))
        else:
            state = (unit.get("stdout") or unit.get("error") or "").strip()
            out.append(R("k3s unit", "pass" if state == "active" else "fail", target=f"{unit_name}.service",
                         expected="active", seen=state or "unknown", explains=False))
        b = run.batches.get(name)
        if b is not None and b.skew is not None:
            skews[name] = b.skew
        if n.role == "server":
            etcd = run.res(SCENARIO, name, "etcd") or {}
            if not etcd.get("exists"):
                out.append(R("etcd storage", "skip", target=ETCD_DIR, seen="no embedded etcd on this node",
                             explains=False))
            else:
                dev = str(etcd.get("device") or "")
                sd = "mmcblk" in dev
                out.append(R("etcd storage", "pass", target=ETCD_DIR, expected="etcd on SSD/NVMe",
                             seen=(f"warning: etcd is on an SD card ({dev}): expect slow writes and wear"
                                   if sd else f"on {dev}"), explains=False))
    if skews:
        ref = sorted(skews.values())[len(skews) // 2]
        for name, s in skews.items():
            d = s - ref
            ok = abs(d) <= run.options.max_skew
            out.append(Result(SCENARIO, name, "clock", "pass" if ok else "fail", target="clock vs other nodes",
                              expected=f"within {run.options.max_skew:g} s of the other nodes",
                              seen=f"{d:+.2f} s from the median node (workstation offset {s:+.2f} s)",
                              explains=False))
    return out


def test_nodes(host: Any, conformance: Any) -> None:
    """Node health the rest depends on."""
    conformance.verdict(SCENARIO, host)
