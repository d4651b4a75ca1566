"""First-boot configuration for one node, in the format its image reads.

Three formats, picked from what the image's boot partition holds (``detect_format``):

- ``cloud-init``: NoCloud seed (bootfs has ``meta-data``; Raspberry Pi OS Trixie, Ubuntu): ``user-data``,
  ``network-config`` (netplan v2), ``meta-data``, and `` ds=nocloud;i=<instance-id>`` on the cmdline.
- ``firstrun``: ``firstrun.sh`` run once by systemd (Raspberry Pi OS Bookworm and older, as Raspberry Pi
  Imager does it), started by `` systemd.run=/boot/firstrun.sh ...`` on the cmdline.
- ``legacy``: an empty ``ssh`` file and ``userconf.txt`` (``user:<crypt hash>``); sets only the user.

Every format also adds the memory cgroup flags k3s needs to the (one-line) cmdline.txt, exactly once.

>>> cfg = NodeConfig(hostname="node1", user="pi", keys=["ssh-ed25519 AAAA... me@laptop"])
>>> files = render_cloud_init(cfg, "pi-cluster-node1-1")
>>> files["user-data"].startswith(b"#cloud-config")
True
"""

from __future__ import annotations

import ipaddress
import secrets
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pi_cluster.flash.bootfs import BootFS

Format = Literal["cloud-init", "firstrun", "legacy"]
FORMATS: tuple[Format, ...] = ("cloud-init", "firstrun", "legacy")

CGROUP_FLAGS = ("cgroup_memory=1", "cgroup_enable=memory")
FIRSTRUN_CMDLINE = (
    " systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"
)
SWAP_OFF_CONF = "/etc/rpi/swap.conf.d/90-pi-cluster.conf"


class FirstBootError(Exception):
    """The node's settings cannot be expressed in the image's format, or the result is invalid."""


@dataclass
class NodeConfig:
    """Everything the first boot sets on one node (built from the inventory by :func:`from_node`)."""

    hostname: str
    user: str
    keys: list[str]
    password_hash: str | None = None  # crypt SHA-512; None = password locked (key-only login)
    mode: Literal["static", "dhcp"] = "dhcp"
    address: str | None = None  # CIDR, e.g. 192.168.1.11/24
    gateway: str | None = None
    dns: list[str] = field(default_factory=list)
    timezone: str = "Etc/UTC"
    wifi_country: str | None = None
    wifi_ssid: str | None = None
    wifi_psk: str | None = field(default=None, repr=False)


