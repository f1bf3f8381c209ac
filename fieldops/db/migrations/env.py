"""Alembic environment: migrations run on the engine handed in by ``fieldops.db.migrate``."""

from __future__ import annotations

from alembic import context
from geoalchemy2 import alembic_helpers

from fieldops.db.models import Base


def include_object(obj, name, obj_type, reflected, compare_to):
    # Tables the backend keeps for itself (SpatiaLite's metadata, PostGIS's
    # spatial_ref_sys) are not ours to drop.
    if obj_type == "table" and reflected and compare_to is None:
        return False
    return alembic_helpers.include_object(obj, name, obj_type, reflected, compare_to)


config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
