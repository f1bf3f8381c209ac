"""Map renderers: GeoDataFrames in, a folium map out. Pure: no database, no clock, no HTTP.

One renderer serves the live page (its dynamic layers start empty and the page fills them
from the change feed) and static maps (``fieldops map render``, drill reports), where the
same layers carry the data inline. Either way the page draws incidents with client-side
clustering (one `folium` element holding GeoJSON, never one folium Marker per incident),
and loads Leaflet and its plugins from our own route or inlines them: never from a CDN.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import folium
import orjson
import shapely
from branca.element import Element, Figure
from folium.elements import JSCSSMixin
from folium.template import Template
from geopandas import GeoDataFrame
from markupsafe import Markup
from shapely.geometry import mapping

from fieldops.geo.crs import WGS84, require_crs
from fieldops.mapping import geojson
from fieldops.mapping.assets import AssetLinks, inline_assets
from fieldops.mapping.labels import LABELS, Lang

ALL_LAYERS: Final = (
    "districts",
    "incidents",
    "hotspots",
    "heat",
    "crews",
    "emergencies",
    "flood_zones",
    "metro_lines",
    "metro_stations",
)
# Layers whose data a live page takes from the API; a static map carries them inline.
DYNAMIC_LAYERS: Final = ("incidents", "hotspots", "heat", "crews", "emergencies")
# Shown when the page opens (the others wait in the layer control).
SHOWN_AT_START: Final = frozenset(
    {"districts", "incidents", "hotspots", "crews", "emergencies", "metro_lines"}
)

LAND_PANE: Final = "fieldops-land"
LAND_STYLE: Final = {"fillColor": "#f2efe9", "fillOpacity": 1.0, "stroke": False}
DISTRICT_STYLE: Final = {"color": "#5f6b73", "weight": 1, "fillColor": "#ffffff", "fillOpacity": 0}
FLOOD_COLOURS: Final = {
    "Mineure": "#9ecae1",
    "Modérée": "#4a98c9",
    "Élevée": "#1764ab",
    "Majeure": "#08306b",
}
METRO_COLOURS: Final = {
    "verte": "#008e4f",
    "orange": "#f08123",
    "jaune": "#ffd900",
    "bleue": "#0083ca",
}
_DEFAULT_CENTER: Final = (45.55, -73.66)


@dataclass(frozen=True)
class MapData:
    """The frames a map draws, each in EPSG:4326; ``None`` leaves the layer out.

    - ``districts``: ``id``, ``name`` and polygons (shaded by the open incidents that carry
      their ``district_id``);
    - ``incidents``: points with ``id``, ``service_code``, ``status``, ``priority``,
      ``district_id``, ``report_count`` (``crew``, ``eta_at`` once dispatch exists);
    - ``hotspots`` and ``heat``: what `fieldops.geo.hotspots` returns;
    - ``crews``: points with ``id``, ``name``, ``status``, ``position_at``, ``stale`` (and
      ``incident_id``, ``eta_at`` when assigned);
    - ``emergencies``: polygons with ``id``, ``name``, ``hazard``, ``declared_at``;
    - ``flood_zones`` (``VULN_CAT``), ``metro_lines`` (``route_name``) and
      ``metro_stations`` (``name``, ``kind``: station or entrance): base layers.
    """

    districts: GeoDataFrame | None = None
    incidents: GeoDataFrame | None = None
    hotspots: GeoDataFrame | None = None
    heat: GeoDataFrame | None = None
    crews: GeoDataFrame | None = None
    emergencies: GeoDataFrame | None = None
    flood_zones: GeoDataFrame | None = None
    metro_lines: GeoDataFrame | None = None
    metro_stations: GeoDataFrame | None = None


@dataclass(frozen=True)
class LiveFeed:
    """Where a live page reads its data (every request sends the dispatcher's key)."""

    feed_url: str = "/api/v1/feed"
    hotspots_url: str = "/api/v1/hotspots.geojson"
    heat_url: str = "/api/v1/heat.geojson"
    incident_url: str = "/api/v1/incidents/{id}"
    # Crew recommendations for an incident ("{id}" is replaced); None hides the button.
    recommendations_url: str | None = "/api/v1/incidents/{id}/recommendations"
    poll_ms: int = 1000
    hotspot_refresh_ms: int = 5000


@dataclass(frozen=True)
class MapOptions:
    """How to draw: assets, language, city, which layers, live or static."""

    assets: AssetLinks
    lang: Lang = "fr"
    timezone: str = "America/Toronto"
    # service code -> {"fr": name, "en": name, "group": group}
    services: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    layers: frozenset[str] = frozenset(ALL_LAYERS)
    tile_url: str = ""
    tile_attribution: str = ""
    live: LiveFeed | None = None
    as_of: datetime | None = None
    stale_after_s: int = 300


def _json(value: Any) -> Markup:
    """JSON for a <script> block: orjson-fast, and unable to close the script early."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
    return Markup(text.replace("</", "<\\/").replace("<!--", "<\\!--"))


class DynamicLayer(folium.map.Layer):
    """An overlay the FieldOps runtime draws (incidents, hot spots, heat, crews, emergencies)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            var {{ this.get_name() }} = FieldOps.makeLayer({{ this.kind|tojson }});
        {% endmacro %}
        """
    )

    def __init__(self, kind: str, *, name: str, show: bool) -> None:
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "FieldOpsLayer"
        self.kind = kind


class Runtime(JSCSSMixin, folium.MacroElement):
    """Starts the page script: legend, language switch, data (inline or from the feed)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            FieldOps.start({{ this._parent.get_name() }}, {{ this.config }}, {
            {%- for key, layer in this.layers.items() %}
                {{ key|tojson }}: {{ layer.get_name() }},
            {%- endfor %}
            });
        {% endmacro %}
        """
    )

    def __init__(self, config: dict[str, Any], layers: dict[str, folium.Element]) -> None:
        super().__init__()
        self._name = "FieldOpsRuntime"
        self.config = _json(config)
        self.layers = layers
        self.default_js: list[tuple[str, str]] = []
        self.default_css: list[tuple[str, str]] = []


def _layer_name(key: str, lang: Lang) -> str:
    # The runtime re-labels every data-i18n element when the language changes.
    return f'<span data-i18n="layer.{key}">{LABELS[lang][f"layer.{key}"]}</span>'


def _geo_dict(frame: GeoDataFrame, columns: list[str]) -> dict[str, Any]:
    require_crs(frame, WGS84)
    geoms = shapely.set_precision(frame.geometry.to_numpy(), 1e-6)
    records = geojson.property_records(frame, columns)
    return geojson.collection(
        [
            {"type": "Feature", "geometry": mapping(geom), "properties": props}
            for geom, props in zip(geoms, records, strict=True)
        ]
    )


def _bounds(data: MapData) -> list[list[float]] | None:
    for frame in (data.districts, data.flood_zones, data.incidents):
        if frame is not None and len(frame):
            min_lon, min_lat, max_lon, max_lat = (float(v) for v in frame.total_bounds)
            return [[min_lat, min_lon], [max_lat, max_lon]]
    return None


def _add_base_layers(m: folium.Map, data: MapData, options: MapOptions) -> dict[str, Any]:
    """The local base map and the static overlays; returns the ones the runtime styles."""
    lang = options.lang
    wanted = options.layers
    styled: dict[str, Any] = {}
    if options.tile_url:
        folium.TileLayer(
            tiles=options.tile_url,
            attr=options.tile_attribution or "tiles",
            name=_layer_name("tiles", lang),
            overlay=False,
            control=True,
        ).add_to(m)
    if data.districts is not None and len(data.districts):
        land = shapely.union_all(shapely.set_precision(data.districts.geometry.to_numpy(), 1e-6))
        # Land sits in its own pane under every overlay (a heat canvas included), like tiles.
        folium.map.CustomPane(LAND_PANE, z_index=250, pointer_events=False).add_to(m)
        base = folium.FeatureGroup(name=_layer_name("base", lang), overlay=False, control=True)
        folium.GeoJson(
            mapping(land),
            style_function=lambda _f: LAND_STYLE,
            interactive=False,
            control=False,
            pane=LAND_PANE,
        ).add_to(base)
        base.add_to(m)
    if "flood_zones" in wanted and data.flood_zones is not None:
        zones = data.flood_zones[data.flood_zones["VULN_CAT"].isin(list(FLOOD_COLOURS))]
        layer = folium.GeoJson(
            _geo_dict(zones, ["VULN_CAT"]),
            name=_layer_name("flood_zones", lang),
            style_function=lambda f: {
                "color": FLOOD_COLOURS.get(f["properties"]["VULN_CAT"], "#4a98c9"),
                "weight": 0.5,
                "fillColor": FLOOD_COLOURS.get(f["properties"]["VULN_CAT"], "#4a98c9"),
                "fillOpacity": 0.45,
            },
            show="flood_zones" in SHOWN_AT_START,
            zoom_on_click=False,
        )
        layer.add_to(m)
        styled["flood_zones"] = layer
    if "districts" in wanted and data.districts is not None:
        layer = folium.GeoJson(
            _geo_dict(data.districts, ["id", "name"]),
            name=_layer_name("districts", lang),
            style_function=lambda _f: DISTRICT_STYLE,
            show=True,
            zoom_on_click=False,
        )
        layer.add_to(m)
        styled["districts"] = layer
    if "metro_lines" in wanted and data.metro_lines is not None:
        layer = folium.GeoJson(
            _geo_dict(data.metro_lines, ["route_name"]),
            name=_layer_name("metro_lines", lang),
            style_function=lambda f: {
                "color": METRO_COLOURS.get(f["properties"]["route_name"], "#555555"),
                "weight": 4,
                "opacity": 0.9,
            },
            show=True,
            zoom_on_click=False,
        )
        layer.add_to(m)
        styled["metro_lines"] = layer
    if "metro_stations" in wanted and data.metro_stations is not None:
        layer = folium.GeoJson(
            _geo_dict(data.metro_stations, ["name", "kind"]),
            name=_layer_name("metro_stations", lang),
            marker=folium.CircleMarker(radius=4, weight=1.5, fill=True),
            style_function=lambda f: (
                {"radius": 4, "color": "#222222", "fillColor": "#ffffff", "fillOpacity": 1}
                if f["properties"]["kind"] == "station"
                else {"radius": 2, "color": "#555555", "fillColor": "#555555", "fillOpacity": 1}
            ),
            show=False,
            zoom_on_click=False,
        )
        layer.add_to(m)
        styled["metro_stations"] = layer
    return styled


def _inline_data(data: MapData, options: MapOptions) -> dict[str, Any]:
    """The dynamic layers' data, carried by a static map."""
    empty = geojson.collection([])
    inline: dict[str, Any] = {
        "incidents": geojson.collection(geojson.incident_features(data.incidents))
        if data.incidents is not None
        else empty,
        "hotspots": geojson.collection(geojson.hotspot_features(data.hotspots))
        if data.hotspots is not None
        else empty,
        "heat": geojson.collection(geojson.heat_features(data.heat))
        if data.heat is not None
        else empty,
        "crews": geojson.collection(geojson.crew_features(data.crews))
        if data.crews is not None
        else empty,
        "emergencies": geojson.collection(geojson.emergency_features(data.emergencies))
        if data.emergencies is not None
        else empty,
    }
    return {k: v for k, v in inline.items() if k in options.layers}


def render_map(data: MapData, options: MapOptions) -> folium.Map:
    """Draw ``data`` as a folium map, every label in ``options.lang`` and switchable.

    A live map (``options.live`` set) always has the incident, hot-spot, heat, crew and
    emergency layers, empty until the page reads the feed; a static map has those of them
    whose frames are given, with their data inline.
    """
    bounds = _bounds(data)
    m = folium.Map(
        location=_DEFAULT_CENTER,
        zoom_start=11,
        tiles=None,
        control_scale=True,
        zoom_snap=0.5,
    )
    # Map-level zoom limits (folium's min_zoom/max_zoom only reach a tile layer, and there
    # may be none): marker clustering needs the map's maxZoom.
    m.options.update(minZoom=9, maxZoom=19)
    # Never a CDN: every script and stylesheet comes from our route (or is inlined later).
    m.default_js = options.assets.js()
    m.default_css = options.assets.css()
    root = m.get_root()
    assert isinstance(root, Figure)
    # A title, and an empty icon so the browser does not ask the server for /favicon.ico.
    title = html.escape(LABELS[options.lang]["title"])
    head = f'<title>{title}</title><link rel="icon" href="data:,">'
    if options.live is not None:
        # Read by map.js as it loads: the first data requests start before the map is built.
        first = [options.live.feed_url, options.live.hotspots_url]
        head += f"<script>window.FIELDOPS_PREFETCH = {_json(first)};</script>"
    root.header.add_child(Element(head), name="fieldops_head")
    if bounds is not None:
        m.fit_bounds(bounds)

    styled = _add_base_layers(m, data, options)
    dynamic: dict[str, folium.Element] = {}
    given = {
        "incidents": data.incidents,
        "hotspots": data.hotspots,
        "heat": data.heat,
        "crews": data.crews,
        "emergencies": data.emergencies,
    }
    for kind in DYNAMIC_LAYERS:
        if kind not in options.layers or (options.live is None and given[kind] is None):
            continue
        layer = DynamicLayer(
            kind, name=_layer_name(kind, options.lang), show=kind in SHOWN_AT_START
        )
        layer.add_to(m)
        dynamic[kind] = layer

    config: dict[str, Any] = {
        "lang": options.lang,
        "labels": LABELS,
        "timezone": options.timezone,
        "services": {code: dict(names) for code, names in options.services.items()},
        "stale_after_s": options.stale_after_s,
        "as_of": options.as_of.isoformat() if options.as_of else None,
        "live": None,
        "data": None,
    }
    if options.live is not None:
        live = options.live
        config["live"] = {
            "feed": live.feed_url,
            "hotspots": live.hotspots_url,
            "heat": live.heat_url,
            "incident": live.incident_url,
            "recommendations": live.recommendations_url,
            "poll_ms": live.poll_ms,
            "hotspot_refresh_ms": live.hotspot_refresh_ms,
        }
    else:
        config["data"] = _inline_data(data, options)
    Runtime(config, {**styled, **dynamic}).add_to(m)
    folium.LayerControl(position="topright", collapsed=False).add_to(m)
    return m


def page_html(m: folium.Map) -> str:
    """The map as one HTML page that links its scripts (for the app to serve)."""
    return str(m.get_root().render())


def standalone_html(m: folium.Map, options: MapOptions, vendor_dir: Path) -> str:
    """The map as one self-contained HTML file: every script and style inlined, so it opens
    from a USB stick on a machine with no network."""
    return inline_assets(page_html(m), options.assets, vendor_dir)