def hash_password(password: str) -> str:
    """crypt(3) SHA-512 hash (``$6$...``) via ``openssl passwd -6``; the password goes through stdin."""
    exe = shutil.which("openssl")
    if exe is None:
        raise FirstBootError("openssl is needed to hash the login password but is not installed")
    r = subprocess.run([exe, "passwd", "-6", "-stdin"], input=password + "\n", capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.startswith("$6$"):
        raise FirstBootError("openssl passwd -6 failed to hash the password")
    return r.stdout.strip()


# --------------------------------------------------------------------------------------------------
# cmdline.txt


def edit_cmdline(text: str, *, add: list[str], remove_prefixes: tuple[str, ...] = (), tail: str = "") -> str:
    """Return cmdline.txt as ONE line: every token kept in order (root=PARTUUID untouched), tokens starting
    with ``remove_prefixes`` dropped, each of ``add`` appended once, then ``tail`` (which must stay last)."""
    line = " ".join(text.split())  # one line, single spaces, no trailing newline
    # an earlier firstrun hook: strip it and everything after it, like firstrun.sh's own sed does
    line = line.split(" systemd.run=", 1)[0] if " systemd.run=" in f" {line}" else line
    if line.startswith("systemd.run="):
        line = ""
    tokens = [t for t in line.split(" ") if t and not t.startswith(remove_prefixes)]
    for t in add:
        if t not in tokens:
            tokens.append(t)
    return " ".join(tokens) + tail + "\n"


# --------------------------------------------------------------------------------------------------
# cloud-init NoCloud


def instance_id(cfg: NodeConfig) -> str:
    """Unique per flash (a re-flashed card must run cloud-init again), recognisably the node's."""
    return f"pi-cluster-{cfg.hostname}-{secrets.token_hex(4)}"


def _netplan(cfg: NodeConfig) -> dict[str, Any]:
    eth: dict[str, Any] = {"dhcp4": cfg.mode == "dhcp", "optional": True}
    if cfg.mode == "static":
        if not cfg.address:
            raise FirstBootError(f"{cfg.hostname}: static addressing needs an address (ansible_host)")
        eth["addresses"] = [cfg.address]
        if cfg.gateway:
            eth["routes"] = [{"to": "default", "via": cfg.gateway}]
        if cfg.dns:
            eth["nameservers"] = {"addresses": list(cfg.dns)}
    return {"network": {"version": 2, "ethernets": {"eth0": eth}}}


def _wifi_netplan(cfg: NodeConfig) -> str:
    """Wi-Fi as a netplan file written by cloud-init (the network-config schema has no ``wifis``)."""
    wlan: dict[str, Any] = {"dhcp4": True, "optional": True,
                            "access-points": {cfg.wifi_ssid: {"password": cfg.wifi_psk} if cfg.wifi_psk else {}}}
    if cfg.wifi_country:
        wlan["regulatory-domain"] = cfg.wifi_country.upper()
    return _dump({"network": {"version": 2, "wifis": {"wlan0": wlan}}})


def cloud_config(cfg: NodeConfig) -> dict[str, Any]:
    user: dict[str, Any] = {
        "name": cfg.user,
        "ssh_authorized_keys": list(cfg.keys),
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "shell": "/bin/bash",
    }
    if cfg.password_hash:
        user["lock_passwd"] = False
        user["hashed_passwd"] = cfg.password_hash
    else:
        user["lock_passwd"] = True
    write_files: list[dict[str, Any]] = [
        {"path": SWAP_OFF_CONF, "content": "[Main]\nMechanism=none\n", "permissions": "0644"},
    ]
    if cfg.wifi_ssid:
        write_files.append({"path": "/etc/netplan/90-pi-cluster-wifi.yaml", "content": _wifi_netplan(cfg),
                            "permissions": "0600"})
    runcmd: list[str | list[str]] = [
        ["systemctl", "enable", "--now", "ssh"],
        "systemctl disable --now dphys-swapfile 2>/dev/null || true",
        "swapoff -a || true",
    ]
    if cfg.wifi_ssid:
        runcmd.append("rfkill unblock wifi || true")
        runcmd.append("command -v netplan >/dev/null && netplan apply || true")
    return {
        "hostname": cfg.hostname,
        "manage_etc_hosts": True,
        "timezone": cfg.timezone,
        "ssh_pwauth": False,
        "disable_root": True,
        "user": user,
        "write_files": write_files,
        "runcmd": runcmd,
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (readable write_files content)."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def _dump(data: object) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=10_000)


def render_cloud_init(cfg: NodeConfig, iid: str) -> dict[str, bytes]:
    """The three NoCloud seed files."""
    user_data = "#cloud-config\n" + _dump(cloud_config(cfg))
    network = _dump(_netplan(cfg))
    meta = _dump({"instance-id": iid, "local-hostname": cfg.hostname})
    return {"user-data": user_data.encode(), "network-config": network.encode(), "meta-data": meta.encode()}


def validate_cloud_init(files: dict[str, bytes]) -> None:
    """Parse the generated files; run ``cloud-init schema`` on them when cloud-init is installed."""
    for name in ("user-data", "network-config", "meta-data"):
        try:
            data = yaml.safe_load(files[name])
        except yaml.YAMLError as e:
            raise FirstBootError(f"generated {name} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise FirstBootError(f"generated {name} is not a mapping")
    if not files["user-data"].startswith(b"#cloud-config\n"):
        raise FirstBootError("generated user-data does not start with #cloud-config")
    exe = shutil.which("cloud-init")
    if exe is None:
        return
    with tempfile.TemporaryDirectory(prefix="pi-cluster-ci-") as d:
        for name, schema_type in (("user-data", "cloud-config"), ("network-config", "network-config")):
            p = Path(d) / name
            p.write_bytes(files[name])
            r = subprocess.run([exe, "schema", "--schema-type", schema_type, "--config-file", str(p)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise FirstBootError(f"generated {name} fails `cloud-init schema`: "
                                     f"{(r.stderr or r.stdout).strip()[-500:]}")


# --------------------------------------------------------------------------------------------------
# firstrun.sh (Raspberry Pi Imager's mechanism)


def _q(s: str) -> str:
    return shlex.quote(s)


def render_firstrun(cfg: NodeConfig) -> bytes:
    keys = "\n".join(cfg.keys) + "\n"
    pw = cfg.password_hash or "!"  # "!" = locked password: key-only login
    lines = [
        "#!/bin/bash",
        "# written by pi-cluster flash: runs once at first boot, then removes itself",
        "set +e",
        "",
        f"NEW_HOSTNAME={_q(cfg.hostname)}",
        f"NEW_USER={_q(cfg.user)}",
        f"PW_HASH={_q(pw)}",
        'CURRENT_HOSTNAME=$(tr -d " \\t\\n\\r" </etc/hostname)',
        "if [ -f /usr/lib/raspberrypi-sys-mods/imager_custom ]; then",
        '   /usr/lib/raspberrypi-sys-mods/imager_custom set_hostname "$NEW_HOSTNAME"',
        "else",
        '   echo "$NEW_HOSTNAME" >/etc/hostname',
        '   sed -i "s/127.0.1.1.*$CURRENT_HOSTNAME/127.0.1.1\\t$NEW_HOSTNAME/g" /etc/hosts',
        "fi",
        "",
        "# the login user (renames the first user, as userconf-pi does)",
        "FIRSTUSER=$(getent passwd 1000 | cut -d: -f1)",
        "if [ -f /usr/lib/userconf-pi/userconf ]; then",
        '   /usr/lib/userconf-pi/userconf "$NEW_USER" "$PW_HASH"',
        "else",
        '   if [ -n "$FIRSTUSER" ] && [ "$FIRSTUSER" != "$NEW_USER" ]; then',
        '      usermod -l "$NEW_USER" "$FIRSTUSER"',
        '      usermod -m -d "/home/$NEW_USER" "$NEW_USER"',
        '      groupmod -n "$NEW_USER" "$FIRSTUSER" 2>/dev/null',
        "   elif [ -z \"$FIRSTUSER\" ]; then",
        '      useradd -m -u 1000 -s /bin/bash -G sudo,adm,video,plugdev,netdev "$NEW_USER"',
        "   fi",
        '   echo "$NEW_USER:$PW_HASH" | chpasswd -e',
        "fi",
        'echo "$NEW_USER ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/010_pi-cluster-nopasswd',
        "chmod 0440 /etc/sudoers.d/010_pi-cluster-nopasswd",
        'USERHOME=$(getent passwd "$NEW_USER" | cut -d: -f6)',
        "",
        "# SSH: key-only login",
        'install -o "$NEW_USER" -g "$NEW_USER" -m 700 -d "$USERHOME/.ssh"',
        "cat >\"$USERHOME/.ssh/authorized_keys\" <<'PI_CLUSTER_KEYS'",
        keys.rstrip("\n"),
        "PI_CLUSTER_KEYS",
        'chown "$NEW_USER:$NEW_USER" "$USERHOME/.ssh/authorized_keys"',
        'chmod 600 "$USERHOME/.ssh/authorized_keys"',
        "mkdir -p /etc/ssh/sshd_config.d",
        "printf 'PasswordAuthentication no\\nKbdInteractiveAuthentication no\\n' "
        ">/etc/ssh/sshd_config.d/10-pi-cluster.conf",
        "systemctl enable ssh",
        "",
    ]
    if cfg.mode == "static":
        if not cfg.address:
            raise FirstBootError(f"{cfg.hostname}: static addressing needs an address (ansible_host)")
        dns = " ".join(cfg.dns)
        iface = ipaddress.ip_interface(cfg.address)
        lines += [
            "# static address for eth0 (NetworkManager on Bookworm, dhcpcd on older releases)",
            "if command -v nmcli >/dev/null 2>&1 || [ -d /etc/NetworkManager ]; then",
            "   cat >/etc/NetworkManager/system-connections/pi-cluster-eth0.nmconnection <<'PI_CLUSTER_NM'",
            "[connection]",
            "id=pi-cluster-eth0",
            "type=ethernet",
            "interface-name=eth0",
            "autoconnect-priority=100",
            "",
            "[ipv4]",
            "method=manual",
            f"address1={cfg.address}" + (f",{cfg.gateway}" if cfg.gateway else ""),
            *( [f"dns={';'.join(cfg.dns)};"] if cfg.dns else [] ),
            "",
            "[ipv6]",
            "method=auto",
            "PI_CLUSTER_NM",
            "   chmod 600 /etc/NetworkManager/system-connections/pi-cluster-eth0.nmconnection",
            "fi",
            "if [ -f /etc/dhcpcd.conf ]; then",
            "   cat >>/etc/dhcpcd.conf <<'PI_CLUSTER_DHCPCD'",
            "interface eth0",
            f"static ip_address={iface.with_prefixlen}",
            *( [f"static routers={cfg.gateway}"] if cfg.gateway else [] ),
            *( [f"static domain_name_servers={dns}"] if dns else [] ),
            "PI_CLUSTER_DHCPCD",
            "fi",
            "",
        ]
    if cfg.wifi_ssid:
        lines += [
            "# Wi-Fi",
            "if [ -f /usr/lib/raspberrypi-sys-mods/imager_custom ]; then",
            f"   /usr/lib/raspberrypi-sys-mods/imager_custom set_wlan {_q(cfg.wifi_ssid)} "
            f"{_q(cfg.wifi_psk or '')} {_q((cfg.wifi_country or 'GB').upper())}",
            "else",
            f"   raspi-config nonint do_wifi_country {_q((cfg.wifi_country or 'GB').upper())} 2>/dev/null",
            "   rfkill unblock wifi 2>/dev/null",
            f"   nmcli dev wifi connect {_q(cfg.wifi_ssid)}"
            + (f" password {_q(cfg.wifi_psk)}" if cfg.wifi_psk else "") + " 2>/dev/null",
            "fi",
            "",
        ]
    lines += [
        "# timezone",
        "rm -f /etc/localtime",
        f"echo {_q(cfg.timezone)} >/etc/timezone",
        f"ln -sf /usr/share/zoneinfo/{cfg.timezone} /etc/localtime",
        "dpkg-reconfigure -f noninteractive tzdata 2>/dev/null",
        "",
        "# swap off (k3s): dphys-swapfile (Bookworm) and rpi-swap (Trixie)",
        "systemctl disable --now dphys-swapfile 2>/dev/null",
        "mkdir -p /etc/rpi/swap.conf.d",
        f"printf '[Main]\\nMechanism=none\\n' >{SWAP_OFF_CONF}",
        "swapoff -a",
        "",
        "rm -f /boot/firstrun.sh",
        "sed -i 's| systemd.run.*||g' /boot/cmdline.txt",
        "exit 0",
        "",
    ]
    return "\n".join(lines).encode()


# --------------------------------------------------------------------------------------------------
# applying it to a boot partition


def detect_format(names: set[str]) -> Format:
    """cloud-init when the boot partition holds ``meta-data``; firstrun.sh when it has a cmdline.txt to hook
    into; else the legacy ``ssh`` + ``userconf.txt``."""
    if "meta-data" in names:
        return "cloud-init"
    if "cmdline.txt" in names:
        return "firstrun"
    return "legacy"


@dataclass
class Customisation:
    format: Format
    files: list[str]
    cmdline: str | None
    instance_id: str | None = None
    warnings: list[str] = field(default_factory=list)


def customise(fs: BootFS, cfg: NodeConfig, fmt: Format | Literal["auto"] = "auto") -> Customisation:
    """Write ``cfg`` into the boot partition ``fs`` in format ``fmt`` (auto-detected from the partition).
    Safe to repeat: the cmdline stays one line with every flag once."""
    names = fs.list()
    chosen: Format = detect_format(names) if fmt == "auto" else fmt
    written: list[str] = []
    warnings: list[str] = []
    cmdline_old = fs.read_text("cmdline.txt") if "cmdline.txt" in names else None
    if cmdline_old is None and chosen != "legacy":
        raise FirstBootError(f"the boot partition has no cmdline.txt (format {chosen} needs one)")
    drop_prefixes: tuple[str, ...] = ("ds=nocloud", "cfg80211.ieee80211_regdom=")
    add = list(CGROUP_FLAGS)
    if cfg.wifi_country:
        add.append(f"cfg80211.ieee80211_regdom={cfg.wifi_country.upper()}")
    tail = ""
    iid = None
    if chosen == "cloud-init":
        iid = instance_id(cfg)
        files = render_cloud_init(cfg, iid)
        validate_cloud_init(files)
        for name in ("user-data", "network-config", "meta-data"):  # meta-data last: it marks a complete seed
            fs.write(name, files[name])
            written.append(name)
        add.append(f"ds=nocloud;i={iid}")
        if "firstrun.sh" in names:
            fs.delete("firstrun.sh")
    elif chosen == "firstrun":
        fs.write("firstrun.sh", render_firstrun(cfg))
        written.append("firstrun.sh")
        tail = FIRSTRUN_CMDLINE
    else:
        fs.write("ssh", b"")
        fs.write("userconf.txt", f"{cfg.user}:{cfg.password_hash or '!'}\n".encode())
        written += ["ssh", "userconf.txt"]
        if not cfg.password_hash:
            warnings.append("legacy format: the SSH keys cannot be installed and the password is locked; set "
                            "pi_password in the inventory to be able to log in")
        warnings.append("legacy format: hostname, network, timezone and swap are left at the image's defaults")
    cmdline_new = None
    if cmdline_old is not None:
        cmdline_new = edit_cmdline(cmdline_old, add=add, remove_prefixes=drop_prefixes, tail=tail)
        fs.write("cmdline.txt", cmdline_new.encode())
        written.append("cmdline.txt")
    return Customisation(chosen, written, cmdline_new, iid, warnings)

