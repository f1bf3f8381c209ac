"""Crew roster files (``layers/crews.toml``): who works where, with what, and when."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fieldops.errors import SourceErrors, SourceProblem
from fieldops.tomlsource import read_toml

SHIFT = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


class CrewSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    skills: list[str] = Field(min_length=1)
    capacity: int = Field(default=1, ge=1, le=10)
    district: str = Field(min_length=1, description="home district code")
    depot: tuple[float, float] = Field(description="[lon, lat]")
    shift: str = Field(description="local HH:MM-HH:MM; may cross midnight")

    @field_validator("shift")
    @classmethod
    def _shift_shape(cls, value: str) -> str:
        match = SHIFT.match(value)
        if (
            not match
            or int(match[1]) > 23
            or int(match[3]) > 23
            or int(match[2]) > 59
            or int(match[4]) > 59
        ):
            raise ValueError("must be HH:MM-HH:MM, e.g. 07:00-19:00")
        return value

    def shift_window(self, now: datetime, zone: str) -> tuple[datetime, datetime]:
        """The shift under way at ``now``, else the next one, as UTC instants."""
        match = SHIFT.match(self.shift)
        assert match is not None
        start_t = time(int(match[1]), int(match[2]))
        end_t = time(int(match[3]), int(match[4]))
        tz = ZoneInfo(zone)
        local_now = now.astimezone(tz)
        length = (
            datetime.combine(local_now.date(), end_t) - datetime.combine(local_now.date(), start_t)
        ) % timedelta(days=1) or timedelta(days=1)
        for days in (-1, 0, 1):
            start = datetime.combine(local_now.date() + timedelta(days=days), start_t, tzinfo=tz)
            if start <= local_now < start + length or start > local_now:
                return start.astimezone(UTC), (start + length).astimezone(UTC)
        raise AssertionError("unreachable: one of three days holds the shift")


def read_crews(path: Path) -> list[CrewSpec]:
    """Read a roster; every problem is reported at once with its line."""
    source = read_toml(path)
    raw = source.data
    problems: list[SourceProblem] = []
    crews: list[CrewSpec] = []
    names: set[str] = set()
    for n, item in enumerate(raw.get("crew", [])):
        where = source.item_location("crew", n, item.get("name", n + 1))
        try:
            crew = CrewSpec.model_validate(item)
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "value"
                problems.append(SourceProblem(str(path), where, f"{field}: {err['msg']}"))
            continue
        if crew.name in names:
            problems.append(SourceProblem(str(path), where, f"name {crew.name!r} is used twice"))
        names.add(crew.name)
        crews.append(crew)
    if problems:
        raise SourceErrors(problems)
    return crews
