"""Montréal 311 CSV exports ("Requêtes 311") turned into reports for intake."""

from __future__ import annotations

import csv
import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from fieldops.errors import FieldOpsError, SourceErrors, SourceProblem
from fieldops.incidents.models import Channel
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import Submission, submit_many

# Rows taken in per batch: one set of statements for each.
IMPORT_BATCH = 200

REQUIRED_COLUMNS = ("ID_UNIQUE", "NATURE", "ACTI_NOM", "DDS_DATE_CREATION", "LOC_LONG", "LOC_LAT")


@dataclass
class ParsedExport:
    """The rows worth importing (with their line numbers) and the ones skipped, with why."""

    path: Path
    rows: list[tuple[int, NewReport]] = field(default_factory=list)
    skipped: list[SourceProblem] = field(default_factory=list)


def fold(text: str) -> str:
    """Lower-case, accents removed: how service keywords are matched."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def read_export(path: Path, *, keywords: dict[str, str], timezone: str) -> ParsedExport:
    """Parse a Montréal 311 export. ``keywords`` maps a folded word of ACTI_NOM to a service code.

    A file without the needed columns raises SourceErrors; a row that cannot be
    imported (no coordinates, no id, unknown activity, bad date) is skipped and
    reported with its line. Naive local times are read in ``timezone``.
    """
    zone = ZoneInfo(timezone)
    folded_keywords = [(fold(word), code) for word, code in keywords.items()]
    parsed = ParsedExport(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SourceErrors(
                [SourceProblem(str(path), "line 1", f"missing column(s): {', '.join(missing)}")]
            )
        for record in reader:
            line = reader.line_num
            try:
                parsed.rows.append((line, _to_report(record, folded_keywords, zone)))
            except ValueError as exc:
                parsed.skipped.append(SourceProblem(str(path), f"line {line}", str(exc)))
    return parsed


def _to_report(
    record: dict[str, str], keywords: list[tuple[str, str]], zone: ZoneInfo
) -> NewReport:
    ref = (record.get("ID_UNIQUE") or "").strip()
    lon_text, lat_text = (
        (record.get("LOC_LONG") or "").strip(),
        (record.get("LOC_LAT") or "").strip(),
    )
    if not lon_text or not lat_text:
        raise ValueError(f"no coordinates ({record.get('NATURE') or 'no nature'}); skipped")
    if not ref:
        raise ValueError("no ID_UNIQUE; skipped")
    lon, lat = float(lon_text), float(lat_text)
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ValueError("coordinates are not finite numbers; skipped")
    activity = record.get("ACTI_NOM") or ""
    folded = fold(activity)
    code = next((c for word, c in keywords if word in folded), None)
    if code is None:
        raise ValueError(f"activity {activity!r} matches no service; skipped")
    try:
        local = datetime.fromisoformat((record.get("DDS_DATE_CREATION") or "").strip())
    except ValueError:
        raise ValueError(
            f"DDS_DATE_CREATION {record.get('DDS_DATE_CREATION')!r} is not a date; skipped"
        ) from None
    requested_at = local if local.tzinfo else local.replace(tzinfo=zone)
    street = (record.get("RUE") or "").strip()
    cross = " / ".join(
        s
        for s in (
            (record.get("RUE_INTERSECTION1") or "").strip(),
            (record.get("RUE_INTERSECTION2") or "").strip(),
        )
        if s
    )
    borough = (record.get("ARRONDISSEMENT") or "").strip()
    address = ", ".join(s for s in (street or cross, borough, "Montréal") if s)
    return NewReport(
        service_code=code,
        lon=lon,
        lat=lat,
        channel=Channel.IMPORT,
        description=f"{record.get('NATURE', '').strip()}: {activity}".strip(": "),
        address=address,
        zipcode=(record.get("LIN_CODE_POSTAL") or "").strip(),
        requested_at=requested_at,
        source_ref=f"montreal311:{ref}",
        attributes={"origin": (record.get("PROVENANCE_ORIGINALE") or "").strip()},
    )


@dataclass
class ImportSummary:
    imported: int = 0
    merged: int = 0
    already_there: int = 0
    skipped: list[SourceProblem] = field(default_factory=list)


def import_reports(
    session: Session,
    parsed: ParsedExport,
    *,
    context: IntakeContext,
    now: datetime,
    actor: str = "import:montreal311",
    on_row: Callable[[], None] | None = None,
) -> ImportSummary:
    """Send every parsed row through intake, oldest first, in batches of ``IMPORT_BATCH``.

    A row refused by intake (outside every district, say) is reported with its line and
    stored nothing; rows already imported are counted and left as they are.
    """
    summary = ImportSummary(skipped=list(parsed.skipped))
    rows = sorted(parsed.rows, key=lambda item: (item[1].requested_at or now, item[0]))
    for start in range(0, len(rows), IMPORT_BATCH):
        chunk = rows[start : start + IMPORT_BATCH]
        results = submit_many(
            session, [Submission(report, actor, now) for _, report in chunk], context=context
        )
        for (line, _report), result in zip(chunk, results, strict=True):
            if on_row is not None:
                on_row()
            if isinstance(result, FieldOpsError):
                summary.skipped.append(
                    SourceProblem(str(parsed.path), f"line {line}", result.detail)
                )
            elif not result.created:
                summary.already_there += 1
            else:
                summary.imported += 1
                summary.merged += int(result.merged)
    return summary
