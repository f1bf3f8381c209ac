"""What a report looks like on its way in, whatever channel it came through."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fieldops.errors import FieldProblem, InvalidInput
from fieldops.incidents.models import Channel

MAX_DESCRIPTION_CHARS = 4000
# Characters XML 1.0 cannot carry and PostgreSQL text cannot hold (NUL): refused on intake.
ILLEGAL_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class NewReport:
    """A report to take in. ``requested_at`` defaults to the moment of intake."""

    service_code: str
    lon: float
    lat: float
    channel: Channel
    description: str = ""
    address: str = ""
    address_id: str = ""
    zipcode: str = ""
    media_url: str = ""
    requested_at: datetime | None = None
    source_ref: str | None = None
    priority: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    reporter_first_name: str = ""
    reporter_last_name: str = ""
    reporter_email: str = ""
    reporter_phone: str = ""
    device_id: str = ""
    account_id: str = ""

    def _texts(self) -> list[tuple[str, str]]:
        texts = [
            ("description", self.description),
            ("address_string", self.address),
            ("address_id", self.address_id),
            ("zipcode", self.zipcode),
            ("media_url", self.media_url),
            ("first_name", self.reporter_first_name),
            ("last_name", self.reporter_last_name),
            ("email", self.reporter_email),
            ("phone", self.reporter_phone),
            ("device_id", self.device_id),
            ("account_id", self.account_id),
        ]
        for code, value in self.attributes.items():
            for item in value if isinstance(value, list) else [value]:
                texts.append((f"attribute[{code}]", str(item)))
        return texts

    def validate(self) -> None:
        """Raise InvalidInput naming every field at fault."""
        problems: list[FieldProblem] = []
        if not (isinstance(self.lat, float | int) and math.isfinite(self.lat)) or not (
            -90 <= self.lat <= 90
        ):
            problems.append(FieldProblem("lat", "must be a latitude between -90 and 90"))
        if not (isinstance(self.lon, float | int) and math.isfinite(self.lon)) or not (
            -180 <= self.lon <= 180
        ):
            problems.append(FieldProblem("long", "must be a longitude between -180 and 180"))
        if len(self.description) > MAX_DESCRIPTION_CHARS:
            problems.append(
                FieldProblem(
                    "description",
                    f"is {len(self.description)} characters; at most {MAX_DESCRIPTION_CHARS}",
                )
            )
        for name, text in self._texts():
            if ILLEGAL_TEXT.search(text):
                problems.append(
                    FieldProblem(name, "contains control characters (only tab and line breaks)")
                )
        if self.requested_at is not None and self.requested_at.tzinfo is None:
            problems.append(FieldProblem("requested_datetime", "must carry a time zone"))
        if self.priority is not None and not 1 <= self.priority <= 5:
            problems.append(FieldProblem("priority", "must be between 1 and 5"))
        if problems:
            raise InvalidInput("; ".join(f"{p.field} {p.reason}" for p in problems), problems)
