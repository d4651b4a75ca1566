"""The lab's data: what part 2 (the kubectl stand-in) and the tests read and write through `Lab`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

ProxyMode = Literal["iptables", "iptables-legacy", "nftables"]
PROXY_MODES: tuple[str, ...] = ("iptables", "iptables-legacy", "nftables")


class LabError(Exception):
    """Bad input, a missing tool, or a lab that cannot be built/changed: a clear message (CLI exit 2)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ContainerSpec(BaseModel):
    """One container of a pod: the lab's agnhost-netexec-compatible server."""

    name: str = "netexec"
    port: int = 8080
    args: list[str] = Field(default_factory=list)


class LabNode(BaseModel):
    name: str
    role: Literal["server", "agent"]
    address: str
    netns: str
    pod_cidr: str
    arch: str = "arm64"
    index: int = 0
    lan_port: str = ""  # the node's veth in the LAN namespace (bridge port)


class PodState(BaseModel):
    namespace: str
    name: str
    node: str
    ip: str
    netns: str
    labels: dict[str, str] = Field(default_factory=dict)
    containers: list[ContainerSpec] = Field(default_factory=list)
    pids: list[int] = Field(default_factory=list)
    ready: bool = False
    created: str = ""
    uid: str = ""
    veth: str = ""  # the pod's host-side veth on the node's cni0
    kind: Literal["netexec", "dns"] = "netexec"


class ServicePort(BaseModel):
    name: str | None = None
    protocol: Literal["TCP", "UDP"] = "TCP"
    port: int
    target_port: int = 0  # 0: same as port
    node_port: int | None = None

    @field_validator("protocol", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _default_target(self) -> ServicePort:
        if not self.target_port:
            self.target_port = self.port
        return self


class ServiceSpec(BaseModel):
    namespace: str = "default"
    name: str
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    headless: bool = False
    selector: dict[str, str] = Field(default_factory=dict)
    ports: list[ServicePort] = Field(default_factory=list)
    session_affinity: Literal["None", "ClientIP"] = "None"
    external_traffic_policy: Literal["Cluster", "Local"] = "Cluster"
    cluster_ip: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class ServiceState(BaseModel):
    spec: ServiceSpec
    lb_ingress: list[str] = Field(default_factory=list)
    uid: str = ""
    created: str = ""


class Fault(BaseModel):
    kind: str
    args: dict[str, str] = Field(default_factory=dict)


class LabStateModel(BaseModel):
    """state.json: everything `down` needs after a crash, and everything the API reads."""

    version: int = 1
    name: str
    status: Literal["starting", "up"] = "starting"
    builder: int = 0  # PID of the process running `up` while status is "starting"
    proxy_mode: ProxyMode = "iptables"
    lan: str  # e.g. 198.51.100.0/24
    servers: int = 1
    nodes: list[LabNode] = Field(default_factory=list)
    netns: list[str] = Field(default_factory=list)  # every namespace the lab made, in creation order
    root_links: list[str] = Field(default_factory=list)  # links in the root namespace (the workstation veth)
    pids: dict[str, int] = Field(default_factory=dict)  # infrastructure processes: sshd-<node>, agent, control
    pods: list[PodState] = Field(default_factory=list)
    services: list[ServiceState] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)
    settings: dict[str, str | int | bool] = Field(default_factory=dict)
    next_host: dict[str, int] = Field(default_factory=dict)  # per node: next pod address to try
    rules_hash: dict[str, str] = Field(default_factory=dict)  # per node: sha256 of the rules last loaded
    dns_hash: str = ""
    created: str = ""
