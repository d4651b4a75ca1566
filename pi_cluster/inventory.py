"""The cluster model: one Ansible inventory, loaded through ansible-core's own parser, validated.

This is the only module that reads an inventory. Every verb (flash, provision, check, lab) calls
:func:`load` and works on the :class:`Cluster` it returns, so group_vars/host_vars precedence is exactly
Ansible's and every rule about what a valid cluster is lives here.

>>> cluster = load("inventory/example")            # doctest: +SKIP
>>> [n.name for n in cluster.servers]              # doctest: +SKIP
['node1']

Bad input raises :class:`InventoryError` carrying every :class:`Problem` found (file, host, field, what
is wrong, what would be right). Nothing here prints.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr

# Ansible reads its configuration when first imported: fail on inventories it cannot parse instead of
# warning and carrying on with an empty one.
os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_FAILED", "True")
os.environ.setdefault("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "True")
os.environ.setdefault("ANSIBLE_LOCALHOST_WARNING", "False")

PROXY_MODES = ("iptables", "nftables", "ipvs")
FLANNEL_BACKENDS = ("vxlan", "host-gw", "wireguard-native", "none")
NETWORK_MODES = ("static", "dhcp")
SECRET_FIELDS = frozenset({"token", "wifi_psk", "ansible_password", "ansible_become_password", "pi_password"})
K3S_VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
HOSTNAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ENV_VAR = "PI_CLUSTER_INVENTORY"

# Every cluster setting, its default, and what it is. README's variable table is checked against this.
DEFAULTS: dict[str, Any] = {
    "k3s_version": "v1.31.4+k3s1",
    "token": None,
    "api_endpoint": None,
    "api_port": 6443,
    "cluster_cidr": "10.42.0.0/16",
    "service_cidr": "10.43.0.0/16",
    "cluster_dns": "10.43.0.10",
    "cluster_domain": "cluster.local",
    "kube_proxy_mode": "iptables",
    "flannel_backend": "vxlan",
    "servicelb": True,
    "extra_server_args": {},
    "extra_agent_args": {},
    "node_labels": {},
    "node_taints": [],
    "airgap_dir": None,
    "network_mode": "static",
    "network_prefix": 24,
    "network_gateway": None,
    "network_dns": [],
    "ssh_public_keys": [],
    "wifi_country": None,
    "wifi_ssid": None,
    "wifi_psk": None,
    "timezone": "Etc/UTC",
}


class Problem(BaseModel):
    """One thing wrong with an inventory: where, what, and what would be right."""

    model_config = ConfigDict(frozen=True)

    severity: Literal["error", "warning"] = "error"
    file: str | None = None
    line: int | None = None
    host: str | None = None
    field: str | None = None
    message: str
    hint: str | None = None

    def location(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.host:
            parts.append(f"host {self.host}")
        if self.field:
            parts.append(f"field {self.field}")
        return ", ".join(parts) or "inventory"

    def __str__(self) -> str:
        text = f"{self.location()}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class InventoryError(Exception):
    """The inventory cannot be used; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        super().__init__("\n".join(str(p) for p in problems))


class NodeNetwork(BaseModel):
    """A node's first-boot network settings (used by flash)."""

    mode: Literal["static", "dhcp"] = "static"
    address: str
    prefix: int = 24
    gateway: str | None = None
    dns: list[str] = Field(default_factory=list)
    wifi_country: str | None = None
    wifi_ssid: str | None = None
    wifi_psk: SecretStr | None = None

    @property
    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return ipaddress.ip_interface(f"{self.address}/{self.prefix}")


class Node(BaseModel):
    """One host of the inventory, with the variables Ansible resolved for it."""

    name: str
    role: Literal["server", "agent"]
    address: str
    user: str | None = None
    port: int = 22
    ssh_private_key_file: str | None = None
    ssh_common_args: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[str] = Field(default_factory=list)
    network: NodeNetwork
    ssh_public_keys: list[str] = Field(default_factory=list)
    timezone: str = "Etc/UTC"
    vars: dict[str, Any] = Field(default_factory=dict, repr=False)

    def masked_vars(self) -> dict[str, Any]:
        return mask_secrets(self.vars)


