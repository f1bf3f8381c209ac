"""The after-action report of a drill: report.json (figures), timeline.csv (one row per
incident), report.html (figures as embedded PNGs and an offline folium map), in FR and EN.

report.json keys (stable; figures only, nothing that depends on the machine or wall time):
  schema, scenario{name, seed, scale, strategy, start, end, duration_h},
  counts{reports_generated, reports_submitted, reports_refused, duplicates_merged, incidents,
         dispatched, acknowledged, on_scene, resolved, open_at_end, stranded},
  response_times_s{report_to_dispatch|report_to_acknowledge|report_to_on_scene|
                   report_to_resolved: {all|priority_N: {n, p50, p90, p95}}}  (priority at intake),
  sla{evaluated, breached, breach_rate},
  escalations{total, by_action{...}, by_outcome{"action:status": n}},
  notifications{total, exercise, without_prefix, outside_roster, roster_size},
  crews{count, utilisation_mean, utilisation{crew name: share of the drill en route or on scene}},
  targets{p90_dispatch_s|sla_breach_rate: {target, actual, met, margin}}  (margin > 0: met).
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fieldops.drills.runner import DrillResult
from fieldops.notifications.service import EXERCISE_PREFIX

SCHEMA = "fieldops.drill.report/1"
STAGES = {
    "report_to_dispatch": "dispatched_at",
    "report_to_acknowledge": "acknowledged_at",
    "report_to_on_scene": "on_scene_at",
    "report_to_resolved": "resolved_at",
}
STAGE_LABELS = {
    "report_to_dispatch": "Signalement → affectation / Report → dispatch",
    "report_to_acknowledge": "Signalement → accusé / Report → acknowledge",
    "report_to_on_scene": "Signalement → sur place / Report → on scene",
    "report_to_resolved": "Signalement → résolu / Report → resolved",
}
TIMELINE_COLUMNS = [
    "incident_id",
    "service_code",
    "initial_priority",
    "priority",
    "status",
    "district_id",
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


def _spread(seconds: pd.Series) -> dict[str, Any]:
    values = seconds.dropna().to_numpy(dtype=float)
    if len(values) == 0:
        return {"n": 0, "p50": None, "p90": None, "p95": None}
    p50, p90, p95 = np.percentile(values, [50, 90, 95])
    return {"n": len(values), "p50": _r(p50), "p90": _r(p90), "p95": _r(p95)}


def stage_seconds(timeline: pd.DataFrame) -> dict[str, pd.Series]:
    return {
        stage: (timeline[column] - timeline["reported_at"]).dt.total_seconds()
        for stage, column in STAGES.items()
    }


def build_report(result: DrillResult) -> dict[str, Any]:
    """The figures of one run, as report.json holds them."""
    t = result.timeline
    seconds = stage_seconds(t)
    response: dict[str, Any] = {}
    for stage, values in seconds.items():
        by = {"all": _spread(values)}
        for p in sorted(t["initial_priority"].unique()):
            by[f"priority_{int(p)}"] = _spread(values[t["initial_priority"] == p])
        response[stage] = by
    end = pd.Timestamp(result.end)
    due = t["resolve_due_at"]
    evaluated = due.notna() & ((due <= end) | t["resolved_at"].notna())
    breached = evaluated & (t["resolved_at"].isna() | (t["resolved_at"] > due))
    n_eval = int(evaluated.sum())
    breach_rate = float(breached.sum()) / n_eval if n_eval else 0.0
    notes = result.notifications
    utilisation = {
        c.name: round(
            sum(b - a for a, b in c.busy) / (result.end - result.start).total_seconds(), 4
        )
        for c in sorted(result.crews, key=lambda c: c.name)
    }
    p90 = response["report_to_dispatch"]["all"]["p90"]
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
    return {
        "schema": SCHEMA,
        "scenario": {
            "name": result.scenario.drill.name,
            "seed": result.seed,
            "scale": result.scale,
            "strategy": result.strategy,
            "start": result.start.isoformat(),
            "end": result.end.isoformat(),
            "duration_h": round((result.end - result.start).total_seconds() / 3600, 3),
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
        "response_times_s": response,
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
            "roster_size": len(result.roster),
        },
        "crews": {
            "count": len(result.crews),
            "utilisation_mean": round(float(np.mean(list(utilisation.values()))), 4)
            if utilisation
            else 0.0,
            "utilisation": utilisation,
        },
        "targets": targets,
    }


def timeline_csv(result: DrillResult) -> str:
    table = result.timeline[TIMELINE_COLUMNS].copy()
    for column in table.columns:
        if column.endswith("_at"):
            table[column] = table[column].map(lambda v: "" if pd.isna(v) else v.isoformat())
    return table.to_csv(index=False, lineterminator="\n")


# --- figures ------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def load_series(result: DrillResult, step_s: int = 300) -> pd.DataFrame:
    """Open incidents and busy crews every ``step_s`` of the drill."""
    total = (result.end - result.start).total_seconds()
    at_s = np.arange(0, total + 1, step_s, dtype=float)
    t = result.timeline
    opened = (t["reported_at"] - pd.Timestamp(result.start)).dt.total_seconds().to_numpy()
    closed = (t["resolved_at"] - pd.Timestamp(result.start)).dt.total_seconds().fillna(np.inf)
    open_n = [(opened <= s).sum() - (closed.to_numpy() <= s).sum() for s in at_s]
    # The last sample looks just before the end, where every busy interval is closed.
    probe = np.minimum(at_s, total - 1e-3)
    busy_n = [sum(any(a <= s < b for a, b in c.busy) for c in result.crews) for s in probe]
    return pd.DataFrame({"hours": at_s / 3600, "open_incidents": open_n, "busy_crews": busy_n})


def figures(results: list[DrillResult]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for r in results:
        s = load_series(r)
        ax.step(
            s["hours"],
            s["open_incidents"],
            where="post",
            label=f"Incidents ouverts / open incidents ({r.strategy})",
        )
        ax.step(
            s["hours"],
            s["busy_crews"],
            where="post",
            linestyle="--",
            label=f"Équipes occupées / busy crews ({r.strategy})",
        )
    ax.set_xlabel("Heures depuis le début / hours since start")
    ax.set_ylabel("Nombre / count")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out["load"] = _png(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2), sharey=False)
    for ax, stage in zip(axes, STAGES, strict=True):
        data = [stage_seconds(r.timeline)[stage].dropna().to_numpy() / 60 for r in results]
        ax.boxplot(
            [d if len(d) else [np.nan] for d in data],
            tick_labels=[r.strategy for r in results],
            showfliers=True,
        )
        ax.set_title(STAGE_LABELS[stage].replace(" / ", "\n"), fontsize=8)
        ax.set_ylabel("minutes")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out["response"] = _png(fig)
    plt.close(fig)
    return out


# --- map ----------------------------------------------------------------------------------


def drill_map_html(result: DrillResult, layers_dir: Path, lang: str = "fr") -> str:
    """An offline folium map of every incident of the drill and its hot spots, drawn with
    fieldops.mapping's renderers on the drill's own database."""
    import geopandas

    from fieldops.db.engine import READ_ONLY, make_engine, make_sessionmaker
    from fieldops.geo.crs import WGS84
    from fieldops.geo.hotspots import HotspotOptions, find_hotspots
    from fieldops.mapping import repo
    from fieldops.mapping.assets import DEFAULT_VENDOR_DIR, asset_links
    from fieldops.mapping.base_layers import load_base_layers
    from fieldops.mapping.render import MapData, MapOptions, render_map, standalone_html
    from fieldops.mapping.service import districts_frame, service_names

    layers = [
        "districts",
        "incidents",
        "hotspots",
        "emergencies",
        "flood_zones",
        "metro_lines",
        "metro_stations",
    ]
    engine = make_engine(result.db_url)
    with make_sessionmaker(engine)() as session:
        session.connection(execution_options=READ_ONLY)
        names = service_names(session)
        districts = districts_frame(session)
        area = repo.served_area_m2(session)
        from fieldops.mapping.feed import emergencies_frame

        emergencies = emergencies_frame(session, now=result.start)
        session.rollback()
    engine.dispose()
    t = result.timeline
    points = geopandas.points_from_xy(t["lon"], t["lat"])
    incidents = geopandas.GeoDataFrame(
        {
            "id": t["incident_id"],
            "service_code": t["service_code"],
            "status": t["status"],
            "priority": t["priority"],
            "district_id": t["district_id"],
            "report_count": t["report_count"],
            "crew": None,
            "eta_at": pd.NaT,
        },
        geometry=points,
        crs=WGS84,
    )
    hot_input = geopandas.GeoDataFrame(
        {
            "id": t["incident_id"],
            "service_group": t["service_code"].map(lambda c: names.get(c, {}).get("group", c)),
            "report_count": t["report_count"].astype(np.int64),
            "first_report_at": t["reported_at"],
            "last_report_at": t["reported_at"],
        },
        geometry=geopandas.points_from_xy(t["lon"], t["lat"]),
        crs=WGS84,
    )
    hotspots = find_hotspots(hot_input, HotspotOptions(area_m2=area))
    base = load_base_layers(layers_dir)
    data = MapData(
        districts=districts,
        incidents=incidents,
        hotspots=hotspots,
        emergencies=emergencies,
        flood_zones=base.flood_zones,
        metro_lines=base.metro_lines,
        metro_stations=base.metro_stations,
    )
    options = MapOptions(
        assets=asset_links(DEFAULT_VENDOR_DIR),
        lang="en" if lang == "en" else "fr",
        services=names,
        layers=frozenset(layers),
        as_of=result.end,
    )
    return standalone_html(render_map(data, options), options, DEFAULT_VENDOR_DIR)


# --- html ---------------------------------------------------------------------------------


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(
    reports: list[dict[str, Any]],
    results: list[DrillResult],
    *,
    map_html: str,
    wall_s: float,
    written_at: datetime,
) -> str:
    first = results[0].scenario.drill
    figs = figures(results)
    parts = [
        "<!doctype html><html lang='fr'><head><meta charset='utf-8'>",
        f"<title>{html.escape(first.name)} — bilan / after-action report</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;"
        "padding:2px 8px;text-align:right}th{background:#eee}.met{color:#060}.missed{color:#a00}"
        "iframe{width:100%;height:640px;border:1px solid #bbb}</style></head><body>",
        f"<h1>[EXERCICE / EXERCISE] {html.escape(first.name)}</h1>",
        f"<p>{html.escape(first.description)}</p>",
        f"<p>Bilan après exercice / after-action report — simulation {wall_s:.1f} s "
        f"(écrit / written {written_at:%Y-%m-%d %H:%M} UTC)</p>",
    ]
    header = ["", *[r["scenario"]["strategy"] for r in reports]]
    count_keys = list(reports[0]["counts"])
    parts.append("<h2>Volumes / counts</h2>")
    parts.append(_table([[k, *[r["counts"][k] for r in reports]] for k in count_keys], header))
    parts.append("<h2>Cibles / targets</h2>")
    rows = []
    for key in reports[0]["targets"]:
        row: list[Any] = [key]
        for r in reports:
            t = r["targets"][key]
            word = "atteinte / met" if t["met"] else "manquée / missed"
            row.append(f"{t['actual']} vs {t['target']} — {word} (marge / margin {t['margin']})")
        rows.append(row)
    parts.append(_table(rows, header))
    parts.append("<h2>Délais (s) / response times (s): P50 / P90 / P95 (n)</h2>")
    rows = []
    for stage in STAGES:
        for group in reports[0]["response_times_s"][stage]:
            row = [f"{STAGE_LABELS[stage]} — {group}"]
            for r in reports:
                s = r["response_times_s"][stage].get(group, {})
                row.append(f"{s.get('p50')} / {s.get('p90')} / {s.get('p95')} ({s.get('n')})")
            rows.append(row)
    parts.append(_table(rows, header))
    parts.append("<h2>Escalades / escalations</h2>")
    actions = sorted({a for r in reports for a in r["escalations"]["by_action"]})
    parts.append(
        _table(
            [[a, *[r["escalations"]["by_action"].get(a, 0) for r in reports]] for a in actions]
            or [["—", *["0" for _ in reports]]],
            header,
        )
    )
    parts.append("<h2>Avis / notifications</h2>")
    parts.append(
        _table(
            [[k, *[r["notifications"][k] for r in reports]] for k in reports[0]["notifications"]],
            header,
        )
    )
    parts.append("<h2>Équipes / crews: taux d'occupation / utilisation</h2>")
    names = list(reports[0]["crews"]["utilisation"])
    parts.append(
        _table(
            [[n, *[f"{r['crews']['utilisation'].get(n, 0):.0%}" for r in reports]] for n in names],
            header,
        )
    )
    parts.append("<h2>Charge / load</h2>")
    parts.append(
        f"<img alt='open incidents and busy crews' src='data:image/png;base64,{figs['load']}'>"
    )
    parts.append("<h2>Distribution des délais / response-time distributions</h2>")
    parts.append(f"<img alt='response times' src='data:image/png;base64,{figs['response']}'>")
    parts.append("<h2>Carte / map</h2>")
    parts.append(f"<iframe title='map' srcdoc=\"{html.escape(map_html, quote=True)}\"></iframe>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    out_dir: Path,
    results: list[DrillResult],
    *,
    layers_dir: Path,
    wall_s: float,
    written_at: datetime,
    with_map: bool = True,
) -> list[dict[str, Any]]:
    """Write report.json, timeline.csv (the first run's; ``-greedy`` suffixed for a
    comparison), map.html and report.html into ``out_dir``."""
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
    map_html = drill_map_html(results[0], layers_dir) if with_map else ""
    if with_map:
        (out_dir / "map.html").write_text(map_html, encoding="utf-8")
    (out_dir / "report.html").write_text(
        report_html(reports, results, map_html=map_html, wall_s=wall_s, written_at=written_at),
        encoding="utf-8",
    )
    return reports
