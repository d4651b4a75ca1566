"""Run pi-cluster's playbooks through ansible-runner and turn its event stream into progress and a recap.

>>> result = run_playbook("site", "inventory/mycluster", on_progress=print)   # doctest: +SKIP
>>> result.ok, [f.host for f in result.failures]                                # doctest: +SKIP

Nothing here prints: progress goes to the ``on_progress`` callback, the outcome is the returned
:class:`RunResult`.
"""

from pi_cluster.provision.runner import (
    PLAYBOOKS,
    Change,
    Failure,
    HostProgress,
    ProvisionError,
    RunResult,
    RunState,
    playbooks_dir,
    resolve_playbook,
    run_playbook,
)

__all__ = [
    "PLAYBOOKS",
    "Change",
    "Failure",
    "HostProgress",
    "ProvisionError",
    "RunResult",
    "RunState",
    "playbooks_dir",
    "resolve_playbook",
    "run_playbook",
]
