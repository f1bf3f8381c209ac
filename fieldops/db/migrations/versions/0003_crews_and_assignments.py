"""Crews, their position fixes and assignments; crew keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("home_district_id", sa.Integer(), nullable=False),
        sa.Column("depot_lon", sa.Double(), nullable=False),
        sa.Column("depot_lat", sa.Double(), nullable=False),
        sa.Column("shift_starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shift_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_lon", sa.Double(), nullable=True),
        sa.Column("last_lat", sa.Double(), nullable=True),
        sa.Column("last_fix_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("roster", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["home_district_id"], ["districts.id"], name=op.f("fk_crews_home_district_id_districts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crews")),
        sa.UniqueConstraint("name", name=op.f("uq_crews_name")),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("crew_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_by", sa.String(length=200), nullable=False),
        sa.Column("eta_s", sa.Double(), nullable=False),
        sa.Column("travel_model", sa.String(length=32), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["crew_id"], ["crews.id"], name=op.f("fk_assignments_crew_id_crews")
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_assignments_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
    )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index("ix_assignments_crew_active", ["crew_id", "is_active"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_assignments_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "crew_positions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("crew_id", sa.Integer(), nullable=False),
        sa.Column("lon", sa.Double(), nullable=False),
        sa.Column("lat", sa.Double(), nullable=False),
        sa.Column("fix_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["crew_id"], ["crews.id"], name=op.f("fk_crew_positions_crew_id_crews")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crew_positions")),
        sa.UniqueConstraint("crew_id", "fix_at", name=op.f("uq_crew_positions_crew_id_fix_at")),
    )
    with op.batch_alter_table("crew_positions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_crew_positions_crew_id"), ["crew_id"], unique=False)

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("crew_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_crew_id_crews"), "crews", ["crew_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_keys_crew_id_crews"), type_="foreignkey")
        batch_op.drop_column("crew_id")

    with op.batch_alter_table("crew_positions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crew_positions_crew_id"))

    op.drop_table("crew_positions")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assignments_incident_id"))
        batch_op.drop_index("ix_assignments_crew_active")

    op.drop_table("assignments")
    op.drop_table("crews")
