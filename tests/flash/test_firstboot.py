"""cmdline.txt editing and first-boot rendering, without images."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pi_cluster.flash import firstboot
from pi_cluster.flash.firstboot import CGROUP_FLAGS, FIRSTRUN_CMDLINE, NodeConfig, edit_cmdline

token = st.from_regex(r"[a-z][a-z0-9_.,=/:-]{0,20}", fullmatch=True).filter(lambda t: not t.startswith("systemd.run"))


@given(st.lists(token, max_size=12), st.booleans())
def test_edit_cmdline_is_idempotent_and_keeps_tokens(tokens: list[str], firstrun: bool) -> None:
    original = " ".join(["root=PARTUUID=1a2b3c4d-02", *tokens]) + "\n"
    tail = FIRSTRUN_CMDLINE if firstrun else ""
    once = edit_cmdline(original, add=list(CGROUP_FLAGS), remove_prefixes=("ds=nocloud",), tail=tail)
    twice = edit_cmdline(once, add=list(CGROUP_FLAGS), remove_prefixes=("ds=nocloud",), tail=tail)
    assert once == twice
    assert once.count("\n") == 1 and once.endswith("\n")
    out = once.split()
    for flag in CGROUP_FLAGS:
        assert out.count(flag) == 1
    kept = [t for t in original.split() if not t.startswith("ds=nocloud")]
    assert out[: len(kept)] == kept, "existing tokens must stay, in order, untouched"
    assert out[0] == "root=PARTUUID=1a2b3c4d-02"
    if firstrun:
        assert once.endswith(FIRSTRUN_CMDLINE + "\n")


def test_detect_format() -> None:
    assert firstboot.detect_format({"cmdline.txt", "config.txt", "meta-data", "user-data"}) == "cloud-init"
    assert firstboot.detect_format({"cmdline.txt", "config.txt"}) == "firstrun"
    assert firstboot.detect_format({"config.txt"}) == "legacy"


def test_password_is_hashed_never_written_plain() -> None:
    h = firstboot.hash_password("hunter2-long")
    assert h.startswith("$6$") and "hunter2" not in h
    cfg = NodeConfig(hostname="n1", user="pi", keys=["ssh-ed25519 AAAA x"], password_hash=h, mode="dhcp")
    files = firstboot.render_cloud_init(cfg, "iid-1")
    assert b"hunter2" not in files["user-data"] and h.encode() in files["user-data"]
    assert b"hunter2" not in firstboot.render_firstrun(cfg)
