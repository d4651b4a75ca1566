"""podnet: what Services depend on. Pod to pod across every pair of nodes (netexec ``/dial`` from the
client pod on A to the echo pod on B), node to pod (A's host network to B's echo pod), and a large request
(a ~4 KB answer crossing the overlay: an MTU mismatch, e.g. flannel vxlan without its 50 bytes of headroom,
loses full-size packets while small requests still work).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pi_cluster.conformance.checks import dial_summary, tries_summary
from pi_cluster.conformance.report import Result

if TYPE_CHECKING:
    from pi_cluster.conformance.run import CheckRun

SCENARIO = "podnet"
LARGE = 4000


def plan(run: CheckRun) -> None:
    w = run.w
    assert w is not None
    t = run.options.request_timeout
    for a in run.nodes:
        client = w.client.get(a)
        for b, echo in w.echo.items():
            if client:
                run.add(SCENARIO, a, f"pod {b}", {"kind": "dial", "pod": client.ip, "host": echo.ip, "port": 8080,
                                                  "tries": 1, "timeout": t})
            run.add(SCENARIO, a, f"node {b}", {"kind": "http", "host": echo.ip, "port": 8080, "path": "/hostname",
                                               "timeout": t})
            run.add(SCENARIO, a, f"large {b}", {"kind": "http", "host": echo.ip, "port": 8080,
                                                "path": "/echo?msg=" + "x" * LARGE, "timeout": t + 1})


def evaluate(run: CheckRun) -> list[Result]:
    w = run.w
    assert w is not None
    out: list[Result] = []
    for a in run.nodes:
        for b in run.nodes:
            echo = w.echo.get(b)
            if echo is None:
                why = w.missing.get(b, "no ready echo pod")
                out.append(Result(SCENARIO, a, f"pod->pod {b}", "fail", peers=[b], target=f"echo pod on {b}",
                                  expected="an echo pod to probe", seen=why))
                continue
            target = f"{echo.ip}:8080"
            if run.unreachable(a):
                for check in (f"pod->pod {b}", f"node->pod {b}", f"large {b}"):
                    out.append(run.not_probed(SCENARIO, a, check, target=target, peers=[b]))
                continue
            client = w.client.get(a)
            if client is None:
                out.append(Result(SCENARIO, a, f"pod->pod {b}", "fail", peers=[b], target=target,
                                  expected=f"{echo.name} answers", seen=w.missing.get(a, "no ready client pod")))
            else:
                resp, errs, terr = dial_summary(run.res(SCENARIO, a, f"pod {b}"))
                ok = resp == [echo.name]
                seen = terr or (f"answered {resp[0]!r}" if resp else f"no answer ({'; '.join(errs) or 'empty'})")
                out.append(Result(SCENARIO, a, f"pod->pod {b}", "pass" if ok else "fail", peers=[b],
                                  target=f"{client.name} -> {target}", expected=f"{echo.name} answers",
                                  seen=seen))
            answered, _total, bodies, err = tries_summary(run.res(SCENARIO, a, f"node {b}"))
            ok = answered == 1 and bodies == [echo.name]
            out.append(Result(SCENARIO, a, f"node->pod {b}", "pass" if ok else "fail", peers=[b], target=target,
                              expected=f"{echo.name} answers /hostname",
                              seen=f"answered {bodies[0]!r}" if bodies else err))
            big = run.res(SCENARIO, a, f"large {b}") or {}
            tries = big.get("tries") or [{}]
            got = tries[0].get("len", 0) if tries[0].get("ok") else 0
            ok = got >= LARGE
            seen = f"{got}-byte answer" if tries[0].get("ok") else str(tries[0].get("error") or big.get("error"))
            if not ok and answered == 1:
                seen += " while small requests work: an MTU mismatch on the path (overlay headroom?)"
            out.append(Result(SCENARIO, a, f"large {b}", "pass" if ok else "fail", peers=[b], target=target,
                              expected=f"a {LARGE}-byte echo", seen=seen))
    return out


def test_podnet(host: Any, conformance: Any) -> None:
    """Pod network between every pair of nodes."""
    conformance.verdict(SCENARIO, host)
