"""`pi-cluster flash` / `image customize` end to end on realistic images, written to file targets."""

from __future__ import annotations

import lzma
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from flash_helpers import TEST_KEY, assert_schema_valid, boot, copy_sparse, write_inventory
from flash_images import DISK_ID, MiB, compress

from pi_cluster.flash.bootfs import mbr_disk_id

CGROUP = ("cgroup_memory=1", "cgroup_enable=memory")


def cmdline_checks(cmdline: str, root_token: str) -> list[str]:
    assert cmdline.endswith("\n") and cmdline.count("\n") == 1, f"cmdline is not one line: {cmdline!r}"
    tokens = cmdline.split()
    assert root_token in tokens, f"{root_token} lost: {cmdline!r}"
    for flag in CGROUP:
        assert tokens.count(flag) == 1, f"{flag} not exactly once: {cmdline!r}"
    return tokens


def seed(img: Path) -> dict[str, bytes]:
    fs = boot(img)
    return {n: fs.read(n) for n in ("user-data", "network-config", "meta-data")}


ROOT = {"trixie": f"root=PARTUUID={DISK_ID}-02", "bookworm": f"root=PARTUUID={DISK_ID}-02",
        "ubuntu": "root=LABEL=writable"}


@pytest.mark.parametrize("variant", ["trixie", "ubuntu"])
def test_cloud_init_images(variant: str, images: dict[str, Path], inventory: Path, cli, tmp_path: Path) -> None:
    out = tmp_path / "node1.img"
    r = cli("flash", str(images[f"{variant}.xz"]), f"node1={out}", "-i", str(inventory), "--yes")
    assert r.returncode == 0, r.stderr + r.stdout
    # everything outside the boot partition is the image, byte for byte
    raw = images[variant].read_bytes()
    got = out.read_bytes()
    assert len(got) == len(raw)
    assert got[:MiB] == raw[:MiB], "partition table differs"
    assert mbr_disk_id(got) == DISK_ID
    boot_end = (1 if variant == "ubuntu" else 4) * MiB + 64 * MiB
    assert got[boot_end:] == raw[boot_end:], "rootfs differs from the image"

    files = seed(out)
    assert_schema_valid(files)
    ud = yaml.safe_load(files["user-data"])
    assert files["user-data"].startswith(b"#cloud-config\n")
    assert ud["hostname"] == "node1"
    assert ud["user"]["name"] == "pi" and ud["user"]["ssh_authorized_keys"] == [TEST_KEY]
    assert ud["user"]["lock_passwd"] is True and ud["ssh_pwauth"] is False
    assert "users" not in ud, "plural users: drops the distro's default groups"
    assert ud["timezone"] == "Europe/Berlin"
    assert ["systemctl", "enable", "--now", "ssh"] in ud["runcmd"]
    swap = [f for f in ud["write_files"] if f["path"].startswith("/etc/rpi/swap.conf.d/")]
    assert swap and "Mechanism=none" in swap[0]["content"] and "[Main]" in swap[0]["content"]
    net = yaml.safe_load(files["network-config"])["network"]
    eth0 = net["ethernets"]["eth0"]
    assert eth0["addresses"] == ["192.0.2.11/24"] and eth0["dhcp4"] is False
    assert eth0["routes"] == [{"to": "default", "via": "192.0.2.1"}] and "gateway4" not in eth0
    assert eth0["nameservers"]["addresses"] == ["192.0.2.1", "198.51.100.53"]
    iid = yaml.safe_load(files["meta-data"])["instance-id"]
    cmdline = boot(out).read_text("cmdline.txt")
    tokens = cmdline_checks(cmdline, ROOT[variant])
    assert f"ds=nocloud;i={iid}" in tokens
    assert "systemd.run=/boot/firstrun.sh" not in tokens
    assert "firstrun.sh" not in boot(out).list()
    assert boot(out).read("config.txt") == boot(images[variant]).read("config.txt")

    # customising the result twice more keeps every flag once and one (new) ds= token
    for _ in range(2):
        r = cli("image", "customize", str(out), "--node", "node2", "-i", str(inventory))
        assert r.returncode == 0, r.stderr + r.stdout
    cmdline = boot(out).read_text("cmdline.txt")
    tokens = cmdline_checks(cmdline, ROOT[variant])
    ds = [t for t in tokens if t.startswith("ds=nocloud")]
    files = seed(out)
    assert_schema_valid(files)
    assert ds == [f"ds=nocloud;i={yaml.safe_load(files['meta-data'])['instance-id']}"]
    assert yaml.safe_load(files["user-data"])["hostname"] == "node2"


