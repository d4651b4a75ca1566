"""Reading what kube-proxy programmed on a node: ``iptables-save -t nat`` (parsed by option, never by
position) and ``nft -j list table ip kube-proxy``, and finding a Service port's VIP and NodePort in them.

Chain names are kube-proxy's (see DESIGN section 7): ``KUBE-SVC-`` + 16 chars of base32(sha256(port name +
protocol)); nft ``service-<H>-ns/svc/proto/port`` with H = 8 chars of base32(sha256(the rest)).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from pi_cluster import kubeproxy_names as names


def svc_chain(port_name: str, protocol: str) -> str:
    """``KUBE-SVC-XPGD46QRK7WJZT7O`` for ``ns1/svc1:p80`` + ``tcp``."""
    return names.svc_chain(port_name, protocol)


def ext_chain(port_name: str, protocol: str) -> str:
    return names.ext_chain(port_name, protocol)


def nft_service_chain(namespace: str, service: str, protocol: str, port_name: str | None) -> str:
    """``service-ULMVA6XW-ns1/svc1/tcp/p80``."""
    return names.nft_service_chain(namespace, service, protocol, port_name)


def nft_external_chain(namespace: str, service: str, protocol: str, port_name: str | None) -> str:
    return names.nft_external_chain(namespace, service, protocol, port_name)


@dataclass
class Rule:
    chain: str
    options: dict[str, list[str]] = field(default_factory=dict)
    raw: str = ""

    def opt(self, name: str) -> str | None:
        v = self.options.get(name)
        return v[0] if v else None


def parse_iptables_save(text: str) -> dict[str, list[Rule]]:
    """``-A`` rules of the nat table by chain (filter table chains as ``filter:<chain>``); each rule's options
    by name (``-d``, ``--dport``, ``-j``, ``--comment`` ...), whatever order iptables-save printed them in."""
    chains: dict[str, list[Rule]] = {}
    table = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
            continue
        if table not in (None, "nat", "filter"):
            continue
        prefix = "filter:" if table == "filter" else ""
        if line.startswith(":"):
            chains.setdefault(prefix + line[1:].split()[0], [])
            continue
        if not line.startswith("-A "):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        rule = Rule(chain=prefix + words[1], raw=line)
        i = 2
        while i < len(words):
            w = words[i]
            if w.startswith("-"):
                vals = []
                j = i + 1
                while j < len(words) and not (words[j].startswith("-") and not words[j][1:2].isdigit()):
                    vals.append(words[j])
                    j += 1
                if w == "!":
                    i += 1
                    continue
                rule.options.setdefault(w, []).append(" ".join(vals))
                i = j
            else:
                i += 1
        chains.setdefault(rule.chain, []).append(rule)
    return chains


def _addr(value: str | None) -> str | None:
    return value.split("/")[0] if value else None


@dataclass
class Programmed:
    """What one node's rules say about one Service port."""

    vip: bool = False
    no_endpoints: bool = False  # programmed as a Service without endpoints (REJECT / no-endpoint-services)
    endpoints: int = 0
    node_port: bool = False
    where: str = ""  # "iptables" | "nftables" | "" when no kube-proxy rules at all


def iptables_lookup(chains: dict[str, list[Rule]], vip: str | None, port: int, protocol: str, port_name: str,
                    node_port: int | None) -> Programmed:
    out = Programmed(where="iptables" if "KUBE-SERVICES" in chains else "")
    svc = svc_chain(port_name, protocol)
    for r in chains.get("KUBE-SERVICES", []):
        if vip and _addr(r.opt("-d")) == vip and r.opt("--dport") == str(port) and \
                (r.opt("-p") or "").lower() == protocol.lower() and r.opt("-j") == svc:
            out.vip = True
    out.endpoints = sum(1 for r in chains.get(svc, []) if (r.opt("-j") or "").startswith("KUBE-SEP-"))
    out.no_endpoints = bool(vip) and any(
        _addr(r.opt("-d")) == vip and r.opt("--dport") == str(port) and r.opt("-j") == "REJECT"
        and "has no endpoints" in (r.opt("--comment") or "") for r in chains.get("filter:KUBE-SERVICES", []))
    if node_port:
        ext = ext_chain(port_name, protocol)
        out.node_port = any(r.opt("--dport") == str(node_port) and r.opt("-j") in (ext, svc)
                            for r in chains.get("KUBE-NODEPORTS", []))
    return out


def parse_nft(text: str) -> dict[str, Any]:
    """The kube-proxy table from ``nft -j list table ip kube-proxy``: chains (name -> rule count), and the
    elements of the ``service-ips`` and ``service-nodeports`` maps as (key tuple, verdict chain)."""
    data = json.loads(text) if text.strip() else {"nftables": []}
    chains: dict[str, int] = {}
    maps: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for obj in data.get("nftables", []):
        if "chain" in obj:
            chains.setdefault(obj["chain"]["name"], 0)
        elif "rule" in obj:
            chains[obj["rule"]["chain"]] = chains.get(obj["rule"]["chain"], 0) + 1
            # count endpoint gotos of numgen vmaps inside service chains
            for expr in obj["rule"].get("expr", []):
                vm = expr.get("vmap") if isinstance(expr, dict) else None
                data = vm.get("data") if isinstance(vm, dict) else None
                if isinstance(data, dict) and isinstance(data.get("set"), list):
                    chains[obj["rule"]["chain"] + "#vmap"] = len(data["set"])
        elif "map" in obj:
            m = obj["map"]
            elems = []
            for el in m.get("elem", []) or []:
                key, verdict = el if isinstance(el, list) else (el, None)
                parts: tuple[str, ...]
                if isinstance(key, dict) and "concat" in key:
                    parts = tuple(str(x) for x in key["concat"])
                elif isinstance(key, dict) and "elem" in key:
                    inner = key["elem"].get("val")
                    parts = tuple(str(x) for x in inner["concat"]) if isinstance(inner, dict) else (str(inner),)
                else:
                    parts = (str(key),)
                target = ""
                if isinstance(verdict, dict):
                    for k in ("goto", "jump"):
                        if k in verdict:
                            target = verdict[k]["target"]
                elems.append((parts, target))
            maps[m["name"]] = elems
    return {"chains": chains, "maps": maps}


def nft_lookup(table: dict[str, Any], namespace: str, service: str, vip: str | None, port: int, protocol: str,
               port_name: str | None, node_port: int | None) -> Programmed:
    chains, maps = table["chains"], table["maps"]
    out = Programmed(where="nftables" if chains else "")
    chain = nft_service_chain(namespace, service, protocol, port_name)
    proto = protocol.lower()
    if vip:
        out.vip = any(k == (vip, proto, str(port)) and t == chain for k, t in maps.get("service-ips", []))
        out.no_endpoints = any(k == (vip, proto, str(port)) for k, _t in maps.get("no-endpoint-services", []))
    out.endpoints = chains.get(chain + "#vmap", 0)
    if node_port:
        ext = nft_external_chain(namespace, service, protocol, port_name)
        out.node_port = any(k == (proto, str(node_port)) and t in (chain, ext)
                            for k, t in maps.get("service-nodeports", []))
    return out
