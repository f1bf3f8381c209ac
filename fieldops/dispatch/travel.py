"""The city's travel model: its street graphs from layers/, else straight lines."""

from __future__ import annotations

from pathlib import Path

from fieldops.geo.routing import StraightLineOnly, StreetGraph
from fieldops.layers import LayerKind, read_catalog


def load_travel_model(layers_dir: Path, *, metric_crs: str) -> StreetGraph | StraightLineOnly:
    """Every street graph of the layer catalog merged into one; straight lines if none."""
    graphs = [
        e.path
        for e in read_catalog(layers_dir / "catalog.toml")
        if e.kind == LayerKind.STREET_GRAPH
    ]
    if not graphs:
        return StraightLineOnly(metric_crs)
    return StreetGraph.from_graphml(graphs, metric_crs=metric_crs)
