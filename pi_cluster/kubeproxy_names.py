"""kube-proxy's own names for Service rules, so the lab writes them and the checks can verify them.

iptables mode: ``KUBE-SVC-``/``KUBE-EXT-``/``KUBE-FW-``/``KUBE-SVL-`` + the first 16 characters of
base32(sha256(service port name + protocol)); ``KUBE-SEP-`` + 16 characters of
base32(sha256(service port name + protocol + "IP:port")). The service port name is ``<ns>/<svc>`` plus
``:<port name>`` when the port is named; the protocol is lower case.

nftables mode: ``service-<H>-<ns>/<svc>/<proto>/<port name>`` (and ``external-``, ``local-``), endpoints
``endpoint-<H>-<ns>/<svc>/<proto>/<port name>__<IP>/<port>``, where H is the first 8 characters of
base32(sha256(the text after ``<H>-``)).
"""

from __future__ import annotations

import base64
import hashlib

# nftables chain names may be 256 characters; kube-proxy keeps room for its longest prefix ("external-").
_NFT_BASE_MAX = 256 - len("external-")


def _b32(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()


def service_port_name(namespace: str, name: str, port_name: str | None = None) -> str:
    """``ns1/svc1:p80`` for a named port, ``default/web`` for an unnamed one."""
    base = f"{namespace}/{name}"
    return f"{base}:{port_name}" if port_name else base


def _chain16(prefix: str, text: str) -> str:
    return prefix + _b32(text)[:16]


def svc_chain(spn: str, protocol: str) -> str:
    """``KUBE-SVC-...`` for a service port name (see `service_port_name`) and protocol."""
    return _chain16("KUBE-SVC-", spn + protocol.lower())


def ext_chain(spn: str, protocol: str) -> str:
    return _chain16("KUBE-EXT-", spn + protocol.lower())


def fw_chain(spn: str, protocol: str) -> str:
    return _chain16("KUBE-FW-", spn + protocol.lower())


def svl_chain(spn: str, protocol: str) -> str:
    return _chain16("KUBE-SVL-", spn + protocol.lower())


def sep_chain(spn: str, protocol: str, endpoint: str) -> str:
    """``KUBE-SEP-...`` for an endpoint given as ``IP:port``."""
    return _chain16("KUBE-SEP-", spn + protocol.lower() + endpoint)


def nft_hash_and_truncate(text: str) -> str:
    """``<H>-<text>`` as kube-proxy's nftables mode builds chain names (truncated with ``...``)."""
    name = _b32(text)[:8] + "-" + text
    if len(name) > _NFT_BASE_MAX:
        name = name[: _NFT_BASE_MAX - 3] + "..."
    return name


def nft_service_base(namespace: str, name: str, protocol: str, port_name: str | None) -> str:
    return f"{namespace}/{name}/{protocol.lower()}/{port_name or ''}"


def nft_endpoint_base(namespace: str, name: str, protocol: str, port_name: str | None, ip: str, port: int) -> str:
    return f"{nft_service_base(namespace, name, protocol, port_name)}__{ip}/{port}"


def nft_service_chain(namespace: str, name: str, protocol: str, port_name: str | None) -> str:
    return "service-" + nft_hash_and_truncate(nft_service_base(namespace, name, protocol, port_name))


def nft_external_chain(namespace: str, name: str, protocol: str, port_name: str | None) -> str:
    return "external-" + nft_hash_and_truncate(nft_service_base(namespace, name, protocol, port_name))


def nft_local_chain(namespace: str, name: str, protocol: str, port_name: str | None) -> str:
    return "local-" + nft_hash_and_truncate(nft_service_base(namespace, name, protocol, port_name))


def nft_endpoint_chain(namespace: str, name: str, protocol: str, port_name: str | None, ip: str, port: int) -> str:
    return "endpoint-" + nft_hash_and_truncate(nft_endpoint_base(namespace, name, protocol, port_name, ip, port))


def nft_affinity_set(namespace: str, name: str, protocol: str, port_name: str | None, ip: str, port: int) -> str:
    return "affinity-" + nft_hash_and_truncate(nft_endpoint_base(namespace, name, protocol, port_name, ip, port))
