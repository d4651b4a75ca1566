"""Fixtures for the flash tests: realistic images (built once per session), an inventory, the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flash_helpers import TEST_KEY, write_inventory
from flash_images import VARIANTS, build_image, compress


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


@pytest.fixture
def have_loop() -> Callable[[], None]:
    def check() -> None:
        if os.geteuid() != 0 or shutil.which("losetup") is None:
            pytest.skip("loop devices need root and losetup")
        r = subprocess.run(["losetup", "-f"], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"no free loop device: {r.stderr.strip()}")
    return check