def test_bookworm_firstrun(images: dict[str, Path], inventory: Path, cli, tmp_path: Path) -> None:
    out = tmp_path / "node2.img"
    r = cli("flash", str(images["bookworm.xz"]), f"node2={out}", "-i", str(inventory), "--yes")
    assert r.returncode == 0, r.stderr + r.stdout
    fs = boot(out)
    names = fs.list()
    assert "firstrun.sh" in names and "meta-data" not in names and "user-data" not in names
    script = fs.read_text("firstrun.sh")
    assert script.startswith("#!/bin/bash\n")
    assert script.rstrip("\n").splitlines()[-3:] == [
        "rm -f /boot/firstrun.sh", "sed -i 's| systemd.run.*||g' /boot/cmdline.txt", "exit 0"]
    assert "NEW_HOSTNAME=node2" in script and "NEW_USER=pi" in script and TEST_KEY in script
    assert "address1=192.0.2.12/24,192.0.2.1" in script and "static ip_address=192.0.2.12/24" in script
    assert "PasswordAuthentication no" in script and "systemctl enable ssh" in script
    assert "Mechanism=none" in script and "dphys-swapfile" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # syntactically valid shell
    cmdline = fs.read_text("cmdline.txt")
    tokens = cmdline_checks(cmdline, ROOT["bookworm"])
    assert cmdline.rstrip("\n").endswith(
        " systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target")
    # the script's own sed (run at first boot) leaves a clean cmdline that still has the cgroup flags
    after = re.sub(r" systemd\.run.*", "", cmdline)
    assert cmdline_checks(after, ROOT["bookworm"]) and "systemd.run" not in after
    assert tokens.index("cgroup_memory=1") < tokens.index("systemd.run=/boot/firstrun.sh")

    for _ in range(2):
        r = cli("image", "customize", str(out), "--node", "node2", "-i", str(inventory))
        assert r.returncode == 0, r.stderr + r.stdout
    cmdline = boot(out).read_text("cmdline.txt")
    tokens = cmdline_checks(cmdline, ROOT["bookworm"])
    assert tokens.count("systemd.run=/boot/firstrun.sh") == 1


def test_legacy_format_forced(images: dict[str, Path], inventory: Path, cli, tmp_path: Path) -> None:
    out = copy_sparse(images["bookworm"], tmp_path / "legacy.img")
    r = cli("image", "customize", str(out), "--node", "node1", "-i", str(inventory), "--init-format", "legacy")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "warning" in r.stdout
    fs = boot(out)
    assert fs.read("ssh") == b""
    assert fs.read_text("userconf.txt") == "pi:!\n"
    cmdline_checks(fs.read_text("cmdline.txt"), ROOT["bookworm"])


def test_three_targets_one_run_and_failures_kept_per_target(images: dict[str, Path], inventory: Path, cli,
                                                            tmp_path: Path) -> None:
    outs = [tmp_path / f"card{i}.img" for i in (1, 2, 3)]
    bad = tmp_path / "no-such-dir" / "card4.img"
    # an existing file gets overwritten (and truncated)
    outs[1].write_bytes(b"old contents" * 100_000)
    r = cli("flash", str(images["trixie.xz"]), *(f"node{i}={o}" for i, o in zip((1, 2, 3), outs, strict=True)),
            "-i", str(inventory), "--yes", "--no-verify")
    assert r.returncode == 0, r.stderr + r.stdout
    hostnames, addrs = set(), set()
    for o in outs:
        assert o.stat().st_size == images["trixie"].stat().st_size
        files = seed(o)
        assert_schema_valid(files)
        hostnames.add(yaml.safe_load(files["user-data"])["hostname"])
        eth0 = yaml.safe_load(files["network-config"])["network"]["ethernets"]["eth0"]
        addrs.add(tuple(eth0.get("addresses", ["dhcp"])))
    assert hostnames == {"node1", "node2", "node3"}
    assert addrs == {("192.0.2.11/24",), ("192.0.2.12/24",), ("dhcp",)}
    # node3: DHCP plus Wi-Fi, regulatory domain on the cmdline, PSK only inside the image
    ud = yaml.safe_load(seed(outs[2])["user-data"])
    wifi = [f for f in ud["write_files"] if "wifi" in f["path"]]
    assert wifi and "labnet" in wifi[0]["content"] and "regulatory-domain: DE" in wifi[0]["content"]
    assert "cfg80211.ieee80211_regdom=DE" in boot(outs[2]).read_text("cmdline.txt").split()
    assert "correct-horse-battery" not in r.stdout + r.stderr

    # one bad target among good ones: reported, the others succeed, exit 1
    r = cli("flash", str(images["trixie.xz"]), f"node1={outs[0]}", f"node2={bad}", "-i", str(inventory), "--yes")
    assert r.returncode == 1, r.stderr + r.stdout
    assert "does not exist" in r.stdout and "FAILED" in r.stdout
    assert yaml.safe_load(seed(outs[0])["user-data"])["hostname"] == "node1"
    assert not bad.exists()


