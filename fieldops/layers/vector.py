"""Reading a vector layer file, finding what is wrong with it and working out its repairs."""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from pyproj import CRS
from pyproj.exceptions import CRSError

from fieldops.errors import SourceProblem
from fieldops.layers.catalog import LayerEntry

REPAIRABLE = "will be repaired on load"

# Indexed by shapely's geometry type id.
_TYPE_NAMES = np.array(
    [
        "Point",
        "LineString",
        "LinearRing",
        "Polygon",
        "MultiPoint",
        "MultiLineString",
        "MultiPolygon",
        "GeometryCollection",
    ]
)
_POLYGON = 3
_MULTIPOLYGON = 6
# A GeoJSON file without a "crs" member is WGS84 lon/lat by RFC 7946.
_RFC7946_SUFFIXES = frozenset({".geojson", ".json"})


@dataclass
class RepairableProblem(SourceProblem):
    """A problem that loading repairs; check still reports it so the source can be fixed."""


@dataclass
class VectorInspection:
    """What one read of a vector layer found.

    ``problems`` lists every problem in file order (layer-wide ones first); the repairable
    ones are ``RepairableProblem``. ``geometries`` holds the repaired geometries (2D, valid
    wherever the repair succeeded) and ``repairs`` says, per feature, what was changed.
    ``frame`` is None when the file could not be read at all.
    """

    frame: geopandas.GeoDataFrame | None
    problems: list[SourceProblem]
    geometries: NDArray[np.object_] = field(default_factory=lambda: np.empty(0, dtype=object))
    repairs: list[SourceProblem] = field(default_factory=list)


def inspect_vector(entry: LayerEntry) -> VectorInspection:
    """Read ``entry``'s file and check CRS, required columns and every geometry."""
    source = str(entry.path)
    try:
        frame = geopandas.read_file(entry.path, engine="pyogrio")
    except (OSError, RuntimeError) as exc:
        return VectorInspection(None, [SourceProblem(source, "layer", f"cannot be read ({exc})")])

    layer_problems = _crs_problems(entry, frame.crs)
    missing = [c for c in entry.required_columns if c not in frame.columns]
    layer_problems += [
        SourceProblem(source, "layer", f"missing required column '{c}'") for c in missing
    ]
    present = [c for c in entry.required_columns if c in frame.columns]

    geoms = frame.geometry.to_numpy()
    flat = shapely.force_2d(geoms)
    findings = _blank_value_findings(frame, present)
    findings += _geometry_findings(entry, geoms)
    has_z = shapely.has_z(geoms)
    findings += [
        (int(i), RepairableProblem, f"Z coordinates; {REPAIRABLE}") for i in np.flatnonzero(has_z)
    ]
    repairs = [(int(i), "dropped Z coordinates") for i in np.flatnonzero(has_z)]

    right_type = np.isin(geometry_type_names(geoms), list(entry.geometry))
    invalid = np.flatnonzero(right_type & ~shapely.is_valid(geoms))
    if invalid.size:
        reasons = shapely.is_valid_reason(geoms[invalid])
        repaired = repair_geometries(flat[invalid], polygonal=entry.is_polygonal)
        usable = _usable(repaired, entry.geometry)
        flat[invalid[usable]] = repaired[usable]
        for i, reason, ok in zip(invalid, reasons, usable, strict=True):
            if ok:
                findings.append(
                    (int(i), RepairableProblem, f"invalid geometry ({reason}); {REPAIRABLE}")
                )
                repairs.append((int(i), f"repaired invalid geometry with make_valid ({reason})"))
            else:
                wanted = " or ".join(entry.geometry)
                message = f"invalid geometry ({reason}); make_valid leaves no valid {wanted}"
                findings.append((int(i), SourceProblem, message))

    findings.sort(key=lambda finding: finding[0])
    repairs.sort(key=lambda repair: repair[0])
    return VectorInspection(
        frame=frame,
        problems=layer_problems
        + [kind(source, f"feature {i}", message) for i, kind, message in findings],
        geometries=flat,
        repairs=[SourceProblem(source, f"feature {i}", message) for i, message in repairs],
    )