class ClusterSettings(BaseModel):
    """Cluster-wide settings, as resolved for the first server."""

    k3s_version: str
    token: SecretStr | None = None
    api_endpoint: str
    api_port: int = 6443
    cluster_cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    service_cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    cluster_dns: ipaddress.IPv4Address | ipaddress.IPv6Address
    cluster_domain: str = "cluster.local"
    kube_proxy_mode: Literal["iptables", "nftables", "ipvs"] = "iptables"
    flannel_backend: Literal["vxlan", "host-gw", "wireguard-native", "none"] = "vxlan"
    servicelb: bool = True
    extra_server_args: dict[str, Any] = Field(default_factory=dict)
    extra_agent_args: dict[str, Any] = Field(default_factory=dict)
    airgap_dir: str | None = None


class Cluster(BaseModel):
    """The validated inventory: settings, nodes (servers first, in inventory order) and warnings."""

    source: str
    settings: ClusterSettings
    nodes: list[Node]
    warnings: list[Problem] = Field(default_factory=list)

    @property
    def servers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "server"]

    @property
    def agents(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "agent"]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def summary(self) -> dict[str, Any]:
        s = self.settings
        return {
            "source": self.source,
            "servers": [n.name for n in self.servers],
            "agents": [n.name for n in self.agents],
            "k3s_version": s.k3s_version,
            "api_endpoint": f"{s.api_endpoint}:{s.api_port}",
            "cluster_cidr": str(s.cluster_cidr),
            "service_cidr": str(s.service_cidr),
            "cluster_dns": str(s.cluster_dns),
            "kube_proxy_mode": s.kube_proxy_mode,
            "flannel_backend": s.flannel_backend,
            "servicelb": s.servicelb,
            "token": "(set)" if s.token else "(generated at first provision)",
        }


def mask_secrets(data: Any) -> Any:
    """Replace the values of secret-looking keys with ``********`` (recursively)."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            secret = str(k) in SECRET_FIELDS or any(w in str(k).lower() for w in ("password", "secret", "psk"))
            out[str(k)] = "********" if secret and v not in (None, "") else mask_secrets(v)
        return out
    if isinstance(data, list | tuple):
        return [mask_secrets(v) for v in data]
    return data


def default_source() -> str:
    """The inventory used when ``-i`` is omitted: $PI_CLUSTER_INVENTORY, else Ansible's configured default
    (``inventory =`` in ansible.cfg or $ANSIBLE_INVENTORY), exactly like ``ansible-playbook``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    from ansible import constants as C

    hosts = C.config.get_config_value("DEFAULT_HOST_LIST")
    if isinstance(hosts, list | tuple) and hosts:
        return str(hosts[0])
    return str(hosts or "inventory/example")


# --------------------------------------------------------------------------------------------------
# YAML pre-scan: syntax errors with file and line, and duplicate keys (YAML silently keeps the last one)


class _DupCheckLoader(yaml.SafeLoader):
    pass


def _construct_mapping_checked(loader: _DupCheckLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        try:
            key = loader.construct_object(key_node, deep=True)
        except Exception:  # unhashable or odd keys are left to the real parser
            continue
        if isinstance(key, str | int) and key in seen:
            loader.duplicates.append((str(key), key_node.start_mark.line + 1))  # type: ignore[attr-defined]
        elif isinstance(key, str | int):
            seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_DupCheckLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_checked)
_DupCheckLoader.add_constructor("!vault", lambda loader, node: "<vault>")
_DupCheckLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


def _yaml_files(source: Path) -> Iterator[Path]:
    if source.is_file():
        yield source
        base = source.parent
    else:
        base = source
        for p in sorted(source.iterdir()):
            if p.is_file() and p.suffix in (".yml", ".yaml"):
                yield p
    for sub in ("group_vars", "host_vars"):
        d = base / sub
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if p.is_file() and (p.suffix in (".yml", ".yaml", ".json") or p.suffix == ""):
                    yield p


