"""ansible-runner wrapper: one playbook run, its events folded into per-host progress, failures and a recap."""

from __future__ import annotations

import difflib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLAYBOOKS = ("site", "upgrade", "reset", "reboot")
PLAYBOOKS_ENV = "PI_CLUSTER_PLAYBOOKS"

# runner event -> the HostProgress counter it bumps (ok also counts changed results, as Ansible's recap does)
_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


class ProvisionError(Exception):
    """The run could not be started (missing playbook, inventory...): a user error."""


@dataclass
class HostProgress:
    """One host's state during a run: the task it is on and Ansible's recap counters so far."""

    host: str
    task: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"


@dataclass(frozen=True)
class Failure:
    """A task that failed (or a host that could not be reached), with Ansible's message."""

    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass(frozen=True)
class Change:
    """A task that changed something on a host, with the unified diff when --diff was asked for."""

    host: str
    task: str
    diff: str


@dataclass
class RunState:
    """Everything known so far; handed to the progress callback after every event that changed it."""

    playbook: str
    play: str = ""
    hosts: dict[str, HostProgress] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    finished: bool = False

    def host(self, name: str) -> HostProgress:
        if name not in self.hosts:
            self.hosts[name] = HostProgress(name)
        return self.hosts[name]


@dataclass
class RunResult:
    """The outcome: ansible-playbook's rc and status, the recap per host, failures, changes."""

    playbook: str
    rc: int
    status: str
    hosts: dict[str, HostProgress]
    failures: list[Failure]
    changes: list[Change]
    artifacts_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failures


ProgressCallback = Callable[[RunState], None]


