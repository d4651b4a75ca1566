"""Small helpers the scenario modules share: judging HTTP tries and netexec answers, wording outcomes."""

from __future__ import annotations

from collections import Counter
from typing import Any


def tries_summary(res: dict[str, Any] | None) -> tuple[int, int, list[str], str]:
    """(answered, total, bodies, first error) of an ``http`` probe result."""
    if not res:
        return 0, 0, [], "no result"
    if res.get("error") and "tries" not in res:
        return 0, 0, [], str(res["error"])
    tries = res.get("tries", [])
    ok = [t for t in tries if t.get("ok") and t.get("status") == 200]
    errs = [t.get("error") or f"HTTP {t.get('status')}" for t in tries if not (t.get("ok") and t.get("status") == 200)]
    return len(ok), len(tries), [str(t.get("body", "")).strip() for t in ok], (errs[0] if errs else "")


def describe_failures(answered: int, total: int, err: str) -> str:
    failed = total - answered
    return f"{err}, {failed} of {total} tries" if total else err


def dial_summary(res: dict[str, Any] | None) -> tuple[list[str], list[str], str | None]:
    """(responses, errors, transport error) of a netexec ``/dial`` probe."""
    if not res:
        return [], [], "no result"
    return [str(r).strip() for r in res.get("responses", [])], [str(e) for e in res.get("errors", [])], \
        res.get("error")


def spread(bodies: list[str]) -> str:
    c = Counter(bodies)
    return ", ".join(f"{k} x{v}" for k, v in c.most_common())
