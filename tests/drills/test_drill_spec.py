"""Scenario files: every problem is reported at once, with the file and its line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fieldops.drills.replay import ReplayCounts, replay_arrivals
from fieldops.drills.scenarios import load_checked
from fieldops.drills.spec import read_scenario
from fieldops.drills.world import arrival_offsets_s
from fieldops.errors import SourceErrors

LAYERS = Path(__file__).resolve().parents[2] / "layers"

GOOD = """\
[drill]
name = "t"
start = 2017-05-05T06:00:00-04:00
duration_h = 2

[[crews.group]]
name = "Pompes"
count = 2
skills = ["flood_pump"]
districts = ["38"]

[[arrivals]]
service = "flooding"
rate_per_h = [[0, 5]]
area = { districts = ["38"] }
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_reads(tmp_path: Path) -> None:
    scenario = read_scenario(_write(tmp_path, GOOD))
    assert scenario.crews.group[0].count == 2
    assert scenario.start_at.tzinfo is not None


def test_every_problem_with_its_line(tmp_path: Path) -> None:
    bad = (
        GOOD.replace("duration_h = 2", "duration_h = -1")
        .replace("count = 2", "count = 0")
        .replace("rate_per_h = [[0, 5]]", "rate_per_h = [[1, 5]]")
        .replace('name = "t"', 'name = "t"\nflavour = 1')
    )
    path = _write(tmp_path, bad)
    with pytest.raises(SourceErrors) as caught:
        read_scenario(path)
    text = str(caught.value)
    assert f"{path}: line 3 ([drill]): drill.flavour" in text
    assert f"{path}: line 5 ([drill]): drill.duration_h" in text
    assert f"{path}: line 9 ([[crews.group]] #1): crews.group.0.count" in text
    assert "line 15 ([[arrivals]] #1): arrivals.0.rate_per_h: offsets must start at 0" in text
    assert len(caught.value.problems) == 4


def test_naive_start_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("06:00:00-04:00", "06:00:00"))
    with pytest.raises(SourceErrors, match=r"line 1 \(\[drill\]\).*UTC offset"):
        read_scenario(path)


def test_unknown_city_names_are_refused(tmp_path: Path) -> None:
    bad = (
        GOOD.replace('service = "flooding"', 'service = "lava"').replace(
            'districts = ["38"]\n\n[[arrivals]]', 'districts = ["999"]\n\n[[arrivals]]'
        )
        + '\n[[inject]]\nat_h = 1\naction = "crew_breakdown"\ncrew = "Nobody"\n'
    )
    path = _write(tmp_path, bad)
    with pytest.raises(SourceErrors) as caught:
        load_checked(path, LAYERS)
    text = str(caught.value)
    assert "line 10 ([[crews.group]] #1): no district '999'" in text
    assert "line 13 ([[arrivals]] #1): no service 'lava'" in text
    assert "line 20 ([[inject]] #1): no crew 'Nobody'" in text


def test_arrivals_follow_the_rate_and_the_seed() -> None:
    rates = [(0.0, 10.0), (1.0, 0.0), (2.0, 40.0)]
    first = arrival_offsets_s(rates, duration_h=3, scale=1, rng=np.random.default_rng(3))
    again = arrival_offsets_s(rates, duration_h=3, scale=1, rng=np.random.default_rng(3))
    assert np.array_equal(first, again)
    assert not ((first >= 3600) & (first < 7200)).any()
    assert (first >= 7200).sum() > (first < 3600).sum()


REPLAY = GOOD.replace(
    """[[arrivals]]
service = "flooding"
rate_per_h = [[0, 5]]
area = { districts = ["38"] }
""",
    """[[replay]]
file = "mini.csv"
since = 2017-07-01T00:00:00
until = 2017-07-03T00:00:00
""",
)
HEADER = "ID_UNIQUE,NATURE,ACTI_NOM,DDS_DATE_CREATION,ARRONDISSEMENT,LOC_LONG,LOC_LAT\n"
ROWS = [
    # in the window: noon local time (16:00 UTC) on the first day, then the second day
    "11,Requete,Extermination à l'extérieur - Rats,2017-07-01T12:00:00,X,-73.58,45.52",
    "12,Requete,Extermination à l'extérieur - Rats,2017-07-02T00:00:00,X,-73.57,45.53",
    # no coordinates: skipped and counted
    "13,Requete,Extermination à l'extérieur - Rats,2017-07-01T13:00:00,X,,",
    # before the window
    "14,Requete,Extermination à l'extérieur - Rats,2017-06-30T23:00:00,X,-73.58,45.52",
    # an activity no service imports
    "15,Requete,Graffiti,2017-07-01T14:00:00,X,-73.58,45.52",
]


def _keywords() -> dict[str, str]:
    from fieldops.catalog.spec import read_city

    return {w: s.code for s in read_city(LAYERS / "city.toml").services for w in s.import_keywords}


