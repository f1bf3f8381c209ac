"""A digest of each emergency's area, so that a process parses an area once and reads the
polygon only when it has not parsed it yet.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "emergencies",
        sa.Column("area_digest", sa.String(length=64), nullable=False, server_default=""),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, ST_AsBinary(area) FROM emergencies")).all()
    for emergency_id, wkb in rows:
        bind.execute(
            sa.text("UPDATE emergencies SET area_digest = :digest WHERE id = :id"),
            {"digest": hashlib.sha256(bytes(wkb)).hexdigest(), "id": emergency_id},
        )


def downgrade() -> None:
    op.drop_column("emergencies", "area_digest")
