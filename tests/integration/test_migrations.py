"""Migrations that carry data, on both backends: run down and up again over stored rows."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fieldops.clock import ManualClock
from fieldops.db.engine import unit_of_work
from fieldops.db.migrate import alembic_config, current_revision, upgrade
from fieldops.districts.models import District
from fieldops.emergencies.models import Emergency
from fieldops.emergencies.repo import area_shape
from fieldops.emergencies.service import NewEmergency, declare_emergency


def test_0005_gives_every_stored_emergency_the_digest_of_its_area(
    engine: Engine, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with unit_of_work(sessions) as session:
        district_id = session.scalars(sa.select(District.id).limit(1)).one()
        declared = declare_emergency(
            session,
            NewEmergency(
                name="Crue", hazard="flood", service_codes=["flooding"], district_ids=[district_id]
            ),
            actor="test",
            now=clock.now(),
        )
        emergency_id = declared.emergency.id
    head = current_revision(engine)
    try:
        command.downgrade(alembic_config(engine), "0004")
        assert current_revision(engine) == "0004"
    finally:
        upgrade(engine)
    assert current_revision(engine) == head
    with sessions() as session:
        wkb = session.scalar(
            sa.select(sa.func.ST_AsBinary(Emergency.area)).where(Emergency.id == emergency_id)
        )
        emergency = session.get(Emergency, emergency_id)
        assert emergency is not None
        assert emergency.area_digest == hashlib.sha256(bytes(wkb)).hexdigest()
        assert area_shape(emergency).area > 0