def _prescan(source: Path) -> list[Problem]:
    problems: list[Problem] = []
    for f in _yaml_files(source):
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(Problem(file=str(f), message=f"cannot read: {e}"))
            continue
        if f.suffix not in (".yml", ".yaml", ".json") and not text.lstrip().startswith(("---", "{")):
            if f.parent.name in ("group_vars", "host_vars") or f.parent.parent.name in ("group_vars", "host_vars"):
                pass  # extension-less vars files are YAML too
            else:
                continue
        loader = _DupCheckLoader(text)
        loader.duplicates = []  # type: ignore[attr-defined]
        try:
            while loader.check_data():
                loader.get_data()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            problems.append(
                Problem(
                    file=str(f),
                    line=(mark.line + 1) if mark else None,
                    message=f"YAML syntax error: {e.problem or e.context}"
                    + (f" at column {mark.column + 1}" if mark else ""),
                    hint="fix the indentation or quoting on that line",
                )
            )
            continue
        except yaml.YAMLError as e:
            problems.append(Problem(file=str(f), message=f"YAML error: {e}"))
            continue
        finally:
            loader.dispose()
        for key, line in loader.duplicates:  # type: ignore[attr-defined]
            problems.append(
                Problem(
                    file=str(f),
                    line=line,
                    host=key if f.parent.name not in ("group_vars", "host_vars") else None,
                    field=None if f.parent.name not in ("group_vars", "host_vars") else key,
                    message=f"duplicate key {key!r}: YAML keeps only the last one",
                    hint="every hostname and variable may appear once per mapping",
                )
            )
    return problems


# --------------------------------------------------------------------------------------------------
# Loading through ansible-core


@contextlib.contextmanager
def _quiet_ansible(collected: list[str]) -> Iterator[None]:
    """Collect Ansible's display warnings instead of letting them reach the terminal."""
    from ansible.utils.display import Display

    display = Display()
    saved = display.warning, display.deprecated, display.display

    def warning(msg: str, *a: Any, **k: Any) -> None:
        collected.append(str(msg))

    def ignore(*a: Any, **k: Any) -> None:
        return None

    display.warning = warning
    display.deprecated = ignore
    display.display = ignore
    try:
        yield
    finally:
        display.warning, display.deprecated, display.display = saved


def _origin(value: Any) -> tuple[str | None, int | None]:
    try:
        from ansible._internal._datatag._tags import Origin

        o = Origin.get_tag(value)
        if o is not None:
            return o.path, o.line_num
    except Exception:
        pass
    return None, None