@pytest.mark.parametrize("kind", ["gz", "zst", "zip", "img"])
def test_other_compressions(kind: str, images: dict[str, Path], inventory: Path, cli, tmp_path: Path) -> None:
    src = copy_sparse(images["trixie"], tmp_path / "src.img")
    img = src if kind == "img" else compress(src, kind)
    out = tmp_path / "out.img"
    r = cli("flash", str(img), f"node1={out}", "-i", str(inventory), "--yes")
    assert r.returncode == 0, r.stderr + r.stdout
    raw, got = src.read_bytes(), out.read_bytes()
    assert got[:MiB] == raw[:MiB] and got[68 * MiB:] == raw[68 * MiB:]
    assert yaml.safe_load(seed(out)["user-data"])["hostname"] == "node1"


# ---- bad input: clear error, nonzero exit, nothing bootable-but-wrong -------------------------------------


def test_truncated_xz_refused_before_writing(images: dict[str, Path], inventory: Path, cli, tmp_path: Path) -> None:
    data = images["trixie.xz"].read_bytes()
    bad = tmp_path / "truncated.img.xz"
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.img"
    r = cli("flash", str(bad), f"node1={out}", "-i", str(inventory), "--yes")
    assert r.returncode == 2, r.stderr + r.stdout
    assert "truncated.img.xz" in r.stderr and "xz" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_corrupt_xz_leaves_targets_unbootable(images: dict[str, Path], inventory: Path, cli, tmp_path: Path) -> None:
    data = bytearray(images["trixie.xz"].read_bytes())
    # damage compressed data in the middle (the index at the end stays valid, so this is found only while
    # decompressing)
    mid = len(data) // 2
    data[mid: mid + 64] = bytes(64)
    bad = tmp_path / "corrupt.img.xz"
    bad.write_bytes(bytes(data))
    assert subprocess.run(["xz", "-l", str(bad)], capture_output=True).returncode == 0
    outs = [tmp_path / "a.img", tmp_path / "b.img"]
    # b.img held a previous, bootable image: it must not stay bootable
    copy_sparse(images["trixie"], outs[1])
    r = cli("flash", str(bad), f"node1={outs[0]}", f"node2={outs[1]}", "-i", str(inventory), "--yes")
    assert r.returncode == 1, r.stderr + r.stdout
    assert "decompression failed" in r.stdout and "corrupt" in r.stdout.lower()
    for o in outs:
        head = o.read_bytes()[:MiB]
        assert head == bytes(MiB), f"{o.name}: first MiB not zeroed after a failed flash"


def test_zip_without_image(inventory: Path, cli, tmp_path: Path) -> None:
    import zipfile
    z = tmp_path / "nothing.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("README.txt", "no image here")
    out = tmp_path / "out.img"
    r = cli("flash", str(z), f"node1={out}", "-i", str(inventory), "--yes")
    assert r.returncode == 2 and "holds no .img" in r.stderr, r.stderr
    assert not out.exists()


def test_missing_node_and_bad_pairs(images: dict[str, Path], inventory: Path, cli, tmp_path: Path) -> None:
    out = tmp_path / "out.img"
    r = cli("flash", str(images["trixie.xz"]), f"node1={out}", f"node9={tmp_path / 'x.img'}", "-i",
            str(inventory), "--yes")
    assert r.returncode == 2 and "node9" in r.stderr and "not in inventory" in r.stderr, r.stderr
    assert not out.exists(), "nothing may be written when any node is missing"
    r = cli("flash", str(images["trixie.xz"]), "node1", "-i", str(inventory), "--yes")
    assert r.returncode == 2 and "NODE=TARGET" in r.stderr
    r = cli("flash", str(images["trixie.xz"]), f"node1={out}", f"node1={out}.2", "-i", str(inventory), "--yes")
    assert r.returncode == 2 and "more than once" in r.stderr
    r = cli("flash", str(images["trixie.xz"]), f"node1={out}", "-i", str(inventory))
    assert r.returncode == 2 and "--yes" in r.stderr, "must not write without asking"
    assert not out.exists()


