"""The base layers maps draw from layers/ (flood zones, metro lines and stations), made light.

Display needs far fewer vertices than analysis: each layer is simplified in metres and its
coordinates rounded, which shrinks the page several-fold and changes nothing on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import shapely
from geopandas import GeoDataFrame

from fieldops.geo.crs import MONTREAL_MTM8, WGS84, require_crs, to_metric
from fieldops.layers import load_vector_layer, read_catalog

FLOOD_LAYER: Final = "flood_zones"
METRO_LINES_LAYER: Final = "metro_lines"
STOPS_LAYER: Final = "transit_stops"
# Flood classes worth drawing: "Non-significative" zones would only add noise.
FLOOD_CLASSES: Final = ("Mineure", "Modérée", "Élevée", "Majeure")


@dataclass(frozen=True)
class BaseLayers:
    flood_zones: GeoDataFrame | None = None
    metro_lines: GeoDataFrame | None = None
    metro_stations: GeoDataFrame | None = None


def for_display(
    frame: GeoDataFrame, *, tolerance_m: float, metric_crs: str = MONTREAL_MTM8
) -> GeoDataFrame:
    """``frame`` simplified to ``tolerance_m`` metres and rounded to 1e-6 degrees (EPSG:4326)."""
    require_crs(frame, WGS84)
    metric = to_metric(frame, metric_crs)
    simple = metric.set_geometry(metric.geometry.simplify(tolerance_m)).to_crs(WGS84)
    rounded = shapely.set_precision(simple.geometry.to_numpy(), 1e-6)
    keep = ~shapely.is_empty(rounded)
    out = simple.set_geometry(rounded, crs=WGS84)
    return out.loc[keep].reset_index(drop=True)


def metro_stations(stops: GeoDataFrame) -> GeoDataFrame:
    """Metro stations (stops with a metro page) and entrances (``loc_type`` 2) of STM stops,
    with ``name`` and ``kind`` (station or entrance)."""
    url = stops["stop_url"].fillna("").astype(str)
    is_station = url.str.contains("/metro/", regex=False)
    is_entrance = stops["loc_type"].astype(str) == "2"
    chosen = stops.loc[is_station | is_entrance]
    kind = is_station.loc[chosen.index].map({True: "station", False: "entrance"})
    return GeoDataFrame(
        {"name": chosen["stop_name"].astype(str).to_numpy(), "kind": kind.to_numpy()},
        geometry=chosen.geometry.to_numpy(),
        crs=WGS84,
    )


def load_base_layers(layers_dir: Path, *, metric_crs: str = MONTREAL_MTM8) -> BaseLayers:
    """The catalogued flood zones, metro lines and metro stations of ``layers_dir``, ready to
    draw; a layer the catalog does not list is left out."""
    entries = {entry.name: entry for entry in read_catalog(layers_dir / "catalog.toml")}
    flood = lines = stations = None
    if FLOOD_LAYER in entries:
        zones = load_vector_layer(entries[FLOOD_LAYER]).frame
        zones = zones.loc[zones["VULN_CAT"].isin(FLOOD_CLASSES), ["VULN_CAT", "geometry"]]
        flood = for_display(zones, tolerance_m=4.0, metric_crs=metric_crs)
    if METRO_LINES_LAYER in entries:
        frame = load_vector_layer(entries[METRO_LINES_LAYER]).frame
        lines = for_display(
            frame[["route_name", "geometry"]], tolerance_m=3.0, metric_crs=metric_crs
        )
    if STOPS_LAYER in entries:
        stations = metro_stations(load_vector_layer(entries[STOPS_LAYER]).frame)
    return BaseLayers(flood_zones=flood, metro_lines=lines, metro_stations=stations)
