"""The city file (``layers/city.toml``): the demo city's settings and service catalogue."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fieldops.errors import SourceErrors, SourceProblem
from fieldops.tomlsource import read_toml

SERVICE_CODE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


class CityInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    jurisdiction_id: str
    timezone: str
    metric_crs: str
    districts_layer: str
    district_code_column: str
    district_name_column: str
    district_kind_column: str


class AttributeValue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=64)
    name_en: str = Field(min_length=1)
    name_fr: str = Field(min_length=1)


class AttributeSpec(BaseModel):
    """One question a service asks on intake (an Open311 attribute)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    required: bool = False
    variable: bool = True
    order: int = Field(ge=1)
    description_en: str = Field(min_length=1)
    description_fr: str = Field(min_length=1)
    values: list[AttributeValue] = []

    @model_validator(mode="after")
    def _values_match_type(self) -> AttributeSpec:
        is_list = self.datatype.endswith("valuelist")
        if is_list and not self.values:
            raise ValueError(f"a {self.datatype} needs values")
        if not is_list and self.values:
            raise ValueError(f"a {self.datatype} takes no values")
        return self


class ServiceSpec(BaseModel):
    """One service type as the city file declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    group: str = Field(min_length=1, max_length=64)
    name_en: str = Field(min_length=1)
    name_fr: str = Field(min_length=1)
    description_en: str = ""
    description_fr: str = ""
    keywords: str = ""
    default_priority: int = Field(ge=1, le=5)
    skills: list[str] = Field(min_length=1)
    duplicate_radius_m: float = Field(gt=0, le=5_000)
    duplicate_window_h: float = Field(gt=0)
    resolve_sla_h: float = Field(gt=0)
    coarsen_public_location: bool = False
    import_keywords: list[str] = []
    attribute: list[AttributeSpec] = []

    @field_validator("code")
    @classmethod
    def _code_shape(cls, code: str) -> str:
        if not SERVICE_CODE.match(code):
            raise ValueError("must be lower-case letters, digits and _ (2-64 characters)")
        return code

    @model_validator(mode="after")
    def _attribute_order_unique(self) -> ServiceSpec:
        orders = [a.order for a in self.attribute]
        codes = [a.code for a in self.attribute]
        if len(set(orders)) != len(orders):
            raise ValueError("attribute order values must be unique within a service")
        if len(set(codes)) != len(codes):
            raise ValueError("attribute codes must be unique within a service")
        return self

    @property
    def duplicate_window(self) -> timedelta:
        return timedelta(hours=self.duplicate_window_h)

    @property
    def resolve_sla(self) -> timedelta:
        return timedelta(hours=self.resolve_sla_h)


class CitySpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    city: CityInfo
    services: list[ServiceSpec]


def read_city(path: Path) -> CitySpec:
    """Read and validate a city file; every problem is reported at once, with its line."""
    source = read_toml(path)
    raw = source.data
    city_line = source.table_line("city") or 1
    problems: list[SourceProblem] = []

    city: CityInfo | None = None
    try:
        city = CityInfo.model_validate(raw.get("city", {}))
    except ValidationError as exc:
        problems += _problems(path, f"line {city_line} [city]", exc)

    services: list[ServiceSpec] = []
    seen: dict[str, int] = {}
    service_lines = source.array_table_lines("service")
    for n, item in enumerate(raw.get("service", [])):
        line = service_lines[n] if n < len(service_lines) else 0
        where = source.item_location("service", n, item.get("code", n + 1))
        try:
            spec = ServiceSpec.model_validate(item)
        except ValidationError as exc:
            problems += _problems(path, where, exc)
            continue
        if spec.code in seen:
            problems.append(
                SourceProblem(
                    str(path), where, f"code: {spec.code!r} already used at line {seen[spec.code]}"
                )
            )
        seen[spec.code] = line
        services.append(spec)
    if not raw.get("service"):
        problems.append(SourceProblem(str(path), "file", "no [[service]] declared"))
    if problems:
        raise SourceErrors(problems)
    assert city is not None
    return CitySpec(city=city, services=services)


def _problems(path: Path, where: str, exc: ValidationError) -> list[SourceProblem]:
    return [
        SourceProblem(
            str(path), where, f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
        )
        for err in exc.errors()
    ]