def repair_geometries(geoms: NDArray[np.object_], *, polygonal: bool) -> NDArray[np.object_]:
    """Return ``geoms`` made valid with ``shapely.make_valid``, element by element.

    For a polygonal layer only the polygonal part of a repair is kept (collapsed rings and
    stray lines are dropped), so a repaired polygon stays a (Multi)Polygon, and one that was
    a MultiPolygon stays a MultiPolygon. A geometry with no area left comes back empty.
    """
    if not polygonal:
        valid: NDArray[np.object_] = shapely.make_valid(geoms)
        return valid
    repaired: NDArray[np.object_] = shapely.make_valid(
        geoms, method="structure", keep_collapsed=False
    )
    promote = np.flatnonzero(
        (shapely.get_type_id(geoms) == _MULTIPOLYGON) & (shapely.get_type_id(repaired) == _POLYGON)
    )
    if promote.size:
        repaired[promote] = shapely.multipolygons(
            repaired[promote], indices=np.arange(promote.size)
        )
    return repaired


def geometry_type_names(geoms: NDArray[np.object_]) -> NDArray[np.str_]:
    """Return the geometry type name of each element, ``""`` for a missing geometry."""
    type_ids = shapely.get_type_id(geoms)
    names: NDArray[np.str_] = np.where(type_ids >= 0, _TYPE_NAMES[np.clip(type_ids, 0, None)], "")
    return names


def _usable(geoms: NDArray[np.object_], wanted: tuple[str, ...]) -> NDArray[np.bool_]:
    usable: NDArray[np.bool_] = (
        ~shapely.is_empty(geoms)
        & shapely.is_valid(geoms)
        & np.isin(geometry_type_names(geoms), list(wanted))
    )
    return usable


def _crs_problems(entry: LayerEntry, crs: CRS | None) -> list[SourceProblem]:
    source = str(entry.path)
    if crs is None:
        if entry.path.suffix.lower() in _RFC7946_SUFFIXES:
            return []
        return [SourceProblem(source, "layer", f"has no CRS; expected {entry.crs}")]
    try:
        expected = CRS.from_user_input(entry.crs)
    except CRSError:
        return [SourceProblem(source, "layer", f"catalog CRS '{entry.crs}' is not a known CRS")]
    # OGC:CRS84 is EPSG:4326 with lon/lat axis order, which is how GeoJSON stores it anyway;
    # GDAL reads a GeoJSON file without "crs" but with Z as EPSG:4979, whose 2D part is 4326.
    if crs.to_2d().equals(expected, ignore_axis_order=True):
        return []
    return [
        SourceProblem(
            source, "layer", f"CRS is {crs.to_string()} ({crs.name}); expected {entry.crs}"
        )
    ]


Finding = tuple[int, type[SourceProblem], str]


def _blank_value_findings(frame: pd.DataFrame, columns: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    for column in columns:
        text = frame[column].astype("string")
        blank = (text.isna() | (text.str.strip() == "")).to_numpy(dtype=bool, na_value=True)
        findings += [
            (int(i), SourceProblem, f"no value for required column '{column}'")
            for i in np.flatnonzero(blank)
        ]
    return findings


def _geometry_findings(entry: LayerEntry, geoms: NDArray[np.object_]) -> list[Finding]:
    names = geometry_type_names(geoms)
    missing = shapely.is_missing(geoms)
    empty = ~missing & shapely.is_empty(geoms)
    wrong = ~missing & ~empty & ~np.isin(names, list(entry.geometry))
    wanted = " or ".join(entry.geometry)
    return (
        [(int(i), SourceProblem, "no geometry") for i in np.flatnonzero(missing)]
        + [(int(i), SourceProblem, "empty geometry") for i in np.flatnonzero(empty)]
        + [
            (int(i), SourceProblem, f"geometry is a {names[i]}, expected {wanted}")
            for i in np.flatnonzero(wrong)
        ]
    )
