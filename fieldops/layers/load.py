"""Loading a catalogued vector layer as a clean GeoDataFrame, repairing what can be repaired."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas

from fieldops.errors import SourceErrors, SourceProblem
from fieldops.layers.catalog import LAYERS_CRS, LayerEntry, LayerFormat
from fieldops.layers.vector import RepairableProblem, inspect_vector


@dataclass(frozen=True)
class LoadedLayer:
    """A loaded layer, ready for spatial work.

    ``frame`` is in EPSG:4326 and every geometry in it is 2D, valid, non-empty and of a type
    the catalog declares; ``repairs`` lists, per feature, what loading changed to get there.
    """

    frame: geopandas.GeoDataFrame
    repairs: list[SourceProblem]


def load_vector_layer(entry: LayerEntry) -> LoadedLayer:
    """Load ``entry``'s vector file, dropping Z coordinates and repairing invalid geometries.

    Features keep their order and their file position as index. Raises ``SourceErrors``
    listing every problem loading cannot repair (unreadable file, wrong CRS, missing column
    or value, null, empty or wrongly typed geometry, geometry ``make_valid`` cannot save).
    """
    if entry.format is not LayerFormat.VECTOR:
        problem = SourceProblem(str(entry.path), "layer", f"is not a vector layer ({entry.format})")
        raise SourceErrors([problem])
    inspection = inspect_vector(entry)
    fatal = [p for p in inspection.problems if not isinstance(p, RepairableProblem)]
    if fatal or inspection.frame is None:
        raise SourceErrors(fatal)
    frame = inspection.frame
    geometry = geopandas.GeoSeries(
        inspection.geometries, index=frame.index, crs=LAYERS_CRS, name=frame.geometry.name
    )
    frame = frame.set_geometry(geometry)
    return LoadedLayer(frame=frame, repairs=inspection.repairs)
