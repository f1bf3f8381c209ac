"""A stamp on every crew row that the database draws anew whenever the crew's row or its
assignments change (SpatiaLite): dispatch reads the roster at every scheduler tick, and
keeps the crews whose stamp is the one it read before instead of reading them again.

The stamp is random (``random()``, 64 bits), not a counter: a counter rolled back with a
transaction would hand out the same number again, to a different row version. Triggers
draw it, so every writer, whatever its path, changes it:
- a crew row inserted or updated (any column);
- an assignment inserted or deleted, or its crew or activity changed: its crews' job
  counts are part of the roster.

PostgreSQL reads the roster whole, as before, and has no stamp.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RESTAMP = "UPDATE crews SET roster_stamp = random() WHERE id"
_TRIGGERS = {
    "crews_stamp_on_insert": f"AFTER INSERT ON crews BEGIN {_RESTAMP} = NEW.id; END",
    # Its own UPDATE changes the stamp: the WHEN keeps the trigger from answering it.
    "crews_stamp_on_update": (
        "AFTER UPDATE ON crews WHEN NEW.roster_stamp IS OLD.roster_stamp "
        f"BEGIN {_RESTAMP} = NEW.id; END"
    ),
    "assignments_stamp_on_insert": (
        f"AFTER INSERT ON assignments BEGIN {_RESTAMP} = NEW.crew_id; END"
    ),
    "assignments_stamp_on_update": (
        "AFTER UPDATE OF crew_id, is_active ON assignments "
        f"BEGIN {_RESTAMP} IN (OLD.crew_id, NEW.crew_id); END"
    ),
    "assignments_stamp_on_delete": (
        f"AFTER DELETE ON assignments BEGIN {_RESTAMP} = OLD.crew_id; END"
    ),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("ALTER TABLE crews ADD COLUMN roster_stamp INTEGER NOT NULL DEFAULT 0")
    op.execute("UPDATE crews SET roster_stamp = random()")
    for name, body in _TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    op.execute("ALTER TABLE crews DROP COLUMN roster_stamp")
