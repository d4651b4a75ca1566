"""Lab lifecycle: idempotent up, two labs at once, clean down (also after a crash), clear errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import lab_name

from pi_cluster.lab import ContainerSpec, Lab, LabError, ServicePort, ServiceSpec
from pi_cluster.lab.core import base_dir
from pi_cluster.lab.nsutil import alive, list_netns, require_tools

pytestmark = pytest.mark.lab
CLI = [sys.executable, "-m", "pi_cluster.cli.main", "lab"]


def leftovers(name: str) -> list[str]:
    found = [f"netns {ns}" for ns in list_netns() if ns.startswith(f"{name}-")]
    if Path(f"/sys/class/net/{name}-ws").exists():
        found.append(f"link {name}-ws")
    found += [f"/etc/netns/{d}" for d in (os.listdir("/etc/netns") if os.path.isdir("/etc/netns") else [])
              if d.startswith(f"{name}-")]
    if (base_dir() / name).exists():
        found.append(f"state {base_dir() / name}")
    return found


def test_up_is_idempotent_and_down_leaves_nothing(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab("a", nodes=2)
    pids = dict(lab._st.pids)
    again = Lab.up(name=lab.name, nodes=2)
    assert again._st.pids == pids and again.lan == lab.lan
    with pytest.raises(LabError, match="already up with 2 nodes"):
        Lab.up(name=lab.name, nodes=3)
    lab.add_pod("default", "p1", "node2", {"a": "b"}, [])
    named = {**{f"{k} {p}": p for k, p in lab._st.pids.items()},
             **{f"pod {pod.name} {p}": p for pod in lab.pods() for p in pod.pids}}
    every_pid = list(named.values())
    assert [k for k, p in named.items() if not alive(p)] == [], "lab processes died (see the lab's logs/)"
    Lab.down(lab.name)
    assert leftovers(lab.name) == []
    deadline = time.monotonic() + 3
    while any(alive(p) for p in every_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in every_pid)
    assert subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout.count(lab.lan[:-4]) == 0


def test_two_labs_at_once_on_their_own_lans(make_lab: Callable[..., Lab]) -> None:
    a, b = make_lab("b", nodes=1), make_lab("c", nodes=2, proxy_mode="nftables")
    assert a.lan != b.lan
    for lab in (a, b):
        for n in lab.nodes:
            with socket.create_connection((n.address, 22), timeout=3) as conn:
                assert conn.recv(64).startswith(b"SSH-2.0")
    with pytest.raises(LabError, match="already taken"):
        Lab.up(name=lab_name("d"), nodes=1, lan=a.lan)
    assert leftovers(lab_name("d")) == []
    Lab.down(a.name)
    Lab.down(b.name)


def test_down_after_a_crashed_up(lab_ok: None) -> None:
    name = lab_name("k")
    proc = subprocess.Popen([*CLI, "up", "--name", name, "--nodes", "3"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not list_netns() or not any(ns.startswith(f"{name}-node") for ns in list_netns()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # the CLI dies mid-build
    proc.wait()
    assert leftovers(name)
    r = subprocess.run([*CLI, "down", "--name", name], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert leftovers(name) == []


def test_clear_errors(lab_ok: None) -> None:
    name = lab_name("e")
    r = subprocess.run(["unshare", "--user", *CLI, "up", "--name", name], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 2 and "needs root" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(LabError, match=r"missing system tool.*no-such-tool-x") as e:
        require_tools(["ip", "no-such-tool-x"])
    assert e.value.hint and "apt-get install" in e.value.hint
    r = subprocess.run([*CLI, "up", "--name", "Bad_Name"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "bad lab name" in r.stderr
    r = subprocess.run([*CLI, "up", "--name", name, "--proxy-mode", "ipvs"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 2 and "unknown proxy mode" in r.stderr
    r = subprocess.run([*CLI, "status", "--name", name], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "not up" in r.stderr
    # a stray namespace with the lab's prefix and no lab state: a name collision, nothing touched
    subprocess.run(["ip", "netns", "add", f"{name}-node1"], check=True)
    try:
        r = subprocess.run([*CLI, "up", "--name", name], capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 2 and "collides" in r.stderr
        assert f"{name}-node1" in list_netns()
    finally:
        subprocess.run(["ip", "netns", "del", f"{name}-node1"], check=False)
    assert leftovers(name) == []


def test_status_json_through_the_cli(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab("s", nodes=2, servers=1, proxy_mode="iptables-legacy")
    r = subprocess.run([*CLI, "status", "--name", lab.name, "--json"], capture_output=True, text=True, timeout=60,
                       check=False)
    st = json.loads(r.stdout)
    assert st["proxy_mode"] == "iptables-legacy"
    assert Path(st["inventory"], "hosts.yml").is_file()
    assert [(n["name"], n["role"], n["netns"]) for n in st["nodes"]] == [
        ("node1", "server", f"{lab.name}-node1"), ("node2", "agent", f"{lab.name}-node2")]
    assert all(n["address"].startswith(lab.lan.rsplit(".", 1)[0]) for n in st["nodes"])
    legacy = subprocess.run(["ip", "netns", "exec", f"{lab.name}-node2", "iptables-legacy-save", "-t", "nat"],
                            capture_output=True, text=True, check=False).stdout
    assert "KUBE-SVC-TCOU7JCQXEZGVUNU" in legacy
    # the legacy backend carries Service traffic too
    for n in lab.nodes:
        lab.add_pod("probe", f"echo-{n.name}", n.name, {"app": "echo"}, [ContainerSpec()])
    s = lab.apply_service(ServiceSpec(namespace="probe", name="web", selector={"app": "echo"},
                                      ports=[ServicePort(port=80, target_port=8080)]))
    out = subprocess.run(["ip", "netns", "exec", f"{lab.name}-node2", "sh", "-c",
                          f"for i in $(seq 20); do curl -s -m 2 {s.spec.cluster_ip}/hostname; echo; done"],
                         capture_output=True, text=True, timeout=60, check=False).stdout.split()
    assert len(out) == 20 and set(out) == {"echo-node1", "echo-node2"}, out
    r = subprocess.run([*CLI, "exec", "node2", "--name", lab.name, "--", "sh", "-c", "hostname; cat /etc/hostname"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.stdout.split() == ["node2", "node2"], r.stderr
    Lab.down(lab.name)
