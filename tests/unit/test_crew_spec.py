"""Crew roster files: the shift under way (or next) at any instant, across midnight and DST,
and every problem of a broken roster reported at once with its line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from fieldops.crews.spec import CrewSpec, read_crews
from fieldops.errors import SourceErrors

ZONE = "America/Toronto"
ROSTER = Path(__file__).resolve().parents[2] / "layers" / "crews.toml"


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def spec(shift: str) -> CrewSpec:
    return CrewSpec(
        name="Pompage test",
        skills=["flood_pump"],
        district="38",
        depot=(-73.857, 45.48),
        shift=shift,
    )


# Montréal is UTC-4 in summer (EDT) and UTC-5 in winter (EST). DST starts 2026-03-08 02:00
# and ends 2026-11-01 02:00 local.
DAY = "07:00-19:00"
NIGHT = "19:00-07:00"


@pytest.mark.parametrize(
    ("shift", "now", "starts_at", "ends_at"),
    [
        # Day shift, 4 May (EDT): 11:00Z-23:00Z.
        pytest.param(DAY, utc(5, 4, 14), utc(5, 4, 11), utc(5, 4, 23), id="day-during"),
        pytest.param(DAY, utc(5, 4, 10), utc(5, 4, 11), utc(5, 4, 23), id="day-before"),
        pytest.param(DAY, utc(5, 4, 11), utc(5, 4, 11), utc(5, 4, 23), id="day-at-start"),
        pytest.param(DAY, utc(5, 4, 23), utc(5, 5, 11), utc(5, 5, 23), id="day-at-end:next"),
        pytest.param(DAY, utc(5, 5, 0), utc(5, 5, 11), utc(5, 5, 23), id="day-after:next"),
        pytest.param(DAY, utc(5, 5, 3, 59), utc(5, 5, 11), utc(5, 5, 23), id="day-local-11:59pm"),
        pytest.param(DAY, utc(5, 5, 4), utc(5, 5, 11), utc(5, 5, 23), id="day-local-midnight"),
        # Night shift: 19:00 local one day to 07:00 the next.
        pytest.param(NIGHT, utc(5, 4, 14), utc(5, 4, 23), utc(5, 5, 11), id="night-before"),
        pytest.param(NIGHT, utc(5, 4, 23), utc(5, 4, 23), utc(5, 5, 11), id="night-at-start"),
        pytest.param(NIGHT, utc(5, 5, 3), utc(5, 4, 23), utc(5, 5, 11), id="night-11pm"),
        pytest.param(NIGHT, utc(5, 5, 6), utc(5, 4, 23), utc(5, 5, 11), id="night-after-midnight"),
        pytest.param(
            NIGHT, utc(5, 5, 10, 59), utc(5, 4, 23), utc(5, 5, 11), id="night-last-minute"
        ),
        pytest.param(NIGHT, utc(5, 5, 11), utc(5, 5, 23), utc(5, 6, 11), id="night-at-end:next"),
        # Winter (EST): everything an hour later in UTC.
        pytest.param(DAY, utc(1, 15, 15), utc(1, 15, 12), utc(1, 16, 0), id="winter-day"),
        pytest.param(NIGHT, utc(1, 15, 9), utc(1, 15, 0), utc(1, 15, 12), id="winter-night"),
        # DST starts in the night of 7-8 March: that night shift lasts 11 h.
        pytest.param(NIGHT, utc(3, 8, 7, 30), utc(3, 8, 0), utc(3, 8, 11), id="spring-forward"),
        pytest.param(NIGHT, utc(3, 8, 1), utc(3, 8, 0), utc(3, 8, 11), id="spring-forward-1am"),
        pytest.param(DAY, utc(3, 8, 16), utc(3, 8, 11), utc(3, 8, 23), id="spring-forward-day"),
        pytest.param(DAY, utc(3, 8, 5), utc(3, 8, 11), utc(3, 8, 23), id="spring-forward-day-next"),
        # DST ends in the night of 31 October - 1 November: that night shift lasts 13 h.
        pytest.param(NIGHT, utc(11, 1, 10), utc(10, 31, 23), utc(11, 1, 12), id="fall-back"),
        pytest.param(
            NIGHT, utc(11, 1, 5, 30), utc(10, 31, 23), utc(11, 1, 12), id="fall-back-1:30"
        ),
        pytest.param(
            NIGHT, utc(11, 1, 6, 30), utc(10, 31, 23), utc(11, 1, 12), id="fall-back-1:30b"
        ),
        pytest.param(DAY, utc(11, 1, 13), utc(11, 1, 12), utc(11, 2, 0), id="fall-back-day"),
        # A 24-hour shift (same start and end) and a short evening one.
        pytest.param("06:00-06:00", utc(5, 4, 14), utc(5, 4, 10), utc(5, 5, 10), id="24h"),
        pytest.param("17:30-21:15", utc(5, 4, 14), utc(5, 4, 21, 30), utc(5, 5, 1, 15), id="short"),
    ],
)
def test_shift_window(shift: str, now: datetime, starts_at: datetime, ends_at: datetime) -> None:
    got = spec(shift).shift_window(now, ZONE)

    assert got == (starts_at, ends_at)
    assert all(t.tzinfo is UTC for t in got)


@pytest.mark.parametrize("shift", ["7:00-19:00", "24:00-07:00", "07:00-19:60", "07:00", "day", ""])
def test_a_shift_must_be_hh_mm_hh_mm(shift: str) -> None:
    with pytest.raises(ValueError, match="must be HH:MM-HH:MM"):
        spec(shift)


def test_the_demo_roster_reads() -> None:
    crews = read_crews(ROSTER)

    assert len(crews) == 28
    assert crews[0].name == "Pompage Pierrefonds 1"
    assert crews[0].capacity == 2
    assert crews[0].shift == DAY
    assert {c.shift for c in crews} == {DAY, NIGHT}


BROKEN = """\
# A roster with a mistake in every crew but the first.
[[crew]]
name = "Good"
skills = ["roads"]
district = "5"
depot = [-73.58, 45.52]
shift = "07:00-19:00"

