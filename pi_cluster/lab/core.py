"""The lab: a virtual Pi cluster of network namespaces with real sshd, real kernel Service rules and real DNS.

State lives on disk (``/var/lib/pi-cluster/lab/<name>/state.json``, or under $PI_CLUSTER_LAB_DIR) so any
process can act on a running lab and ``down`` works after a crash. Every mutating call holds an exclusive
fcntl lock on state.json, reloads it, changes the kernel, saves it and re-syncs every node's rules and the
DNS records before returning.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import importlib
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from pi_cluster.lab import rules
from pi_cluster.lab.models import (
    PROXY_MODES,
    ContainerSpec,
    Fault,
    LabError,
    LabNode,
    LabStateModel,
    PodState,
    ServicePort,
    ServiceSpec,
    ServiceState,
)
from pi_cluster.lab.nsutil import (
    alive,
    in_netns,
    ip_batch,
    list_netns,
    netns_exists,
    netns_pids,
    require_root,
    require_tools,
    run,
)

NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
DNS_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
POD_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
MAX_NODES = 100
NODE_PORT_RANGE = (30000, 32767)
# TEST-NET / benchmarking ranges, in the order labs take them (the default lab prefers 192.0.2.0/24)
LAN_CANDIDATES = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"] + [
    f"198.{18 + i // 256}.{i % 256}.0/24" for i in range(512)
]
DEFAULT_SETTINGS: dict[str, str | int | bool] = {
    "cluster_cidr": "10.42.0.0/16",
    "service_cidr": "10.43.0.0/16",
    "cluster_dns": "10.43.0.10",
    "cluster_domain": "cluster.local",
    "api_port": 6443,
    "k3s_version": "v1.31.4+k3s1",
    "flannel_backend": "host-gw",
    "servicelb": True,
}
DNS_POD = ("kube-system", "coredns-lab")
READY_TIMEOUT = 5.0
NETEXEC = Path(__file__).with_name("netexec.py")
NODEAGENT = Path(__file__).with_name("nodeagent.py")
PYTHON = sys.executable


class PodRequest(NamedTuple):
    """One pod for `Lab.add_pods` (the arguments of `Lab.add_pod`)."""

    namespace: str
    name: str
    node: str
    labels: dict[str, str]
    containers: list[ContainerSpec]


def base_dir() -> Path:
    return Path(os.environ.get("PI_CLUSTER_LAB_DIR", "/var/lib/pi-cluster/lab"))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kill(pids: list[int], grace: float = 1.0) -> None:
    """SIGTERM, then SIGKILL whatever is left after `grace` seconds (only these PIDs)."""
    live = [p for p in pids if p > 1 and p != os.getpid() and alive(p)]
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        time.sleep(0.02)
        live = [p for p in live if alive(p)]
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _spawn(argv: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    return proc.pid


def _wait(what: str, probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if probe():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def _tcp_open(host: str, port: int, timeout: float = 0.3) -> bool:
    with socket.create_connection((host, port), timeout=timeout):
        return True


class Lab:
    """A running lab. Create with `Lab.up`, attach with `Lab.load`, remove with `Lab.down`."""

    def __init__(self, state: LabStateModel) -> None:
        self._st = state

    # ------------------------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return self._st.name

    @property
    def proxy_mode(self) -> str:
        return self._st.proxy_mode

    @property
    def state_dir(self) -> Path:
        return base_dir() / self.name

    @property
    def nodes(self) -> list[LabNode]:
        return list(self._st.nodes)

    @property
    def lan(self) -> str:
        return self._st.lan

    @property
    def workstation_address(self) -> str:
        return str(ipaddress.ip_network(self._st.lan)[254])

    @property
    def gateway(self) -> str:
        return str(ipaddress.ip_network(self._st.lan)[1])

    @property
    def inventory_path(self) -> Path:
        return self.state_dir / "inventory"

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self._st.settings)

    @property
    def ssh_key(self) -> Path:
        return self.state_dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "ssh" / "known_hosts"

    @property
    def lan_netns(self) -> str:
        return f"{self.name}-lan"

    def node(self, name: str) -> LabNode:
        for n in self._st.nodes:
            if n.name == name:
                return n
        raise LabError(f"lab {self.name} has no node {name!r}",
                       f"nodes: {', '.join(n.name for n in self._st.nodes)}")

    def node_pid(self, node: str) -> int:
        """PID of the node's sshd: its mount/UTS namespaces are the node's (for nsenter)."""
        return self._st.pids.get(f"sshd-{node}", 0)

    def exec_argv(self, target: str) -> list[str]:
        """argv prefix to run a command on a node (its network, mount and UTS namespaces) or in a pod
        (``<namespace>/<pod>``)."""
        if "/" in target:
            self.reload()
            ns, _, name = target.partition("/")
            return ["ip", "netns", "exec", self._pod(self._st, ns, name).netns]
        pid = self.node_pid(self.node(target).name)
        if pid and alive(pid):
            return ["nsenter", "-t", str(pid), "-n", "-m", "-u", "--"]
        return ["ip", "netns", "exec", self.node(target).netns]

    # ------------------------------------------------------------------------------------ lifecycle
    @classmethod
    def list_labs(cls) -> list[str]:
        d = base_dir()
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if (p / "state.json").is_file())

    @classmethod
    def load(cls, name: str = "pilab") -> Lab:
        path = base_dir() / name / "state.json"
        if not path.is_file():
            raise LabError(f"lab {name!r} is not up", f"start it with `pi-cluster lab up --name {name}`")
        with open(path) as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            st = LabStateModel.model_validate_json(f.read() or "{}")
        return cls(st)

    def reload(self) -> Lab:
        self._st = Lab.load(self.name)._st
        return self

    @classmethod
    def up(cls, name: str = "pilab", nodes: int = 3, servers: int = 1, proxy_mode: str = "iptables",
           lan: str | None = None, progress: Callable[[str], None] | None = None) -> Lab:
        """Build the lab (idempotent: an identical lab that is already up is returned as is)."""
        say = progress or (lambda _msg: None)
        cls._validate_up(name, nodes, servers, proxy_mode, lan)
        require_root()
        tools = ["ip", "unshare", "nsenter", "sysctl", "dnsmasq", "sshd", "ssh-keygen",
                 "nft" if proxy_mode == "nftables" else
                 ("iptables-legacy-restore" if proxy_mode == "iptables-legacy" else "iptables-restore")]
        require_tools(tools)
        base_dir().mkdir(parents=True, exist_ok=True)
        with open(base_dir() / ".alloc.lock", "a+") as alloc_lock:
            fcntl.flock(alloc_lock, fcntl.LOCK_EX)
            existing = cls._existing(name, nodes, servers, proxy_mode, lan)
            if existing is not None:
                return existing
            stale = [ns for ns in list_netns() if ns.startswith(f"{name}-")]
            if stale or os.path.exists(f"/sys/class/net/{name}-ws"):
                raise LabError(f"lab name {name!r} collides with existing namespaces/links "
                               f"({', '.join(stale[:4]) or name + '-ws'}) that no lab state records",
                               f"remove them with `pi-cluster lab down --name {name}` or pick another --name")
            net = cls._allocate_lan(name, lan)
            st = cls._plan(name, nodes, servers, proxy_mode, net)
            lab = cls(st)
            lab.state_dir.mkdir(parents=True, exist_ok=True)
            lab._save_new()
        try:
            lab._build(say)
        except BaseException:
            with contextlib.suppress(Exception):
                Lab.down(name)
            raise
        return lab

    @staticmethod
    def _validate_up(name: str, nodes: int, servers: int, proxy_mode: str, lan: str | None) -> None:
        if not NAME_RE.match(name):
            raise LabError(f"bad lab name {name!r}",
                           "1-10 characters: a lower-case letter, then lower-case letters or digits")
        if not 1 <= nodes <= MAX_NODES:
            raise LabError(f"--nodes {nodes}: a lab has 1 to {MAX_NODES} nodes")
        if not 1 <= servers <= nodes:
            raise LabError(f"--servers {servers}: must be between 1 and the number of nodes ({nodes})")
        if proxy_mode not in PROXY_MODES:
            raise LabError(f"unknown proxy mode {proxy_mode!r}", f"one of: {', '.join(PROXY_MODES)}")
        if lan is not None:
            try:
                net = ipaddress.ip_network(lan)
            except ValueError as e:
                raise LabError(f"--lan {lan!r} is not a network: {e}") from None
            if net.version != 4 or net.prefixlen != 24:
                raise LabError(f"--lan {lan}: the lab LAN is an IPv4 /24, e.g. 198.51.100.0/24")

    @classmethod
    def _existing(cls, name: str, nodes: int, servers: int, proxy_mode: str, lan: str | None) -> Lab | None:
        if not (base_dir() / name / "state.json").is_file():
            return None
        lab = cls.load(name)
        st = lab._st
        if st.status == "starting" and st.builder not in (0, os.getpid()) and alive(st.builder):
            raise LabError(f"lab {name!r} is being built by process {st.builder}",
                           f"wait for it, or `pi-cluster lab down --name {name}`")
        healthy = st.status == "up" and all(netns_exists(ns) for ns in st.netns) and all(
            alive(p) for k, p in st.pids.items() if k.startswith("sshd-"))
        if not healthy:  # a crashed or half-built lab: clear it and build afresh
            Lab.down(name)
            return None
        want = (nodes, servers, proxy_mode)
        have = (len(st.nodes), st.servers, st.proxy_mode)
        if want != have or (lan is not None and lan != st.lan):
            raise LabError(f"lab {name!r} is already up with {have[0]} nodes, {have[1]} server(s), "
                           f"proxy mode {have[2]}, LAN {st.lan}",
                           f"use it as is, `pi-cluster lab down --name {name}` first, or pick another --name")
        return lab

    @classmethod
    def _allocate_lan(cls, name: str, lan: str | None) -> ipaddress.IPv4Network:
        taken: list[tuple[ipaddress.IPv4Network, str]] = []
        for other in cls.list_labs():
            if other == name:
                continue
            with contextlib.suppress(Exception):
                taken.append((ipaddress.IPv4Network(Lab.load(other)._st.lan), f"lab {other}"))
        for kind in ("addr", "route"):
            out = run(["ip", "-4", "-j", kind, "show"] if kind == "addr" else ["ip", "-4", "-j", "route", "show",
                                                                               "table", "all"], check=False).stdout
            for item in json.loads(out or "[]"):
                if kind == "addr":
                    for a in item.get("addr_info", []):
                        net = ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}").network
                        taken.append((net, f"address {a['local']}/{a['prefixlen']} on {item.get('ifname')}"))
                else:
                    dst = item.get("dst", "")
                    if dst and dst != "default":
                        with contextlib.suppress(ValueError):
                            taken.append((ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False),
                                          f"route {dst} in the root namespace"))

        def clash(net: ipaddress.IPv4Network) -> str | None:
            for t, why in taken:
                if t.prefixlen > 0 and t.overlaps(net):
                    return why
            return None

        if lan is not None:
            net = ipaddress.IPv4Network(lan)
            why = clash(net)
            if why:
                raise LabError(f"LAN {lan} is already taken ({why})", "pick another --lan or leave it out")
            return net
        candidates = LAN_CANDIDATES if name == "pilab" else LAN_CANDIDATES[1:]
        for c in candidates:
            net = ipaddress.IPv4Network(c)
            if clash(net) is None:
                return net
        raise LabError("no free TEST-NET range for the lab LAN: every candidate is taken")

    @classmethod
    def _plan(cls, name: str, nodes: int, servers: int, proxy_mode: str,
              net: ipaddress.IPv4Network) -> LabStateModel:
        cluster = ipaddress.IPv4Network(str(DEFAULT_SETTINGS["cluster_cidr"]))
        pod_nets = list(cluster.subnets(new_prefix=24))
        lab_nodes = [
            LabNode(name=f"node{i}", role="server" if i <= servers else "agent", address=str(net[10 + i]),
                    netns=f"{name}-node{i}", pod_cidr=str(pod_nets[i - 1]), index=i, lan_port=f"vn{i}")
            for i in range(1, nodes + 1)
        ]
        settings = dict(DEFAULT_SETTINGS)
        settings["lab_name"] = name
        return LabStateModel(
            name=name, proxy_mode=proxy_mode, lan=str(net), servers=servers, nodes=lab_nodes,
            netns=[f"{name}-lan"] + [n.netns for n in lab_nodes], root_links=[f"{name}-ws"],
            settings=settings, created=_now(), builder=os.getpid(),
        )

    # ------------------------------------------------------------------------------------ state file
    def _save_new(self) -> None:
        path = self.state_dir / "state.json"
        with open(path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            self._write(f, self._st)

    @staticmethod
    def _write(f: Any, st: LabStateModel) -> None:
        f.seek(0)
        f.truncate()
        f.write(st.model_dump_json(indent=1))
        f.flush()
        os.fsync(f.fileno())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[LabStateModel]:
        """Exclusive lock on state.json; yields the fresh state; saves it (and adopts it) on success."""
        path = self.state_dir / "state.json"
        if not path.is_file():
            raise LabError(f"lab {self.name!r} is not up", f"start it with `pi-cluster lab up --name {self.name}`")
        with open(path, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            st = LabStateModel.model_validate_json(f.read())
            yield st
            self._write(f, st)
            self._st = st

    # ------------------------------------------------------------------------------------ build
    def _build(self, say: Callable[[str], None]) -> None:
        st = self._st
        d = self.state_dir
        for sub in ("ssh", "nodes", "logs", "run", "bin", "dns", "inventory/group_vars"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d / "ssh", 0o700)
        net = ipaddress.IPv4Network(st.lan)
        gw = f"{net[1]}/24"
        say(f"namespaces and links on LAN {st.lan}")
        with ThreadPoolExecutor(max_workers=8) as pool:
            keys = pool.submit(self._make_keys)
            # root: every namespace, and the workstation veth into the LAN namespace
            ip_batch([f"netns add {ns}" for ns in st.netns])
            ws = f"{self.name}-ws"
            ip_batch([f"link add {ws} type veth peer name ws netns {self.lan_netns}",
                      f"addr add {self.workstation_address}/24 dev {ws}", f"link set {ws} up"])
            lan_cmds = ["link set lo up", "link add br0 type bridge", f"addr add {gw} dev br0", "link set br0 up",
                        "link set ws master br0", "link set ws up"]
            for n in st.nodes:
                lan_cmds += [f"link add {n.lan_port} type veth peer name eth0 netns {n.netns}",
                             f"link set {n.lan_port} master br0", f"link set {n.lan_port} up"]
            ip_batch(lan_cmds, self.lan_netns)
            list(pool.map(self._setup_node, st.nodes))
            run(["ip", "netns", "exec", self.lan_netns, "sysctl", "-qw", "net.ipv4.ip_forward=0",
                 "net.bridge.bridge-nf-call-iptables=0"])
            keys.result()
            say("sshd on every node")
            self._write_node_files()
            for n in st.nodes:
                st.pids[f"sshd-{n.name}"] = self._start_node_holder(n)
            st.pids["agent"] = _spawn([PYTHON, str(NODEAGENT), "--state-dir", str(d)], d / "logs" / "agent.log")
            self._save()
            say("cluster DNS and system Services")
            with self._locked() as st2:
                self._st = st2
                self._add_system_services(st2)
                self._create_pod(st2, DNS_POD[0], DNS_POD[1], st2.nodes[0].name, {"k8s-app": "kube-dns"},
                                 [ContainerSpec(name="coredns", port=53)], kind="dns")
                self._sync(st2)
            self._write_inventory()
            for n in st.nodes:
                addr = n.address
                _wait(f"sshd on {n.name} ({addr}:22)", lambda addr=addr: _tcp_open(addr, 22), 10)  # type: ignore[misc]
        with self._locked() as st3:
            st3.status = "up"
            st3.builder = 0
        say("kubectl stand-in (control plane)")
        ctl = self._start_control()  # outside the lock: the controller reads the lab
        if ctl:
            with self._locked() as st4:
                st4.pids["control"] = ctl
        say("up")

    def _save(self) -> None:
        with open(self.state_dir / "state.json", "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            self._write(f, self._st)

    def _start_control(self) -> int | None:
        try:
            control = importlib.import_module("pi_cluster.lab.control")
        except ModuleNotFoundError as e:
            if e.name != "pi_cluster.lab.control":
                raise
            return None
        pid = control.start(self)
        return int(pid) if pid else None

    def _setup_node(self, n: LabNode) -> None:
        st = self._st
        net = ipaddress.IPv4Network(st.lan)
        pod_gw = ipaddress.IPv4Network(n.pod_cidr)[1]
        cmds = ["link set lo up", f"addr add {n.address}/24 dev eth0", "link set eth0 up",
                "link add cni0 type bridge", f"addr add {pod_gw}/24 dev cni0", "link set cni0 up",
                f"route add default via {net[1]}"]
        cmds += [f"route add {o.pod_cidr} via {o.address}" for o in st.nodes if o.name != n.name]
        ip_batch(cmds, n.netns)
        run(["ip", "netns", "exec", n.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
             "net.bridge.bridge-nf-call-iptables=1", "net.ipv4.conf.all.route_localnet=1",
             "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])

    def _make_keys(self) -> None:
        d = self.state_dir
        if not self.ssh_key.is_file():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pi-cluster-lab-{self.name}",
                 "-f", str(self.ssh_key)])
        shutil.copyfile(f"{self.ssh_key}.pub", d / "ssh" / "authorized_keys")
        os.chmod(d / "ssh" / "authorized_keys", 0o600)

        def hostkey(n: LabNode) -> str:
            nd = d / "nodes" / n.name
            nd.mkdir(parents=True, exist_ok=True)
            key = nd / "ssh_host_ed25519_key"
            if not key.is_file():
                run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{n.name}", "-f", str(key)])
            kind, blob = key.with_suffix(".pub").read_text().split()[:2]
            return f"{n.address} {kind} {blob}\n"

        with ThreadPoolExecutor(max_workers=4) as pool:
            tls = pool.submit(self._make_tls)
            lines = list(pool.map(hostkey, self._st.nodes))
            tls.result()
        self.known_hosts.write_text("".join(lines))

    def _make_tls(self) -> None:
        """A self-signed certificate for the kubelet/API stand-ins (node IPs and the kubernetes VIP as SANs)."""
        d = self.state_dir / "tls"
        d.mkdir(exist_ok=True)
        if (d / "cert.pem").is_file() or not shutil.which("openssl"):
            return
        svc_net = ipaddress.IPv4Network(str(self._st.settings["service_cidr"]))
        sans = ",".join([f"IP:{n.address}" for n in self._st.nodes] + [f"IP:{svc_net[1]}", "IP:127.0.0.1",
                                                                         "DNS:kubernetes.default.svc"])
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "365", "-subj", f"/CN=pi-cluster-lab-{self.name}", "-addext", f"subjectAltName={sans}",
             "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")])
        os.chmod(d / "key.pem", 0o600)

    def _write_node_files(self) -> None:
        d = self.state_dir
        hosts = "127.0.0.1 localhost\n" + "".join(f"{n.address} {n.name}\n" for n in self._st.nodes)
        for n in self._st.nodes:
            nd = d / "nodes" / n.name
            (nd / "hostname").write_text(n.name + "\n")
            (nd / "hosts").write_text(hosts)
            (nd / "cmdline.txt").write_text(
                f"console=serial0,115200 console=tty1 root=PARTUUID=lab{n.index:05d}-02 rootfstype=ext4 "
                "fsck.repair=yes rootwait cgroup_memory=1 cgroup_enable=memory\n")
            (nd / "config.txt").write_text("[all]\narm_64bit=1\n")
            (nd / "sshd_config").write_text(f"""\