def test_ssh_keys_from_workstation_or_refuse(images: dict[str, Path], cli, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv-nokeys", keys=None)
    out = tmp_path / "out.img"
    empty_home = tmp_path / "empty-home"
    empty_home.mkdir()
    r = cli("flash", str(images["trixie.xz"]), f"node1={out}", "-i", str(inv), "--yes", home_dir=empty_home)
    assert r.returncode == 2 and "no SSH public key" in r.stderr, r.stderr
    assert not out.exists()
    home = tmp_path / "ws-home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@laptop", "-f",
                    str(home / ".ssh" / "id_ed25519")], check=True)
    pub = (home / ".ssh" / "id_ed25519.pub").read_text().strip()
    r = cli("flash", str(images["trixie.xz"]), f"node1={out}", "-i", str(inv), "--yes", home_dir=home)
    assert r.returncode == 0, r.stderr + r.stdout
    assert yaml.safe_load(seed(out)["user-data"])["user"]["ssh_authorized_keys"] == [pub]


def test_image_customize_refuses_compressed(images: dict[str, Path], inventory: Path, cli) -> None:
    r = cli("image", "customize", str(images["trixie.xz"]), "--node", "node1", "-i", str(inventory))
    assert r.returncode == 2 and "compressed" in r.stderr


def test_python_lzma_reads_what_we_wrote(images: dict[str, Path]) -> None:
    """The xz fixtures are multi-block like Raspberry Pi OS (so `xz -T0` can decode in parallel)."""
    r = subprocess.run(["xz", "--robot", "-l", str(images["trixie.xz"])], capture_output=True, text=True,
                       check=True)
    blocks = int(next(ln for ln in r.stdout.splitlines() if ln.startswith("totals")).split("\t")[2])
    assert blocks > 1
    assert lzma.decompress(images["trixie.xz"].read_bytes()) == images["trixie"].read_bytes()


def test_ctrl_c_leaves_targets_unbootable(images: dict[str, Path], inventory: Path, tmp_path: Path) -> None:
    """A real SIGINT (what Ctrl-C sends) in the middle of writing: every target is reported failed and left
    with its first MiB zeroed; a file that held a bootable image before is no longer bootable."""
    import signal
    import threading

    from pi_cluster import inventory as inv
    from pi_cluster.flash import core

    outs = [tmp_path / "a.img", copy_sparse(images["bookworm"], tmp_path / "b.img")]
    cluster = inv.load(str(inventory))
    plan = core.plan(str(images["trixie.xz"]), [("node1", str(outs[0])), ("node2", str(outs[1]))], cluster)
    main = threading.main_thread().ident
    sent = threading.Event()

    def on_event(ev) -> None:
        if ev.phase == "write" and ev.done >= 8 * MiB and not sent.is_set():
            sent.set()
            signal.pthread_kill(main, signal.SIGINT)  # type: ignore[arg-type]

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a fresh process
    try:
        report = core.flash(plan, verify=True, emit=on_event)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sent.is_set()
    assert report.interrupted and not report.ok
    assert all(not t.ok and "cancel" in (t.error or "") for t in report.targets), report.targets
    for o in outs:
        assert o.read_bytes()[:MiB] == bytes(MiB), f"{o.name}: bootable after Ctrl-C"


def test_verification_catches_data_changed_under_it(images: dict[str, Path], inventory: Path,
                                                    tmp_path: Path) -> None:
    """Bytes that differ on the target after writing (what a failing card returns) fail verification: the
    target is reported failed and its first MiB zeroed; the other target of the run still verifies."""
    import os

    from pi_cluster import inventory as inv
    from pi_cluster.flash import core

    bad, good = tmp_path / "bad.img", tmp_path / "good.img"
    cluster = inv.load(str(inventory))
    plan = core.plan(str(images["trixie.xz"]), [("node1", str(bad)), ("node2", str(good))], cluster)
    damaged = []

    def on_event(ev) -> None:
        if ev.key == str(bad) and ev.phase == "verify" and ev.done == 0 and not damaged:
            fd = os.open(bad, os.O_RDWR)
            try:  # flip bytes inside the ext4 rootfs, after the writer's fsync, before its read-back
                os.pwrite(fd, b"\xde\xad\xbe\xef", 80 * MiB)
            finally:
                os.close(fd)
            damaged.append(True)

    report = core.flash(plan, verify=True, emit=on_event)
    by_target = {t.target: t for t in report.targets}
    assert damaged
    assert not by_target[str(bad)].ok and "verification failed" in (by_target[str(bad)].error or "")
    assert str(80 * MiB // (4 * MiB) * 4 * MiB) in (by_target[str(bad)].error or "")
    assert bad.read_bytes()[:MiB] == bytes(MiB)
    assert by_target[str(good)].ok and by_target[str(good)].verified
