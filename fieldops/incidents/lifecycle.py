"""Which status changes an incident may make. Pure: no database."""

from __future__ import annotations

from fieldops.incidents.models import IncidentStatus as S

ALLOWED: dict[S, frozenset[S]] = {
    S.OPEN: frozenset({S.ASSIGNED, S.RESOLVED, S.CANCELLED}),
    S.ASSIGNED: frozenset({S.OPEN, S.ACKNOWLEDGED, S.EN_ROUTE, S.RESOLVED, S.CANCELLED}),
    # Back to ASSIGNED when a dispatcher hands the job to another crew.
    S.ACKNOWLEDGED: frozenset(
        {S.OPEN, S.ASSIGNED, S.EN_ROUTE, S.ON_SCENE, S.RESOLVED, S.CANCELLED}
    ),
    S.EN_ROUTE: frozenset({S.OPEN, S.ASSIGNED, S.ON_SCENE, S.RESOLVED, S.CANCELLED}),
    S.ON_SCENE: frozenset({S.RESOLVED, S.CANCELLED}),
    # A closed incident can be reopened (a citizen says it is back), nothing else.
    S.RESOLVED: frozenset({S.OPEN}),
    S.CANCELLED: frozenset({S.OPEN}),
}


def can_move(current: S, target: S) -> bool:
    return target in ALLOWED[current]
