"""Scenario files: every problem is reported at once, with the file and its line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fieldops.drills.cli import load_checked
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
