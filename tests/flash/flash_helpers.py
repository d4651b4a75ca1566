"""Plain helpers of the flash tests (kept out of conftest.py: pytest imports every conftest.py as the module
`conftest`, so `from conftest import ...` picks whichever directory's conftest came last)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from pi_cluster.flash.bootfs import BootFS

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO.parent / "shared" / "data" / "cloud-init"
TEST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2xQkYp3kq7bq0m0Tt8v6o1i7o2yJmW1wYQ3pNfL9xX test@workstation"


INVENTORY = {
    "k3s_cluster": {
        "children": {
            "server": {"hosts": {"node1": {"ansible_host": "192.0.2.11"}}},
            "agent": {"hosts": {
                "node2": {"ansible_host": "192.0.2.12"},
                "node3": {"ansible_host": "192.0.2.13", "network_mode": "dhcp", "wifi_country": "de",
                          "wifi_ssid": "labnet", "wifi_psk": "correct-horse-battery"},
            }},
        },
        "vars": {"ansible_user": "pi"},
    }
}
GROUP_VARS = {
    "k3s_version": "v1.31.4+k3s1",
    "network_gateway": "192.0.2.1",
    "network_dns": ["192.0.2.1", "198.51.100.53"],
    "timezone": "Europe/Berlin",
}


def write_inventory(d: Path, keys: list[str] | None = None) -> Path:
    (d / "group_vars").mkdir(parents=True, exist_ok=True)
    (d / "hosts.yml").write_text(yaml.safe_dump(INVENTORY))
    gv = dict(GROUP_VARS)
    if keys is not None:
        gv["ssh_public_keys"] = keys
    (d / "group_vars" / "all.yml").write_text(yaml.safe_dump(gv))
    return d


def boot(img: Path) -> BootFS:
    return BootFS.open_image(img)


def schema(name: str) -> jsonschema.protocols.Validator:
    path = SCHEMAS / name
    if not path.exists():
        pytest.fail(f"cloud-init schema {path} missing: tests need ../shared/data/cloud-init beside the repo")
    s = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(s)
    return cls(s)


def assert_schema_valid(files: dict[str, bytes]) -> None:
    ud = yaml.safe_load(files["user-data"])
    errors = sorted(schema("schema-cloud-config-v1.json").iter_errors(ud), key=str)
    assert not errors, "user-data fails cloud-config schema: " + "; ".join(e.message for e in errors[:5])
    nc = yaml.safe_load(files["network-config"])
    errors = sorted(schema("schema-network-config-v2.json").iter_errors(nc), key=str)
    assert not errors, "network-config fails netplan v2 schema: " + "; ".join(e.message for e in errors[:5])


def copy_sparse(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
    return dst
