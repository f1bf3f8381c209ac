"""Checking catalogued layer files: every problem found, each with its file and location."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from xml.etree.ElementTree import ParseError

import networkx as nx
from pyproj import CRS
from pyproj.exceptions import CRSError

from fieldops.errors import SourceProblem
from fieldops.layers.catalog import LayerEntry, LayerFormat
from fieldops.layers.vector import RepairableProblem, inspect_vector


def check_layer(entry: LayerEntry) -> list[SourceProblem]:
    """Return every problem in ``entry``'s file; an empty list means it is clean.

    Problems that loading repairs (Z coordinates, invalid geometries that ``make_valid``
    fixes) are ``RepairableProblem`` and their message ends with "will be repaired on load";
    every other problem would stop the layer from loading.
    """
    match entry.format:
        case LayerFormat.VECTOR:
            return inspect_vector(entry).problems
        case LayerFormat.TABLE:
            return _table_problems(entry)
        case LayerFormat.GRAPH:
            return _graph_problems(entry)


def check_catalog(entries: Iterable[LayerEntry]) -> list[SourceProblem]:
    """Return the problems of every layer in the catalog, layer after layer."""
    return [problem for entry in entries for problem in check_layer(entry)]


def is_repairable(problem: SourceProblem) -> bool:
    """True when loading the layer repairs this problem."""
    return isinstance(problem, RepairableProblem)


def _table_problems(entry: LayerEntry) -> list[SourceProblem]:
    """The header must name every required column; each row must have the header's width."""
    source = str(entry.path)
    try:
        with entry.path.open(encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream)
            header = next(reader, None)
            if header is None:
                return [SourceProblem(source, "line 1", "no header row")]
            problems = [
                SourceProblem(source, "line 1", f"missing required column '{c}'")
                for c in entry.required_columns
                if c not in header
            ]
            problems += [
                SourceProblem(source, "line 1", f"column '{c}' appears more than once")
                for c in sorted({c for c in header if header.count(c) > 1})
            ]
            problems += [
                SourceProblem(
                    source,
                    f"line {reader.line_num}",
                    f"{len(row)} fields, the header has {len(header)}",
                )
                for row in reader
                if len(row) != len(header)
            ]
    except UnicodeDecodeError as exc:
        return [
            SourceProblem(source, "file", f"is not UTF-8 text ({exc.reason} at byte {exc.start})")
        ]
    except (OSError, csv.Error) as exc:
        return [SourceProblem(source, "file", f"cannot be read as CSV ({exc})")]
    return problems


def _graph_problems(entry: LayerEntry) -> list[SourceProblem]:
    """The graph must parse and carry the catalog's ``crs``, x/y on nodes and length on edges."""
    source = str(entry.path)
    try:
        graph = nx.read_graphml(entry.path, force_multigraph=True)
    except (OSError, ParseError, nx.NetworkXError, ValueError) as exc:
        return [SourceProblem(source, "graph", f"cannot be read as GraphML ({exc})")]

    problems = _graph_crs_problems(entry, graph.graph.get("crs"))
    if graph.number_of_nodes() == 0:
        problems.append(SourceProblem(source, "graph", "has no nodes"))
    for node, data in graph.nodes(data=True):
        for key, limit in (("x", 180.0), ("y", 90.0)):
            reason = _number_problem(data.get(key), low=-limit, high=limit)
            if reason:
                problems.append(SourceProblem(source, f"node {node}", f"{key} {reason}"))
    for u, v, key, data in graph.edges(keys=True, data=True):
        reason = _number_problem(data.get("length"), low=0.0, high=math.inf)
        if reason:
            problems.append(SourceProblem(source, f"edge {u}->{v} key {key}", f"length {reason}"))
    return problems


def _graph_crs_problems(entry: LayerEntry, crs_text: object) -> list[SourceProblem]:
    source = str(entry.path)
    if not isinstance(crs_text, str) or not crs_text.strip():
        return [SourceProblem(source, "graph", "no 'crs' graph attribute")]
    try:
        crs = CRS.from_user_input(crs_text)
    except CRSError:
        return [SourceProblem(source, "graph", f"crs '{crs_text}' is not a known CRS")]
    if crs.equals(CRS.from_user_input(entry.crs), ignore_axis_order=True):
        return []
    return [SourceProblem(source, "graph", f"crs is '{crs_text}'; expected {entry.crs}")]


def _number_problem(value: object, *, low: float, high: float) -> str | None:
    """Why ``value`` (GraphML stores numbers as text) is not a number in [low, high], or None."""
    if value is None:
        return "is missing"
    try:
        number = float(str(value))
    except ValueError:
        return f"'{value}' is not a number"
    if not low <= number <= high:
        return f"{number} is outside [{low:g}, {high:g}]"
    return None
