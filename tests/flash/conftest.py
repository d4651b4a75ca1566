"""Fixtures for the flash tests: realistic images (built once per session), an inventory, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml
from flash_images import VARIANTS, build_image, compress

from pi_cluster.flash.bootfs import BootFS

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO.parent / "shared" / "data" / "cloud-init"
TEST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2xQkYp3kq7bq0m0Tt8v6o1i7o2yJmW1wYQ3pNfL9xX test@workstation"


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Raw images and their .xz, per variant: {"trixie": ..img, "trixie.xz": ..img.xz, ...}."""
    d = tmp_path_factory.mktemp("images")
    out: dict[str, Path] = {}
    for v in VARIANTS:
        raw = build_image(d / f"{v}.img", v)
        out[v] = raw
        out[f"{v}.xz"] = compress(raw, "xz")
    return out


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


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    return write_inventory(tmp_path / "inventory", [TEST_KEY])


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `pi-cluster` CLI in a subprocess (HOME is an empty temp dir unless given)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def run(*args: str, home_dir: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, HOME=str(home_dir or home), COLUMNS="200", PI_CLUSTER_INVENTORY="")
        env.pop("SUDO_USER", None)
        return subprocess.run([sys.executable, "-m", "pi_cluster.cli.main", *args], capture_output=True,
                              text=True, env=env, timeout=timeout, cwd=tmp_path, stdin=subprocess.DEVNULL)

    return run


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


@pytest.fixture
def have_loop() -> Callable[[], None]:
    def check() -> None:
        if os.geteuid() != 0 or shutil.which("losetup") is None:
            pytest.skip("loop devices need root and losetup")
        r = subprocess.run(["losetup", "-f"], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"no free loop device: {r.stderr.strip()}")
    return check
