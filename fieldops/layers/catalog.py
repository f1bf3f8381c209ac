"""The layer catalog: which base-layer files a city ships, what they hold, where they came from."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from fieldops.errors import SourceErrors, SourceProblem
from fieldops.tomlsource import read_toml

LAYERS_CRS = "EPSG:4326"
GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)


class LayerKind(StrEnum):
    DISTRICTS = "districts"
    HAZARD_ZONES = "hazard_zones"
    TRANSIT_LINES = "transit_lines"
    TRANSIT_STOPS = "transit_stops"
    STREET_GRAPH = "street_graph"
    SERVICE_REQUESTS = "service_requests"
    OBSERVATIONS = "observations"


class LayerFormat(StrEnum):
    """How a layer file is read, decided by its suffix."""

    VECTOR = "vector"
    GRAPH = "graph"
    TABLE = "table"


FORMAT_BY_SUFFIX: Mapping[str, LayerFormat] = {
    ".geojson": LayerFormat.VECTOR,
    ".json": LayerFormat.VECTOR,
    ".gpkg": LayerFormat.VECTOR,
    ".graphml": LayerFormat.GRAPH,
    ".csv": LayerFormat.TABLE,
}

# Point records may come as a plain table; every other kind needs real geometries.
TABLE_KINDS = frozenset({LayerKind.SERVICE_REQUESTS, LayerKind.OBSERVATIONS})

_KINDS = frozenset(kind.value for kind in LayerKind)
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
_COMMIT_PATTERN = re.compile(r"[0-9a-f]{40}")
_TEXT_KEYS = ("name", "file", "kind", "title_fr", "title_en", "licence", "attribution", "crs")
_LAYER_KEYS = frozenset({*_TEXT_KEYS, "source", "geometry", "required_columns"})
_SOURCE_TEXT_KEYS = ("repository", "path", "commit", "publisher")
_SOURCE_KEYS = frozenset({*_SOURCE_TEXT_KEYS, "note"})


@dataclass(frozen=True)
class LayerSource:
    """Where a layer file was taken from: a public repository at one commit, and its publisher."""

    repository: str
    path: str
    commit: str
    publisher: str
    note: str | None = None


@dataclass(frozen=True)
class LayerEntry:
    """One catalogued layer; ``path`` is its file, resolved against the catalog's folder."""

    name: str
    file: str
    kind: LayerKind
    title_fr: str
    title_en: str
    source: LayerSource
    licence: str
    attribution: str
    crs: str
    geometry: tuple[str, ...]
    required_columns: tuple[str, ...]
    path: Path

    @property
    def format(self) -> LayerFormat:
        return FORMAT_BY_SUFFIX[self.path.suffix.lower()]

    @property
    def is_polygonal(self) -> bool:
        """True when every declared geometry type is a (Multi)Polygon."""
        return bool(self.geometry) and all(g in {"Polygon", "MultiPolygon"} for g in self.geometry)


def read_catalog(path: Path) -> list[LayerEntry]:
    """Read and validate a layer catalog, returning its layers in file order.

    Every ``[[layer]]`` table is checked (missing or unknown keys, unknown kind, duplicate
    name, a file absent from the catalog's folder, ...) and all problems are raised together
    as one ``SourceErrors`` whose locations read ``layer N (name)``, N counting from 1.
    """
    source = str(path)
    document = read_toml(path).data

    unknown = sorted(set(document) - {"layer"})
    problems = [SourceProblem(source, "file", f"unknown top-level key '{k}'") for k in unknown]
    tables = document.get("layer")
    if not isinstance(tables, list) or not tables:
        problems.append(SourceProblem(source, "file", "no [[layer]] table"))
        raise SourceErrors(problems)

    entries: list[LayerEntry] = []
    first_use: dict[str, int] = {}
    for number, table in enumerate(tables, start=1):
        location = _layer_location(number, table)
        table_problems = _table_problems(table, folder=path.parent)
        name = table.get("name") if isinstance(table, dict) else None
        if isinstance(name, str) and name in first_use:
            table_problems.append(f"name '{name}' is already used by layer {first_use[name]}")
        elif isinstance(name, str):
            first_use[name] = number
        problems.extend(SourceProblem(source, location, p) for p in table_problems)
        if not table_problems:
            entries.append(_entry(table, folder=path.parent))
    if problems:
        raise SourceErrors(problems)
    return entries


def _layer_location(number: int, table: object) -> str:
    name = table.get("name") if isinstance(table, dict) else None
    return f"layer {number} ({name})" if isinstance(name, str) and name else f"layer {number}"


