"""Benchmark `pi-cluster flash` against `xz -dc -T0 IMAGE | dd of=TARGET bs=4M`, side by side in one run.

Builds (once, cached) a realistic 1 GiB Raspberry Pi OS-like image: MBR, 512 MiB FAT32 `bootfs` with ~48 MiB
of firmware/kernels, ext4 `rootfs` filled from this machine's /usr/bin and /usr/share/doc, compressed with
`xz -T0` (multi-block, like the real releases). Then, alternating runs (median of --runs):

  no-verify ratio   flash --no-verify to 1 file target  /  xz -dc -T0 | dd bs=4M      (goal <= 1.1)
  verify ratio      flash (verify) to 1 file target     /  xz -dc -T0 | dd bs=4M      (goal <= 1.6)
  fan-out ratio     flash --no-verify to 4 file targets /  flash --no-verify to 1     (goal <= 1.5)

Times include the CLI's start-up and inventory loading (about 1.2 s of CPU here); a diagnostic line shows
core.flash() alone. CPU ratios are printed too: on a busy shared machine they are steadier than wall time.
Run: .venv/bin/python bench/bench_flash.py
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "flash"))

from flash_images import MiB, build_image  # noqa: E402

TEST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2xQkYp3kq7bq0m0Tt8v6o1i7o2yJmW1wYQ3pNfL9xX bench@workstation"


def build_bench_image(cache: Path) -> Path:
    xz = cache / "bench-raspios-1g.img.xz"
    if xz.exists():
        return xz
    cache.mkdir(parents=True, exist_ok=True)
    img = cache / "bench-raspios-1g.img"
    with tempfile.TemporaryDirectory(dir=cache) as d:
        root = Path(d) / "root"
        (root / "usr").mkdir(parents=True)
        for src in ("/usr/bin", "/usr/share/doc"):
            dst = root / src.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            r = subprocess.run(["cp", "-al", src, str(dst)], capture_output=True)
            if r.returncode != 0:
                shutil.rmtree(dst, ignore_errors=True)
                subprocess.run(["cp", "-a", src, str(dst)], check=True)
        print(f"building {img} (1 GiB, rootfs from /usr/bin + /usr/share/doc) ...", flush=True)
        build_image(img, "trixie", size_mib=1024, boot_mib=512, boot_payload=48 * MiB, root_dir=root)
    print("compressing with xz -T0 (takes a minute or two, once) ...", flush=True)
    subprocess.run(["xz", "-T0", "-f", str(img)], check=True)
    return xz


def write_inventory(d: Path) -> Path:
    (d / "group_vars").mkdir(parents=True, exist_ok=True)
    hosts = "\n".join(f"        node{i}: {{ansible_host: 192.0.2.{10 + i}}}" for i in range(1, 5))
    (d / "hosts.yml").write_text(
        "k3s_cluster:\n  children:\n    server:\n      hosts:\n" + hosts + "\n  vars:\n    ansible_user: pi\n")
    (d / "group_vars" / "all.yml").write_text(
        f"k3s_version: v1.31.4+k3s1\nnetwork_gateway: 192.0.2.1\nssh_public_keys: ['{TEST_KEY}']\n")
    return d


def timed(cmd: list[str] | str, shell: bool = False) -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds (user + system, all child processes) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {cmd}\n{r.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dt, cpu


CORE_SNIPPET = """
import sys, time
from pi_cluster import inventory
from pi_cluster.flash import core
cluster = inventory.load(sys.argv[1])
plan = core.plan(sys.argv[2], [("node1", sys.argv[3])], cluster)
t = time.perf_counter()
report = core.flash(plan, verify=False)
assert report.ok, report
print(time.perf_counter() - t)
"""


def timed_core(inv: Path, image: Path, target: Path) -> tuple[float, float]:
    """Seconds spent in core.flash() alone (no CLI start-up, inventory loading or planning)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-c", CORE_SNIPPET, str(inv), str(image), str(target)],
                       capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"core.flash failed:\n{r.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # whole process, start-up too
    return float(r.stdout.strip().splitlines()[-1]), cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=os.environ.get("PI_CLUSTER_BENCH_DIR", "/var/tmp/pi-cluster-bench"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    image = build_bench_image(Path(args.cache))
    cli = [sys.executable, "-m", "pi_cluster.cli.main", "flash"]
    with tempfile.TemporaryDirectory(dir=args.cache) as d:
        work = Path(d)
        inv = write_inventory(work / "inv")
        targets = [work / f"t{i}.img" for i in range(1, 5)]

        def clean() -> None:
            for t in targets:
                t.unlink(missing_ok=True)
            subprocess.run(["sync"], check=False)

        opts = ["-i", str(inv), "--yes"]
        one = [*cli, str(image), f"node1={targets[0]}", *opts]
        four = [*cli, str(image), *(f"node{i + 1}={t}" for i, t in enumerate(targets)), *opts]
        cases = {
            "dd": lambda: timed(f"xz -dc -T0 '{image}' | dd of='{targets[0]}' bs=4M status=none", shell=True),
            "flash-noverify-1": lambda: timed([*one, "--no-verify"]),
            "flash-verify-1": lambda: timed(one),
            "flash-noverify-4": lambda: timed([*four, "--no-verify"]),
            "core-noverify-1": lambda: timed_core(inv, image, targets[0]),
        }
        wall: dict[str, list[float]] = {k: [] for k in cases}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        timed(f"xz -dc -T0 '{image}' >/dev/null", shell=True)  # warm the page cache for the compressed file
        names = list(cases)
        for run in range(args.runs):
            # rotate the order every run, so no case always follows the same neighbour
            for name in names[run % len(names):] + names[: run % len(names)]:
                fn = cases[name]
                clean()
                w, c = fn()
                wall[name].append(w)
                cpu[name].append(c)
            print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in wall.items()), flush=True)
        clean()
    print(f"\nimage {image} ({image.stat().st_size / MiB:.0f} MiB compressed; {os.cpu_count()} CPUs; "
          f"load average now {os.getloadavg()[0]:.1f})")
    for k in cases:
        print(f"  {k:18s} wall min {min(wall[k]):6.2f}s median {statistics.median(wall[k]):6.2f}s   "
              f"cpu median {statistics.median(cpu[k]):6.2f}s   (wall runs: {', '.join(f'{x:.2f}' for x in wall[k])})")

    def ratios(a: str, b: str) -> tuple[str, float]:
        mn = min(wall[a]) / min(wall[b])
        md = statistics.median(wall[a]) / statistics.median(wall[b])
        cp = statistics.median(cpu[a]) / statistics.median(cpu[b])
        return f"wall(min) {mn:5.2f}   wall(median) {md:5.2f}   cpu {cp:5.2f}", mn

    print("\nratios (wall(min) is the headline: the machine is shared, the fastest run is the least disturbed)")
    for label, a, b, goal in (
        ("no-verify  flash --no-verify / xz|dd ", "flash-noverify-1", "dd", 1.1),
        ("verify     flash (verify)    / xz|dd ", "flash-verify-1", "dd", 1.6),
        ("fan-out    4 targets / 1 target      ", "flash-noverify-4", "flash-noverify-1", 1.5),
    ):
        text, headline = ratios(a, b)
        print(f"  {label} {text}   goal <= {goal}: {'ok' if headline <= goal else 'MISSED'}")
    core_ratio = min(wall["core-noverify-1"]) / min(wall["dd"])
    print(f"  diagnostic: core.flash() alone (no CLI start-up) / xz|dd  wall(min) {core_ratio:5.2f}   wall(median) "
          f"{statistics.median(wall['core-noverify-1']) / statistics.median(wall['dd']):5.2f}")

if __name__ == "__main__":
    main()
