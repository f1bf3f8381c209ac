"""The after-action report of a drill: report.json (figures), timeline.csv (one row per
incident), tracks.csv (crew position fixes), map.html and report.html, in FR and EN.

report.json keys (schema fieldops.drill.report/2; stable: keys are only ever added, and the
figures depend on the scenario, its options and the seed, never on the machine or wall time):
  schema
  scenario{name, seed, scale, crew_scale, strategy, start, end, duration_h}
  counts{reports_generated, reports_submitted, reports_refused, duplicates_merged, incidents,
         dispatched, acknowledged, on_scene, resolved, open_at_end, stranded}
  replay{rows_read, skipped_no_coordinates, skipped_other, outside_window, other_service,
         replayed, speedup[one per [[replay]]]}            (zeros and [] without a replay)
  response_times_s{STAGE: {all|priority_N: {n, p50, p90, p95}}}  (priority at intake)
  response_times_by_district_s{STAGE: {DISTRICT CODE: {n, p50, p90, p95}}}
  districts{DISTRICT CODE: name}                           (those with an incident)
  nfpa_1225{stage, classes, target_p90_s, n, p90, met, margin_s}
      NFPA 1225's call-processing benchmark: 90 % of emergency calls dispatched within 60 s.
      The emergency classes are the incidents of priority 1 at intake; met is null when the
      drill had none.
  sla{evaluated, breached, breach_rate}
  escalations{total, by_action{...}, by_outcome{"action:status": n}}
  notifications{total, exercise, without_prefix, outside_roster, sent, sent_outside_roster,
                roster_size}
  crews{count, utilisation_mean, utilisation{crew name: share of the drill en route or on
        scene}, position_fixes}
  targets{p90_dispatch_s|sla_breach_rate: {target, actual, met, margin}}  (margin > 0: met)
STAGE is report_to_dispatch, report_to_acknowledge, report_to_on_scene, report_to_resolved
(from the first report), then each interval of that chain: dispatch_to_acknowledge,
acknowledge_to_on_scene, on_scene_to_resolved (first dispatch, first acceptance, first
arrival, resolution).
Seconds are rounded to 0.1; P50/P90/P95 are numpy's linear percentiles; null where n is 0.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fieldops.drills.labels import INTERVALS, STAGES
from fieldops.drills.model import DrillResult
from fieldops.notifications.service import EXERCISE_PREFIX

SCHEMA = "fieldops.drill.report/2"
NFPA_1225_P90_S = 60.0
TIMELINE_COLUMNS = [
    "incident_id",
    "service_code",
    "initial_priority",
    "priority",
    "status",
    "district_id",
    "district",
    "lon",
    "lat",
    "report_count",
    "emergency_id",
    "assignments",
    "reported_at",
    "dispatched_at",
    "acknowledged_at",
    "on_scene_at",
    "resolved_at",
    "dispatch_due_at",
    "resolve_due_at",
]


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def spread(seconds: pd.Series) -> dict[str, Any]:
    values = seconds.dropna().to_numpy(dtype=float)
    if len(values) == 0:
        return {"n": 0, "p50": None, "p90": None, "p95": None}
    p50, p90, p95 = np.percentile(values, [50, 90, 95])
    return {"n": len(values), "p50": _r(p50), "p90": _r(p90), "p95": _r(p95)}


def stage_seconds(timeline: pd.DataFrame) -> dict[str, pd.Series]:
    """Seconds of every stage (from the first report) and interval, per incident."""
    since_report = {
        stage: (timeline[column] - timeline["reported_at"]).dt.total_seconds()
        for stage, column in STAGES.items()
    }
    between = {
        name: (timeline[to] - timeline[since]).dt.total_seconds()
        for name, (since, to) in INTERVALS.items()
    }
    return since_report | between


def _natural(key: Any) -> tuple[int, int, str]:
    """Numbers in their order (district codes "2" before "10"), then the rest by name."""
    text = str(key)
    return (0, int(text), text) if text.isdigit() else (1, 0, text)


def _by(seconds: pd.Series, keys: pd.Series, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}{k}": spread(seconds[keys == k]) for k in sorted(keys.unique(), key=_natural)}


def _nfpa(t: pd.DataFrame, seconds: pd.Series) -> dict[str, Any]:
    found = spread(seconds[t["initial_priority"] == 1])
    p90 = found["p90"]
    return {
        "stage": "report_to_dispatch",
        "classes": "priority 1 at intake",
        "target_p90_s": NFPA_1225_P90_S,
        "n": found["n"],
        "p90": p90,
        "met": None if p90 is None else bool(p90 <= NFPA_1225_P90_S),
        "margin_s": None if p90 is None else _r(NFPA_1225_P90_S - p90),
    }


def _targets(result: DrillResult, p90: float | None, breach_rate: float) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    goal = result.scenario.targets
    if goal.p90_dispatch_s is not None:
        actual = p90 if p90 is not None else float("inf")
        targets["p90_dispatch_s"] = {
            "target": goal.p90_dispatch_s,
            "actual": p90,
            "met": bool(actual <= goal.p90_dispatch_s),
            "margin": _r(goal.p90_dispatch_s - actual) if p90 is not None else None,
        }
    if goal.sla_breach_rate is not None:
        targets["sla_breach_rate"] = {
            "target": goal.sla_breach_rate,
            "actual": round(breach_rate, 4),
            "met": bool(breach_rate <= goal.sla_breach_rate),
            "margin": round(goal.sla_breach_rate - breach_rate, 4),
        }
    return targets


def build_report(result: DrillResult) -> dict[str, Any]:
    """The figures of one run, as report.json holds them."""
    t = result.timeline
    seconds = stage_seconds(t)
    priority = t["initial_priority"].astype(int)
    response = {
        stage: {"all": spread(values), **_by(values, priority, "priority_")}
        for stage, values in seconds.items()
    }
    by_district = {stage: _by(values, t["district"]) for stage, values in seconds.items()}
    end = pd.Timestamp(result.end)
    due = t["resolve_due_at"]
    evaluated = due.notna() & ((due <= end) | t["resolved_at"].notna())
    breached = evaluated & (t["resolved_at"].isna() | (t["resolved_at"] > due))
    n_eval = int(evaluated.sum())
    breach_rate = float(breached.sum()) / n_eval if n_eval else 0.0
    notes = result.notifications
    drill_s = (result.end - result.start).total_seconds()
    utilisation = {
        c.name: round(sum(b - a for a, b in c.busy) / drill_s, 4)
        for c in sorted(result.crews, key=lambda c: c.name)
    }
    return {
        "schema": SCHEMA,
        "scenario": {
            "name": result.scenario.drill.name,
            "seed": result.seed,
            "scale": result.scale,
            "crew_scale": result.crew_scale,
            "strategy": result.strategy,
            "start": result.start.isoformat(),
            "end": result.end.isoformat(),
            "duration_h": round(drill_s / 3600, 3),
        },
        "counts": {
            "reports_generated": len(result.arrivals),
            "reports_submitted": result.reports_submitted,
            "reports_refused": result.reports_rejected,
            "duplicates_merged": result.reports_merged,
            "incidents": len(t),
            "dispatched": int(t["dispatched_at"].notna().sum()),
            "acknowledged": int(t["acknowledged_at"].notna().sum()),
            "on_scene": int(t["on_scene_at"].notna().sum()),
            "resolved": int(t["resolved_at"].notna().sum()),
            "open_at_end": int(t["resolved_at"].isna().sum()),
            "stranded": len(result.stranded),
        },
        "replay": result.replay.as_dict(),
        "response_times_s": response,
        "response_times_by_district_s": by_district,
        "districts": dict(
            sorted(
                zip(t["district"], t["district_name"], strict=True), key=lambda d: _natural(d[0])
            )
        ),
        "nfpa_1225": _nfpa(t, seconds["report_to_dispatch"]),
        "sla": {
            "evaluated": n_eval,
            "breached": int(breached.sum()),
            "breach_rate": round(breach_rate, 4),
        },
        "escalations": {
            "total": int(sum(result.escalations.values())),
            "by_action": dict(sorted(result.escalations.items())),
            "by_outcome": dict(sorted(result.escalations_by_status.items())),
        },
        "notifications": {
            "total": len(notes),
            "exercise": sum(1 for n in notes if n["exercise"]),
            "without_prefix": sum(1 for n in notes if not n["subject"].startswith(EXERCISE_PREFIX)),
            "outside_roster": sum(1 for n in notes if n["recipient"] not in result.roster),
            "sent": len(result.sent),
            "sent_outside_roster": sum(1 for r, _ in result.sent if r not in result.roster),
            "roster_size": len(result.roster),
        },
        "crews": {
            "count": len(result.crews),
            "utilisation_mean": round(float(np.mean(list(utilisation.values()))), 4)
            if utilisation
            else 0.0,
            "utilisation": utilisation,
            "position_fixes": len(result.tracks),
        },
        "targets": _targets(result, response["report_to_dispatch"]["all"]["p90"], breach_rate),
    }


def _csv(table: pd.DataFrame) -> str:
    table = table.copy()
    for column in table.columns:
        if column.endswith("_at"):
            table[column] = table[column].map(lambda v: "" if pd.isna(v) else v.isoformat())
    return table.to_csv(index=False, lineterminator="\n")


def timeline_csv(result: DrillResult) -> str:
    return _csv(result.timeline[TIMELINE_COLUMNS])


def tracks_csv(result: DrillResult) -> str:
    return _csv(result.tracks[["crew_id", "crew", "fix_at", "lon", "lat"]])


def write_report(
    out_dir: Path,
    results: list[DrillResult],
    *,
    layers_dir: Path,
    wall_s: float,
    written_at: datetime,
    with_map: bool = True,
) -> list[dict[str, Any]]:
    """Write report.json, timeline.csv and tracks.csv (the first run's; ``-greedy``
    suffixed for a comparison), map.html and report.html into ``out_dir``. Reads the
    drill's database for the map: call it before the database is dropped."""
    from fieldops.drills.report_html import report_html
    from fieldops.drills.report_map import drill_map_html

    out_dir.mkdir(parents=True, exist_ok=True)
    reports = [build_report(r) for r in results]
    payload: Any = (
        reports[0]
        if len(reports) == 1
        else {"schema": SCHEMA, "compare": {r["scenario"]["strategy"]: r for r in reports}}
    )
    (out_dir / "report.json").write_text(
        json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8"
    )
    for r in results:
        suffix = "" if r is results[0] else f"-{r.strategy}"
        (out_dir / f"timeline{suffix}.csv").write_text(timeline_csv(r), encoding="utf-8")
        (out_dir / f"tracks{suffix}.csv").write_text(tracks_csv(r), encoding="utf-8")
    map_html = drill_map_html(results[0], layers_dir) if with_map else ""
    if with_map:
        (out_dir / "map.html").write_text(map_html, encoding="utf-8")
    (out_dir / "report.html").write_text(
        report_html(reports, results, map_html=map_html, wall_s=wall_s, written_at=written_at),
        encoding="utf-8",
    )
    return reports
