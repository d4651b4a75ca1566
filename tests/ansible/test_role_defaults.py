"""The roles' defaults follow the inventory contract (names and defaults of pi_cluster.inventory.DEFAULTS),
and README's variable table documents every variable a user can set."""

from __future__ import annotations

import re

import yaml
from playbook_helpers import REPO, ROLES

from pi_cluster import inventory as inv

CONTRACT = {k: v for k, v in inv.DEFAULTS.items() if k in {
    "k3s_version", "token", "api_endpoint", "api_port", "cluster_cidr", "service_cidr", "cluster_dns",
    "cluster_domain", "kube_proxy_mode", "flannel_backend", "servicelb", "extra_server_args", "extra_agent_args",
    "node_labels", "node_taints", "airgap_dir"}}


def _defaults() -> dict[str, dict[str, object]]:
    return {p.parent.parent.name: yaml.safe_load(p.read_text()) or {}
            for p in sorted(ROLES.glob("*/defaults/main.yml"))}


def test_cluster_settings_have_the_inventory_contract_names_and_defaults() -> None:
    common = _defaults()["k3s_common"]
    for key, default in CONTRACT.items():
        assert key in common, key
        # the contract's "unset" (None) is the empty string in Ansible defaults
        assert common[key] == ("" if default is None else default), key
    # no other role redefines them (one place for the defaults)
    for role, values in _defaults().items():
        if role != "k3s_common":
            assert not set(values) & set(CONTRACT), role


def test_readme_documents_every_role_variable() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`([a-z0-9_]+)`", readme))
    for role, values in _defaults().items():
        for key in values:
            if key.startswith("k3s_common_"):
                continue  # internal (derived values), not settings
            assert key in documented, f"{role}: {key} missing from README's variable table"
