"""How probes travel: one remote batch per node (probe.py on the node's python3, over SSH), all nodes in
parallel, plus the same batch run locally for the workstation's own probes.

>>> batches = run_batches(pool, {"node1": [{"id": "t", "kind": "tcp", "host": "10.43.0.1", "port": 443}]},
...                       timeout=20)                                  # doctest: +SKIP
>>> batches["node1"].results["t"]["ok"]                               # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pi_cluster.remote import Pool, RunResult

PROBE_SRC = (Path(__file__).parent / "probe.py").read_text()
WORKSTATION = "workstation"

# Runs probe.py (sent on stdin together with the probe list) without installing anything on the node.
_LOADER = (
    "import sys,json;d=json.load(sys.stdin);g={'__name__':'pi_cluster_probe'};"
    "exec(compile(d['src'],'probe.py','exec'),g);g['main_spec'](d['spec'])"
)


@dataclass
class Batch:
    """One node's batch outcome: ``results`` by probe id, or ``error`` when the batch did not run."""

    node: str
    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    clock: float | None = None  # the node's time.time() at batch start
    clock_seen_at: float | None = None  # our time.time() when that line arrived
    sent_at: float | None = None
    elapsed: float = 0.0
    hostname: str | None = None

    @property
    def skew(self) -> float | None:
        """Node clock minus ours, estimated at the midpoint of send and arrival (seconds)."""
        if self.clock is None or self.clock_seen_at is None:
            return None
        ref = (self.sent_at + self.clock_seen_at) / 2 if self.sent_at else self.clock_seen_at
        return self.clock - ref


def _parse(node: str, stdout: str, stderr: str, rc: int | None) -> Batch:
    b = Batch(node=node)
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    finished = False
    for ln in lines:
        try:
            data = json.loads(ln)
        except ValueError:
            continue
        if "clock" in data:
            b.clock = float(data["clock"])
            b.hostname = data.get("hostname")
        if "results" in data:
            b.results, finished = data["results"], True
    if not finished and b.clock is None:
        tail = (stderr.strip().splitlines() or [f"exit status {rc}"])[-1]
        if "sudo" in stderr and "password" in stderr:
            tail = "sudo needs a password (the checks need root or passwordless sudo on the node)"
        b.error = f"probe runner failed on the node: {tail[:300]}"
    elif not finished:
        b.error = "probe runner stopped before printing results"
    return b


def command_for(pool: Pool, node: str) -> str:
    t = pool.targets[node]
    return t.privileged(f"{shlex.quote(t.python)} -c {shlex.quote(_LOADER)}")


def run_batches(
    pool: Pool,
    plans: dict[str, list[dict[str, Any]]],
    timeout: float,
    on_done: Callable[[Batch], None] | None = None,
) -> dict[str, Batch]:
    """Run each node's probe list as one remote batch, all nodes in parallel. The workstation's list (key
    :data:`WORKSTATION`) runs locally, concurrently with the nodes."""
    out: dict[str, Batch] = {}
    commands: dict[str, str | tuple[str, bytes | str | None]] = {}
    for node, probes in plans.items():
        if node == WORKSTATION or node not in pool.targets:
            continue
        payload = json.dumps({"src": PROBE_SRC, "spec": {"probes": probes}})
        commands[node] = (command_for(pool, node), payload)

    def done(r: RunResult) -> None:
        b = to_batch(r)
        out[r.node] = b
        if on_done:
            on_done(b)

    local_out: list[Batch] = []

    def run_local() -> None:
        t0 = time.monotonic()
        try:
            p = subprocess.run([sys.executable, "-c", _LOADER], capture_output=True, text=True, timeout=timeout,
                               input=json.dumps({"src": PROBE_SRC, "spec": {"probes": plans[WORKSTATION]}}))
            b = _parse(WORKSTATION, p.stdout, p.stderr, p.returncode)
        except subprocess.TimeoutExpired:
            b = Batch(node=WORKSTATION, error=f"local probes timed out after {timeout:.0f} s")
        b.elapsed = time.monotonic() - t0
        local_out.append(b)
        if on_done:
            on_done(b)

    local = threading.Thread(target=run_local, daemon=True) if plans.get(WORKSTATION) else None
    if local is not None:
        local.start()
    try:
        pool.run_all(commands, timeout=timeout, on_done=done)
    finally:
        if local is not None:
            local.join(timeout + 5)
            if local_out:
                out[WORKSTATION] = local_out[0]
    return out


def to_batch(r: RunResult) -> Batch:
    if r.error and not r.stdout:
        return Batch(node=r.node, error=r.error, elapsed=r.elapsed)
    b = _parse(r.node, r.stdout, r.stderr, r.rc)
    if r.error and not b.error:
        b.error = r.error
    b.clock_seen_at, b.sent_at, b.elapsed = r.first_line_at, r.sent_at, r.elapsed
    return b
