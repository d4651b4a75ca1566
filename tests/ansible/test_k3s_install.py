"""Installing the pinned k3s: from a release (served on loopback, laid out like GitHub's, checksum-verified)
and from an airgap directory; never replaced by site.yml's roles, replaced by k3s_upgrade. Real
ansible-playbook runs against this machine into temporary directories (k3s_manage_service=false).

The "k3s binary" is a TEST DOUBLE: a shell script that prints `k3s version <v> (...)` like the real one."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playbook_helpers import ARCH, BINARY, fake_k3s, local_host, publish, run_playbook, serve, write_yaml

V1, V2 = "v1.31.4+k3s1", "v1.31.5+k3s1"

INSTALL = """\
- name: Install k3s files
  hosts: k3s_cluster
  gather_facts: false
  vars:
    k3s_manage_service: false
  pre_tasks:
    - name: Architecture facts
      ansible.builtin.setup:
        gather_subset: ["!all"]
  roles:
    - role: {role}
"""


@pytest.fixture
def release(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "release"
    root.mkdir()
    with serve(root) as url:
        yield root, url


def _setup(tmp_path: Path, url: str | None, role: str, **group_vars: object) -> tuple[Path, Path, Path]:
    node = tmp_path / "node"
    inv = write_yaml(tmp_path / "inv" / "hosts.yml", {"k3s_cluster": {"children": {"server": {"hosts": {
        "s1": local_host(ansible_host="192.0.2.11", k3s_install_dir=str(node / "bin"),
                         k3s_images_dir=str(node / "images"), k3s_config_dir=str(node / "etc"))}}}}})
    gv: dict[str, object] = {"k3s_version": V1, **group_vars}
    if url:
        gv.update(k3s_release_url=url, k3s_install_script_url=f"{url}/install.sh")
    write_yaml(tmp_path / "inv" / "group_vars" / "all.yml", gv)
    (node / "bin").mkdir(parents=True, exist_ok=True)
    playbook = tmp_path / f"{role}.yml"
    playbook.write_text(INSTALL.format(role=role))
    return inv.parent, playbook, node


def _version(node: Path) -> str:
    return subprocess.run([str(node / "bin" / "k3s"), "--version"], capture_output=True, text=True,
                          check=True).stdout.split()[2]


def _install_only_role(tmp_path: Path) -> str:
    """A role (a test double of k3s_server's first steps) running k3s_common's arch + install tasks."""
    roles = tmp_path / "roles" / "install_only" / "tasks"
    roles.mkdir(parents=True, exist_ok=True)
    (roles / "main.yml").write_text(
        "- {name: Arch, ansible.builtin.import_role: {name: k3s_common, tasks_from: arch}}\n"
        "- {name: Install, ansible.builtin.import_role: {name: k3s_common, tasks_from: install}}\n")
    return "install_only"


def test_download_verified_idempotent_and_not_replaced_by_site(tmp_path: Path, release: tuple[Path, str]) -> None:
    root, url = release
    publish(root, V1)
    publish(root, V2)
    role = _install_only_role(tmp_path)
    inv, playbook, node = _setup(tmp_path, url, role)

    first = run_playbook(playbook, inv)  # the role double is found in roles/ next to the playbook
    assert first.rc == 0, first.output
    assert _version(node) == V1
    assert (node / "bin" / "k3s-install.sh").read_text().startswith("#!/bin/sh")
    assert (node / "bin" / "k3s").stat().st_mode & 0o777 == 0o755
    assert first.changed("s1") == 2

    # (a second identical run changes nothing: test_site_k3s.py)

    # the inventory now pins V2: the provisioning roles leave the installed k3s alone and say why
    write_yaml(inv / "group_vars" / "all.yml", {"k3s_version": V2, "k3s_release_url": url,
                                                  "k3s_install_script_url": f"{url}/install.sh"})
    pinned = run_playbook(playbook, inv)
    assert pinned.rc == 0 and pinned.changed("s1") == 0, pinned.output
    assert _version(node) == V1
    assert f"runs k3s {V1}, the inventory pins {V2}" in pinned.output
    assert "pi-cluster upgrade" in pinned.output


def test_upgrade_role_replaces_the_binary(tmp_path: Path, release: tuple[Path, str]) -> None:
    root, url = release
    publish(root, V2)
    inv, playbook, node = _setup(tmp_path, url, "k3s_upgrade", k3s_version=V2)
    (node / "bin" / "k3s").write_bytes(fake_k3s(V1))
    (node / "bin" / "k3s").chmod(0o755)
    run = run_playbook(playbook, inv)
    assert run.rc == 0, run.output
    assert _version(node) == V2
    again = run_playbook(playbook, inv)
    assert again.rc == 0 and again.changed("s1") == 0, again.output


def test_download_with_a_wrong_checksum_fails_and_installs_nothing(tmp_path: Path,
                                                                   release: tuple[Path, str]) -> None:
    root, url = release
    publish(root, V1, corrupt=True)
    inv, playbook, node = _setup(tmp_path, url, "k3s_upgrade")
    run = run_playbook(playbook, inv)
    assert run.rc != 0
    assert run.recap["s1"]["failed"] == 1
    assert "checksum" in run.output.lower()
    assert not (node / "bin" / "k3s").exists()


def test_airgap_copies_binary_script_and_images_verified(tmp_path: Path) -> None:
    airgap = tmp_path / "airgap"
    publish(airgap, V1)
    for f in (airgap / V1).iterdir():
        f.rename(airgap / f.name)
    (airgap / "install.sh").write_text("#!/bin/sh\necho airgap install script\n")
    (airgap / f"k3s-airgap-images-{ARCH}.tar.zst").write_bytes(b"\x28\xb5\x2f\xfd images double")
    inv, playbook, node = _setup(tmp_path, None, "k3s_upgrade", airgap_dir=str(airgap),
                                 k3s_release_url="http://192.0.2.1:9/never-used")
    run = run_playbook(playbook, inv)
    assert run.rc == 0, run.output
    assert _version(node) == V1
    assert (node / "bin" / "k3s-install.sh").read_text() == "#!/bin/sh\necho airgap install script\n"
    assert (node / "images" / f"k3s-airgap-images-{ARCH}.tar.zst").read_bytes().endswith(b"images double")
    again = run_playbook(playbook, inv)
    assert again.rc == 0 and again.changed("s1") == 0, again.output

    # a binary that does not match the release's sha256sum file is refused
    (node / "bin" / "k3s").unlink()
    (airgap / BINARY).write_bytes(fake_k3s(V1) + b"# tampered\n")
    bad = run_playbook(playbook, inv)
    assert bad.rc != 0
    assert f"does not match sha256sum-{ARCH}.txt" in bad.output
    assert not (node / "bin" / "k3s").exists()
