"""The duplicate search's index covers every column the search filters on, so a search
reads the index alone instead of a row for each open incident in its latitude band.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_incidents_dup_search"


def upgrade() -> None:
    op.drop_index(NAME, table_name="incidents")
    op.create_index(
        NAME, "incidents", ["service_group", "is_open", "lat", "lon", "last_report_at"]
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="incidents")
    op.create_index(NAME, "incidents", ["service_group", "is_open", "lat"])
