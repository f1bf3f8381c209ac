"""Finding and checking scenario files: read, validated, and checked against the city."""

from __future__ import annotations

from pathlib import Path

from fieldops.drills.spec import Scenario, check_against_city, read_scenario


def load_checked(path: Path, layers_dir: Path) -> Scenario:
    """Read a scenario and check it against the city's services, districts and layers;
    every problem is raised at once (SourceErrors) with its file and line."""
    import geopandas

    from fieldops.catalog.spec import read_city
    from fieldops.layers import read_catalog

    scenario = read_scenario(path)
    city = read_city(layers_dir / "city.toml")
    entries = {e.name: e for e in read_catalog(layers_dir / "catalog.toml")}
    frame = geopandas.read_file(entries[city.city.districts_layer].path, ignore_geometry=True)
    districts = {str(c): 0 for c in frame[city.city.district_code_column]}
    districts |= {str(n): 0 for n in frame[city.city.district_name_column]}
    check_against_city(
        scenario,
        path,
        services={s.code for s in city.services},
        districts=districts,
        layers=set(entries),
    )
    return scenario
