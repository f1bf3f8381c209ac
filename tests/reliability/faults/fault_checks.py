"""The checks after fault traffic: every acknowledged write stored exactly once under
the id its answer gave, nothing half-written, and every 5xx a clear, retryable problem."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa
from fault_traffic import TAG, WRITES, Answer, Call, Exchange, Traffic

from fieldops.crews.models import CrewPosition
from fieldops.db.engine import make_engine
from fieldops.incidents.models import Report


def _answered_id(call: Call, answer: Answer) -> int | None:
    """The id a write's 2xx answer gave (positions: 0 when the fix was taken)."""
    try:
        doc = orjson.loads(answer.body)
        if call.kind == "open311":
            return int(doc[0]["service_request_id"])
        if call.kind == "incident":
            return int(doc["report_id"])
        return 0 if doc["stored"] + doc["repeated"] == 1 else None
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
        return None


@dataclass
class Ledger:
    """Each write sent, against what the database holds."""

    acknowledged: int = 0
    unacknowledged: int = 0
    unacknowledged_stored: int = 0  # written, but the client never heard: allowed, once
    problems: list[str] = field(default_factory=list)


def audit(url: str, exchanges: Sequence[Exchange]) -> Ledger:
    """Every acknowledged write stored exactly once under its answered id; every other
    write stored at most once."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(Report.id, Report.description)).all()
            fixes = Counter(
                (crew_id, _utc(fix_at))
                for crew_id, fix_at in conn.execute(
                    sa.select(CrewPosition.crew_id, CrewPosition.fix_at)
                ).all()
            )
    finally:
        engine.dispose()
    reports: dict[str, list[int]] = {}
    for report_id, description in rows:
        for tag in TAG.findall(description or ""):
            reports.setdefault(tag, []).append(int(report_id))
    ledger = Ledger()
    for exchange in exchanges:
        call = exchange.call
        if call.kind not in WRITES:
            continue
        if call.kind == "position":
            crew, at = call.tag.split("|")
            stored = [0] * fixes.get((int(crew), _utc(datetime.fromisoformat(at))), 0)
        else:
            stored = reports.get(call.tag, [])
        if exchange.acknowledged:
            ledger.acknowledged += 1
            answered = _answered_id(call, exchange.final)
            if answered is None:
                ledger.problems.append(
                    f"{call.kind} {call.tag}: 2xx without an id: {exchange.final.body[:80]!r}"
                )
            elif len(stored) != 1:
                ledger.problems.append(
                    f"{call.kind} {call.tag}: acknowledged, stored {len(stored)} times"
                )
            elif stored[0] != answered:
                ledger.problems.append(
                    f"{call.kind} {call.tag}: answered id {answered}, stored as {stored[0]}"
                )
        else:
            ledger.unacknowledged += 1
            ledger.unacknowledged_stored += len(stored) == 1
            if len(stored) > 1:
                ledger.problems.append(
                    f"{call.kind} {call.tag}: unacknowledged, stored {len(stored)} times"
                )
    return ledger


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


HALF_WRITTEN = {
    "incidents whose report_count is not their number of reports": """
        SELECT i.id FROM incidents i
        WHERE i.report_count != (SELECT count(*) FROM reports r WHERE r.incident_id = i.id)""",
    "incidents without exactly one 'opened' event": """
        SELECT i.id FROM incidents i
        WHERE (SELECT count(*) FROM incident_events e
               WHERE e.incident_id = i.id AND e.kind = 'opened') != 1""",
    "incidents whose 'report_merged' events do not match their merged reports": """
        SELECT i.id FROM incidents i
        WHERE (SELECT count(*) FROM incident_events e
               WHERE e.incident_id = i.id AND e.kind = 'report_merged') != i.report_count - 1""",
    "reports without their incident": """
        SELECT r.id FROM reports r LEFT JOIN incidents i ON i.id = r.incident_id
        WHERE i.id IS NULL""",
}


def half_written(url: str) -> dict[str, list[int]]:
    """Records a write left incomplete (empty when every write was all or nothing)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            found = {
                what: [int(r[0]) for r in conn.execute(sa.text(q))]
                for what, q in HALF_WRITTEN.items()
            }
    finally:
        engine.dispose()
    return {what: ids for what, ids in found.items() if ids}


def unclear_failures(traffic: Traffic) -> list[str]:
    """5xx answers that are not a 503 or 507 with Retry-After and a problem body (RFC 9457
    on the dispatcher API, a GeoReport error list on Open311)."""
    found = []
    for call, answer in traffic.answers():
        if answer.status is None or answer.status < 500:
            continue
        why = _unclear(call, answer)
        if why:
            found.append(
                f"{call.method} {call.path}: {answer.status}: {why}: {answer.body[:120]!r}"
            )
    return found


def _unclear(call: Call, answer: Answer) -> str:
    if answer.status not in (503, 507):
        return "not 503/507"
    if "retry-after" not in answer.headers:
        return "no Retry-After"
    try:
        doc = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return "not JSON"
    if call.path.startswith("/open311/"):
        ok = isinstance(doc, list) and doc and doc[0].get("code") == answer.status
        return "" if ok else "not a GeoReport error list"
    ok = (
        answer.headers.get("content-type", "").startswith("application/problem+json")
        and isinstance(doc, dict)
        and doc.get("status") == answer.status
        and bool(doc.get("detail"))
    )
    return "" if ok else "not a problem body"


def tally(traffic: Traffic) -> Counter[str]:
    """Every answer (retries included) by kind and status: 'open311 201', 'read none'..."""
    return Counter(
        f"{call.kind} {answer.status if answer.status is not None else 'none'}"
        for call, answer in traffic.answers()
    )