def test_replay_compresses_the_window_and_counts_what_it_skips(tmp_path: Path) -> None:
    (tmp_path / "mini.csv").write_text(HEADER + "\n".join(ROWS) + "\n", encoding="utf-8")
    scenario = read_scenario(_write(tmp_path, REPLAY))
    assert scenario.replay[0].file == str(tmp_path / "mini.csv")  # relative to the scenario
    counts = ReplayCounts()
    start = scenario.start_at
    arrivals = replay_arrivals(
        scenario.replay,
        [Path(scenario.replay[0].file or "")],
        first_stream=0,
        start=start,
        duration_h=2,
        fit_h=scenario.drill.duration_h,
        scale=1,
        keywords=_keywords(),
        timezone="America/Toronto",
        rng=np.random.default_rng(0),
        counts=counts,
    )
    # 48 real hours into a 2-hour drill: 24 real hours a drill hour. Noon local on 1 July
    # is 16:00 UTC, 12 real hours after the window opens (04:00 UTC): half a drill hour.
    assert counts.speedup == [24.0]
    assert [(a.at - start).total_seconds() for a in arrivals] == [1800.0, 3600.0]
    assert [a.service_code for a in arrivals] == ["rats", "rats"]
    assert arrivals[0].origin == "montreal311:11@mini.csv:2"
    assert counts.as_dict() == {
        "rows_read": 5,
        "skipped_no_coordinates": 1,
        "skipped_other": 1,
        "outside_window": 1,
        "other_service": 0,
        "replayed": 2,
        "speedup": [24.0],
    }


def test_the_real_rat_file_replays_its_geolocated_rows() -> None:
    from fieldops.drills.scenarios import load_checked

    scenario = load_checked(LAYERS.parent / "scenarios" / "rat_replay_2017.toml", LAYERS)
    counts = ReplayCounts()
    arrivals = replay_arrivals(
        scenario.replay,
        [LAYERS / "requetes311_rats_2016_2017.csv"],
        first_stream=0,
        start=scenario.start_at,
        duration_h=scenario.drill.duration_h,
        fit_h=scenario.drill.duration_h,
        scale=1,
        keywords=_keywords(),
        timezone="America/Toronto",
        rng=np.random.default_rng(0),
        counts=counts,
    )
    assert counts.rows_read == 1635
    assert counts.skipped_no_coordinates == 417  # the rows of the file without LOC_LONG/LAT
    assert counts.replayed == len(arrivals) == 1635 - 417 - counts.outside_window
    assert all(a.service_code == "rats" for a in arrivals)
    assert arrivals == sorted(arrivals, key=lambda a: a.at)
    # A size factor below 1 keeps that share of the rows, the same ones for the same seed.
    half = replay_arrivals(
        scenario.replay,
        [LAYERS / "requetes311_rats_2016_2017.csv"],
        first_stream=0,
        start=scenario.start_at,
        duration_h=scenario.drill.duration_h,
        fit_h=scenario.drill.duration_h,
        scale=0.5,
        keywords=_keywords(),
        timezone="America/Toronto",
        rng=np.random.default_rng(0),
        counts=ReplayCounts(),
    )
    assert 0.4 < len(half) / len(arrivals) < 0.6


def test_replay_problems_with_their_lines(tmp_path: Path) -> None:
    bad = REPLAY.replace('file = "mini.csv"', 'file = "mini.csv"\nlayer = "requests_311_rats"')
    with pytest.raises(SourceErrors, match=r"line 12 \(\[\[replay\]\] #1\).*exactly one of"):
        read_scenario(_write(tmp_path, bad))
    backwards = REPLAY.replace("until = 2017-07-03T00:00:00", "until = 2017-06-03T00:00:00")
    with pytest.raises(SourceErrors, match="until must come after since"):
        read_scenario(_write(tmp_path, backwards))
    mixed = REPLAY.replace("until = 2017-07-03T00:00:00", "until = 2017-07-03T00:00:00Z")
    with pytest.raises(SourceErrors, match="both carry a UTC offset or both be local"):
        read_scenario(_write(tmp_path, mixed))
    missing = REPLAY + 'services = ["lava"]\n'
    with pytest.raises(SourceErrors) as caught:
        load_checked(_write(tmp_path, missing), LAYERS)
    text = str(caught.value)
    assert "line 13 ([[replay]] #1): no file" in text
    assert "line 16 ([[replay]] #1): no service 'lava'" in text
    nothing = GOOD.split("[[arrivals]]")[0]
    with pytest.raises(SourceErrors, match="at least one"):
        read_scenario(_write(tmp_path, nothing))
    wrong_db = GOOD + '\n[database]\nurl = "mysql://x"\n'
    with pytest.raises(SourceErrors, match=r"\(\[database\]\): database.url: must be sqlite"):
        read_scenario(_write(tmp_path, wrong_db))
