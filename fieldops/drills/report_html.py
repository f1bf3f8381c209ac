"""report.html: the figures of report.json as tables, plots as embedded PNGs and the offline
map, every label in French and English."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from fieldops.drills.labels import INTERVALS, STAGES, both
from fieldops.drills.model import DrillResult
from fieldops.drills.report import stage_seconds


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def load_series(result: DrillResult, step_s: int = 300) -> pd.DataFrame:
    """Open incidents and busy crews every ``step_s`` of the drill."""
    total = (result.end - result.start).total_seconds()
    at_s = np.arange(0, total + 1, step_s, dtype=float)
    t = result.timeline
    start = pd.Timestamp(result.start)
    opened = np.sort((t["reported_at"] - start).dt.total_seconds().to_numpy())
    closed = np.sort((t["resolved_at"] - start).dt.total_seconds().fillna(np.inf).to_numpy())
    open_n = np.searchsorted(opened, at_s, side="right") - np.searchsorted(
        closed, at_s, side="right"
    )
    # The last sample looks just before the end, where every busy interval is closed.
    probe = np.minimum(at_s, total - 1e-3)
    busy_n = np.zeros(len(probe), dtype=int)
    for crew in result.crews:
        if crew.busy:
            spans = np.array(crew.busy)
            inside = (spans[:, 0][None, :] <= probe[:, None]) & (probe[:, None] < spans[:, 1])
            busy_n += inside.any(axis=1)
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
            label=f"{both('open_incidents')} ({r.strategy})",
        )
        ax.step(
            s["hours"],
            s["busy_crews"],
            where="post",
            linestyle="--",
            label=f"{both('busy_crews')} ({r.strategy})",
        )
    ax.set_xlabel(both("hours"))
    ax.set_ylabel(both("count"))
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
        ax.set_title(both(stage).replace(" / ", "\n"), fontsize=8)
        ax.set_ylabel("minutes")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out["response"] = _png(fig)
    plt.close(fig)
    return out


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _spread(s: dict[str, Any]) -> str:
    return f"{s.get('p50')} / {s.get('p90')} / {s.get('p95')} ({s.get('n', 0)})"


def _word(met: bool | None) -> str:
    return both("no_data") if met is None else both("met") if met else both("missed")


def _sections(reports: list[dict[str, Any]], header: list[str]) -> list[str]:
    first = reports[0]
    parts = [f"<h2>{both('counts')}</h2>"]
    parts.append(_table([[k, *[r["counts"][k] for r in reports]] for k in first["counts"]], header))
    parts.append(f"<h2>{both('targets')}</h2>")
    rows = []
    for key in first["targets"]:
        row: list[Any] = [key]
        for r in reports:
            t = r["targets"][key]
            row.append(
                f"{t['actual']} vs {t['target']} — {_word(t['met'])} "
                f"({both('margin')} {t['margin']})"
            )
        rows.append(row)
    nfpa = [
        f"P90 {r['nfpa_1225']['p90']} s vs 60 s (n {r['nfpa_1225']['n']}) — "
        f"{_word(r['nfpa_1225']['met'])}"
        for r in reports
    ]
    rows.append([both("nfpa"), *nfpa])
    parts.append(_table(rows, header))
    parts.append(f"<h2>{both('response')}: {both('percentiles')}</h2>")
    rows = []
    for stage in [*STAGES, *INTERVALS]:
        for group in first["response_times_s"][stage]:
            label = both("all") if group == "all" else group.replace("priority_", "P")
            rows.append(
                [
                    f"{both(stage)} — {label}",
                    *[_spread(r["response_times_s"][stage].get(group, {})) for r in reports],
                ]
            )
    parts.append(_table(rows, header))
    parts.append(f"<h2>{both('by_district')}: {both('percentiles')}</h2>")
    rows = []
    names = first["districts"]
    for stage in [*STAGES, *INTERVALS]:
        for code, name in names.items():
            rows.append(
                [
                    f"{both(stage)} — {code} {name}",
                    *[
                        _spread(r["response_times_by_district_s"][stage].get(code, {}))
                        for r in reports
                    ],
                ]
            )
    parts.append(_table(rows, header))
    if first["replay"]["rows_read"]:
        parts.append(f"<h2>{both('replay')}</h2>")
        parts.append(
            _table(
                [[k, *[r["replay"][k] for r in reports]] for k in first["replay"]],
                header,
            )
        )
    parts.append(f"<h2>{both('escalations')}</h2>")
    actions = sorted({a for r in reports for a in r["escalations"]["by_action"]})
    parts.append(
        _table(
            [[a, *[r["escalations"]["by_action"].get(a, 0) for r in reports]] for a in actions]
            or [["—", *["0" for _ in reports]]],
            header,
        )
    )
    parts.append(f"<h2>{both('notifications')}</h2>")
    parts.append(
        _table(
            [[k, *[r["notifications"][k] for r in reports]] for k in first["notifications"]],
            header,
        )
    )
    parts.append(f"<h2>{both('crews')}</h2>")
    crews = list(first["crews"]["utilisation"])
    parts.append(
        _table(
            [[n, *[f"{r['crews']['utilisation'].get(n, 0):.0%}" for r in reports]] for n in crews],
            header,
        )
    )
    return parts


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
        f"<title>{html.escape(first.name)} — {both('title')}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;"
        "padding:2px 8px;text-align:right}th{background:#eee}"
        "iframe{width:100%;height:640px;border:1px solid #bbb}</style></head><body>",
        f"<h1>[{both('exercise')}] {html.escape(first.name)}</h1>",
        f"<p>{html.escape(first.description)}</p>",
        f"<p>{both('title')} — {both('simulated')} {wall_s:.1f} s "
        f"({both('written')} {written_at:%Y-%m-%d %H:%M} UTC)</p>",
    ]
    header = ["", *[r["scenario"]["strategy"] for r in reports]]
    parts += _sections(reports, header)
    parts.append(f"<h2>{both('load')}</h2>")
    parts.append(f"<img alt='{both('load')}' src='data:image/png;base64,{figs['load']}'>")
    parts.append(f"<h2>{both('distributions')}</h2>")
    parts.append(
        f"<img alt='{both('distributions')}' src='data:image/png;base64,{figs['response']}'>"
    )
    if map_html:
        parts.append(f"<h2>{both('map')}</h2>")
        parts.append(
            f"<iframe title='map' srcdoc=\"{html.escape(map_html, quote=True)}\"></iframe>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
