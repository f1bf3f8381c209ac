"""Importing the real Montréal 311 export through intake, on both backends."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.catalog.spec import read_city
from fieldops.clock import ManualClock
from fieldops.districts.models import District
from fieldops.errors import SourceErrors
from fieldops.incidents.models import Incident, IncidentEvent, Report
from fieldops.intake.context import IntakeContext
from fieldops.intake.montreal311 import ParsedExport, import_reports, read_export

LAYERS = Path(__file__).resolve().parents[2] / "layers"

EXPORT = LAYERS / "requetes311_rats_2016_2017.csv"


def parse(path: Path = EXPORT) -> ParsedExport:
    city = read_city(LAYERS / "city.toml")
    keywords = {word: s.code for s in city.services for word in s.import_keywords}
    return read_export(path, keywords=keywords, timezone=city.city.timezone)


def test_parsing_skips_rows_without_coordinates_with_their_line() -> None:
    parsed = parse()
    assert len(parsed.rows) == 1218
    assert len(parsed.skipped) == 417
    assert str(parsed.skipped[0]) == (f"{EXPORT}: line 2: no coordinates (Information); skipped")
    _line, first = parsed.rows[0]
    assert first.service_code == "rats"
    # 2016 local winter time is UTC-5.
    assert (
        first.requested_at is not None
        and first.requested_at.utcoffset().total_seconds() == -5 * 3600
    )


def test_missing_columns_name_the_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "export.csv"
    broken.write_text("ID_UNIQUE,NATURE\n16-1,Requete\n", encoding="utf-8")
    with pytest.raises(SourceErrors, match=r"export.csv: line 1: missing column\(s\): ACTI_NOM"):
        parse(broken)


def test_import_matches_boroughs_and_is_idempotent(session: Session, clock: ManualClock) -> None:
    context = IntakeContext.load(session)
    summary = import_reports(session, parse(), context=context, now=clock.now())
    session.commit()
    assert summary.imported == 1218
    assert summary.already_there == 0
    assert len(summary.skipped) == 417
    assert summary.merged > 0
    incidents = session.scalar(sa.select(sa.func.count()).select_from(Incident))
    assert incidents == 1218 - summary.merged
    events = session.scalar(sa.select(sa.func.count()).select_from(IncidentEvent))
    assert events == 1218  # one "opened" or "report_merged" per report

    # At least 99 % of reports land in the borough the city itself recorded.
    expected = {}
    with EXPORT.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["ID_UNIQUE"] and row["LOC_LONG"]:
                expected[f"montreal311:{row['ID_UNIQUE']}"] = row["ARRONDISSEMENT_GEO"]
    got = dict(
        session.execute(
            sa.select(Report.source_ref, District.name).join(
                District, District.id == Report.district_id
            )
        ).all()
    )
    agree = sum(got[ref] == name for ref, name in expected.items())
    assert len(got) == len(expected) == 1218
    assert agree / len(expected) >= 0.99

    again = import_reports(session, parse(), context=context, now=clock.now())
    session.commit()
    assert (again.imported, again.already_there) == (0, 1218)
    assert session.scalar(sa.select(sa.func.count()).select_from(Report)) == 1218
