"""Benchmark: `lab up` for 3 and 12 nodes (goal: 3 nodes under 5 s), plus pod and Service churn.

Run as root: `python bench/bench_lab.py [--rounds N]`. Prints times measured side by side in one run and
their ratios (machines here are noisy: compare ratios, not absolute numbers).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from pi_cluster.lab import ContainerSpec, Lab, ServicePort, ServiceSpec


def timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--proxy-mode", default="iptables")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench_lab needs root", file=sys.stderr)
        return 2
    name = f"b{os.getpid()}"
    res: dict[str, list[float]] = {"up3": [], "up12": [], "down3": [], "down12": [], "pod": [], "svc": []}
    try:
        for _ in range(args.rounds):
            for n in (3, 12):
                t, lab = timed(lambda n=n: Lab.up(name=name, nodes=n, proxy_mode=args.proxy_mode))
                res[f"up{n}"].append(t)
                if n == 3:
                    for node in lab.nodes:
                        t, _ = timed(lambda node=node, lab=lab: lab.add_pod("bench", f"echo-{node.name}", node.name,
                                                                   {"app": "echo"}, [ContainerSpec()]))
                        res["pod"].append(t)
                    t, _ = timed(lambda lab=lab: lab.apply_service(ServiceSpec(
                        namespace="bench", name="web", type="NodePort", selector={"app": "echo"},
                        ports=[ServicePort(port=80, target_port=8080)])))
                    res["svc"].append(t)
                t, _ = timed(lambda: Lab.down(name))
                res[f"down{n}"].append(t)
    finally:
        Lab.down(name)
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"lab up/down, proxy mode {args.proxy_mode}, {args.rounds} round(s), medians:")
    for k, v in med.items():
        print(f"  {k:7s} {v:6.2f} s   (all: {', '.join(f'{x:.2f}' for x in res[k])})")
    print(f"ratio up12/up3: {med['up12'] / med['up3']:.2f}   up3 vs goal 5 s: {med['up3'] / 5:.2f} of budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