def _table_problems(table: object, *, folder: Path) -> list[str]:
    """Every problem with one ``[[layer]]`` table, as messages."""
    if not isinstance(table, dict):
        return ["is not a table"]
    problems = [f"unknown key '{k}'" for k in sorted(set(table) - _LAYER_KEYS)]
    problems += _text_problems(table, _TEXT_KEYS, prefix="")
    problems += _source_problems(table.get("source"))

    name, kind, crs = table.get("name"), table.get("kind"), table.get("crs")
    if isinstance(name, str) and name and not _NAME_PATTERN.fullmatch(name):
        problems.append(f"name '{name}' is not a short id (lower-case letters, digits, '_')")
    known_kind = LayerKind(kind) if isinstance(kind, str) and kind in _KINDS else None
    if isinstance(kind, str) and kind and known_kind is None:
        known = ", ".join(LayerKind)
        problems.append(f"unknown kind '{kind}' (expected one of: {known})")
    if isinstance(crs, str) and crs and crs != LAYERS_CRS:
        problems.append(f"crs '{crs}' is not supported: layers are stored in {LAYERS_CRS}")

    file = table.get("file")
    if isinstance(file, str) and file:
        problems += _file_problems(file, known_kind, table, folder=folder)
    return problems


def _text_problems(table: Mapping[str, Any], keys: tuple[str, ...], *, prefix: str) -> list[str]:
    problems = []
    for key in keys:
        if key not in table:
            problems.append(f"missing key '{prefix}{key}'")
        elif not isinstance(table[key], str) or not table[key].strip():
            problems.append(f"'{prefix}{key}' must be a non-empty string")
    return problems


def _source_problems(source: object) -> list[str]:
    if source is None:
        return ["missing key 'source'"]
    if not isinstance(source, dict):
        return ["'source' must be a table (repository, path, commit, publisher)"]
    problems = [f"unknown key 'source.{k}'" for k in sorted(set(source) - _SOURCE_KEYS)]
    problems += _text_problems(source, _SOURCE_TEXT_KEYS, prefix="source.")
    commit = source.get("commit")
    if isinstance(commit, str) and commit and not _COMMIT_PATTERN.fullmatch(commit):
        problems.append(f"'source.commit' '{commit}' is not a 40-digit hexadecimal commit id")
    note = source.get("note")
    if note is not None and not isinstance(note, str):
        problems.append("'source.note' must be a string")
    return problems


def _file_problems(
    file: str, kind: LayerKind | None, table: Mapping[str, Any], *, folder: Path
) -> list[str]:
    """Problems with the file a table names and with the keys that depend on its format."""
    if Path(file).name != file:
        return [f"file '{file}' must be a plain file name in the catalog's folder"]
    problems = []
    if not (folder / file).is_file():
        problems.append(f"file '{file}' not found in {folder}")
    layer_format = FORMAT_BY_SUFFIX.get(Path(file).suffix.lower())
    if layer_format is None:
        suffixes = ", ".join(FORMAT_BY_SUFFIX)
        return [*problems, f"file '{file}' has an unsupported suffix (expected one of: {suffixes})"]

    if kind == LayerKind.STREET_GRAPH and layer_format is not LayerFormat.GRAPH:
        problems.append(f"a {kind} layer must be a .graphml file")
    if layer_format is LayerFormat.GRAPH and kind not in {None, LayerKind.STREET_GRAPH}:
        problems.append(f"a .graphml file can only be a {LayerKind.STREET_GRAPH} layer")
    if layer_format is LayerFormat.TABLE and kind is not None and kind not in TABLE_KINDS:
        problems.append(f"a {kind} layer needs geometries: a .csv file cannot hold it")

    problems += _list_problems(
        table, "geometry", required=layer_format is LayerFormat.VECTOR, allowed=GEOMETRY_TYPES
    )
    problems += _list_problems(
        table, "required_columns", required=layer_format is not LayerFormat.GRAPH, allowed=None
    )
    return problems


def _list_problems(
    table: Mapping[str, Any], key: str, *, required: bool, allowed: frozenset[str] | None
) -> list[str]:
    value = table.get(key)
    if value is None:
        return [f"missing key '{key}'"] if required else []
    if not required:
        return [f"'{key}' does not apply to a {Path(table['file']).suffix} file"]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        return [f"'{key}' must be a non-empty list of strings"]
    problems = [
        f"'{key}' lists '{v}' twice" for v in sorted({v for v in value if value.count(v) > 1})
    ]
    if allowed is not None:
        known = ", ".join(sorted(allowed))
        problems += [
            f"unknown geometry type '{v}' (expected one of: {known})"
            for v in value
            if v not in allowed
        ]
    return problems


def _entry(table: Mapping[str, Any], *, folder: Path) -> LayerEntry:
    source = table["source"]
    return LayerEntry(
        name=table["name"],
        file=table["file"],
        kind=LayerKind(table["kind"]),
        title_fr=table["title_fr"],
        title_en=table["title_en"],
        source=LayerSource(
            repository=source["repository"],
            path=source["path"],
            commit=source["commit"],
            publisher=source["publisher"],
            note=source.get("note"),
        ),
        licence=table["licence"],
        attribution=table["attribution"],
        crs=table["crs"],
        geometry=tuple(table.get("geometry", ())),
        required_columns=tuple(table.get("required_columns", ())),
        path=(folder / table["file"]).resolve(),
    )