[[crew]]
name = "Bad shift"
skills = ["roads"]
capacity = 0
district = "5"
depot = [-73.58, 45.52]
shift = "25:00-07:00"

[[crew]]
name = "Good"
skills = ["roads"]
district = "5"
depot = [-73.58, 45.52]
shift = "19:00-07:00"

[[crew]]
skills = []
district = "5"
depot = [-73.58, 45.52]
shift = "19:00-07:00"
colour = "red"
"""


def test_a_broken_roster_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "crews.toml"
    path.write_text(BROKEN, encoding="utf-8")

    with pytest.raises(
        SourceErrors, match=r"crews\.toml: line 9 \(crew Bad shift\): capacity"
    ) as exc:
        read_crews(path)

    found = [(p.location, p.message.split(":")[0]) for p in exc.value.problems]
    assert found == [
        ("line 9 (crew Bad shift)", "capacity"),
        ("line 9 (crew Bad shift)", "shift"),
        ("line 17 (crew Good)", "name 'Good' is used twice"),
        ("line 24 (crew 4)", "name"),
        ("line 24 (crew 4)", "skills"),
        ("line 24 (crew 4)", "colour"),
    ]
    assert all(p.path == str(path) for p in exc.value.problems)
    assert "must be HH:MM-HH:MM" in exc.value.problems[1].message
    assert "greater than or equal to 1" in exc.value.problems[0].message


def test_a_roster_that_is_not_toml_says_where(tmp_path: Path) -> None:
    path = tmp_path / "crews.toml"
    path.write_text('[[crew]]\nname = "A"\nskills = [roads]\n', encoding="utf-8")

    with pytest.raises(SourceErrors, match=r"not valid TOML: .*line 3") as exc:
        read_crews(path)

    assert [p.location for p in exc.value.problems] == ["line 3"]


@pytest.mark.parametrize("header", ["[[crew]]  # day team", "[[ crew ]]", "  [[crew]]"])
def test_a_commented_or_spaced_crew_header_keeps_the_line_numbers_right(
    tmp_path: Path, header: str
) -> None:
    path = tmp_path / "crews.toml"
    path.write_text(
        f'{header}\nname = "A"\nskills = ["roads"]\ndistrict = "5"\n'
        'depot = [-73.58, 45.52]\nshift = "07:00-19:00"\n\n'
        '[[crew]]\nname = "B"\nskills = ["roads"]\ndistrict = "5"\n'
        'depot = [-73.58, 45.52]\nshift = "7-19"\n',
        encoding="utf-8",
    )

    with pytest.raises(SourceErrors, match=r"line 8 \(crew B\): shift") as exc:
        read_crews(path)

    assert [p.location for p in exc.value.problems] == ["line 8 (crew B)"]
