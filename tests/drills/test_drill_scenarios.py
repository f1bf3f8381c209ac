"""Every scenario in scenarios/ runs through the real services at a reduced size, writes a
complete report, is deterministic under its seed, and keeps its notifications in the exercise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fieldops.cli import app
from fieldops.drills.cli import load_checked
from fieldops.drills.report import STAGES, build_report, write_report
from fieldops.drills.runner import Drill, DrillOptions, DrillResult
from fieldops.drills.spec import Scenario
from fieldops.notifications.service import EXERCISE_PREFIX

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ROOT / "layers"
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
# Small enough for ~10 s a run, long enough for arrivals, dispatch, injects and escalation.
SMALL = DrillOptions(scale=0.5, duration_h=3.0)

REPORT_KEYS = {
    "schema",
    "scenario",
    "counts",
    "response_times_s",
    "sla",
    "escalations",
    "notifications",
    "crews",
    "targets",
}
COUNT_KEYS = {
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
}


def _run(path: Path, tmp: Path, options: DrillOptions = SMALL) -> DrillResult:
    scenario = load_checked(path, LAYERS)
    assert isinstance(scenario, Scenario)
    drill = Drill(
        scenario, db_url=f"sqlite:///{tmp / 'drill.db'}", layers_dir=LAYERS, options=options
    )
    drill.setup()
    result = drill.run()
    result.sent = drill.sender.sent  # type: ignore[attr-defined]
    return result


def test_there_are_scenarios() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {"spring_flood_2017", "rat_surge_2016"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_runs_small_with_a_full_report(path: Path, tmp_path: Path) -> None:
    result = _run(path, tmp_path)
    report = build_report(result)
    assert set(report) == REPORT_KEYS
    assert set(report["counts"]) == COUNT_KEYS
    assert set(report["response_times_s"]) == set(STAGES)
    for stage in STAGES:
        assert set(report["response_times_s"][stage]["all"]) == {"n", "p50", "p90", "p95"}
    assert set(report["targets"]) == {"p90_dispatch_s", "sla_breach_rate"}
    for target in report["targets"].values():
        assert set(target) == {"target", "actual", "met", "margin"}
    counts = report["counts"]
    assert counts["reports_submitted"] > 0
    assert counts["incidents"] + counts["duplicates_merged"] == counts["reports_submitted"]
    assert counts["dispatched"] > 0
    assert counts["resolved"] > 0
    assert report["crews"]["utilisation_mean"] > 0

    # The exercise never leaks: every message is marked and goes to the drill's roster only.
    assert report["notifications"]["without_prefix"] == 0
    assert report["notifications"]["outside_roster"] == 0
    for note in result.notifications:
        assert note["exercise"] is True
        assert note["subject"].startswith(EXERCISE_PREFIX)
        assert note["recipient"] in result.roster
    for recipient, subject in result.sent:  # type: ignore[attr-defined]
        assert subject.startswith(EXERCISE_PREFIX)
        assert recipient in result.roster


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_same_seed_same_figures(path: Path, tmp_path: Path) -> None:
    options = DrillOptions(scale=0.5, duration_h=1.5)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = build_report(_run(path, tmp_path / "a", options))
    second = build_report(_run(path, tmp_path / "b", options))
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_other_seed_other_figures(tmp_path: Path) -> None:
    path = ROOT / "scenarios" / "spring_flood_2017.toml"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _run(path, tmp_path / "a", DrillOptions(scale=0.5, duration_h=1.5, seed=1))
    second = _run(path, tmp_path / "b", DrillOptions(scale=0.5, duration_h=1.5, seed=2))
    assert [(a.lon, a.lat) for a in first.arrivals] != [(a.lon, a.lat) for a in second.arrivals]


def test_report_files(tmp_path: Path) -> None:
    result = _run(
        ROOT / "scenarios" / "spring_flood_2017.toml",
        tmp_path,
        DrillOptions(scale=0.5, duration_h=2.0),
    )
    from datetime import UTC, datetime

    write_report(
        tmp_path / "out",
        [result],
        layers_dir=LAYERS,
        wall_s=1.0,
        written_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report) == REPORT_KEYS
    lines = (tmp_path / "out" / "timeline.csv").read_text().splitlines()
    assert lines[0].startswith("incident_id,service_code,initial_priority")
    assert len(lines) == report["counts"]["incidents"] + 1
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("<img alt=") == 2
    assert page.count("src='data:image/png;base64,") == 2
    assert "Signalement → affectation / Report → dispatch" in page
    assert "<iframe" in page
    # Offline: the map and the page load nothing from a CDN.
    mapped = (tmp_path / "out" / "map.html").read_text()
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com"):
        assert cdn not in mapped


def test_cli_runs_a_comparison(tmp_path: Path) -> None:
    out = tmp_path / "out"
    answer = CliRunner().invoke(
        app,
        [
            "drill",
            "run",
            str(ROOT / "scenarios" / "spring_flood_2017.toml"),
            "--out",
            str(out),
            "--scale",
            "0.3",
            "--duration-h",
            "1",
            "--compare",
            "--no-map",
            "--seed",
            "7",
        ],
    )
    assert answer.exit_code == 0, answer.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["compare"]) == {"optimal", "greedy"}
    assert report["compare"]["optimal"]["scenario"]["seed"] == 7
    assert (out / "timeline.csv").is_file() and (out / "timeline-greedy.csv").is_file()
    assert (out / "drill-optimal.db").is_file()
