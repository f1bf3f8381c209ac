"""Loading a city into a database: its districts, service catalogue, crews and escalation
policy, from the files in its layers folder (the demo city's is ``layers/``)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from fieldops.catalog.service import sync_service_types
from fieldops.catalog.spec import read_city
from fieldops.crews.service import load_crews
from fieldops.crews.spec import read_crews
from fieldops.districts.repo import list_districts
from fieldops.districts.service import load_districts
from fieldops.errors import SourceErrors, SourceProblem
from fieldops.escalation.policy import read_policy
from fieldops.escalation.service import load_policy
from fieldops.layers import load_vector_layer, read_catalog

log = logging.getLogger("fieldops.city")


def load_city(session: Session, layers_dir: Path, *, now: datetime) -> str:
    """Load the city's districts, service catalogue, crews and escalation policy from
    ``layers_dir`` (repairs to layers are logged); returns a one-line summary."""
    city = read_city(layers_dir / "city.toml")
    entries = {e.name: e for e in read_catalog(layers_dir / "catalog.toml")}
    entry = entries.get(city.city.districts_layer)
    if entry is None:
        raise SourceErrors(
            [
                SourceProblem(
                    str(layers_dir / "city.toml"),
                    "[city]",
                    f"districts_layer: {city.city.districts_layer!r} is not a layer of "
                    "catalog.toml",
                )
            ]
        )
    loaded = load_vector_layer(entry)
    if loaded.repairs:
        log.info(
            "%s: %d feature repair(s) on load, e.g. %s",
            entry.name,
            len(loaded.repairs),
            loaded.repairs[0],
        )
    for repair in loaded.repairs:
        log.debug("repaired %s", repair)
    d_added, d_updated = load_districts(
        session,
        loaded.frame,
        code_column=city.city.district_code_column,
        name_column=city.city.district_name_column,
        kind_column=city.city.district_kind_column,
        metric_crs=city.city.metric_crs,
    )
    s_added, s_updated = sync_service_types(session, city.services, now=now)
    c_added, c_updated = load_roster(session, layers_dir, now=now)
    policy_file = layers_dir / "escalation.toml"
    if policy_file.is_file():
        load_policy(session, read_policy(policy_file), source=str(policy_file), now=now)
    return (
        f"{city.city.name}: districts {d_added} added, {d_updated} updated; "
        f"services {s_added} added, {s_updated} updated; crews {c_added} added, "
        f"{c_updated} updated"
    )


def load_roster(session: Session, layers_dir: Path, *, now: datetime) -> tuple[int, int]:
    """Load ``crews.toml`` (if the city has one), shifts set around ``now``."""

    roster = layers_dir / "crews.toml"
    if not roster.is_file():
        return 0, 0
    city = read_city(layers_dir / "city.toml")
    return load_crews(
        session,
        read_crews(roster),
        district_ids={d.code: d.id for d in list_districts(session)},
        now=now,
        timezone=city.city.timezone,
    )
