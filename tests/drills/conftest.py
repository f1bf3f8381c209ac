"""Drill fixtures: one travel model (the street graphs) for every drill of a test worker,
and the check that a report has every documented key of report.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fieldops.dispatch.service import TravelModel
from fieldops.drills.labels import INTERVALS, STAGES

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ROOT / "layers"

# report.json's documented keys (fieldops/drills/report.py): a change here is a change of
# the report's schema.
REPORT_KEYS = {
    "schema",
    "scenario",
    "counts",
    "replay",
    "response_times_s",
    "response_times_by_district_s",
    "districts",
    "nfpa_1225",
    "sla",
    "escalations",
    "notifications",
    "crews",
    "targets",
}
NESTED_KEYS = {
    "scenario": {"name", "seed", "scale", "crew_scale", "strategy", "start", "end", "duration_h"},
    "counts": {
        "reports_generated",
        "reports_submitted",
        "reports_refused",
        "duplicates_merged",
        "incidents",
        "dispatched",
        "acknowledged",
        "on_scene",
        "resolved",
        "open_at_end",
        "stranded",
    },
    "replay": {
        "rows_read",
        "skipped_no_coordinates",
        "skipped_other",
        "outside_window",
        "other_service",
        "replayed",
        "speedup",
    },
    "nfpa_1225": {"stage", "classes", "target_p90_s", "n", "p90", "met", "margin_s"},
    "sla": {"evaluated", "breached", "breach_rate"},
    "escalations": {"total", "by_action", "by_outcome"},
    "notifications": {
        "total",
        "exercise",
        "without_prefix",
        "outside_roster",
        "sent",
        "sent_outside_roster",
        "roster_size",
    },
    "crews": {"count", "utilisation_mean", "utilisation", "position_fixes"},
}
SPREAD = {"n", "p50", "p90", "p95"}

# One hour, two crews, a few dark traffic signals (priority 1) in Le Plateau: a whole drill
# in a few seconds. ``{database}`` takes an optional [database] table.
TINY = """\
[drill]
name = "Essai / Trial"
start = 2017-03-14T08:00:00-04:00
duration_h = 1
seed = 3
tick_s = 60
{database}
[[crews.group]]
name = "Essai voirie"
count = 2
skills = ["roads", "traffic_signals"]
capacity = 2
districts = ["5"]

[behaviour]
acknowledge_delay_s = [10, 30]
work_min = [5, 10]

[[arrivals]]
service = "traffic_signal_out"
rate_per_h = [[0, 6]]
area = {{ districts = ["5"] }}
priority_mix = {{ 1 = 1 }}
"""


@pytest.fixture
def tiny_scenario(tmp_path: Path) -> Callable[..., Path]:
    """Write the tiny scenario (with an optional [database] table) and return its path."""

    def write(name: str = "trial", database: str = "", folder: Path | None = None) -> Path:
        where = folder or tmp_path
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"{name}.toml"
        path.write_text(TINY.format(database=database), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def travel() -> TravelModel:
    from fieldops.catalog.spec import read_city
    from fieldops.dispatch.travel import load_travel_model

    city = read_city(LAYERS / "city.toml").city
    return load_travel_model(LAYERS, metric_crs=city.metric_crs)


def _check(report: dict[str, Any]) -> None:
    assert set(report) == REPORT_KEYS
    for key, keys in NESTED_KEYS.items():
        assert set(report[key]) == keys, key
    for section in ("response_times_s", "response_times_by_district_s"):
        assert set(report[section]) == set(STAGES) | set(INTERVALS), section
        for stage in [*STAGES, *INTERVALS]:
            for group, spread in report[section][stage].items():
                assert set(spread) == SPREAD, (section, stage, group)
    assert "all" in report["response_times_s"]["report_to_dispatch"]
    assert set(report["targets"]) == {"p90_dispatch_s", "sla_breach_rate"}
    for target in report["targets"].values():
        assert set(target) == {"target", "actual", "met", "margin"}


@pytest.fixture
def check_report_keys() -> Callable[[dict[str, Any]], None]:
    return _check
