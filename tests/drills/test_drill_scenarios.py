"""Every scenario in scenarios/ runs through the real services at a reduced size, writes a
complete report, is deterministic under its seed, and keeps its notifications in the exercise."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from fieldops.cli import app
from fieldops.dispatch.service import TravelModel
from fieldops.drills.database import drill_database
from fieldops.drills.model import DrillOptions, DrillResult
from fieldops.drills.report import build_report, stage_seconds, write_report
from fieldops.drills.runner import Drill
from fieldops.drills.scenarios import load_checked
from fieldops.notifications.service import EXERCISE_PREFIX

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ROOT / "layers"
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
# Small enough for a few seconds a run, long enough for arrivals, dispatch, injects and
# escalation; the replay compresses a season into the scenario's day, so its first
# hours hold real rows too.
SMALL = DrillOptions(scale=0.5, duration_h=2.0)


def _run(path: Path, tmp: Path, travel: TravelModel, options: DrillOptions = SMALL) -> DrillResult:
    scenario = load_checked(path, LAYERS)
    with drill_database(None, folder=tmp, token="test") as database:
        drill = Drill(
            scenario, db_url=database.url, layers_dir=LAYERS, options=options, travel=travel
        )
        drill.setup()
        return drill.run()


def test_there_are_scenarios() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {"spring_flood_2017", "rat_surge_2016", "winter_storm_2017", "rat_replay_2017"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_runs_small_with_a_full_deterministic_report(
    path: Path,
    tmp_path: Path,
    travel: TravelModel,
    check_report_keys: Callable[[dict[str, Any]], None],
) -> None:
    result = _run(path, tmp_path / "a", travel)
    report = build_report(result)
    check_report_keys(report)
    counts = report["counts"]
    assert counts["reports_submitted"] > 0
    assert counts["incidents"] + counts["duplicates_merged"] == counts["reports_submitted"]
    assert counts["dispatched"] > 0
    assert counts["resolved"] > 0
    assert report["crews"]["utilisation_mean"] > 0
    assert report["crews"]["position_fixes"] > report["crews"]["count"]  # depots, then scenes
    # The simulated crews take no step the crew service refuses: they follow its rules.
    assert result.refused_steps == 0
    for stage, by_district in report["response_times_by_district_s"].items():
        assert set(by_district) == set(report["districts"]), stage
        assert (
            sum(s["n"] for s in by_district.values())
            == (report["response_times_s"][stage]["all"]["n"])
        )

    # The exercise never leaks: every message is marked and goes to the drill's roster only.
    assert report["notifications"]["without_prefix"] == 0
    assert report["notifications"]["outside_roster"] == 0
    assert report["notifications"]["sent_outside_roster"] == 0
    for note in result.notifications:
        assert note["exercise"] is True
        assert note["subject"].startswith(EXERCISE_PREFIX)
        assert note["recipient"] in result.roster
    for recipient, subject in result.sent:
        assert subject.startswith(EXERCISE_PREFIX)
        assert recipient in result.roster

    # The same file and seed give the same figures, to the last digit.
    again = build_report(_run(path, tmp_path / "b", travel))
    assert json.dumps(again, sort_keys=True) == json.dumps(report, sort_keys=True)


def test_the_winter_storm_exercises_every_part(tmp_path: Path, travel: TravelModel) -> None:
    """Snow, trees, dark signals and potholes, and an emergency declared mid-storm that
    tightens the deadlines of what it covers: all of it shows in the report."""
    result = _run(
        ROOT / "scenarios" / "winter_storm_2017.toml",
        tmp_path,
        travel,
        DrillOptions(scale=0.5, duration_h=4.0),
    )
    report = build_report(result)
    t = result.timeline
    assert {"snow_ice", "fallen_tree", "traffic_signal_out", "pothole"} <= set(t["service_code"])
    covered = t[t["emergency_id"].notna()]
    assert len(covered) > 0
    # The emergency covers its services in its six boroughs, and nothing else.
    assert set(covered["service_code"]) <= {"snow_ice", "fallen_tree", "traffic_signal_out"}
    assert set(covered["district"]) <= {"9", "5", "8", "66", "61", "63"}
    declared = pd.Timestamp(result.start) + pd.Timedelta(hours=3)
    assert (covered["reported_at"] >= declared).any()  # intake attaches the later ones
    assert report["nfpa_1225"]["n"] > 0  # dark signals are priority 1
    assert report["nfpa_1225"]["met"] is (report["nfpa_1225"]["p90"] <= 60)
    assert report["escalations"]["total"] > 0


def test_a_breakdown_takes_the_crew_off_until_its_repair(
    tmp_path: Path, travel: TravelModel, tiny_scenario: Callable[..., Path]
) -> None:
    """The crew goes off duty, its jobs go to the other crew, and it works again once
    repaired (the tiny scenario's two crews, a breakdown at 0.3 h for 0.3 h)."""
    path = tiny_scenario(
        database='[[inject]]\nat_h = 0.3\naction = "crew_breakdown"\n'
        'crew = "Essai voirie 1"\nfor_h = 0.3\n'
    )
    result = _run(path, tmp_path, travel, DrillOptions(duration_h=1.0, scale=2.0))
    broken = next(c for c in result.crews if c.name == "Essai voirie 1")
    other = next(c for c in result.crews if c.name == "Essai voirie 2")
    assert not broken.broken  # repaired at 0.6 h
    # Busy spans: none starts while it is broken down (0.3 h to 0.6 h).
    assert not [a for a, _ in broken.busy if 0.3 * 3600 < a < 0.6 * 3600]
    assert [a for a, _ in other.busy if 0.3 * 3600 < a < 0.6 * 3600]
    assert [a for a, _ in broken.busy if a >= 0.6 * 3600]  # back at work


def test_other_seed_other_figures(tmp_path: Path, travel: TravelModel) -> None:
    path = ROOT / "scenarios" / "spring_flood_2017.toml"
    first = _run(path, tmp_path / "a", travel, DrillOptions(scale=0.5, duration_h=1.0, seed=1))
    second = _run(path, tmp_path / "b", travel, DrillOptions(scale=0.5, duration_h=1.0, seed=2))
    assert [(a.lon, a.lat) for a in first.arrivals] != [(a.lon, a.lat) for a in second.arrivals]


def test_report_files(
    tmp_path: Path, travel: TravelModel, check_report_keys: Callable[[dict[str, Any]], None]
) -> None:
    result = _run(
        ROOT / "scenarios" / "green_line_fault.toml",
        tmp_path,
        travel,
        DrillOptions(scale=0.5, duration_h=2.0),
    )
    write_report(
        tmp_path / "out",
        [result],
        layers_dir=LAYERS,
        wall_s=1.0,
        written_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    check_report_keys(report)
    # The intervals of the chain add up to the time from the report to the scene.
    seconds = stage_seconds(result.timeline)
    chain = (
        seconds["report_to_dispatch"]
        + seconds["dispatch_to_acknowledge"]
        + seconds["acknowledge_to_on_scene"]
    )
    reached = seconds["report_to_on_scene"].notna()
    assert reached.sum() > 0
    assert (chain[reached] - seconds["report_to_on_scene"][reached]).abs().max() < 1e-6
    lines = (tmp_path / "out" / "timeline.csv").read_text().splitlines()
    assert lines[0].startswith("incident_id,service_code,initial_priority")
    assert len(lines) == report["counts"]["incidents"] + 1
    tracks = (tmp_path / "out" / "tracks.csv").read_text().splitlines()
    assert tracks[0] == "crew_id,crew,fix_at,lon,lat"
    assert len(tracks) == report["crews"]["position_fixes"] + 1
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 2
    assert "Signalement → affectation / Report → dispatch" in page
    assert "Délais (s) par arrondissement / Response times (s) by district" in page
    assert "NFPA 1225" in page
    assert "<iframe" in page
    # The map: crew tracks drawn (one line per crew that moved), and nothing from a CDN.
    mapped = (tmp_path / "out" / "map.html").read_text()
    assert "Trajets des \\u00e9quipes" in mapped or "Trajets des équipes" in mapped
    moved = result.tracks.groupby("crew").size()
    assert mapped.count("L.polyline(") == int((moved >= 2).sum()) > 0
    # The layer control comes after every layer it lists (else the page stops on an error).
    assert mapped.rindex("L.control.layers(") > mapped.rindex("L.polyline(")
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
    assert (out / "drill-optimal.db").is_file()  # a SpatiaLite drill is kept by default
    assert "Database kept" in answer.output


def test_cli_drops_the_database_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "out"
    answer = CliRunner().invoke(
        app,
        [
            "drill",
            "run",
            str(ROOT / "scenarios" / "rat_surge_2016.toml"),
            "--out",
            str(out),
            "--scale",
            "0.3",
            "--duration-h",
            "0.5",
            "--no-map",
            "--drop-db",
        ],
    )
    assert answer.exit_code == 0, answer.output
    assert (out / "report.json").is_file()
    assert not list(out.glob("*.db*"))
    assert "Database dropped" in answer.output
