"""The drill's offline map: every incident, its hot spots, the emergency and the base layers
drawn by fieldops.mapping's renderers, plus each crew's track (its position fixes in order)."""

from __future__ import annotations

import html
from pathlib import Path

import folium
import numpy as np
import pandas as pd

from fieldops.drills.labels import one
from fieldops.drills.model import DrillResult

# Distinct, colour-blind-safe hues (Okabe-Ito) for the tracks, repeated past eight crews.
TRACK_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


def add_crew_tracks(m: folium.Map, tracks: pd.DataFrame, *, lang: str, timezone: str) -> int:
    """One line per crew through its fixes, a dot at each fix with its local time; returns
    how many crews have a track (at least two fixes)."""
    layer = folium.FeatureGroup(name=html.escape(one("crew_tracks", lang)), show=True)
    drawn = 0
    for n, (name, fixes) in enumerate(tracks.groupby("crew", sort=True)):
        colour = TRACK_COLOURS[n % len(TRACK_COLOURS)]
        points = fixes[["lat", "lon"]].to_numpy(dtype=float).tolist()
        times = fixes["fix_at"].dt.tz_convert(timezone).dt.strftime("%H:%M").tolist()
        if len(points) >= 2:
            folium.PolyLine(
                points, color=colour, weight=2, opacity=0.8, tooltip=html.escape(str(name))
            ).add_to(layer)
            drawn += 1
        for (lat, lon), at in zip(points, times, strict=True):
            folium.CircleMarker(
                [lat, lon],
                radius=2,
                color=colour,
                fill=True,
                fill_opacity=0.9,
                tooltip=html.escape(f"{name} — {at}"),
            ).add_to(layer)
    layer.add_to(m)
    # The layer control lists the layers drawn before it: draw it again after the tracks.
    for key, child in list(m._children.items()):
        if isinstance(child, folium.LayerControl):
            m._children.move_to_end(key)
    return drawn


def drill_map_html(result: DrillResult, layers_dir: Path, lang: str = "fr") -> str:
    """An offline folium map of the drill, read from the drill's own database."""
    import geopandas

    from fieldops.db.engine import READ_ONLY, make_engine, make_sessionmaker
    from fieldops.geo.crs import WGS84
    from fieldops.geo.hotspots import HotspotOptions, find_hotspots
    from fieldops.mapping import repo
    from fieldops.mapping.assets import DEFAULT_VENDOR_DIR, asset_links
    from fieldops.mapping.base_layers import load_base_layers
    from fieldops.mapping.feed import emergencies_frame
    from fieldops.mapping.render import MapData, MapOptions, render_map, standalone_html
    from fieldops.mapping.service import districts_frame, service_names

    layers = [
        "districts",
        "incidents",
        "hotspots",
        "emergencies",
        "flood_zones",
        "metro_lines",
        "metro_stations",
    ]
    engine = make_engine(result.db_url)
    with make_sessionmaker(engine)() as session:
        session.connection(execution_options=READ_ONLY)
        names = service_names(session)
        districts = districts_frame(session)
        area = repo.served_area_m2(session)
        emergencies = emergencies_frame(session, now=result.start)
        session.rollback()
    engine.dispose()
    t = result.timeline
    incidents = geopandas.GeoDataFrame(
        {
            "id": t["incident_id"],
            "service_code": t["service_code"],
            "status": t["status"],
            "priority": t["priority"],
            "district_id": t["district_id"],
            "report_count": t["report_count"],
            "crew": None,
            "eta_at": pd.NaT,
        },
        geometry=geopandas.points_from_xy(t["lon"], t["lat"]),
        crs=WGS84,
    )
    hot_input = geopandas.GeoDataFrame(
        {
            "id": t["incident_id"],
            "service_group": t["service_code"].map(lambda c: names.get(c, {}).get("group", c)),
            "report_count": t["report_count"].astype(np.int64),
            "first_report_at": t["reported_at"],
            "last_report_at": t["reported_at"],
        },
        geometry=geopandas.points_from_xy(t["lon"], t["lat"]),
        crs=WGS84,
    )
    hotspots = find_hotspots(hot_input, HotspotOptions(area_m2=area))
    base = load_base_layers(layers_dir)
    data = MapData(
        districts=districts,
        incidents=incidents,
        hotspots=hotspots,
        emergencies=emergencies,
        flood_zones=base.flood_zones,
        metro_lines=base.metro_lines,
        metro_stations=base.metro_stations,
    )
    options = MapOptions(
        assets=asset_links(DEFAULT_VENDOR_DIR),
        lang="en" if lang == "en" else "fr",
        services=names,
        layers=frozenset(layers),
        as_of=result.end,
    )
    m = render_map(data, options)
    add_crew_tracks(m, result.tracks, lang=options.lang, timezone=result.timezone)
    return standalone_html(m, options, DEFAULT_VENDOR_DIR)
