"""Scenario files (``scenarios/*.toml``): what a drill replays, validated with file and line."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fieldops.crews.spec import SHIFT
from fieldops.errors import SourceErrors, SourceProblem
from fieldops.tomlsource import TomlSource, read_toml

Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DrillInfo(BaseModel):
    model_config = Strict

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    start: datetime = Field(description="tz-aware start instant (TOML offset date-time)")
    duration_h: float = Field(gt=0, le=24 * 14)
    seed: int = Field(default=0, ge=0)
    tick_s: int = Field(default=30, ge=1, le=600, description="scheduler jobs run this often")
    dispatch_every_s: int = Field(default=60, ge=10, le=3600)
    # The drill's own recipients: notifications to anyone else are dropped by the outbox.
    roster: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _aware(self) -> DrillInfo:
        if self.start.tzinfo is None:
            raise ValueError("start must carry a UTC offset, e.g. 2017-05-05T06:00:00-04:00")
        return self


class CrewGroup(BaseModel):
    model_config = Strict

    name: str = Field(min_length=1, max_length=80, description="crews are NAME 1..count")
    count: int = Field(ge=1, le=200)
    skills: list[str] = Field(min_length=1)
    capacity: int = Field(default=1, ge=1, le=10)
    districts: list[str] = Field(min_length=1, description="district codes or names")
    depot: tuple[float, float] | None = Field(default=None, description="[lon, lat]")
    shift: str = "00:00-00:00"

    @model_validator(mode="after")
    def _shift(self) -> CrewGroup:
        if not SHIFT.match(self.shift):
            raise ValueError("shift must be HH:MM-HH:MM, e.g. 07:00-19:00")
        return self


class CrewsSection(BaseModel):
    model_config = Strict

    keep_city_roster: bool = False
    group: list[CrewGroup] = Field(min_length=1)


Range = tuple[float, float]


class Behaviour(BaseModel):
    """How simulated crews act: delays are uniform in [min, max] seconds."""

    model_config = Strict

    acknowledge_delay_s: Range = (30.0, 180.0)
    decline_probability: float = Field(default=0.0, ge=0, le=1)
    work_min: Range = (20.0, 60.0)
    work_min_by_service: dict[str, Range] = Field(default_factory=dict)
    speed_factor: float = Field(default=1.0, gt=0, le=5, description="ETA multiplier")

    @model_validator(mode="after")
    def _ranges(self) -> Behaviour:
        for name, (low, high) in [
            ("acknowledge_delay_s", self.acknowledge_delay_s),
            ("work_min", self.work_min),
            *((f"work_min_by_service.{k}", v) for k, v in self.work_min_by_service.items()),
        ]:
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be [min, max] with 0 <= min <= max")
        return self


class Area(BaseModel):
    """Where reports land: exactly one of a layer, districts or a polygon."""

    model_config = Strict

    layer: str | None = Field(default=None, description="a layer name of catalog.toml")
    column: str | None = None
    values: list[str] = Field(default_factory=list)
    lon_column: str = "LOC_LONG"
    lat_column: str = "LOC_LAT"
    jitter_m: float = Field(default=0.0, ge=0, le=2000)
    districts: list[str] = Field(default_factory=list)
    polygon: list[tuple[float, float]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one(self) -> Area:
        given = [bool(self.layer), bool(self.districts), bool(self.polygon)]
        if sum(given) != 1:
            raise ValueError("give exactly one of layer, districts or polygon")
        if self.polygon and len(self.polygon) < 3:
            raise ValueError("polygon needs at least 3 [lon, lat] corners")
        if (self.column is None) != (not self.values):
            raise ValueError("column and values go together (a filter on the layer)")
        return self


class Arrivals(BaseModel):
    model_config = Strict

    service: str = Field(min_length=1)
    # [[hour offset, reports per hour], ...]: piecewise constant from each offset on.
    rate_per_h: list[tuple[float, float]] = Field(min_length=1)
    area: Area
    duplicate_probability: float = Field(default=0.0, ge=0, le=1)
    duplicate_radius_m: float = Field(default=40.0, gt=0, le=1000)
    priority_mix: dict[str, float] = Field(default_factory=dict)

    @field_validator("rate_per_h")
    @classmethod
    def _rates(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        hours = [h for h, _ in value]
        if hours[0] != 0 or hours != sorted(set(hours)):
            raise ValueError("offsets must start at 0 and increase")
        if any(r < 0 for _, r in value):
            raise ValueError("rates must be >= 0")
        return value

    @field_validator("priority_mix")
    @classmethod
    def _mix(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [p for p in value if p not in {"1", "2", "3", "4", "5"}]
        if bad:
            raise ValueError(f"keys must be 1..5, not {', '.join(bad)}")
        if value and (any(w < 0 for w in value.values()) or sum(value.values()) <= 0):
            raise ValueError("weights must be >= 0 with a positive sum")
        return value


class Inject(BaseModel):
    model_config = Strict

    at_h: float = Field(ge=0)
    action: Literal["declare_emergency", "end_emergency", "crew_breakdown"]
    # declare_emergency
    name: str = ""
    hazard: str = ""
    services: list[str] = Field(default_factory=list)
    districts: list[str] = Field(default_factory=list)
    deadline_factor: float = Field(default=0.5, gt=0, le=1)
    # end_emergency: the name given when declared; crew_breakdown: the crew's name
    crew: str = ""
    for_h: float | None = Field(default=None, gt=0, description="back in service after")

    @model_validator(mode="after")
    def _needs(self) -> Inject:
        if self.action == "declare_emergency" and not (
            self.name and self.hazard and self.services and self.districts
        ):
            raise ValueError("declare_emergency needs name, hazard, services and districts")
        if self.action == "end_emergency" and not self.name:
            raise ValueError("end_emergency needs the emergency's name")
        if self.action == "crew_breakdown" and not self.crew:
            raise ValueError("crew_breakdown needs crew (a crew's name)")
        return self


class Replay(BaseModel):
    """Arrivals taken from a real Montréal 311 export, time-compressed into the drill."""

    model_config = Strict

    layer: str | None = Field(default=None, description="a CSV layer of catalog.toml")
    file: str | None = Field(default=None, description="relative to the scenario's folder")
    since: datetime | date = Field(description="start of the window; naive: the city's time")
    until: datetime | date
    speedup: float | None = Field(
        default=None, gt=0, le=1e6, description="real hours per drill hour (default: fit)"
    )
    services: list[str] = Field(default_factory=list, description="only these services")
    jitter_m: float = Field(default=0.0, ge=0, le=2000, description="copies (scale > 1) move")

    @model_validator(mode="after")
    def _window(self) -> Replay:
        if (self.layer is None) == (self.file is None):
            raise ValueError("give exactly one of layer or file")
        since, until = as_datetime(self.since), as_datetime(self.until)
        if (since.tzinfo is None) != (until.tzinfo is None):
            raise ValueError("since and until must both carry a UTC offset or both be local")
        if until <= since:
            raise ValueError("until must come after since")
        return self


def as_datetime(value: datetime | date) -> datetime:
    """A TOML local date is its midnight."""
    return value if isinstance(value, datetime) else datetime.combine(value, time())


class Database(BaseModel):
    """Where the drill runs: a database of its own, never the live one."""

    model_config = Strict

    url: str | None = Field(default=None, description="sqlite:///PATH or postgresql+psycopg://")
    keep: bool | None = Field(default=None, description="keep it after the report")

    @field_validator("url")
    @classmethod
    def _backend(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("sqlite:///", "postgresql://", "postgresql+psycopg://")
        ):
            raise ValueError("must be sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB")
        return value


class Targets(BaseModel):
    model_config = Strict

    p90_dispatch_s: float | None = Field(default=None, gt=0)
    sla_breach_rate: float | None = Field(default=None, ge=0, le=1)


class Scenario(BaseModel):
    model_config = Strict

    drill: DrillInfo
    crews: CrewsSection
    behaviour: Behaviour = Behaviour()
    arrivals: list[Arrivals] = Field(default_factory=list)
    replay: list[Replay] = Field(default_factory=list)
    inject: list[Inject] = Field(default_factory=list)
    targets: Targets = Targets()
    database: Database = Database()

    @model_validator(mode="after")
    def _some_arrivals(self) -> Scenario:
        if not self.arrivals and not self.replay:
            raise ValueError("give at least one [[arrivals]] or [[replay]] table")
        return self

    @property
    def start_at(self) -> datetime:
        return self.drill.start.astimezone(UTC)


_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")
_HEADER = re.compile(r"^\s*\[")


def _key_line(source: TomlSource, header: int | None, key: str) -> int | None:
    """Line of ``key = ...`` in the table starting at line ``header`` (0: top of file)."""
    for n in range((header or 0) + 1, len(source.lines) + 1):
        text = source.lines[n - 1]
        if n > (header or 0) + 1 and _HEADER.match(text) and header is not None:
            break
        found = _KEY.match(text)
        if found and found.group(1).strip("\"'") == key:
            return n
    return header


def _where(source: TomlSource, loc: tuple[Any, ...]) -> str:
    """``line N (section ...)`` for a pydantic error location inside the scenario."""
    if not loc:
        return "file"
    top = str(loc[0])
    if top in {"arrivals", "inject", "replay"} and len(loc) > 1 and isinstance(loc[1], int):
        lines = source.array_table_lines(top)
        header = lines[loc[1]] if loc[1] < len(lines) else None
        key = str(loc[2]) if len(loc) > 2 else None
        line = _key_line(source, header, key) if key and header else header
        label = f"[[{top}]] #{loc[1] + 1}"
        return f"line {line} ({label})" if line else f"file ({label})"
    if top == "crews" and len(loc) > 2 and loc[1] == "group" and isinstance(loc[2], int):
        lines = source.array_table_lines("crews.group")
        header = lines[loc[2]] if loc[2] < len(lines) else None
        key = str(loc[3]) if len(loc) > 3 else None
        line = _key_line(source, header, key) if key and header else header
        label = f"[[crews.group]] #{loc[2] + 1}"
        return f"line {line} ({label})" if line else f"file ({label})"
    header = source.table_line(top)
    key = str(loc[1]) if len(loc) > 1 else None
    line = _key_line(source, header, key) if key and header else header
    return f"line {line} ([{top}])" if line else f"file ([{top}])"


def read_scenario(path: Path) -> Scenario:
    """Read and validate a scenario; every problem is raised at once with file and line."""
    source = read_toml(path)
    try:
        scenario = Scenario.model_validate(source.data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "value"
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(SourceProblem(str(path), _where(source, loc), f"{field}: {message}"))
        raise SourceErrors(problems) from None
    # A replayed file is named relative to the scenario, wherever the drill is run from.
    replay = [
        r.model_copy(update={"file": str((path.parent / r.file).resolve())}) if r.file else r
        for r in scenario.replay
    ]
    return scenario.model_copy(update={"replay": replay})


def check_against_city(
    scenario: Scenario,
    path: Path,
    *,
    services: set[str],
    districts: dict[str, int],
    layers: set[str],
    source: TomlSource | None = None,
) -> None:
    """Problems that need the city: unknown services, districts, layers, crew names."""
    source = source or read_toml(path)
    problems: list[SourceProblem] = []

    def add(loc: tuple[Any, ...], message: str) -> None:
        problems.append(SourceProblem(str(path), _where(source, loc), message))

    for n, group in enumerate(scenario.crews.group):
        for code in group.districts:
            if code not in districts:
                add(("crews", "group", n, "districts"), f"no district {code!r}")
    for n, replay in enumerate(scenario.replay):
        if replay.layer and replay.layer not in layers:
            add(("replay", n, "layer"), f"no layer {replay.layer!r} in catalog.toml")
        if replay.file and not Path(replay.file).is_file():
            add(("replay", n, "file"), f"no file {replay.file}")
        for code in replay.services:
            if code not in services:
                add(("replay", n, "services"), f"no service {code!r} in city.toml")
    for n, arrivals in enumerate(scenario.arrivals):
        if arrivals.service not in services:
            add(("arrivals", n, "service"), f"no service {arrivals.service!r} in city.toml")
        if arrivals.area.layer and arrivals.area.layer not in layers:
            add(("arrivals", n, "area"), f"no layer {arrivals.area.layer!r} in catalog.toml")
        for code in arrivals.area.districts:
            if code not in districts:
                add(("arrivals", n, "area"), f"no district {code!r}")
    crew_names = {f"{g.name} {k}" for g in scenario.crews.group for k in range(1, g.count + 1)}
    declared: set[str] = set()
    for inject in sorted(scenario.inject, key=lambda i: i.at_h):
        original = scenario.inject.index(inject)
        for code in inject.services:
            if code not in services:
                add(("inject", original, "services"), f"no service {code!r}")
        for code in inject.districts:
            if code not in districts:
                add(("inject", original, "districts"), f"no district {code!r}")
        if inject.action == "declare_emergency":
            declared.add(inject.name)
        if inject.action == "end_emergency" and inject.name not in declared:
            add(("inject", original, "name"), f"no emergency {inject.name!r} declared before")
        if inject.action == "crew_breakdown" and inject.crew not in crew_names:
            add(("inject", original, "crew"), f"no crew {inject.crew!r} in [crews]")
        if inject.at_h > scenario.drill.duration_h:
            add(("inject", original, "at_h"), "after the end of the drill")
    if problems:
        raise SourceErrors(problems)
