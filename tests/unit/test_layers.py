"""Tests of the layer catalog, layer checks and vector loading, on shipped and broken files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import shapely

from fieldops.errors import SourceErrors, SourceProblem
from fieldops.layers import (
    LayerEntry,
    LayerFormat,
    LayerKind,
    LayerSource,
    RepairableProblem,
    check_catalog,
    check_layer,
    is_repairable,
    load_vector_layer,
    read_catalog,
)

LAYERS = Path(__file__).resolve().parents[2] / "layers"
CATALOG = LAYERS / "catalog.toml"
FLOOD_INVALID_FEATURES = [
    190,
    217,
    235,
    290,
    317,
    325,
    326,
    404,
    527,
    572,
    580,
    582,
    589,
    613,
    639,
    741,
]
SOURCE = LayerSource(
    repository="example/repo", path="data/x.geojson", commit="0" * 40, publisher="Test"
)
BOWTIE = [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]
SQUARE = [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]


def shipped(name: str) -> LayerEntry:
    return next(e for e in read_catalog(CATALOG) if e.name == name)


def vector_entry(path: Path, **changes: Any) -> LayerEntry:
    fields: dict[str, Any] = {
        "name": "test_layer",
        "file": path.name,
        "kind": LayerKind.DISTRICTS,
        "title_fr": "Essai",
        "title_en": "Test",
        "source": SOURCE,
        "licence": "CC-BY 4.0",
        "attribution": "Test",
        "crs": "EPSG:4326",
        "geometry": ("Polygon", "MultiPolygon"),
        "required_columns": ("NOM", "TYPE"),
        "path": path,
    }
    return LayerEntry(**(fields | changes))


def polygon_feature(rings: list[Any], **properties: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": properties,
        "geometry": {"type": "Polygon", "coordinates": rings},
    }


def write_geojson(path: Path, features: list[dict[str, Any]], crs: str | None = None) -> Path:
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if crs is not None:
        collection["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(collection), encoding="utf-8")
    return path


# --- the shipped catalog and layers ---------------------------------------------------------


def test_shipped_catalog_lists_the_eight_layers_with_their_files() -> None:
    entries = read_catalog(CATALOG)

    assert [(e.name, e.kind, e.format) for e in entries] == [
        ("districts", LayerKind.DISTRICTS, LayerFormat.VECTOR),
        ("flood_zones", LayerKind.HAZARD_ZONES, LayerFormat.VECTOR),
        ("metro_lines", LayerKind.TRANSIT_LINES, LayerFormat.VECTOR),
        ("transit_stops", LayerKind.TRANSIT_STOPS, LayerFormat.VECTOR),
        ("streets_plateau", LayerKind.STREET_GRAPH, LayerFormat.GRAPH),
        ("streets_outremont", LayerKind.STREET_GRAPH, LayerFormat.GRAPH),
        ("requests_311_rats", LayerKind.SERVICE_REQUESTS, LayerFormat.TABLE),
        ("flood_observations_2017", LayerKind.OBSERVATIONS, LayerFormat.VECTOR),
    ]
    assert all(e.path == LAYERS / e.file and e.path.is_file() for e in entries)
    assert all(e.crs == "EPSG:4326" for e in entries)
    assert {e.licence for e in entries if e.format is LayerFormat.GRAPH} == {"ODbL 1.0"}
    flood_zones = entries[1]
    assert flood_zones.source.repository == "FelDev/hackqc"
    assert flood_zones.source.commit == "2be64af8a7571de3c6698975b9adbd800f4c38f1"
    assert flood_zones.required_columns == ("NOM_ARR", "VULN_CAT")


def test_every_shipped_layer_checks_without_a_problem_that_stops_loading() -> None:
    problems = check_catalog(read_catalog(CATALOG))

    assert [p for p in problems if not is_repairable(p)] == []
    assert {p.path for p in problems} == {str(LAYERS / "flood_vulnerability_2016.geojson")}


def test_flood_zones_report_their_z_coordinates_and_16_invalid_geometries_as_repairable() -> None:
    entry = shipped("flood_zones")

    problems = check_layer(entry)

    assert all(isinstance(p, RepairableProblem) for p in problems)
    assert Counter(p.message.split(" (")[0] for p in problems) == {
        "Z coordinates; will be repaired on load": 826,
        "invalid geometry": 16,
    }
    invalid = [p for p in problems if p.message.startswith("invalid geometry")]
    assert [p.location for p in invalid] == [f"feature {i}" for i in FLOOD_INVALID_FEATURES]
    assert str(invalid[0]) == (
        f"{entry.path}: feature 190: invalid geometry "
        "(Ring Self-intersection[-73.8558192309846 45.4895242859121]); will be repaired on load"
    )


def test_flood_zones_load_to_826_valid_2d_polygons_keeping_their_area() -> None:
    entry = shipped("flood_zones")
    raw = shapely.force_2d(load_source_geometries(entry.path))

    loaded = load_vector_layer(entry)

    geoms = loaded.frame.geometry.to_numpy()
    assert len(loaded.frame) == 826
    assert loaded.frame.crs == "EPSG:4326"
    assert set(loaded.frame.geom_type) == {"MultiPolygon"}
    assert shapely.is_valid(geoms).all()
    assert not shapely.has_z(geoms).any()
    assert list(loaded.frame.columns) == ["NOM_ARR", "VULN_CAT", "geometry"]
    assert shapely.area(geoms) == pytest.approx(shapely.area(raw), rel=1e-9)
    assert Counter(r.message.split(" (")[0] for r in loaded.repairs) == {
        "dropped Z coordinates": 826,
        "repaired invalid geometry with make_valid": 16,
    }
    assert loaded.repairs[1] == SourceProblem(str(entry.path), "feature 1", "dropped Z coordinates")


def load_source_geometries(path: Path) -> Any:
    features = json.loads(path.read_text(encoding="utf-8"))["features"]
    return shapely.from_geojson([json.dumps(f["geometry"]) for f in features])


def test_districts_load_34_boroughs_and_linked_cities_without_repairs() -> None:
    loaded = load_vector_layer(shipped("districts"))

    assert len(loaded.frame) == 34
    assert loaded.repairs == []
    assert Counter(loaded.frame["TYPE"]) == {"Arrondissement": 19, "Ville liée": 15}
    assert loaded.frame.crs == "EPSG:4326"


@pytest.mark.parametrize(
    ("name", "count", "geom_type"),
    [
        ("metro_lines", 9, "LineString"),
        ("transit_stops", 8869, "Point"),
        ("flood_observations_2017", 502, "Point"),
    ],
)
def test_other_shipped_vector_layers_load_unchanged(name: str, count: int, geom_type: str) -> None:
    loaded = load_vector_layer(shipped(name))

    assert (len(loaded.frame), set(loaded.frame.geom_type)) == (count, {geom_type})
    assert loaded.repairs == []


# --- broken vector layers -------------------------------------------------------------------


def test_a_feature_without_a_required_column_is_named_and_stops_loading(tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "districts.geojson",
        [
            polygon_feature(SQUARE, NOM="Outremont", TYPE="Arrondissement"),
            polygon_feature(SQUARE, NOM="Westmount"),
            polygon_feature(SQUARE, NOM=" ", TYPE="Ville liée"),
        ],
    )
    entry = vector_entry(path)

    assert check_layer(entry) == [
        SourceProblem(str(path), "feature 1", "no value for required column 'TYPE'"),
        SourceProblem(str(path), "feature 2", "no value for required column 'NOM'"),
    ]
    with pytest.raises(SourceErrors, match=r"districts\.geojson: feature 1: no value .* 'TYPE'"):
        load_vector_layer(entry)


def test_a_column_absent_from_every_feature_is_reported_once_for_the_layer(tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "zones.geojson", [polygon_feature(SQUARE, NOM="A")])

    problems = check_layer(vector_entry(path, required_columns=("NOM", "VULN_CAT")))

    assert problems == [SourceProblem(str(path), "layer", "missing required column 'VULN_CAT'")]


def test_a_self_intersecting_polygon_is_reported_then_repaired_on_load(tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "zones.geojson",
        [
            polygon_feature(SQUARE, NOM="A", TYPE="x"),
            polygon_feature(BOWTIE, NOM="B", TYPE="x"),
        ],
    )
    entry = vector_entry(path)

    assert check_layer(entry) == [
        RepairableProblem(
            str(path),
            "feature 1",
            "invalid geometry (Self-intersection[1 1]); will be repaired on load",
        )
    ]
    loaded = load_vector_layer(entry)
    assert loaded.repairs == [
        SourceProblem(
            str(path),
            "feature 1",
            "repaired invalid geometry with make_valid (Self-intersection[1 1])",
        )
    ]
    bowtie = loaded.frame.geometry.iloc[1]
    assert (bowtie.geom_type, bowtie.area, bowtie.is_valid) == ("MultiPolygon", 2.0, True)
    assert loaded.frame.geometry.iloc[0].equals(shapely.Polygon(SQUARE[0]))


def test_a_repaired_polygon_keeps_only_its_polygonal_part(tmp_path: Path) -> None:
    spiked = [[[0, 0], [2, 0], [3, 0], [2, 0], [2, 2], [0, 2], [0, 0]]]
    path = write_geojson(tmp_path / "zones.geojson", [polygon_feature(spiked, NOM="A", TYPE="x")])

    loaded = load_vector_layer(vector_entry(path))

    repaired = loaded.frame.geometry.iloc[0]
    assert repaired.geom_type == "Polygon"
    assert repaired.normalize().equals(shapely.box(0, 0, 2, 2).normalize())
    assert [r.message for r in loaded.repairs] == [
        "repaired invalid geometry with make_valid (Self-intersection[3 0])"
    ]


def test_a_polygon_with_no_area_cannot_be_repaired(tmp_path: Path) -> None:
    flat = [[[0, 0], [1, 1], [2, 2], [0, 0]]]
    path = write_geojson(tmp_path / "zones.geojson", [polygon_feature(flat, NOM="A", TYPE="x")])

    problems = check_layer(vector_entry(path))

    assert problems == [
        SourceProblem(
            str(path),
            "feature 0",
            "invalid geometry (Self-intersection[1 1]); "
            "make_valid leaves no valid Polygon or MultiPolygon",
        )
    ]
    with pytest.raises(
        SourceErrors, match=r"feature 0: invalid geometry .* leaves no valid Polygon"
    ):
        load_vector_layer(vector_entry(path))


def test_z_coordinates_are_reported_and_dropped(tmp_path: Path) -> None:
    square_z = [[[x, y, 12.5] for x, y in SQUARE[0]]]
    path = write_geojson(tmp_path / "zones.geojson", [polygon_feature(square_z, NOM="A", TYPE="x")])
    entry = vector_entry(path)

    assert check_layer(entry) == [
        RepairableProblem(str(path), "feature 0", "Z coordinates; will be repaired on load")
    ]
    loaded = load_vector_layer(entry)
    assert not loaded.frame.geometry.has_z.any()
    assert loaded.repairs == [SourceProblem(str(path), "feature 0", "dropped Z coordinates")]


def test_null_empty_and_wrongly_typed_geometries_are_all_reported(tmp_path: Path) -> None:
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    empty = {"type": "Polygon", "coordinates": []}
    features: list[dict[str, Any]] = [
        {"type": "Feature", "properties": {"NOM": "A", "TYPE": "x"}, "geometry": None},
        {"type": "Feature", "properties": {"NOM": "B", "TYPE": "x"}, "geometry": empty},
        {"type": "Feature", "properties": {"NOM": "C", "TYPE": "x"}, "geometry": line},
    ]
    path = write_geojson(tmp_path / "zones.geojson", features)

    with pytest.raises(SourceErrors) as raised:
        load_vector_layer(vector_entry(path))

    assert [(p.location, p.message) for p in raised.value.problems] == [
        ("feature 0", "no geometry"),
        ("feature 1", "empty geometry"),
        ("feature 2", "geometry is a LineString, expected Polygon or MultiPolygon"),
    ]


def test_a_layer_in_mtm_zone_8_is_refused(tmp_path: Path) -> None:
    mtm_square = [[[300000, 5040000], [301000, 5040000], [301000, 5041000], [300000, 5040000]]]
    path = write_geojson(
        tmp_path / "districts_mtm8.geojson",
        [polygon_feature(mtm_square, NOM="A", TYPE="x")],
        crs="urn:ogc:def:crs:EPSG::32188",
    )
    entry = vector_entry(path)

    assert check_layer(entry) == [
        SourceProblem(
            str(path), "layer", "CRS is EPSG:32188 (NAD83 / MTM zone 8); expected EPSG:4326"
        )
    ]
    with pytest.raises(SourceErrors, match=r"districts_mtm8\.geojson: layer: CRS is EPSG:32188"):
        load_vector_layer(entry)


def test_an_explicit_crs84_member_is_accepted(tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "zones.geojson",
        [polygon_feature(SQUARE, NOM="A", TYPE="x")],
        crs="urn:ogc:def:crs:OGC:1.3:CRS84",
    )

    assert check_layer(vector_entry(path)) == []
    assert load_vector_layer(vector_entry(path)).frame.crs == "EPSG:4326"


def test_an_unreadable_vector_file_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "broken.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")

    problems = check_layer(vector_entry(path))

    assert [(p.path, p.location) for p in problems] == [(str(path), "layer")]
    assert problems[0].message.startswith("cannot be read (")


# --- CSV and GraphML layers -----------------------------------------------------------------


def table_entry(path: Path) -> LayerEntry:
    return vector_entry(
        path,
        kind=LayerKind.SERVICE_REQUESTS,
        geometry=(),
        required_columns=("ID_UNIQUE", "LOC_LONG", "LOC_LAT"),
    )


def test_a_csv_header_without_a_required_column_and_a_short_row_are_reported(
    tmp_path: Path,
) -> None:
    path = tmp_path / "requests.csv"
    path.write_text("ID_UNIQUE,LOC_LONG,NATURE\n16-1,-73.6,Requete\n16-2,-73.5\n", encoding="utf-8")

    assert check_layer(table_entry(path)) == [
        SourceProblem(str(path), "line 1", "missing required column 'LOC_LAT'"),
        SourceProblem(str(path), "line 3", "2 fields, the header has 3"),
    ]


def test_a_vector_loader_refuses_a_table_layer() -> None:
    with pytest.raises(
        SourceErrors, match=r"requetes311_rats_2016_2017\.csv: layer: is not a vector"
    ):
        load_vector_layer(shipped("requests_311_rats"))


def graph_entry(path: Path) -> LayerEntry:
    return vector_entry(path, kind=LayerKind.STREET_GRAPH, geometry=(), required_columns=())


def test_a_street_graph_without_crs_coordinates_or_lengths_is_reported(tmp_path: Path) -> None:
    graph = nx.MultiDiGraph()
    graph.add_node("1", x="-73.6", y="45.5")
    graph.add_node("2", x="not a number", y="45.5")
    graph.add_node("3", x="-73.6")
    graph.add_edge("1", "2", length="12.5")
    graph.add_edge("2", "3")
    path = tmp_path / "streets.graphml"
    nx.write_graphml(graph, path)

    assert check_layer(graph_entry(path)) == [
        SourceProblem(str(path), "graph", "no 'crs' graph attribute"),
        SourceProblem(str(path), "node 2", "x 'not a number' is not a number"),
        SourceProblem(str(path), "node 3", "y is missing"),
        SourceProblem(str(path), "edge 2->3 key 0", "length is missing"),
    ]


def test_a_street_graph_in_another_crs_is_reported(tmp_path: Path) -> None:
    graph = nx.MultiDiGraph(crs="epsg:32188")
    graph.add_node("1", x="-73.6", y="45.5")
    path = tmp_path / "streets.graphml"
    nx.write_graphml(graph, path)

    assert check_layer(graph_entry(path)) == [
        SourceProblem(str(path), "graph", "crs is 'epsg:32188'; expected EPSG:4326")
    ]


def test_a_file_that_is_not_graphml_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "streets.graphml"
    path.write_text("<graphml><graph>", encoding="utf-8")

    problems = check_layer(graph_entry(path))

    assert [(p.location, p.message.split(" (")[0]) for p in problems] == [
        ("graph", "cannot be read as GraphML")
    ]


# --- broken catalogs ------------------------------------------------------------------------

GOOD_LAYER = """
[[layer]]
name = "{name}"
file = "{file}"
kind = "{kind}"
title_fr = "Arrondissements"
title_en = "Boroughs"
licence = "CC-BY 4.0"
attribution = "Ville de Montréal"
crs = "EPSG:4326"
geometry = ["MultiPolygon"]
required_columns = ["NOM"]
source = {{ repository = "a/b", path = "c.geojson", commit = "{commit}", publisher = "Ville" }}
"""


def catalog_layer(name: str, file: str = "zones.geojson", kind: str = "districts") -> str:
    return GOOD_LAYER.format(name=name, file=file, kind=kind, commit="a" * 40)


def test_a_catalog_in_tmp_path_resolves_files_against_its_folder(tmp_path: Path) -> None:
    (tmp_path / "zones.geojson").write_text("{}", encoding="utf-8")
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(catalog_layer("zones"), encoding="utf-8")

    (entry,) = read_catalog(catalog)

    assert entry.path == tmp_path.resolve() / "zones.geojson"
    assert entry.geometry == ("MultiPolygon",)
    assert entry.source == LayerSource("a/b", "c.geojson", "a" * 40, "Ville")


def test_every_catalog_error_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "zones.geojson").write_text("{}", encoding="utf-8")
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        catalog_layer("zones", kind="parks")
        + catalog_layer("streets", file="streets.geojson")
        + catalog_layer("zones"),
        encoding="utf-8",
    )

    with pytest.raises(
        SourceErrors, match=r"catalog\.toml: layer 1 \(zones\): unknown kind 'parks'"
    ):
        read_catalog(catalog)
    with pytest.raises(SourceErrors) as raised:
        read_catalog(catalog)

    assert raised.value.problems == [
        SourceProblem(
            str(catalog),
            "layer 1 (zones)",
            "unknown kind 'parks' (expected one of: districts, hazard_zones, transit_lines, "
            "transit_stops, street_graph, service_requests, observations)",
        ),
        SourceProblem(
            str(catalog), "layer 2 (streets)", f"file 'streets.geojson' not found in {tmp_path}"
        ),
        SourceProblem(str(catalog), "layer 3 (zones)", "name 'zones' is already used by layer 1"),
    ]


def test_missing_and_unknown_keys_are_named(tmp_path: Path) -> None:
    (tmp_path / "zones.geojson").write_text("{}", encoding="utf-8")
    catalog = tmp_path / "catalog.toml"
    layer = catalog_layer("zones").replace('licence = "CC-BY 4.0"\n', 'licnce = "CC-BY 4.0"\n')
    catalog.write_text(layer.replace('commit = "' + "a" * 40, 'commit = "abc'), encoding="utf-8")

    with pytest.raises(SourceErrors) as raised:
        read_catalog(catalog)

    assert [(p.location, p.message) for p in raised.value.problems] == [
        ("layer 1 (zones)", "unknown key 'licnce'"),
        ("layer 1 (zones)", "missing key 'licence'"),
        ("layer 1 (zones)", "'source.commit' 'abc' is not a 40-digit hexadecimal commit id"),
    ]


def test_a_layer_whose_kind_file_and_keys_disagree_is_refused(tmp_path: Path) -> None:
    for name in ("streets.geojson", "rats.csv", "plateau.graphml"):
        (tmp_path / name).write_text("", encoding="utf-8")
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        catalog_layer("streets", file="streets.geojson", kind="street_graph")
        + catalog_layer("rats", file="rats.csv")
        + catalog_layer("plateau", file="plateau.graphml", kind="street_graph")
        + catalog_layer("Bad Name", file="../elsewhere.geojson").replace(
            'crs = "EPSG:4326"', 'crs = "EPSG:32188"'
        ),
        encoding="utf-8",
    )

    with pytest.raises(SourceErrors) as raised:
        read_catalog(catalog)

    assert [(p.location, p.message) for p in raised.value.problems] == [
        ("layer 1 (streets)", "a street_graph layer must be a .graphml file"),
        ("layer 2 (rats)", "a districts layer needs geometries: a .csv file cannot hold it"),
        ("layer 2 (rats)", "'geometry' does not apply to a .csv file"),
        ("layer 3 (plateau)", "'geometry' does not apply to a .graphml file"),
        ("layer 3 (plateau)", "'required_columns' does not apply to a .graphml file"),
        (
            "layer 4 (Bad Name)",
            "name 'Bad Name' is not a short id (lower-case letters, digits, '_')",
        ),
        ("layer 4 (Bad Name)", "crs 'EPSG:32188' is not supported: layers are stored in EPSG:4326"),
        (
            "layer 4 (Bad Name)",
            "file '../elsewhere.geojson' must be a plain file name in the catalog's folder",
        ),
    ]


def test_a_catalog_that_is_not_toml_names_the_line(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[[layer]]\nname = "a"\nfile = \n', encoding="utf-8")

    with pytest.raises(SourceErrors, match=r"catalog\.toml: line 3: not valid TOML"):
        read_catalog(catalog)
