"""Fixtures for lab tests: real namespaces, always torn down (Lab.down also runs when a test fails).

Lab names are unique per test process (``t<pid><letter>``) so parallel runs never collide.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from pi_cluster.lab import Lab

NEEDS = ["ip", "iptables-restore", "nft", "dnsmasq", "sshd", "curl", "dig"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root"
    missing = [t for t in NEEDS if not shutil.which(t) and not shutil.which(t, path="/usr/sbin:/sbin")]
    return f"missing tools: {missing}" if missing else None


@pytest.fixture(scope="session")
def lab_ok() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


def lab_name(tag: str) -> str:
    return f"t{os.getpid()}{tag}"


@pytest.fixture(scope="session")
def make_lab(lab_ok: None) -> Iterator[Callable[..., Lab]]:
    """Build labs with unique names; every lab made here is downed at the end of the session."""
    made: list[str] = []

    def make(tag: str, **kw: object) -> Lab:
        name = lab_name(tag)
        made.append(name)
        return Lab.up(name=name, **kw)  # type: ignore[arg-type]

    yield make
    for name in made:
        Lab.down(name)
