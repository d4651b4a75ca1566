"""The result model: cause attribution in dependency order, and its three views (table, JUnit, JSON)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console

from pi_cluster.conformance.report import Report, Result


def healthy() -> Report:
    r = Report(nodes=["node1", "node2", "node3"])
    for n in r.nodes:
        r.add(Result("nodes", n, "reachable", "pass"))
        r.add(Result("clusterip", n, "host->vip", "pass", target="10.43.0.20:80"))
        r.add(Result("clusterip", n, "ping vip", "pass", info=True))
        r.add(Result("nodes", n, "k3s unit", "skip", seen="systemd is not running"))
    return r


def test_podnet_failure_is_named_as_the_cause_of_service_failures() -> None:
    r = healthy()
    r.add(Result("podnet", "node2", "pod->pod node3", "fail", peers=["node3"], target="10.42.2.5:8080",
                 expected="echo answers", seen="timed out after 2 s"))
    vip = Result("clusterip", "node2", "host->vip", "fail", peers=["node1", "node2", "node3"],
                 target="10.43.12.7:80", expected="every try answers", seen="timed out after 2 s, 3 of 10 tries")
    other = Result("clusterip", "node1", "host->vip", "fail", peers=["node1", "node2"], target="10.43.12.7:80",
                   seen="timed out")
    r.extend([vip, other])
    r.attribute_causes()
    assert vip.cause == "podnet node2 -> node3 failed (10.42.2.5:8080: timed out after 2 s)"
    assert other.cause is None  # node1 has no failing pod path, and node3 is not involved
    assert "caused by: podnet node2 -> node3 failed" in vip.message()
    assert r.root_failures()[0].scenario == "podnet"  # the first line the user reads is the cause


def test_unreachable_node_explains_what_other_nodes_see() -> None:
    r = healthy()
    r.results = [x for x in r.results if not (x.node == "node3" and x.check == "reachable")]
    r.add(Result("nodes", "node3", "reachable", "fail", seen="SSH connection timed out"))
    np = Result("nodeport", "node1", "-> node3", "fail", peers=["node3"], via=["node3"], seen="timed out")
    pr = Result("proxy", "node1", "mode", "fail", seen="iptables")
    swap = Result("nodes", "node1", "swap off", "fail", seen="swap on /swapfile", explains=False)
    r.extend([np, pr, swap])
    r.attribute_causes()
    assert np.cause == "node3 unreachable (SSH connection timed out)"
    assert pr.cause is None and swap.cause is None


def test_proxy_failure_explains_only_traffic_its_rules_carry() -> None:
    r = healthy()
    r.add(Result("proxy", "node2", "vip ns/web:http", "fail", target="10.43.0.20:80/tcp",
                 seen="VIP absent from node2's KUBE-SERVICES"))
    from_node2 = Result("clusterip", "node2", "host->vip", "fail", peers=["node1", "node3"], seen="timed out")
    into_node2 = Result("nodeport", "node1", "-> node2", "fail", peers=["node2"], via=["node2"], seen="refused")
    from_ws = Result("nodeport", "node2", "from workstation", "fail", src="workstation", via=["node2"],
                     seen="refused")
    elsewhere = Result("clusterip", "node3", "host->vip", "fail", peers=["node1", "node2"], seen="timed out")
    r.extend([from_node2, into_node2, from_ws, elsewhere])
    r.attribute_causes()
    for x in (from_node2, into_node2, from_ws):
        assert x.cause and x.cause.startswith("proxy node2 failed") and "KUBE-SERVICES" in x.cause
    assert elsewhere.cause is None


def test_exit_codes_and_summary() -> None:
    r = healthy()
    assert r.exit_code() == 0 and r.summary_line().startswith("PASSED: 6 passed, 0 failed, 3 skipped")
    r.add(Result("dns", "node1", "pod fqdn", "fail", seen="name did not resolve: timed out"))
    assert r.exit_code() == 1 and "1 failed" in r.summary_line()
    r.setup_error = "no server could run `k3s kubectl`"
    assert r.exit_code() == 2
    info_only = Report(nodes=["n"], results=[Result("clusterip", "n", "ping vip", "fail", info=True)])
    assert info_only.exit_code() == 0


def test_junit_has_a_testcase_per_scenario_and_node(tmp_path: Path) -> None:
    r = healthy()
    r.add(Result("dns", "node2", "pod fqdn", "fail", target="web.ns.svc.cluster.local", expected="10.43.0.20",
                 seen="name did not resolve"))
    r.add(Result("dns", "node1", "pod fqdn", "pass"))
    r.add(Result("security", "node1", "kubelet", "skip", seen="nothing listens on 10250"))
    path = tmp_path / "junit.xml"
    r.write_junit(path)
    root = ET.parse(path).getroot()
    cases = {(tc.get("classname"), tc.get("name")): tc for tc in root.iter("testcase")}
    for n in r.nodes:
        assert ("pi-cluster.nodes", f"nodes[{n}]") in cases
        assert ("pi-cluster.clusterip", f"clusterip[{n}]") in cases
    failed = cases[("pi-cluster.dns", "dns[node2]")].find("failure")
    assert failed is not None and "name did not resolve" in (failed.get("message") or "")
    assert cases[("pi-cluster.security", "security[node1]")].find("skipped") is not None
    assert root.get("failures") == "1" and root.get("tests") == str(len(cases))


def test_json_and_table_carry_the_same_facts(tmp_path: Path) -> None:
    r = healthy()
    r.add(Result("podnet", "node3", "large node1", "fail", peers=["node1"], seen="timed out after 3 s"))
    r.attribute_causes()
    path = tmp_path / "r.json"
    r.write_json(path)
    data = json.loads(path.read_text())
    assert data["exit_code"] == 1 and data["counts"] == {"pass": 6, "fail": 1, "skip": 3}
    assert {"scenario": "podnet", "node": "node3", "check": "large node1", "status": "fail"}.items() <= \
        next(x for x in data["results"] if x["scenario"] == "podnet").items()
    con = Console(record=True, width=200)
    con.print(r.table())
    text = con.export_text()
    assert "podnet" in text and "timed out after 3 s" in text and "skip" not in text.split("podnet")[1][:40]


def test_secrets_are_masked_in_every_view(tmp_path: Path) -> None:
    token = "K10" + "ab" * 30 + "::server:s3cr3tvalue"
    r = healthy()
    r.add(Result("nodes", "node1", "x", "fail", seen=f"leaked {token} and token: hunter2"))
    r.write_json(tmp_path / "r.json")
    r.write_junit(tmp_path / "r.xml")
    con = Console(record=True, width=300)
    con.print(r.table())
    for text in ((tmp_path / "r.json").read_text(), (tmp_path / "r.xml").read_text(), con.export_text(),
                 r.failures()[0].message()):
        assert "s3cr3tvalue" not in text and "hunter2" not in text


def test_proxy_cause_about_the_same_service_is_preferred() -> None:
    r = healthy()
    r.add(Result("proxy", "node2", "vip ns/web:http", "fail", seen="VIP absent", service="web"))
    r.add(Result("proxy", "node2", "nodeport ns/web-nodeport", "fail", seen="NodePort 30080 absent",
                 service="web-nodeport"))
    np = Result("nodeport", "node1", "-> node2", "fail", peers=["node2"], via=["node2"], seen="refused",
                service="web-nodeport")
    r.add(np)
    r.attribute_causes()
    assert np.cause and "NodePort 30080 absent" in np.cause
