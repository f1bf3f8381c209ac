"""Base layers of a city: the catalog of layer files, their checks and their loading."""

from fieldops.layers.catalog import LayerEntry, LayerFormat, LayerKind, LayerSource, read_catalog
from fieldops.layers.check import check_catalog, check_layer, is_repairable
from fieldops.layers.load import LoadedLayer, load_vector_layer
from fieldops.layers.vector import RepairableProblem

__all__ = [
    "LayerEntry",
    "LayerFormat",
    "LayerKind",
    "LayerSource",
    "LoadedLayer",
    "RepairableProblem",
    "check_catalog",
    "check_layer",
    "is_repairable",
    "load_vector_layer",
    "read_catalog",
]
