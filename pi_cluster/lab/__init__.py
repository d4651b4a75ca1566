"""The lab: a virtual Pi cluster on one Linux machine (network namespaces, real sshd, real kernel rules).

See docs in `pi_cluster.lab.core` and the contract in notes/LAB_API.md.
"""

from pi_cluster.lab.core import Lab, PodRequest
from pi_cluster.lab.models import (
    ContainerSpec,
    Fault,
    LabError,
    LabNode,
    PodState,
    ServicePort,
    ServiceSpec,
    ServiceState,
)

__all__ = ["ContainerSpec", "Fault", "Lab", "LabError", "LabNode", "PodRequest", "PodState", "ServicePort",
           "ServiceSpec", "ServiceState"]