def playbooks_dir() -> Path:
    """Where site.yml and friends live: $PI_CLUSTER_PLAYBOOKS, else the repository's playbooks/."""
    env = os.environ.get(PLAYBOOKS_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "playbooks"


def resolve_playbook(name: str | os.PathLike[str]) -> Path:
    """``site`` -> <playbooks>/site.yml; a path to a .yml file is taken as it is."""
    text = str(name)
    path = playbooks_dir() / f"{text}.yml" if text in PLAYBOOKS else Path(text)
    if not path.is_file():
        raise ProvisionError(f"playbook {path} not found (set ${PLAYBOOKS_ENV} to the playbooks directory)")
    return path.resolve()


def _task_name(data: Mapping[str, Any]) -> str:
    task = str(data.get("task") or data.get("task_action") or "")
    role = data.get("role")
    return f"{role} : {task}" if role and not task.startswith(f"{role} :") else task


def _message(res: Mapping[str, Any]) -> str:
    """Ansible's message for a failed result: msg, else stderr/stdout, else the failed loop items' messages."""
    if res.get("censored"):
        return str(res["censored"])
    parts = [str(res[k]).strip() for k in ("msg", "stderr", "module_stderr") if res.get(k)]
    if parts and res.get("rc") not in (None, 0) and "msg" in res:
        parts[0] += f" (rc {res['rc']})"
    if not parts and res.get("stdout"):
        parts.append(str(res["stdout"]).strip())
    for item in res.get("results") or []:
        if isinstance(item, Mapping) and item.get("failed"):
            label = item.get("_ansible_item_label", item.get("item", ""))
            parts.append(f"[{label}] {_message(item)}")
    return "\n".join(p for p in parts if p) or "failed (no message from Ansible)"


def _unified(diff: Any) -> str:
    """Ansible's result diff (dicts with before/after or `prepared` text) as unified diff text."""
    items = diff if isinstance(diff, list) else [diff]
    out: list[str] = []
    for d in items:
        if not isinstance(d, Mapping):
            continue
        if d.get("prepared"):
            out.append(str(d["prepared"]).rstrip("\n"))
        elif "before" in d or "after" in d:
            before, after = str(d.get("before", "")), str(d.get("after", ""))
            out.extend(
                line.rstrip("\n")
                for line in difflib.unified_diff(
                    before.splitlines(keepends=True), after.splitlines(keepends=True),
                    str(d.get("before_header", "before")), str(d.get("after_header", "after")),
                )
            )
    return "\n".join(out)


class EventTracker:
    """Folds ansible-runner events into a :class:`RunState` and calls ``on_progress`` after each update."""

    def __init__(self, playbook: str, on_progress: ProgressCallback | None = None,
                 hosts: list[str] | None = None) -> None:
        self.state = RunState(playbook=playbook)
        for h in hosts or []:
            self.state.host(h)
        self.on_progress = on_progress

    def __call__(self, event: Mapping[str, Any]) -> bool:
        if self.handle(event) and self.on_progress is not None:
            self.on_progress(self.state)
        return True  # keep the event in the artifacts

    def handle(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("event", "")
        data: Mapping[str, Any] = event.get("event_data") or {}
        state = self.state
        if kind == "playbook_on_play_start":
            state.play = str(data.get("play") or data.get("name") or "")
            return True
        if kind == "playbook_on_stats":
            self._recap(data)
            return True
        host = data.get("host")
        if not host:
            return False
        progress = state.host(str(host))
        task = _task_name(data)
        if kind == "runner_on_start":
            progress.task = task
            return True
        if kind not in _RESULT_EVENTS:
            return False
        res: Mapping[str, Any] = data.get("res") or {}
        if kind == "runner_on_failed" and data.get("ignore_errors"):
            progress.ok += 1
            progress.ignored += 1
            return True
        setattr(progress, _RESULT_EVENTS[kind], getattr(progress, _RESULT_EVENTS[kind]) + 1)
        if kind == "runner_on_ok" and res.get("changed"):
            progress.changed += 1
            diff = _unified(res.get("diff")) if res.get("diff") else ""
            state.changes.append(Change(str(host), task, diff))
        if kind in ("runner_on_failed", "runner_on_unreachable"):
            state.failures.append(
                Failure(str(host), task, _message(res), unreachable=kind == "runner_on_unreachable")
            )
        return True

    def _recap(self, data: Mapping[str, Any]) -> None:
        """Ansible's own PLAY RECAP numbers are the final word on the counters."""
        keys = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
                "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
        hosts = set().union(*(data.get(k) or {} for k in keys))
        for h in hosts:
            progress = self.state.host(str(h))
            progress.task = ""
            for src, dst in keys.items():
                setattr(progress, dst, int((data.get(src) or {}).get(h, 0)))
        self.state.finished = True


def run_playbook(
    playbook: str | os.PathLike[str],
    inventory: str | os.PathLike[str],
    *,
    limit: str | None = None,
    check: bool = False,
    diff: bool = False,
    tags: str | None = None,
    extravars: dict[str, Any] | None = None,
    extra_args: list[str] | None = None,
    hosts: list[str] | None = None,
    on_progress: ProgressCallback | None = None,
    keep_artifacts: bool = False,
    envvars: dict[str, str] | None = None,
) -> RunResult:
    """Run one playbook (``site``/``upgrade``/``reset``/``reboot`` or a path) against ``inventory``.

    ansible-runner's artifacts go to a temporary directory, removed afterwards unless ``keep_artifacts``.
    ``hosts`` pre-fills the progress table (hosts Ansible has not reached yet show as waiting).
    ``extra_args`` go to ansible-playbook as they are (e.g. ``["-e", "k=v"]``).
    """
    import ansible_runner

    path = resolve_playbook(playbook)
    inv = Path(inventory)
    if not inv.exists():
        raise ProvisionError(f"inventory {inv} not found")
    base = path.parent
    env = {
        # the ansible-playbook next to this Python (the venv's) first
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]),
        # ansible-runner turns host key checking off by default: we keep it on (ansible.cfg says so too)
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_ROLES_PATH": str(base / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }
    cfg = base.parent / "ansible.cfg"
    if cfg.is_file() and "ANSIBLE_CONFIG" not in os.environ:
        env["ANSIBLE_CONFIG"] = str(cfg)
    env.update(envvars or {})
    flags = [f for f, on in (("--check", check), ("--diff", diff)) if on] + [shlex.quote(a) for a in extra_args or []]
    private = Path(tempfile.mkdtemp(prefix="pi-cluster-run-"))
    tracker = EventTracker(path.stem, on_progress, hosts)
    # ansible-runner installs SIGINT/SIGTERM handlers (Ctrl-C cancels the playbook) and leaves them behind:
    # put the caller's back afterwards, so Ctrl-C means KeyboardInterrupt again once the run is over.
    saved = ({sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
             if threading.current_thread() is threading.main_thread() else {})
    try:
        r = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(base),
            playbook=str(path),
            inventory=str(inv.resolve()),
            envvars=env,
            extravars=extravars or {},
            limit=limit,
            tags=tags,
            cmdline=" ".join(flags) if flags else None,
            event_handler=tracker,
            quiet=True,
            suppress_env_files=True,
        )
        rc = int(r.rc if r.rc is not None else 1)
        failures = list(tracker.state.failures)
        if rc != 0 and not failures:
            # ansible-playbook stopped before any task (syntax error, bad --limit, no hosts...): its own words
            text = r.stdout.read() if r.stdout else ""
            lines = [ln for ln in text.splitlines() if ln.strip()]
            failures.append(Failure("-", "ansible-playbook", "\n".join(lines[-15:]) or f"exit code {rc}"))
        return RunResult(
            playbook=path.stem,
            rc=rc,
            status=str(r.status),
            hosts=dict(tracker.state.hosts),
            failures=failures,
            changes=list(tracker.state.changes),
            artifacts_dir=private if keep_artifacts else None,
        )
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        if not keep_artifacts:
            shutil.rmtree(private, ignore_errors=True)
