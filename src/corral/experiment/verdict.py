"""From the figures to a recommendation: capacity per host, sharing, latency, the command to run.

Definitions (MiB = 2**20 bytes; "end" = the sample after the last slice of traffic):

* private = USS of a worker at the end: what each added worker costs;
* shared % = of the inherited (pre-fork) heap pages present in a worker, the share still
  mapped by more than one process (pagemap bit 56), mean over the workers;
* baseline = fleet PSS - sum of the workers' USS: the server with no worker-private memory (the
  shared heap counted once, plus the master's and zygote's own memory);
* fit = floor((host budget - baseline) / mean worker USS): workers of this size that fit.

The favoured preset is the corral preset with the largest fit; ties go to the higher shared %,
then to the lower p99. A configuration whose requests failed (no response, or 4xx/5xx) is
favoured only when every one did, and the sentence says so. gunicorn, when measured, is the
comparison, never the recommendation; when it fits more workers than every preset, the sentence
says that too. Fits within ``TIE_PCT`` of each other are called a tie.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from corral.experiment.run import failures, fit

MIB = 1 << 20
GIB = 1 << 30
TIE_PCT = 2.0  # fits closer than this are within the noise of one short run


def summarise(config: dict[str, Any], budget_bytes: int) -> dict[str, Any]:
    """The end figures of one configuration."""
    end = config["samples"][-1]
    workers = end["workers"]
    n = len(workers) or 1
    uss = sum(w["uss"] for w in workers) / n
    baseline = end["fleet_pss"] - sum(w["uss"] for w in workers)
    return {
        "shared_pct": round(sum(w["prefork_shared_pct"] for w in workers) / n, 2),
        "worker_uss_mib": round(uss / MIB, 2),
        "worker_rss_mib": round(sum(w["rss"] for w in workers) / n / MIB, 2),
        "baseline_mib": round(baseline / MIB, 2),
        "fleet_pss_mib": round(end["fleet_pss"] / MIB, 2),
        "fit_workers": fit(budget_bytes, baseline, uss),
        "budget_gib": round(budget_bytes / GIB, 2),
        "p99_ms": config["load"].get("p99_ms"),
        "rps": config["load"].get("rps"),
    }


def favoured(configs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The corral configuration the numbers favour (see the module docstring)."""
    corral = [c for c in configs if c["kind"] == "corral"]
    if not corral:
        return None
    clean = [c for c in corral if not failures(c["load"])]
    return max(clean or corral, key=_rank)


def _rank(c: dict[str, Any]) -> tuple[float, float, float]:
    s = c["summary"]
    return (s["fit_workers"], s["shared_pct"], -(s["p99_ms"] or 0.0))


def _pct_change(new: float | None, old: float | None) -> str:
    if not new or not old:
        return "n/a"
    return f"{100 * (new - old) / old:+.1f}%"


def production_command(
    app: str, workers: int, preset: str, chdir: str, serve_args: Sequence[str] = ()
) -> str:
    """``corral serve`` as measured: the preset, the worker count and every ``--serve-arg``."""
    cmd = ["corral", "serve", app, "-w", str(workers), "--gc", preset]
    if chdir not in ("", "."):
        cmd += ["--chdir", chdir]
    return shlex.join([*cmd, *serve_args])


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def recommend(
    configs: Sequence[dict[str, Any]],
    app: str,
    workers: int,
    chdir: str,
    serve_args: Sequence[str] = (),
) -> dict[str, Any]:
    """The recommendation: which preset, in words and numbers, and the command to run."""
    best = favoured(configs)
    if best is None:
        return {"preset": None, "text": "no corral configuration was measured", "command": ""}
    s = best["summary"]
    others = [c for c in configs if c is not best]
    fits = ", ".join(f"{c['name']} fits {c['summary']['fit_workers']}" for c in others)
    base = _baseline(best, others)
    words = [
        f"on this app, `{best['name']}` keeps {s['shared_pct']:.1f}% of the pre-fork heap shared "
        f"after {best['load'].get('requests', 0)} requests; {s['fit_workers']} workers of "
        f"{s['worker_uss_mib']:.1f} MiB private fit in {s['budget_gib']:g} GiB"
        + (f" where {fits}" if fits else "")
    ]
    if base is not None:
        b = base["summary"]
        words.append(
            f"p99 changes by {_pct_change(s['p99_ms'], b['p99_ms'])} against `{base['name']}` "
            f"({_ms(s['p99_ms'])} vs {_ms(b['p99_ms'])}), throughput by "
            f"{_pct_change(s['rps'], b['rps'])}"
        )
    words += _caveats(best, others)
    lost = _lost_sharing(best)
    if lost:
        words.append(f"these objects still lose sharing: {lost}")
    if best["name"] == "instagram":
        words.append("instagram never collects cycles in workers: replace workers by memory limit")
    command = production_command(app, workers, best["name"], chdir, serve_args)
    return {"preset": best["name"], "text": "; ".join(words) + ".", "command": command}


def _caveats(best: dict[str, Any], others: Sequence[dict[str, Any]]) -> list[str]:
    """What the headline alone would hide: a tie, gunicorn fitting more, failed requests."""
    out = []
    n = best["summary"]["fit_workers"]
    close = [
        c["name"]
        for c in others
        if c["kind"] == "corral" and n and 100 * (n - c["summary"]["fit_workers"]) / n < TIE_PCT
    ]
    if close:
        names = ", ".join(f"`{x}`" for x in close)
        out.append(f"{names} fit within {TIE_PCT:g}% of that: a tie within the noise of this run")
    for c in others:
        if c["kind"] == "gunicorn" and not failures(c["load"]) and c["summary"]["fit_workers"] > n:
            out.append(
                f"gunicorn --preload fits more ({c['summary']['fit_workers']} vs {n}): "
                "no corral preset beats it on this app"
            )
    failed = [c for c in (best, *others) if failures(c["load"])]
    if failed:
        each = ", ".join(
            f"`{c['name']}` {failures(c['load'])} of {c['load'].get('requests', 0)} "
            f"({_statuses(c['load'])})"
            for c in failed
        )
        out.append(
            f"requests failed or were answered 4xx/5xx: {each}; those figures measure error "
            "pages, not the app: check that --traffic names pages the app serves"
        )
    return out


def _statuses(load: dict[str, Any]) -> str:
    """The failures of one load: ``404 x66, reset x2``."""
    statuses = sorted((load.get("statuses") or {}).items())
    parts = [f"{k} x{v}" for k, v in statuses if int(k) >= 400]
    parts += [
        f"{k} x{v}" for k, v in (load.get("error_classes") or {}).items() if v and k != "non_2xx"
    ]
    return ", ".join(parts) or "none"


def _baseline(best: dict[str, Any], others: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """What the latency of ``best`` is compared with: CPython's own collector (the default),
    or, when that is the favoured one, gunicorn (what a user comes from), else the next."""
    by_name = {c["name"]: c for c in others}
    return by_name.get("cpython") or by_name.get("gunicorn") or (others[0] if others else None)


def _lost_sharing(config: dict[str, Any]) -> str:
    att = config.get("attribution") or {}
    if not att or "error" in att:
        return ""
    parts = [f"{t['name']} {t['bytes'] / MIB:.2f} MiB" for t in att.get("types", [])[:4]]
    mods = [m["name"] for m in att.get("modules", [])[:3]]
    return ", ".join(parts) + (f" (modules: {', '.join(mods)})" if mods else "")
