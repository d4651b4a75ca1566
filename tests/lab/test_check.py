"""`pi-cluster check` end to end on the lab: a healthy lab passes in iptables and nftables modes, each
fault fails exactly the checks it should (named per node, each failure naming its cause), Ctrl-C leaves no
probe namespace behind, and secrets never reach the output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pi_cluster.conformance.report import SCENARIOS
from pi_cluster.lab import Lab

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "pi_cluster.cli.main", "check"]


def check(lab: Lab, tmp: Path, *extra: str, timeout: float = 180) -> tuple[int, dict[str, Any], str]:
    out = tmp / "report.json"
    p = subprocess.run([*CLI, "-i", str(lab.inventory_path), "--json", str(out), *extra], capture_output=True,
                       text=True, timeout=timeout)
    data = json.loads(out.read_text()) if out.exists() else {}
    return p.returncode, data, p.stdout + p.stderr


def failures(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in data["results"] if r["status"] == "fail" and not r["info"]]


def probe_namespaces(lab: Lab) -> list[str]:
    p = subprocess.run([*lab.exec_argv(lab.nodes[0].name), "k3s", "kubectl", "get", "namespaces", "-o", "json"],
                       capture_output=True, text=True, timeout=60, check=True)
    return [i["metadata"]["name"] for i in json.loads(p.stdout)["items"]
            if i["metadata"]["name"].startswith("pi-cluster-probe-")]


# Scenarios whose logic does not depend on the proxy mode run once, on the iptables lab.
ONCE = pytest.mark.parametrize("lab", ["iptables"], indirect=True)


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request: pytest.FixtureRequest, make_lab: Callable[..., Lab]) -> Lab:
    return make_lab("c" + request.param[0], nodes=3, proxy_mode=request.param)


@pytest.fixture
def healed(lab: Lab) -> Lab:
    lab.heal()
    yield lab
    lab.heal()


def test_healthy_lab_passes_every_scenario(lab: Lab, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    code, data, out = check(lab, tmp_path, "--junit", str(junit))
    assert code == 0, out
    assert data["summary"].startswith("PASSED") and not failures(data)
    cases = {tc.get("name") for tc in ET.parse(junit).getroot().iter("testcase")}
    for s in SCENARIOS:
        for n in lab.nodes:
            assert f"{s}[{n.name}]" in cases, f"no testcase for ({s}, {n.name})"
    skipped = [r for r in data["results"] if r["status"] == "skip"]
    assert all(r["seen"] for r in skipped), "every skip carries its reason"
    assert probe_namespaces(lab) == []  # removed at the end


@ONCE
def test_plain_pytest_runs_the_same_checks(lab: Lab, tmp_path: Path) -> None:
    js = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "pi_cluster.conformance.plugin", "-p",
                        "no:cacheprovider", "-q", "--pyargs",
                        "pi_cluster.conformance", "--inventory", str(lab.inventory_path), "--pi-only", "nodes,proxy",
                        "--pi-json", str(js)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:]
    assert f"{2 * len(lab.nodes)} passed" in p.stdout
    assert {r["scenario"] for r in json.loads(js.read_text())["results"]} == {"nodes", "proxy"}


def test_broken_service_rules_on_one_node(healed: Lab, tmp_path: Path) -> None:
    healed.fault("drop-rules", node="node2")
    code, data, out = check(healed, tmp_path)
    assert code == 1, out
    fails = failures(data)
    assert fails
    for r in fails:  # only checks involving node2 fail, and each one's cause is node2's rules
        assert "node2" in {r["node"], r["src"], *r["via"]}, r
        if r["scenario"] == "proxy":
            assert r["node"] == "node2" and "absent from node2" in r["seen"]
        else:
            assert r["cause"] and r["cause"].startswith("proxy node2"), r
    assert {r["scenario"] for r in fails} >= {"proxy", "clusterip", "nodeport"}
    first = next(line for line in out.splitlines() if line.startswith("FAIL"))
    assert "(proxy " in first  # the first failure the user reads is the cause


def test_cluster_dns_stopped(healed: Lab, tmp_path: Path) -> None:
    healed.fault("stop-dns")
    code, data, out = check(healed, tmp_path)
    assert code == 1, out
    fails = failures(data)
    assert fails and {r["scenario"] for r in fails} == {"dns"}
    assert all("did not resolve" in r["seen"] for r in fails)
    assert {r["node"] for r in fails} == {n.name for n in healed.nodes}


@ONCE
def test_cut_off_node(healed: Lab, tmp_path: Path) -> None:
    healed.fault("cut-node", node="node3")
    t0 = time.monotonic()
    code, data, out = check(healed, tmp_path, "--timeout", "60")
    elapsed = time.monotonic() - t0
    assert code == 1, out
    assert elapsed < 60 + 15, f"run took {elapsed:.0f} s with --timeout 60"
    reach = next(r for r in data["results"] if r["scenario"] == "nodes" and r["check"] == "reachable"
                 and r["node"] == "node3")
    assert reach["status"] == "fail"
    for r in failures(data):
        if r is reach or (r["node"] == "node3" and r["src"] == "node3"):
            continue
        assert r["cause"] and "node3" in r["cause"], f"failure without the cut-off node as cause: {r}"
    assert {n.name for n in healed.nodes} - {"node3"} <= {r["node"] for r in data["results"]}


@ONCE
def test_pod_killed_during_churn_passes(healed: Lab, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.Popen([*CLI, "-i", str(healed.inventory_path), "--json", str(out), "--only", "churn"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed: list[str] = []

    def kill_one() -> None:  # as soon as the probe pods exist, kill an echo pod that churn does not delete
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            pods = [p for p in healed.pods() if p.namespace.startswith("pi-cluster-probe-")
                    and p.labels.get("app") == "echo" and p.node == "node1" and p.ready]
            if pods:
                time.sleep(1.5)  # inside the churn window
                healed.fault("kill-pod", namespace=pods[0].namespace, name=pods[0].name)
                killed.append(pods[0].name)
            time.sleep(0.2)

    t = threading.Thread(target=kill_one)
    t.start()
    stdout, _ = proc.communicate(timeout=180)
    t.join()
    assert killed, "no echo pod was killed"
    assert proc.returncode == 0, stdout
    data = json.loads(out.read_text())
    assert all(r["status"] == "pass" for r in data["results"] if r["scenario"] == "churn"), failures(data)


def test_sigint_leaves_no_probe_namespace(healed: Lab, tmp_path: Path) -> None:
    proc = subprocess.Popen([*CLI, "-i", str(healed.inventory_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p.namespace.startswith("pi-cluster-probe-")
                                                  for p in healed.pods()):
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0, stdout
    assert "Traceback" not in stdout
    assert probe_namespaces(healed) == []
    assert not [p for p in healed.pods() if p.namespace.startswith("pi-cluster-probe-")]


@ONCE
def test_secrets_never_in_output(healed: Lab, tmp_path: Path) -> None:
    inv = tmp_path / "inventory"
    shutil.copytree(healed.inventory_path, inv)
    token = "K10" + "c0ffee" * 10 + "::server:topsecretvalue42"
    with open(inv / "group_vars" / "all.yml", "a") as f:
        f.write(f"token: {token}\n")
    junit = tmp_path / "j.xml"
    js = tmp_path / "r.json"
    p = subprocess.run([*CLI, "-i", str(inv), "--only", "nodes,security", "--junit", str(junit), "--json", str(js)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    for text in (p.stdout, p.stderr, junit.read_text(), js.read_text()):
        assert "topsecretvalue42" not in text and token not in text
    assert os.path.exists(js)


@ONCE
def test_mtu_blackhole_fails_only_large_requests_across_that_node(healed: Lab, tmp_path: Path) -> None:
    healed.fault("mtu-blackhole", node="node2")
    code, data, out = check(healed, tmp_path, "--only", "nodes,podnet")
    assert code == 1, out
    fails = failures(data)
    assert fails and all(r["scenario"] == "podnet" and r["check"].startswith("large ") for r in fails), fails
    assert all("node2" in (r["node"], *r["peers"]) and "MTU" in r["seen"] for r in fails)


@ONCE
def test_unreachable_server_is_a_setup_error(healed: Lab, tmp_path: Path) -> None:
    healed.fault("cut-node", node="node1")
    code, data, out = check(healed, tmp_path, "--timeout", "30")
    assert code == 2, out
    assert "setup error" in out and "node1" in out and "Traceback" not in out
    assert data.get("setup_error")


@ONCE
def test_extra_tests_run_against_the_same_hosts(healed: Lab, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "test_mine.py").write_text(
        "def test_hostname(host):\n    assert host.check_output('hostname') in ('node1', 'node2', 'node3')\n\n"
        "def test_not_node2(host):\n    assert host.check_output('hostname') != 'node2'\n")
    junit = tmp_path / "j.xml"
    code, data, out = check(healed, tmp_path, "--only", "nodes", "--extra-tests", str(mine), "--junit", str(junit))
    assert code == 1, out
    extra = [r for r in data["results"] if r["scenario"] == "extra"]
    assert {(r["node"], r["check"], r["status"]) for r in extra} == {
        (n.name, "test_hostname", "pass") for n in healed.nodes} | {
        (n.name, "test_not_node2", "fail" if n.name == "node2" else "pass") for n in healed.nodes}
    assert "extra[node2]" in {tc.get("name") for tc in ET.parse(junit).getroot().iter("testcase")}
