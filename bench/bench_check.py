"""Benchmark `pi-cluster check` on the lab (needs root): wall time for 3, 6 and 12 nodes and t(12)/t(3)
(goal <= 2), and on the same 6-node lab the speedup of one batch per node (all nodes in parallel) over a
naive baseline running one testinfra `host.run` per probe, sequentially (goal >= 10x). Everything is
measured side by side in one run; nothing is asserted.

    .venv/bin/python bench/bench_check.py [--sizes 3,6,12] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from pi_cluster import inventory
from pi_cluster.conformance import batch as cb
from pi_cluster.conformance import run as cr
from pi_cluster.lab import Lab

CLI = [sys.executable, "-m", "pi_cluster.cli.main", "check"]


def timed_check(lab: Lab, out: Path) -> tuple[float, dict]:
    t0 = time.monotonic()
    p = subprocess.run([*CLI, "-i", str(lab.inventory_path), "--json", str(out)], capture_output=True, text=True)
    wall = time.monotonic() - t0
    data = json.loads(out.read_text()) if out.exists() else {}
    if p.returncode != 0:
        print(f"  warning: exit {p.returncode}: {data.get('summary') or p.stdout[-300:]}")
    return wall, data


def naive_vs_batch(lab: Lab) -> tuple[int, float, float]:
    """The same probe plan (every scenario but churn) run both ways against the same workload."""
    cluster = inventory.load(str(lab.inventory_path))
    scenarios = [s for s in cr.select(None, ["churn"])]
    run = cr.CheckRun(cluster, scenarios)
    try:
        run.setup()
        for s in scenarios:
            cr.scenario_module(s).plan(run)
        assert run.pool is not None
        plans = {n: p for n, p in run.plans.items() if n != cb.WORKSTATION}
        count = sum(len(p) for p in plans.values())
        # ours: one batch per node, all nodes in parallel
        t0 = time.monotonic()
        batches = cb.run_batches(run.pool, plans, timeout=120)
        ours = time.monotonic() - t0
        assert not any(b.error for b in batches.values()), {n: b.error for n, b in batches.items()}
        # naive: probe.py copied once per node, then one testinfra host.run per probe, one after another
        for n in plans:
            run.pool.hosts[n].run(f"cat > /tmp/pi_probe.py <<'PIEOF'\n{cb.PROBE_SRC}\nPIEOF")
        t0 = time.monotonic()
        for n, probes in plans.items():
            h = run.pool.hosts[n]
            for p in probes:
                spec = shlex.quote(json.dumps({"probes": [p]}))
                r = h.run(f"echo {spec} | /usr/bin/python3 /tmp/pi_probe.py")
                assert r.rc == 0, r.stderr
        naive = time.monotonic() - t0
        return count, naive, ours
    finally:
        run.teardown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="3,6,12")
    ap.add_argument("--keep", action="store_true", help="leave the labs up")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    times: dict[int, float] = {}
    naive_result = None
    tmp = Path("/tmp")
    for n in sizes:
        name = f"bench{n}"
        lab = Lab.up(name=name, nodes=n)
        try:
            timed_check(lab, tmp / f"{name}-warmup.json")  # first run warms caches (python imports, sshd)
            wall, data = timed_check(lab, tmp / f"{name}.json")
            times[n] = wall
            f = data.get("facts", {})
            print(f"{n:>3} nodes: pi-cluster check {wall:5.1f} s wall ({data.get('summary', '?')}; "
                  f"{f.get('probes')} probes; deploy {f.get('deploy_seconds')} s, probe {f.get('probe_seconds')} s, "
                  f"churn {f.get('churn_seconds')} s)", flush=True)
            if n == 6:
                count, naive, ours = naive_vs_batch(lab)
                naive_result = (count, naive, ours)
                print(f"  6-node probe plan, {count} probes: naive sequential host.run {naive:6.1f} s, "
                      f"batched {ours:4.2f} s -> speedup {naive / ours:5.1f}x (goal >= 10x)", flush=True)
        finally:
            if not args.keep:
                Lab.down(name)
    if 3 in times and 12 in times:
        print(f"t(12)/t(3) = {times[12]:.1f} / {times[3]:.1f} = {times[12] / times[3]:.2f} (goal <= 2)")
    if naive_result:
        count, naive, ours = naive_result
        print(f"speedup over the naive baseline (6 nodes, {count} probes): {naive / ours:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