def _plain(value: Any) -> Any:
    """Strip Ansible's tagged types down to plain Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if type(value).__name__ in ("EncryptedString", "AnsibleVaultEncryptedUnicode"):
        return "<vault>"
    return str(value)


def _ansible_hostvars(source: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]], list[str]]:
    """Parse ``source`` with ansible-core; return raw vars per host, group membership and warnings."""
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.hostvars import HostVars
    from ansible.vars.manager import VariableManager

    warnings: list[str] = []
    with _quiet_ansible(warnings):
        loader = DataLoader()
        try:
            inv = InventoryManager(loader=loader, sources=[str(source)])
        except AnsibleError as e:
            raise InventoryError(
                [Problem(file=str(source), message=f"Ansible cannot parse the inventory: {_short(e)}")],
                str(source),
            ) from None
        vm = VariableManager(loader=loader, inventory=inv)
        vm._hostvars = HostVars(inventory=inv, variable_manager=vm, loader=loader)  # magic var `hostvars`
        groups = {g: sorted(h.name for h in inv.groups[g].get_hosts()) for g in inv.groups}
        raw: dict[str, dict[str, Any]] = {}
        for host in inv.get_hosts():
            try:
                variables = vm.get_vars(host=host)
            except AnsibleError as e:
                raise InventoryError(
                    [Problem(file=str(source), host=host.name, message=f"cannot resolve variables: {_short(e)}")],
                    str(source),
                ) from None
            templar = Templar(loader=loader, variables=variables)
            resolved: dict[str, Any] = {}
            for key in list(DEFAULTS) + [
                "ansible_host", "ansible_user", "ansible_port", "ansible_ssh_private_key_file",
                "ansible_ssh_common_args",
            ] + [k for k in variables if k not in DEFAULTS and not k.startswith("ansible_")]:
                if key not in variables or key in ("hostvars", "groups", "group_names", "inventory_hostname",
                                                    "inventory_hostname_short", "inventory_dir", "inventory_file",
                                                    "playbook_dir", "omit", "vars", "environment"):
                    continue
                value = variables[key]
                try:
                    resolved[key] = _plain(templar.template(value))
                except AnsibleError as e:
                    path, line = _origin(value)
                    raise InventoryError(
                        [Problem(file=path, line=line, host=host.name, field=key,
                                 message=f"cannot template the value: {_short(e)}")],
                        str(source),
                    ) from None
                except Exception:  # vaulted values without a password: keep them opaque
                    resolved[key] = "<vault>"
                path, line = _origin(value)
                if path:
                    resolved.setdefault("__origin__", {})[key] = (path, line)
            raw[host.name] = resolved
    return raw, groups, warnings


def _short(e: Exception) -> str:
    text = str(getattr(e, "message", "") or e)
    return " ".join(text.split())[:400]


def load(source: str | os.PathLike[str] | None = None) -> Cluster:
    """Load and validate an inventory (a file or a directory, like ``ansible -i``)."""
    src = Path(source if source is not None else default_source())
    if not src.exists():
        raise InventoryError(
            [Problem(file=str(src), message="inventory not found",
                     hint=f"pass -i FILE|DIR or set ${ENV_VAR}; see inventory/example")],
            str(src),
        )
    problems = _prescan(src)
    if any(p.severity == "error" for p in problems):
        raise InventoryError(problems, str(src))
    raw, groups, warnings = _ansible_hostvars(src)
    return _validate(src, raw, groups, warnings, problems)


def _ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        return None


def _net(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError:
        return None


def _validate(
    src: Path,
    raw: dict[str, dict[str, Any]],
    groups: dict[str, list[str]],
    ansible_warnings: list[str],
    problems: list[Problem],
) -> Cluster:
    def where(host: str | None, field: str) -> tuple[str | None, int | None]:
        if host and field in raw.get(host, {}).get("__origin__", {}):
            path, line = raw[host]["__origin__"][field]
            return path, line
        return (str(src), None)

    def add(host: str | None, field: str | None, message: str, hint: str | None = None,
            severity: Literal["error", "warning"] = "error") -> None:
        file, line = where(host, field) if field else (str(src), None)
        problems.append(Problem(severity=severity, file=file, line=line, host=host, field=field,
                                message=message, hint=hint))

    servers = groups.get("server", [])
    agents = groups.get("agent", [])
    cluster_hosts = set(groups.get("k3s_cluster", []))
    order = [h for h in raw if h in servers] + [h for h in raw if h in agents and h not in servers]
    order_servers = [h for h in _group_order(raw, servers)]
    order_agents = [h for h in _group_order(raw, agents) if h not in servers]

    if not servers:
        add(None, None, "no server: the group `server` is missing or empty",
            "put at least one host under k3s_cluster -> children -> server -> hosts")
    for h in servers:
        if h in agents:
            add(h, None, "host is in both `server` and `agent`", "a node is either a server or an agent")
    for h in sorted(set(servers) | set(agents)):
        if cluster_hosts and h not in cluster_hosts:
            add(h, None, "host is not in the group `k3s_cluster`",
                "make `server` and `agent` children of `k3s_cluster`", severity="warning")
    if len(servers) >= 2 and len(servers) % 2 == 0:
        add(None, None, f"{len(servers)} servers: embedded etcd needs a majority, an even count adds no "
            "fault tolerance", "use 1, 3 or 5 servers", severity="warning")

    # hostnames: they become the node names in Kubernetes and the Pis' hostnames
    seen_names: dict[str, str] = {}
    for h in order:
        if not HOSTNAME_RE.match(h):
            add(h, None, f"hostname {h!r} is not a valid node name",
                "lower-case letters, digits and '-', starting and ending with a letter or digit (RFC 1123)")
        key = h.lower()
        if key in seen_names:
            add(h, None, f"duplicate hostname: {h!r} and {seen_names[key]!r} name the same node")
        seen_names[key] = h

    first = order_servers[0] if order_servers else (order[0] if order else None)
    fv = dict(DEFAULTS)
    if first:
        fv.update({k: v for k, v in raw[first].items() if k != "__origin__"})

    # cluster-wide settings, read as resolved for the first server
    s_host = first

    def cidr(field: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        n = _net(fv.get(field))
        if n is None:
            add(s_host, field, f"malformed CIDR {fv.get(field)!r}",
                f"a network in CIDR form with no host bits set, e.g. {DEFAULTS[field]}")
        return n

    cluster_cidr = cidr("cluster_cidr")
    service_cidr = cidr("service_cidr")
    cluster_dns = _ip(fv.get("cluster_dns"))
    if cluster_dns is None:
        add(s_host, "cluster_dns", f"malformed IP address {fv.get('cluster_dns')!r}", "e.g. 10.43.0.10")
    if cluster_cidr and service_cidr and cluster_cidr.overlaps(service_cidr):
        add(s_host, "service_cidr", f"service_cidr {service_cidr} overlaps cluster_cidr {cluster_cidr}",
            "pods and Services need separate ranges, e.g. 10.42.0.0/16 and 10.43.0.0/16")
    if cluster_dns and service_cidr:
        if cluster_dns not in service_cidr:
            add(s_host, "cluster_dns", f"cluster_dns {cluster_dns} is outside service_cidr {service_cidr}",
                f"pick an address inside {service_cidr}, e.g. {service_cidr.network_address + 10}")
        elif cluster_dns in (service_cidr.network_address, service_cidr.network_address + 1,
                             service_cidr.broadcast_address):
            add(s_host, "cluster_dns", f"cluster_dns {cluster_dns} is reserved in {service_cidr} "
                "(network, broadcast or the `kubernetes` Service's address)",
                f"e.g. {service_cidr.network_address + 10}")
    mode = fv.get("kube_proxy_mode")
    if mode not in PROXY_MODES:
        add(s_host, "kube_proxy_mode", f"unknown kube_proxy_mode {mode!r}",
            f"one of {', '.join(PROXY_MODES)}")
    backend = fv.get("flannel_backend")
    if backend not in FLANNEL_BACKENDS:
        add(s_host, "flannel_backend", f"unknown flannel_backend {backend!r}",
            f"one of {', '.join(FLANNEL_BACKENDS)}")
    version = fv.get("k3s_version")
    if not isinstance(version, str) or not K3S_VERSION_RE.match(version):
        add(s_host, "k3s_version", f"k3s_version {version!r} is not a pinned k3s release",
            "e.g. v1.31.4+k3s1 (see the k3s releases page)")
    if not isinstance(fv.get("servicelb"), bool):
        add(s_host, "servicelb", f"servicelb must be true or false, not {fv.get('servicelb')!r}")
    for f in ("extra_server_args", "extra_agent_args"):
        if not isinstance(fv.get(f), dict):
            add(s_host, f, f"{f} must be a mapping of k3s config.yaml keys, not {type(fv.get(f)).__name__}",
                "e.g. {write-kubeconfig-mode: '0644'}")
    token = fv.get("token")
    if token is not None and (not isinstance(token, str) or not token):
        add(s_host, "token", "token must be a non-empty string", "leave it unset to generate one")
    try:
        api_port = int(fv.get("api_port", 6443))
        if not 1 <= api_port <= 65535:
            raise ValueError
    except (TypeError, ValueError):
        add(s_host, "api_port", f"api_port {fv.get('api_port')!r} is not a TCP port", "e.g. 6443")
        api_port = 6443

    # nodes
    nodes: list[Node] = []
    seen_ips: dict[str, str] = {}
    lan_nets: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for h in order_servers + order_agents:
        v = dict(DEFAULTS)
        v.update({k: val for k, val in raw[h].items() if k != "__origin__"})
        addr_raw = v.get("ansible_host")
        addr = _ip(addr_raw) if addr_raw is not None else None
        if addr_raw is None:
            add(h, "ansible_host", "ansible_host is missing", "set it to the node's IP address")
        elif addr is None:
            add(h, "ansible_host", f"malformed IP address {addr_raw!r}",
                "the node's IPv4 address, e.g. 192.168.1.11")
        elif str(addr) in seen_ips:
            add(h, "ansible_host", f"duplicate ansible_host {addr}: also used by {seen_ips[str(addr)]}",
                "each node needs its own address")
        if addr is not None:
            seen_ips.setdefault(str(addr), h)
        try:
            prefix = int(v.get("network_prefix", 24))
            if not 0 < prefix <= (32 if addr is None or addr.version == 4 else 128):
                raise ValueError
        except (TypeError, ValueError):
            add(h, "network_prefix", f"network_prefix {v.get('network_prefix')!r} is not a prefix length",
                "e.g. 24")
            prefix = 24
        if addr is not None:
            lan = ipaddress.ip_interface(f"{addr}/{prefix}").network
            lan_nets.append((h, lan))
        net_mode = v.get("network_mode")
        if net_mode not in NETWORK_MODES:
            add(h, "network_mode", f"unknown network_mode {net_mode!r}", "static or dhcp")
            net_mode = "static"
        gateway = v.get("network_gateway")
        if gateway is not None and _ip(gateway) is None:
            add(h, "network_gateway", f"malformed IP address {gateway!r}", "e.g. 192.168.1.1")
        elif gateway is not None and addr is not None and _ip(gateway) not in lan:
            add(h, "network_gateway", f"gateway {gateway} is outside the node's network {lan}",
                "check network_prefix and network_gateway")
        dns_list = v.get("network_dns") or []
        if isinstance(dns_list, str):
            dns_list = [dns_list]
        for d in dns_list if isinstance(dns_list, list) else []:
            if _ip(d) is None:
                add(h, "network_dns", f"malformed IP address {d!r}", "a list of DNS server addresses")
        labels = v.get("node_labels") or {}
        if isinstance(labels, list):  # k3s-ansible style ["key=value"]
            labels = dict(_label_pair(str(x)) for x in labels)
        if not isinstance(labels, dict):
            add(h, "node_labels", "node_labels must be a mapping of label: value")
            labels = {}
        taints = v.get("node_taints") or []
        if not isinstance(taints, list):
            add(h, "node_taints", "node_taints must be a list like ['key=value:NoSchedule']")
            taints = []
        keys = v.get("ssh_public_keys") or []
        if isinstance(keys, str):
            keys = [keys]
        try:
            port = int(v.get("ansible_port") or 22)
        except (TypeError, ValueError):
            add(h, "ansible_port", f"ansible_port {v.get('ansible_port')!r} is not a port")
            port = 22
        nodes.append(
            Node(
                name=h,
                role="server" if h in servers else "agent",
                address=str(addr) if addr is not None else str(addr_raw or ""),
                user=v.get("ansible_user"),
                port=port,
                ssh_private_key_file=v.get("ansible_ssh_private_key_file"),
                ssh_common_args=v.get("ansible_ssh_common_args"),
                labels={str(k): str(val) for k, val in labels.items()},
                taints=[str(t) for t in taints],
                network=NodeNetwork(
                    mode=net_mode,
                    address=str(addr) if addr is not None else "0.0.0.0",
                    prefix=prefix,
                    gateway=str(gateway) if gateway is not None and _ip(gateway) else None,
                    dns=[str(d) for d in dns_list if _ip(d)] if isinstance(dns_list, list) else [],
                    wifi_country=v.get("wifi_country") or None,
                    wifi_ssid=v.get("wifi_ssid") or None,
                    wifi_psk=SecretStr(str(v["wifi_psk"])) if v.get("wifi_psk") else None,
                ),
                ssh_public_keys=[str(k) for k in keys],
                timezone=str(v.get("timezone") or "Etc/UTC"),
                vars=v,
            )
        )
    for h in sorted(set(raw) - set(servers) - set(agents)):
        if h in cluster_hosts:
            add(h, None, "host is in `k3s_cluster` but neither in `server` nor in `agent`",
                "move it under server or agent", severity="warning")

    for name, field in (("cluster_cidr", cluster_cidr), ("service_cidr", service_cidr)):
        if field is None:
            continue
        for h, lan in lan_nets:
            if lan.version == field.version and lan.overlaps(field):
                add(s_host, name, f"{name} {field} overlaps the LAN {lan} of node {h}",
                    "pick ranges that no node, router or client on your network uses")
                break

    for w in ansible_warnings:
        problems.append(Problem(severity="warning", file=str(src), message=f"Ansible: {w}"))

    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise InventoryError(problems, str(src))

    api_endpoint = fv.get("api_endpoint") or (nodes[0].address if nodes else "")
    settings = ClusterSettings(
        k3s_version=str(version),
        token=SecretStr(str(token)) if token else None,
        api_endpoint=str(api_endpoint),
        api_port=api_port,
        cluster_cidr=cluster_cidr,
        service_cidr=service_cidr,
        cluster_dns=cluster_dns,
        cluster_domain=str(fv.get("cluster_domain") or "cluster.local"),
        kube_proxy_mode=mode,
        flannel_backend=backend,
        servicelb=bool(fv.get("servicelb")),
        extra_server_args=fv.get("extra_server_args") or {},
        extra_agent_args=fv.get("extra_agent_args") or {},
        airgap_dir=fv.get("airgap_dir") or None,
    )
    return Cluster(source=str(src), settings=settings, nodes=nodes, warnings=problems)


def _label_pair(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key, value


def _group_order(raw: dict[str, Any], members: list[str]) -> list[str]:
    """Hosts of a group in inventory order (Ansible keeps hosts in the order it read them)."""
    return [h for h in raw if h in members]
