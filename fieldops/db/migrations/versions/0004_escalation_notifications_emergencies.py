"""Escalation policy and steps, incident deadlines, the notification outbox, emergencies.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_geospatial_table(
        "emergencies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hazard", sa.String(length=64), nullable=False),
        sa.Column("min_lon", sa.Double(), nullable=False),
        sa.Column("min_lat", sa.Double(), nullable=False),
        sa.Column("max_lon", sa.Double(), nullable=False),
        sa.Column("max_lat", sa.Double(), nullable=False),
        sa.Column(
            "area",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("service_codes", sa.JSON(), nullable=False),
        sa.Column("deadline_factor", sa.Double(), nullable=False),
        sa.Column("batch_every_s", sa.Integer(), nullable=False),
        sa.Column("notice_en", sa.Text(), nullable=False),
        sa.Column("notice_fr", sa.Text(), nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("declared_by", sa.String(length=200), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emergencies")),
    )
    with op.batch_alter_table("emergencies", schema=None) as batch_op:
        batch_op.create_geospatial_index(
            "idx_emergencies_area",
            ["area"],
            unique=False,
            postgresql_using="gist",
            postgresql_ops={},
        )

    op.create_table(
        "escalation_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_policies")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("exercise", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint(
            "recipient", "dedupe_key", name=op.f("uq_notifications_recipient_dedupe_key")
        ),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "escalation_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("deadline", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_escalation_steps_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_steps")),
        sa.UniqueConstraint("incident_id", "key", name=op.f("uq_escalation_steps_incident_id_key")),
    )
    with op.batch_alter_table("escalation_steps", schema=None) as batch_op:
        batch_op.create_index("ix_escalation_steps_due", ["status", "due_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_escalation_steps_incident_id"), ["incident_id"], unique=False
        )

    # Plain ADD COLUMN, not a batch: on SpatiaLite a batch would copy the table and lose
    # its geometry registration and spatial index.
    for name in (
        "dispatch_due_at",
        "acknowledge_due_at",
        "arrive_due_at",
        "resolve_due_at",
        "snoozed_until",
    ):
        op.add_column("incidents", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a referencing column in place; Alembic would want a table copy.
        op.execute(
            "ALTER TABLE incidents ADD COLUMN emergency_id INTEGER REFERENCES emergencies (id)"
        )
    else:
        op.add_column("incidents", sa.Column("emergency_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_incidents_emergency_id_emergencies",
            "incidents",
            "emergencies",
            ["emergency_id"],
            ["id"],
        )
    op.add_column(
        "incidents",
        sa.Column("service_notice", sa.Text(), nullable=False, server_default=sa.text("''")),
    )
    op.create_index("ix_incidents_emergency_id", "incidents", ["emergency_id"])


def downgrade() -> None:
    op.drop_index("ix_incidents_emergency_id", table_name="incidents")
    for name in (
        "service_notice",
        "emergency_id",
        "resolve_due_at",
        "arrive_due_at",
        "acknowledge_due_at",
        "dispatch_due_at",
        "snoozed_until",
    ):
        op.drop_column("incidents", name)

    with op.batch_alter_table("escalation_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_escalation_steps_incident_id"))
        batch_op.drop_index("ix_escalation_steps_due")

    op.drop_table("escalation_steps")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_due")

    op.drop_table("notifications")
    op.drop_table("escalation_policies")
    with op.batch_alter_table("emergencies", schema=None) as batch_op:
        batch_op.drop_geospatial_index(
            "idx_emergencies_area", postgresql_using="gist", column_name="area"
        )

    op.drop_geospatial_table("emergencies")
