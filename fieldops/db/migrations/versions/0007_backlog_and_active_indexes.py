"""Indexes for what every scheduler tick reads: the open incidents without a crew (the
batch round's backlog, by status) and the active assignments (by ``is_active``). Both were
read by scanning their whole table, which grows all day while what is read stays small.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.create_index("ix_assignments_is_active", "assignments", ["is_active"])


def downgrade() -> None:
    op.drop_index("ix_assignments_is_active", table_name="assignments")
    op.drop_index("ix_incidents_status", table_name="incidents")
