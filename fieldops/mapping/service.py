"""Use cases of the map: hot spots and heat of the open incidents, the live page, and static
maps of the current state (the change feed is in `fieldops.mapping.feed`)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas
import numpy as np
import pandas as pd
from geopandas import GeoDataFrame
from sqlalchemy.orm import Session

from fieldops.catalog.repo import list_service_types
from fieldops.districts.repo import district_shapes
from fieldops.geo.crs import WGS84
from fieldops.geo.hotspots import HotspotOptions, core_threshold, find_hotspots, heat_cells
from fieldops.mapping import geojson, repo
from fieldops.mapping.assets import AssetLinks
from fieldops.mapping.base_layers import BaseLayers, for_display, load_base_layers
from fieldops.mapping.feed import crews_frame, emergencies_frame, incident_columns, table_of
from fieldops.mapping.labels import Lang
from fieldops.mapping.render import (
    ALL_LAYERS,
    LiveFeed,
    MapData,
    MapOptions,
    page_html,
    render_map,
)


def hotspot_incidents(session: Session, filters: repo.MapFilter) -> GeoDataFrame:
    """Open incidents matching ``filters`` as the frame `fieldops.geo.hotspots` takes."""
    names = [c.key for c in repo.HOTSPOT_COLUMNS]
    table = table_of(repo.open_incident_rows(session, filters, hotspot_columns=True), names)
    for column in ("first_report_at", "last_report_at"):
        table[column] = pd.to_datetime(table[column], utc=True)
    table["report_count"] = table["report_count"].astype(np.int64)
    points = geopandas.points_from_xy(table.pop("lon"), table.pop("lat"))
    return GeoDataFrame(table, geometry=points, crs=WGS84)


def hotspots_geojson(
    session: Session, filters: repo.MapFilter, options: HotspotOptions
) -> dict[str, Any]:
    """Hot spots of the open incidents matching ``filters``, as a FeatureCollection whose
    ``parameters`` member says how they were found."""
    incidents = hotspot_incidents(session, filters)
    if options.area_m2 is None:
        options = replace(options, area_m2=repo.served_area_m2(session))
    found = find_hotspots(incidents, options)
    threshold = core_threshold(int(incidents["report_count"].sum()), options)
    body = geojson.collection(geojson.hotspot_features(found))
    body["parameters"] = {
        "radius_m": options.radius_m,
        "min_reports": options.min_reports,
        "core_reports": threshold,
        "window_h": options.window.total_seconds() / 3600 if options.window else None,
        "density_ratio": options.density_ratio,
        "incidents": len(incidents),
    }
    return body


def heat_geojson(session: Session, filters: repo.MapFilter, *, cell_m: float) -> dict[str, Any]:
    """Open incidents and reports per ``cell_m`` square cell, as centre points."""
    cells = heat_cells(hotspot_incidents(session, filters), cell_m=cell_m)
    body = geojson.collection(geojson.heat_features(cells))
    body["parameters"] = {"cell_m": cell_m}
    return body


def districts_frame(session: Session) -> GeoDataFrame:
    """The districts as ``id``, ``name`` and light polygons for display."""
    shapes = district_shapes(session)
    frame = GeoDataFrame(
        {"id": [i for i, _n, _g in shapes], "name": [n for _i, n, _g in shapes]},
        geometry=[g for _i, _n, g in shapes],
        crs=WGS84,
    )
    return for_display(frame, tolerance_m=8.0) if len(frame) else frame


def service_names(session: Session) -> dict[str, dict[str, str]]:
    """Service code -> its French and English names and its group, for the page."""
    return {
        s.code: {"fr": s.name_fr, "en": s.name_en, "group": s.group}
        for s in list_service_types(session)
    }


@dataclass
class MapCache:
    """What one app keeps between map requests: base layers, rendered pages, and the last
    hot-spot answers (keyed by the feed cursor, so any change of an incident refreshes them)."""

    layers_dir: Path
    max_answers: int = 32
    _base: BaseLayers | None = None
    _pages: dict[Hashable, str] = field(default_factory=dict)
    _answers: OrderedDict[Hashable, bytes] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def base_layers(self) -> BaseLayers:
        with self._lock:
            if self._base is None:
                self._base = load_base_layers(self.layers_dir)
            return self._base

    def page(self, key: Hashable, build: Callable[[], str]) -> str:
        with self._lock:
            found = self._pages.get(key)
        if found is None:
            found = build()
            with self._lock:
                self._pages[key] = found
        return found

    def answer(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        with self._lock:
            found = self._answers.get(key)
            if found is not None:
                self._answers.move_to_end(key)
                return found
        found = build()
        with self._lock:
            self._answers[key] = found
            while len(self._answers) > self.max_answers:
                self._answers.popitem(last=False)
        return found


def live_page(
    session: Session,
    *,
    cache: MapCache,
    assets: AssetLinks,
    lang: Lang,
    timezone: str,
    tile_url: str,
    live: LiveFeed,
    stale_after: timedelta,
) -> str:
    """The live dispatcher page (built once per language and set of districts)."""
    key = ("live", lang, repo.district_version(session), tile_url)

    def build() -> str:
        base = cache.base_layers()
        data = MapData(
            districts=districts_frame(session),
            flood_zones=base.flood_zones,
            metro_lines=base.metro_lines,
            metro_stations=base.metro_stations,
        )
        options = MapOptions(
            assets=assets,
            lang=lang,
            timezone=timezone,
            services=service_names(session),
            tile_url=tile_url,
            live=live,
            stale_after_s=int(stale_after.total_seconds()),
        )
        return page_html(render_map(data, options))

    return cache.page(key, build)


def current_map_data(
    session: Session,
    *,
    base: BaseLayers,
    now: datetime,
    stale_after: timedelta,
    layers: Collection[str] = ALL_LAYERS,
    hotspot_options: HotspotOptions | None = None,
    heat_cell_m: float = 250.0,
) -> MapData:
    """Everything a static map of the current state draws, read from the database."""
    wanted = set(layers)
    incidents = None
    if "incidents" in wanted:
        table = table_of(repo.open_incident_rows(session), incident_columns())
        jobs = table_of(
            repo.active_assignment_rows(session),
            ["incident_id", "crew_id", "crew_name", "status", "assigned_at", "eta_s"],
        ).drop_duplicates("incident_id", keep="last")
        jobs["eta_at"] = pd.to_datetime(jobs["assigned_at"], utc=True) + pd.to_timedelta(
            jobs["eta_s"].astype(float), unit="s"
        )
        jobs = jobs.set_index("incident_id")
        table["crew"] = table["id"].map(jobs["crew_name"])
        table["eta_at"] = table["id"].map(jobs["eta_at"])
        incidents = GeoDataFrame(
            table.drop(columns=["lon", "lat"]),
            geometry=geopandas.points_from_xy(table["lon"], table["lat"]),
            crs=WGS84,
        )
    hotspots = heat = None
    if "hotspots" in wanted or "heat" in wanted:
        frame = hotspot_incidents(session, repo.MapFilter())
        options = hotspot_options or HotspotOptions(area_m2=repo.served_area_m2(session))
        hotspots = find_hotspots(frame, options) if "hotspots" in wanted else None
        heat = heat_cells(frame, cell_m=heat_cell_m) if "heat" in wanted else None
    return MapData(
        districts=districts_frame(session),
        incidents=incidents,
        hotspots=hotspots,
        heat=heat,
        crews=crews_frame(session, now=now, stale_after=stale_after) if "crews" in wanted else None,
        emergencies=emergencies_frame(session, now=now) if "emergencies" in wanted else None,
        flood_zones=base.flood_zones if "flood_zones" in wanted else None,
        metro_lines=base.metro_lines if "metro_lines" in wanted else None,
        metro_stations=base.metro_stations if "metro_stations" in wanted else None,
    )


def static_map_options(
    session: Session,
    *,
    assets: AssetLinks,
    lang: Lang,
    timezone: str,
    layers: Collection[str],
    now: datetime,
    stale_after: timedelta,
    extra: Mapping[str, Any] | None = None,
) -> MapOptions:
    """Options of a static map of the state at ``now``."""
    return MapOptions(
        assets=assets,
        lang=lang,
        timezone=timezone,
        services=service_names(session),
        layers=frozenset(layers),
        as_of=now,
        stale_after_s=int(stale_after.total_seconds()),
        **dict(extra or {}),
    )