ListenAddress {n.address}
Port 22
HostKey {nd}/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile {d}/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
UseDNS no
MaxStartups 200:30:400
MaxSessions 100
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
""")

    def _start_node_holder(self, n: LabNode) -> int:
        """sshd in the node's namespaces; its own mount/UTS namespaces carry the node's hostname and files."""
        nd = self.state_dir / "nodes" / n.name
        script = [
            "set -e", f"hostname {n.name}",
            f"mount --bind {nd}/hostname /etc/hostname", f"mount --bind {nd}/hosts /etc/hosts",
            "mount -t tmpfs -o mode=0755 tmpfs /run", "mkdir -p /run/sshd",
            "mount -t tmpfs -o mode=0755 tmpfs /boot", "mkdir -p /boot/firmware",
            f"cp {nd}/cmdline.txt {nd}/config.txt /boot/firmware/",
        ]
        if n.role == "server":
            b = self.state_dir / "bin"
            script += [f"mount --bind {b} /usr/local/bin", "mount -o remount,bind,ro /usr/local/bin"]
        script.append(f"exec /usr/sbin/sshd -D -e -f {nd}/sshd_config")
        return _spawn(["ip", "netns", "exec", n.netns, "unshare", "--mount", "--uts", "--propagation", "private",
                       "sh", "-c", "; ".join(script)], self.state_dir / "logs" / f"sshd-{n.name}.log")

    def _add_system_services(self, st: LabStateModel) -> None:
        svc_net = ipaddress.IPv4Network(str(st.settings["service_cidr"]))
        api_port = int(st.settings["api_port"])
        now = _now()
        st.services = [s for s in st.services if (s.spec.namespace, s.spec.name) not in
                       {("default", "kubernetes"), ("kube-system", "kube-dns")}]
        st.services.insert(0, ServiceState(spec=ServiceSpec(
            namespace="default", name="kubernetes", cluster_ip=str(svc_net[1]),
            labels={"component": "apiserver", "provider": "kubernetes"},
            ports=[ServicePort(name="https", protocol="TCP", port=443, target_port=api_port)]),
            uid=str(uuid.uuid4()), created=now))
        st.services.insert(1, ServiceState(spec=ServiceSpec(
            namespace="kube-system", name="kube-dns", cluster_ip=str(st.settings["cluster_dns"]),
            selector={"k8s-app": "kube-dns"},
            labels={"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
            ports=[ServicePort(name="dns", protocol="UDP", port=53, target_port=53),
                   ServicePort(name="dns-tcp", protocol="TCP", port=53, target_port=53),
                   ServicePort(name="metrics", protocol="TCP", port=9153, target_port=9153)]),
            uid=str(uuid.uuid4()), created=now))

    def _write_inventory(self) -> None:
        st = self._st
        inv = self.inventory_path
        (inv / "group_vars").mkdir(parents=True, exist_ok=True)
        common = (f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes "
                  "-o IdentitiesOnly=yes")
        hosts: dict[str, Any] = {
            "k3s_cluster": {
                "children": {
                    "server": {"hosts": {n.name: {"ansible_host": n.address} for n in st.nodes
                                         if n.role == "server"}},
                    "agent": {"hosts": {n.name: {"ansible_host": n.address} for n in st.nodes
                                        if n.role == "agent"}},
                },
                "vars": {
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(self.ssh_key),
                    "ansible_ssh_common_args": common,
                    "ansible_python_interpreter": "/usr/bin/python3",
                },
            }
        }
        if not hosts["k3s_cluster"]["children"]["agent"]["hosts"]:
            del hosts["k3s_cluster"]["children"]["agent"]
        s = st.settings
        group_vars = {
            "lab_name": self.name,
            "k3s_version": s["k3s_version"],
            "api_port": s["api_port"],
            "cluster_cidr": s["cluster_cidr"],
            "service_cidr": s["service_cidr"],
            "cluster_dns": s["cluster_dns"],
            "cluster_domain": s["cluster_domain"],
            "kube_proxy_mode": "nftables" if st.proxy_mode == "nftables" else "iptables",
            "flannel_backend": s["flannel_backend"],
            "servicelb": s["servicelb"],
            "network_mode": "static",
            "network_prefix": 24,
            "network_gateway": self.gateway,
            "network_dns": [self.gateway],
        }
        header = f"# Generated by `pi-cluster lab up --name {self.name}`: the lab's inventory. Do not edit.\n"
        (inv / "hosts.yml").write_text(header + yaml.safe_dump(hosts, sort_keys=False))
        (inv / "group_vars" / "all.yml").write_text(header + yaml.safe_dump(group_vars, sort_keys=False))

    # ------------------------------------------------------------------------------------ down
    @classmethod
    def down(cls, name: str = "pilab") -> list[str]:
        """Remove every namespace, link, process and file of the lab; returns what was removed."""
        if not NAME_RE.match(name):
            raise LabError(f"bad lab name {name!r}")
        require_root()
        removed: list[str] = []
        d = base_dir() / name
        st: LabStateModel | None = None
        with contextlib.suppress(Exception):
            st = LabStateModel.model_validate_json((d / "state.json").read_text())
        namespaces = list(st.netns) if st else []
        if st:
            namespaces += [p.netns for p in st.pods]
        namespaces += [ns for ns in list_netns() if ns.startswith(f"{name}-")]
        namespaces = list(dict.fromkeys(namespaces))
        pids: list[int] = list(st.pids.values()) if st else []
        if st:
            for p in st.pods:
                pids += p.pids
        for ns in namespaces:
            if netns_exists(ns):
                pids += netns_pids(ns)
        _kill(sorted(set(pids)))
        for ns in reversed(namespaces):
            if netns_exists(ns):
                run(["ip", "netns", "del", ns], check=False)
                removed.append(f"netns {ns}")
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        for link in (st.root_links if st else []) + [f"{name}-ws"]:
            if os.path.exists(f"/sys/class/net/{link}"):
                run(["ip", "link", "del", link], check=False)
                removed.append(f"link {link}")
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(f"state {d}")
        return removed

    # ------------------------------------------------------------------------------------ pods
    def pods(self) -> list[PodState]:
        self.reload()
        return list(self._st.pods)

    @staticmethod
    def _pod(st: LabStateModel, namespace: str, name: str) -> PodState:
        for p in st.pods:
            if p.namespace == namespace and p.name == name:
                return p
        raise LabError(f"no pod {namespace}/{name} in lab {st.name}")

    def add_pod(self, namespace: str, name: str, node: str, labels: dict[str, str] | None = None,
                containers: list[ContainerSpec] | None = None) -> PodState:
        result = self.add_pods([PodRequest(namespace, name, node, labels or {}, containers or [ContainerSpec()])])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def add_pods(self, requests: Sequence[PodRequest | tuple[str, str, str, dict[str, str], list[ContainerSpec]]]
                 ) -> list[PodState | Exception]:
        """Start several pods under one lock: every pod's namespace and processes first, then one wait for all
        of them to answer, then one re-sync of every node's rules and DNS. One result per request, in order: the
        pod, or the error that stopped it (a pod that fails is removed; the others are kept)."""
        with self._locked() as st:
            results: list[PodState | Exception] = []
            started: list[PodState] = []
            try:
                for namespace, name, node, labels, containers in requests:  # PodRequest or a plain 5-tuple
                    try:
                        pod = self._create_pod(st, namespace, name, node, dict(labels),
                                               list(containers) or [ContainerSpec()], wait=False)
                    except Exception as e:
                        results.append(e)
                        continue
                    results.append(pod)
                    started.append(pod)
                failed = self._await_pods(st, started)
            except BaseException:
                self._destroy_pods(st, started)
                self._save_state(st)
                raise
            self._destroy_pods(st, [p for p in started if p.uid in failed])
            results = [failed[r.uid] if isinstance(r, PodState) and r.uid in failed else r for r in results]
            self._sync(st)
            return results

    def _create_pod(self, st: LabStateModel, namespace: str, name: str, node: str, labels: dict[str, str],
                    containers: list[ContainerSpec], kind: str = "netexec", wait: bool = True) -> PodState:
        """Record the pod, build its namespace and start its processes; with `wait`, also wait until it
        answers (else the caller waits with `_await_pods`)."""
        if not DNS_NAME_RE.match(namespace):
            raise LabError(f"bad namespace name {namespace!r} (a DNS label: a-z, 0-9, '-')")
        if not POD_NAME_RE.match(name):
            raise LabError(f"bad pod name {name!r} (a DNS subdomain: a-z, 0-9, '-', '.')")
        if any(p.namespace == namespace and p.name == name for p in st.pods):
            raise LabError(f"pod {namespace}/{name} already exists in lab {st.name}")
        n = next((x for x in st.nodes if x.name == node), None)
        if n is None:
            raise LabError(f"lab {st.name} has no node {node!r}", f"nodes: {', '.join(x.name for x in st.nodes)}")
        ports = [_http_port(c) for c in containers]
        if len(set(ports)) != len(ports):
            raise LabError(f"pod {namespace}/{name}: two containers listen on the same port")
        uid = str(uuid.uuid4())
        ip = self._allocate_pod_ip(st, n)
        netns = f"{st.name}-pod.{namespace}.{name}"
        if len(netns) > 200:
            netns = f"{st.name}-pod.{uid}"
        pod = PodState(namespace=namespace, name=name, node=node, ip=ip, netns=netns, labels=dict(labels),
                       containers=containers, created=_now(), uid=uid, veth="vp" + uid.replace("-", "")[:10],
                       kind="dns" if kind == "dns" else "netexec")
        st.pods.append(pod)
        self._save_state(st)  # recorded before the kernel changes, so `down` finds it after a crash
        try:
            etc = Path("/etc/netns") / netns
            etc.mkdir(parents=True, exist_ok=True)
            dom = st.settings["cluster_domain"]
            (etc / "resolv.conf").write_text(
                f"search {namespace}.svc.{dom} svc.{dom} {dom}\nnameserver {st.settings['cluster_dns']}\n"
                "options ndots:5\n")
            (etc / "hosts").write_text(f"127.0.0.1 localhost\n{ip} {name[:63]}\n")
            (etc / "hostname").write_text(name[:63] + "\n")
            gw = ipaddress.IPv4Network(n.pod_cidr)[1]
            ip_batch([f"netns add {netns}"])
            ip_batch([f"link add {pod.veth} type veth peer name eth0 netns {netns}",
                      f"link set {pod.veth} master cni0", f"link set {pod.veth} type bridge_slave hairpin on",
                      f"link set {pod.veth} up"], n.netns)
            ip_batch(["link set lo up", f"addr add {ip}/24 dev eth0", "link set eth0 up",
                      f"route add default via {gw}"], netns)
            self._spawn_pod(st, pod)
            if wait:
                failed = self._await_pods(st, [pod])
                if failed:
                    raise failed[pod.uid]
        except BaseException:
            self._destroy_pod(st, pod)
            self._save_state(st)
            raise
        return pod

    def _save_state(self, st: LabStateModel) -> None:
        with open(self.state_dir / "state.json", "r+") as f:  # already locked by this process (flock is per-fd)
            self._write(f, st)

    def _allocate_pod_ip(self, st: LabStateModel, n: LabNode) -> str:
        net = ipaddress.IPv4Network(n.pod_cidr)
        used = {p.ip for p in st.pods if p.node == n.name}
        start = st.next_host.get(n.name, 2)
        size = net.num_addresses - 2
        for k in range(size - 1):
            host = 2 + (start - 2 + k) % (size - 1)
            ip = str(net[host])
            if ip not in used:
                st.next_host[n.name] = host + 1
                return ip
        raise LabError(f"node {n.name}: no free pod address in {n.pod_cidr}")

    def _start_pod(self, st: LabStateModel, pod: PodState) -> None:
        """Start the pod's processes and wait until it answers (LabError if it does not)."""
        self._spawn_pod(st, pod)
        failed = self._await_pods(st, [pod])
        if failed:
            raise failed[pod.uid]

    def _spawn_pod(self, st: LabStateModel, pod: PodState) -> None:
        logs = self.state_dir / "logs"
        pids = []
        if pod.kind == "dns":
            hosts = self.state_dir / "dns" / "hosts"
            if not hosts.exists():
                hosts.write_text("")
            dom = st.settings["cluster_domain"]
            argv = ["ip", "netns", "exec", pod.netns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                    "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--bind-interfaces",
                    f"--listen-address={pod.ip}", f"--local=/{dom}/", "--domain-needed", "--no-negcache",
                    "--user=root", "--group=root", "--pid-file=", "--log-facility=-", "--cache-size=1000"]
            pids.append(_spawn(argv, logs / f"pod-{pod.namespace}.{pod.name}.log"))
        else:
            for c in pod.containers:
                args = _strip_flags(c.args, ("--http-port", "--name", "--ready-file"))
                argv = ["ip", "netns", "exec", pod.netns, "unshare", "--uts", PYTHON, "-I", str(NETEXEC),
                        f"--http-port={_http_port(c)}", f"--name={pod.name[:63]}", "--set-hostname", *args]
                if not any(a.startswith("--udp-port") for a in args) and len(pod.containers) > 1 and \
                        c is not pod.containers[0]:
                    argv.append("--udp-port=-1")  # agnhost's default 8081 would clash inside one pod
                pids.append(_spawn(argv, logs / f"pod-{pod.namespace}.{pod.name}.log"))
        pod.pids = pids

    def _await_pods(self, st: LabStateModel, pods: list[PodState]) -> dict[str, LabError]:
        """Wait until every pod's servers answer; mark those ready. Returns {uid: error} for the pods whose
        server exited or did not answer in time (READY_TIMEOUT, plus a little per process started at once, since
        they share the CPU)."""
        logs = self.state_dir / "logs"
        nprocs = sum(len(p.pids) for p in pods)
        allowed = READY_TIMEOUT + 0.1 * max(0, nprocs - 4)
        deadline = time.monotonic() + allowed
        pending = list(pods)
        failed: dict[str, LabError] = {}

        def answers(pod: PodState) -> bool:
            for c in pod.containers:
                if pod.kind == "dns":
                    try:
                        if not _dns_answers(pod.ip):
                            return False
                    except OSError:
                        return False
                else:
                    try:
                        with socket.create_connection((pod.ip, _http_port(c)), timeout=0.3):
                            pass
                    except OSError:
                        return False
            return True

        while pending:
            still = []
            for pod in pending:
                if in_netns(pod.netns, lambda pod=pod: answers(pod)):  # type: ignore[misc]
                    pod.ready = True
                    continue
                dead = [p for p in pod.pids if not alive(p)]
                if dead or time.monotonic() > deadline:
                    log = logs / f"pod-{pod.namespace}.{pod.name}.log"
                    tail = log.read_text(errors="replace").strip().splitlines()[-2:] if log.exists() else []
                    why = "exited" if dead else f"did not answer within {allowed:.0f} s"
                    failed[pod.uid] = LabError(f"pod {pod.namespace}/{pod.name}: its server {why}" +
                                               (f": {' / '.join(tail)}" if tail else ""))
                    continue
                still.append(pod)
            pending = still
            if pending:
                time.sleep(0.02)
        return failed

    def _destroy_pod(self, st: LabStateModel, pod: PodState) -> None:
        self._destroy_pods(st, [pod])

    def _destroy_pods(self, st: LabStateModel, pods: list[PodState]) -> None:
        """Kill the pods' processes (all at once, one grace period), remove their namespaces and state."""
        pids: list[int] = []
        for pod in pods:
            pids += pod.pids
            if netns_exists(pod.netns):
                pids += netns_pids(pod.netns)
        _kill(sorted(set(pids)), grace=0.5)
        for pod in pods:
            if netns_exists(pod.netns):
                run(["ip", "netns", "del", pod.netns], check=False)
            shutil.rmtree(Path("/etc/netns") / pod.netns, ignore_errors=True)
        uids = {p.uid for p in pods}
        st.pods = [p for p in st.pods if p.uid not in uids]

    def delete_pod(self, namespace: str, name: str) -> None:
        self.delete_pods([(namespace, name)])

    def delete_pods(self, pods: Sequence[tuple[str, str]]) -> None:
        """Delete several pods [(namespace, name)] under one lock, with one re-sync: as Kubernetes, their
        endpoints leave every node's rules first, then the pods terminate (all at once), so new connections
        never go to a pod that is already gone. Nothing is deleted if one of them does not exist."""
        with self._locked() as st:
            victims = []
            for namespace, name in pods:
                pod = self._pod(st, namespace, name)
                if pod.kind == "dns":
                    raise LabError("the cluster DNS pod is part of the lab; use the stop-dns fault to stop it")
                if pod not in victims:
                    victims.append(pod)
            if not victims:
                return
            uids = {p.uid for p in victims}
            st.pods = [p for p in st.pods if p.uid not in uids]
            self._sync(st)
            self._destroy_pods(st, victims)

    # ------------------------------------------------------------------------------------ services
    def refresh(self) -> None:
        """Mark pods whose servers died as not ready and re-sync every node (for controllers and tests)."""
        with self._locked() as st:
            self._sync(st)

    def services(self) -> list[ServiceState]:
        self.reload()
        return list(self._st.services)

    def endpoints(self, namespace: str, name: str) -> list[PodState]:
        self.reload()
        svc = next((s for s in self._st.services if s.spec.namespace == namespace and s.spec.name == name), None)
        if svc is None:
            raise LabError(f"no service {namespace}/{name} in lab {self.name}")
        return self._endpoint_pods(self._st, svc.spec)

    @staticmethod
    def _endpoint_pods(st: LabStateModel, spec: ServiceSpec) -> list[PodState]:
        if not spec.selector:
            return []
        return [p for p in st.pods if p.namespace == spec.namespace and p.ready
                and all(p.labels.get(k) == v for k, v in spec.selector.items())]

    def apply_service(self, spec: ServiceSpec) -> ServiceState:
        result = self.apply_services([spec])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def apply_services(self, specs: Sequence[ServiceSpec]) -> list[ServiceState | Exception]:
        """Create or update several Services in order under one lock, with one re-sync. Stops at the first one
        refused: the result list then ends with its error (those before it are applied), else one state each."""
        with self._locked() as st:
            results: list[ServiceState | Exception] = []
            for spec in specs:
                try:
                    results.append(self._apply_service(st, spec))
                except LabError as e:
                    results.append(e)
                    break
            self._sync(st)
            return results

    def _apply_service(self, st: LabStateModel, spec: ServiceSpec) -> ServiceState:
        spec = spec.model_copy(deep=True)
        where = f"service {spec.namespace}/{spec.name}"
        if not DNS_NAME_RE.match(spec.namespace) or not DNS_NAME_RE.match(spec.name):
            raise LabError(f"{where}: namespace and name must be DNS labels (a-z, 0-9, '-')")
        if not spec.ports and not spec.headless:
            raise LabError(f"{where}: a Service needs at least one port")
        if len(spec.ports) > 1 and any(not p.name for p in spec.ports):
            raise LabError(f"{where}: every port needs a name when there are several")
        keys = [(p.port, p.protocol) for p in spec.ports]
        if len(set(keys)) != len(keys):
            raise LabError(f"{where}: duplicate port/protocol")
        for p in spec.ports:
            if not (1 <= p.port <= 65535 and 1 <= p.target_port <= 65535):
                raise LabError(f"{where}: port {p.port} -> {p.target_port} out of range")
        if spec.headless and spec.type != "ClusterIP":
            raise LabError(f"{where}: a headless Service (clusterIP: None) must be of type ClusterIP")
        old = next((s for s in st.services if s.spec.namespace == spec.namespace and s.spec.name == spec.name), None)
        svc_net = ipaddress.IPv4Network(str(st.settings["service_cidr"]))
        if old is not None:
            if old.spec.headless != spec.headless or (spec.cluster_ip and spec.cluster_ip != old.spec.cluster_ip):
                raise LabError(f"{where}: spec.clusterIP is immutable (it is {old.spec.cluster_ip or 'None'})",
                               "delete the Service and create it again")
            spec.cluster_ip = old.spec.cluster_ip
        elif spec.headless:
            spec.cluster_ip = None
        else:
            used = {s.spec.cluster_ip for s in st.services if s.spec.cluster_ip}
            if spec.cluster_ip:
                try:
                    want = ipaddress.IPv4Address(spec.cluster_ip)
                except ValueError:
                    raise LabError(f"{where}: clusterIP {spec.cluster_ip!r} is not an IPv4 address") from None
                if want not in svc_net or want in (svc_net.network_address, svc_net.broadcast_address):
                    raise LabError(f"{where}: clusterIP {want} is outside service_cidr {svc_net}")
                if str(want) in used:
                    raise LabError(f"{where}: clusterIP {want} is already allocated")
            else:
                rnd = random.Random()
                for _ in range(1000):
                    cand = str(svc_net[rnd.randrange(16, svc_net.num_addresses - 1)])
                    if cand not in used:
                        spec.cluster_ip = cand
                        break
                else:
                    raise LabError(f"{where}: service_cidr {svc_net} is full")
        # node ports: keep those of the old spec, honour requested ones, allocate the rest
        used_np = {p.node_port for s in st.services if s is not old for p in s.spec.ports if p.node_port}
        old_np = {(p.port, p.protocol): p.node_port for p in old.spec.ports} if old else {}
        for p in spec.ports:
            if spec.type == "ClusterIP":
                p.node_port = None
                continue
            if p.node_port is None:
                p.node_port = old_np.get((p.port, p.protocol))
            if p.node_port is not None:
                if not NODE_PORT_RANGE[0] <= p.node_port <= NODE_PORT_RANGE[1]:
                    raise LabError(f"{where}: nodePort {p.node_port} is outside {NODE_PORT_RANGE[0]}-"
                                   f"{NODE_PORT_RANGE[1]}")
                if p.node_port in used_np:
                    raise LabError(f"{where}: nodePort {p.node_port} is already allocated")
            else:
                free = [x for x in range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1) if x not in used_np]
                if not free:
                    raise LabError(f"{where}: no free nodePort")
                p.node_port = random.choice(free)
            used_np.add(p.node_port)
        lb: list[str] = []
        if spec.type == "LoadBalancer":
            for p in spec.ports:
                if p.port == 22:
                    raise LabError(f"{where}: port 22 on the node IPs is the nodes' sshd (ServiceLB cannot "
                                   "take it)")
                for s in st.services:
                    if s is old or s.spec.type != "LoadBalancer":
                        continue
                    if any(q.port == p.port and q.protocol == p.protocol for q in s.spec.ports):
                        raise LabError(f"{where}: port {p.port}/{p.protocol} on the node IPs is already taken by "
                                       f"LoadBalancer {s.spec.namespace}/{s.spec.name} (ServiceLB: one per port)")
            lb = [n.address for n in st.nodes]
        state = ServiceState(spec=spec, lb_ingress=lb, uid=old.uid if old else str(uuid.uuid4()),
                             created=old.created if old else _now())
        if old is not None:
            st.services[st.services.index(old)] = state
        else:
            st.services.append(state)
        return state

    def delete_service(self, namespace: str, name: str) -> None:
        self.delete_services([(namespace, name)])

    def delete_services(self, services: Sequence[tuple[str, str]]) -> None:
        """Delete several Services [(namespace, name)] with one re-sync (none if one of them does not exist)."""
        with self._locked() as st:
            for namespace, name in services:
                if (namespace, name) in {("default", "kubernetes"), ("kube-system", "kube-dns")}:
                    raise LabError(f"service {namespace}/{name} is part of the lab and cannot be deleted")
                if not any(s.spec.namespace == namespace and s.spec.name == name for s in st.services):
                    raise LabError(f"no service {namespace}/{name} in lab {st.name}")
            gone = set(services)
            st.services = [s for s in st.services if (s.spec.namespace, s.spec.name) not in gone]
            self._sync(st)

    # ------------------------------------------------------------------------------------ sync
    def port_rules(self, st: LabStateModel | None = None) -> list[rules.PortRule]:
        """Every Service port with its ready endpoints: what each node's kernel rules implement."""
        st = st or self._st
        out = []
        api_port = int(st.settings["api_port"])
        for s in st.services:
            spec = s.spec
            pods = self._endpoint_pods(st, spec)
            for p in spec.ports:
                if (spec.namespace, spec.name) == ("default", "kubernetes"):
                    eps = [rules.Endpoint(n.address, api_port, n.name) for n in st.nodes if n.role == "server"]
                else:
                    eps = [rules.Endpoint(pod.ip, p.target_port, pod.node) for pod in pods]
                eps.sort(key=lambda e: tuple(int(x) for x in e.ip.split(".")))
                out.append(rules.PortRule(
                    namespace=spec.namespace, name=spec.name, port_name=p.name, protocol=p.protocol.lower(),
                    cluster_ip=None if spec.headless else spec.cluster_ip, port=p.port, node_port=p.node_port,
                    lb_ips=list(s.lb_ingress), affinity=spec.session_affinity == "ClientIP",
                    local=spec.external_traffic_policy == "Local", endpoints=eps))
        return out

    def ruleset(self, node: str, st: LabStateModel | None = None) -> str:
        """The rules text the lab loads on `node` (iptables-restore input, or an nft script)."""
        st = st or self._st
        n = next(x for x in st.nodes if x.name == node)
        view = rules.NodeView(n.name, n.address, str(st.settings["cluster_cidr"]), str(st.settings["service_cidr"]))
        ports = self.port_rules(st)
        if st.proxy_mode == "nftables":
            return rules.nft_ruleset(view, ports)
        return rules.iptables_ruleset(view, ports)

    def _load_rules(self, st: LabStateModel, n: LabNode, text: str) -> None:
        tool = {"iptables": "iptables-restore", "iptables-legacy": "iptables-legacy-restore",
                "nftables": "nft"}[st.proxy_mode]
        argv = ["ip", "netns", "exec", n.netns, *([tool, "-f", "-"] if tool == "nft" else [tool])]
        run(argv, input=text)

    def _sync(self, st: LabStateModel) -> None:
        """Re-program every node's Service rules and the DNS records from the state."""
        for p in st.pods:  # a pod whose server died is not ready (as a failing readiness probe)
            if p.ready and p.pids and not all(alive(x) for x in p.pids):
                p.ready = False
        dropped = {f.args.get("node") for f in st.faults if f.kind == "drop-rules"}
        texts = {n.name: self.ruleset(n.name, st) for n in st.nodes if n.name not in dropped}
        digests = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in texts.items()}
        # unchanged rules are not reloaded: a reload would reset session-affinity state, as in kube-proxy
        targets = [n for n in st.nodes if n.name in texts and st.rules_hash.get(n.name) != digests[n.name]]
        for n in targets:
            st.rules_hash.pop(n.name, None)
        with ThreadPoolExecutor(max_workers=min(8, len(targets) or 1)) as pool:
            list(pool.map(lambda n: self._load_rules(st, n, texts[n.name]), targets))
        for n in targets:
            st.rules_hash[n.name] = digests[n.name]
        self._sync_dns(st)

    def _sync_dns(self, st: LabStateModel) -> None:
        dom = st.settings["cluster_domain"]
        lines = []
        for s in st.services:
            fqdn = f"{s.spec.name}.{s.spec.namespace}.svc.{dom}"
            if s.spec.headless:
                lines += [f"{p.ip} {fqdn}" for p in self._endpoint_pods(st, s.spec)]
            elif s.spec.cluster_ip:
                lines.append(f"{s.spec.cluster_ip} {fqdn}")
        text = "\n".join(lines) + "\n"
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == st.dns_hash:
            return
        hosts = self.state_dir / "dns" / "hosts"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        tmp = hosts.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, hosts)
        st.dns_hash = digest
        for p in st.pods:
            if p.kind == "dns":
                for pid in p.pids:
                    if alive(pid):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGHUP)

    # ------------------------------------------------------------------------------------ faults
    FAULTS = ("drop-rules", "stop-dns", "kill-pod", "cut-node", "mtu-blackhole")

    def fault(self, kind: str, **args: str) -> Fault:
        """Inject a fault (undone by `heal`): drop-rules node=, stop-dns, kill-pod namespace= name=,
        cut-node node=, mtu-blackhole node=."""
        if kind not in self.FAULTS:
            raise LabError(f"unknown fault {kind!r}", f"one of: {', '.join(self.FAULTS)}")
        need = {"drop-rules": ["node"], "cut-node": ["node"], "mtu-blackhole": ["node"],
                "kill-pod": ["namespace", "name"], "stop-dns": []}[kind]
        missing = [k for k in need if not args.get(k)]
        if missing:
            raise LabError(f"fault {kind} needs {', '.join(missing)}")
        args = {k: str(v) for k, v in args.items() if k in need}
        with self._locked() as st:
            f = Fault(kind=kind, args=args)
            if any(x == f for x in st.faults):
                return f
            node = next((n for n in st.nodes if n.name == args.get("node")), None) if "node" in args else None
            if "node" in args and node is None:
                raise LabError(f"lab {st.name} has no node {args['node']!r}")
            if kind == "drop-rules":
                assert node is not None
                st.rules_hash.pop(node.name, None)
                self._load_rules(st, node, rules.nft_empty() if st.proxy_mode == "nftables"
                                 else rules.iptables_empty())
            elif kind == "stop-dns":
                for p in st.pods:
                    if p.kind == "dns":
                        _kill(p.pids, grace=0.5)
                        p.ready = False
            elif kind == "kill-pod":
                p = self._pod(st, args["namespace"], args["name"])
                for pid in p.pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                p.ready = False
            elif kind == "cut-node":
                assert node is not None
                ip_batch([f"link set {node.lan_port} down"], self.lan_netns)
            st.faults.append(f)
            if kind == "mtu-blackhole":
                self._mtu_table(st, add=True)
            self._sync(st)
            return f

    def _mtu_table(self, st: LabStateModel, add: bool) -> None:
        """Silently drop pod-network packets over 1280 bytes to/from the blackholed nodes' LAN ports (no ICMP:
        PMTUD fails, as with a too-large overlay MTU); small packets and the nodes' own traffic (ssh) pass."""
        ports = [n.lan_port for f in st.faults if f.kind == "mtu-blackhole" for n in st.nodes
                 if n.name == f.args.get("node")]
        script = "add table bridge lab-fault\ndelete table bridge lab-fault\n"
        if ports and add:
            names = ", ".join(ports)
            cidr = st.settings["cluster_cidr"]
            script += ("add table bridge lab-fault\n"
                       "add chain bridge lab-fault forward { type filter hook forward priority 0 ; }\n")
            for side in ("iifname", "oifname"):
                for addr in ("saddr", "daddr"):
                    script += (f"add rule bridge lab-fault forward {side} {{ {names} }} ip {addr} {cidr} "
                               "meta length > 1280 drop\n")
        run(["ip", "netns", "exec", self.lan_netns, "nft", "-f", "-"], input=script)

    def heal(self) -> list[Fault]:
        """Undo every fault; returns those that were healed."""
        with self._locked() as st:
            healed = list(st.faults)
            for f in reversed(healed):
                node = next((n for n in st.nodes if n.name == f.args.get("node")), None)
                if f.kind == "stop-dns":
                    for p in st.pods:
                        if p.kind == "dns":
                            self._start_pod(st, p)
                elif f.kind == "kill-pod":
                    p2 = next((p for p in st.pods if p.namespace == f.args["namespace"]
                               and p.name == f.args["name"]), None)
                    if p2 is not None and not all(alive(x) for x in p2.pids):
                        _kill(p2.pids, grace=0.2)
                        self._start_pod(st, p2)
                elif f.kind == "cut-node" and node is not None:
                    ip_batch([f"link set {node.lan_port} up"], self.lan_netns)
            st.faults = []
            st.rules_hash.clear()  # heal re-programs every node from scratch
            st.dns_hash = ""
            self._mtu_table(st, add=False)
            self._sync(st)
            return healed

    # ------------------------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        self.reload()
        st = self._st
        return {
            "name": st.name,
            "status": st.status,
            "proxy_mode": st.proxy_mode,
            "lan": st.lan,
            "workstation": self.workstation_address,
            "inventory": str(self.inventory_path),
            "ssh_key": str(self.ssh_key),
            "known_hosts": str(self.known_hosts),
            "state_dir": str(self.state_dir),
            "settings": st.settings,
            "nodes": [{"name": n.name, "role": n.role, "address": n.address, "netns": n.netns,
                       "pod_cidr": n.pod_cidr, "sshd_pid": st.pids.get(f"sshd-{n.name}"),
                       "sshd_alive": alive(st.pids.get(f"sshd-{n.name}", 0))} for n in st.nodes],
            "pods": [{"namespace": p.namespace, "name": p.name, "node": p.node, "ip": p.ip, "ready": p.ready}
                     for p in st.pods],
            "services": [{"namespace": s.spec.namespace, "name": s.spec.name, "type": s.spec.type,
                          "cluster_ip": s.spec.cluster_ip, "ports": [p.model_dump() for p in s.spec.ports],
                          "lb_ingress": s.lb_ingress} for s in st.services],
            "faults": [f.model_dump() for f in st.faults],
        }


def _strip_flags(args: list[str], flags: tuple[str, ...]) -> list[str]:
    """args without `flags` (both --flag=value and --flag value forms)."""
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in flags:
            skip = True
            continue
        if a.startswith(tuple(f + "=" for f in flags)):
            continue
        out.append(a)
    return out


def _http_port(c: ContainerSpec) -> int:
    """The port the container's netexec listens on: its args' --http-port (as agnhost) else ContainerSpec.port."""
    for i, a in enumerate(c.args):
        if a.startswith("--http-port="):
            return int(a.split("=", 1)[1])
        if a == "--http-port" and i + 1 < len(c.args):
            return int(c.args[i + 1])
    return c.port


def _dns_answers(server: str) -> bool:
    """A minimal DNS query (A kubernetes.default.svc.cluster.local) over UDP: True if any reply comes back."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in ["kubernetes", "default", "svc", "cluster", "local"])
    msg = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + qname + b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(msg, (server, 53))
        data = s.recv(512)
    return data[:2] == b"\x12\x34"
