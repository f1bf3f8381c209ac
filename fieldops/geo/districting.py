"""Which district holds a point: an index built once from district polygons, queried in bulk."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import numpy as np
import shapely
from geopandas import GeoDataFrame
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import MultiPolygon, Polygon

from fieldops.geo.crs import WGS84, require_crs

K = TypeVar("K", bound=Hashable)

NOT_FOUND: Final = -1
"""What `DistrictIndex.locate_many` answers for a point that no district holds."""

_MIXED: Final = -2
"""Grid-cell marker: more than one district, or a district border, crosses the cell."""

# How far (as a fraction of a cell) each cell is grown before it is classified, so that a
# point rounded into a neighbouring cell is still classified correctly.
_CELL_MARGIN: Final = 1e-6


@dataclass(frozen=True)
class _Grid:
    """A regular lon/lat grid over all districts.

    Each cell's ``owner`` is the one district that contains the whole cell, ``NOT_FOUND`` if
    no district touches it, or ``_MIXED``; the districts touching a mixed cell are
    ``candidates[start[cell]:start[cell + 1]]`` in ascending order.
    """

    min_lon: float
    min_lat: float
    cells_per_lon: float
    cells_per_lat: float
    n_lon: int
    n_lat: int
    owner: NDArray[np.intp]
    start: NDArray[np.intp]
    candidates: NDArray[np.intp]


def _build_grid(geoms: NDArray[np.object_], grid_size: int) -> _Grid:
    bounds = shapely.bounds(geoms)
    lon0, lat0 = float(bounds[:, 0].min()), float(bounds[:, 1].min())
    lon1, lat1 = float(bounds[:, 2].max()), float(bounds[:, 3].max())
    # Pad the extent so a point on the outermost border still falls inside the grid.
    pad_lon = max(lon1 - lon0, 1e-9) * 1e-6
    pad_lat = max(lat1 - lat0, 1e-9) * 1e-6
    lon0, lon1, lat0, lat1 = lon0 - pad_lon, lon1 + pad_lon, lat0 - pad_lat, lat1 + pad_lat
    n = grid_size
    step_lon, step_lat = (lon1 - lon0) / n, (lat1 - lat0) / n
    margin_lon, margin_lat = step_lon * _CELL_MARGIN, step_lat * _CELL_MARGIN

    cells_parts, district_parts, inside_parts = [], [], []
    for district, (b_lon0, b_lat0, b_lon1, b_lat1) in enumerate(bounds):
        i0 = max(int((b_lon0 - lon0) / step_lon) - 1, 0)
        i1 = min(int((b_lon1 - lon0) / step_lon) + 1, n - 1)
        j0 = max(int((b_lat0 - lat0) / step_lat) - 1, 0)
        j1 = min(int((b_lat1 - lat0) / step_lat) + 1, n - 1)
        col_grid, row_grid = np.meshgrid(np.arange(i0, i1 + 1), np.arange(j0, j1 + 1))
        col, row = col_grid.ravel(), row_grid.ravel()
        boxes = shapely.box(
            lon0 + col * step_lon - margin_lon,
            lat0 + row * step_lat - margin_lat,
            lon0 + (col + 1) * step_lon + margin_lon,
            lat0 + (row + 1) * step_lat + margin_lat,
        )
        touches = shapely.intersects(geoms[district], boxes)
        inside = shapely.contains_properly(geoms[district], boxes[touches])
        cells_parts.append(row[touches] * n + col[touches])
        district_parts.append(np.full(int(touches.sum()), district, dtype=np.intp))
        inside_parts.append(inside)

    cells = np.concatenate(cells_parts).astype(np.intp)
    districts = np.concatenate(district_parts)
    inside = np.concatenate(inside_parts)
    n_cells = n * n
    touching = np.bincount(cells, minlength=n_cells)
    owner = np.full(n_cells, NOT_FOUND, dtype=np.intp)
    sole = inside & (touching[cells] == 1)
    owner[cells[sole]] = districts[sole]
    owner[(touching > 0) & (owner == NOT_FOUND)] = _MIXED

    mixed = owner[cells] == _MIXED
    cells, districts = cells[mixed], districts[mixed]
    order = np.lexsort((districts, cells))
    start = np.zeros(n_cells + 1, dtype=np.intp)
    np.cumsum(np.bincount(cells, minlength=n_cells), out=start[1:])
    return _Grid(
        min_lon=lon0,
        min_lat=lat0,
        cells_per_lon=1.0 / step_lon,
        cells_per_lat=1.0 / step_lat,
        n_lon=n,
        n_lat=n,
        owner=owner,
        start=start,
        candidates=districts[order],
    )


def _problems(keys: Sequence[Hashable], geoms: NDArray[np.object_]) -> list[str]:
    problems = []
    seen: set[Hashable] = set()
    for position, (key, geom) in enumerate(zip(keys, geoms, strict=True)):
        where = f"district {key!r} (position {position})"
        if key is None:
            problems.append(f"position {position}: key is missing")
        elif key in seen:
            problems.append(f"{where}: key is used twice")
        seen.add(key)
        if geom is None:
            problems.append(f"{where}: geometry is missing")
        elif not isinstance(geom, Polygon | MultiPolygon):
            problems.append(f"{where}: geometry is a {geom.geom_type}, not a (multi)polygon")
        elif geom.is_empty:
            problems.append(f"{where}: geometry is empty")
        elif not geom.is_valid:
            problems.append(f"{where}: geometry is invalid ({shapely.is_valid_reason(geom)})")
    return problems


class DistrictIndex(Generic[K]):
    """Matches lon/lat points (WGS 84 degrees) to the district polygon that holds them.

    Built once, then queried in bulk with `locate_many` or one point at a time with
    `locate`. A point on a district's border belongs to it; where districts share a border
    (or overlap), the district listed first wins, so answers are deterministic. Queries go
    through a regular grid over the districts: a cell that lies wholly inside one district
    answers without any geometry test, and only points in cells crossed by a border are
    tested against the prepared polygons of the districts touching that cell.

    ``keys`` and ``polygons`` are parallel: ``polygons[i]`` is the lon/lat outline of the
    district called ``keys[i]``. Keys must be unique; every polygon must be a valid,
    non-empty ``Polygon`` or ``MultiPolygon``. ``grid_size`` is the number of grid cells
    along each axis.

    Examples
    --------
    >>> from shapely import box
    >>> index = DistrictIndex(["west", "east"], [box(0, 0, 1, 1), box(1, 0, 2, 1)])
    >>> index.locate(0.5, 0.5), index.locate(1.0, 0.5), index.locate(5.0, 5.0)
    ('west', 'west', None)
    >>> index.locate_many([0.5, 1.5, 5.0], [0.5, 0.5, 5.0]).tolist()
    [0, 1, -1]
    """

    def __init__(
        self,
        keys: Sequence[K],
        polygons: Sequence[Polygon | MultiPolygon],
        *,
        grid_size: int = 256,
    ) -> None:
        keys = tuple(keys)
        geoms = np.empty(len(polygons), dtype=object)
        geoms[:] = list(polygons)
        if len(keys) != len(geoms):
            raise ValueError(f"{len(keys)} keys for {len(geoms)} polygons")
        if not keys:
            raise ValueError("cannot build a district index from no districts")
        if grid_size < 1:
            raise ValueError(f"grid_size must be at least 1, got {grid_size}")
        problems = _problems(keys, geoms)
        if problems:
            raise ValueError("cannot build a district index: " + "; ".join(problems))

        # force_2d returns new geometries, so preparing them leaves the caller's untouched.
        geoms = shapely.force_2d(geoms)
        shapely.prepare(geoms)
        self._keys: tuple[K, ...] = keys
        self._geoms = geoms
        self._grid = _build_grid(geoms, grid_size)

        grid = self._grid
        self._origin = (grid.min_lon, grid.min_lat)
        self._scale = (grid.cells_per_lon, grid.cells_per_lat)
        self._shape = (grid.n_lon, grid.n_lat)
        self._owner_list: list[int] = grid.owner.tolist()
        self._geom_list: list[Any] = list(geoms)
        start = grid.start.tolist()
        candidates = grid.candidates.tolist()
        self._candidates_of: dict[int, tuple[int, ...]] = {
            cell: tuple(candidates[start[cell] : start[cell + 1]])
            for cell in np.flatnonzero(grid.owner == _MIXED).tolist()
        }

    @classmethod
    def from_frame(
        cls, frame: GeoDataFrame, *, key_column: str, grid_size: int = 256
    ) -> DistrictIndex[Any]:
        """Build the index from a GeoDataFrame of district polygons in EPSG:4326.

        The keys are the values of ``key_column``, in row order. Raises ``ValueError`` if the
        frame is in another CRS (or none), lacks ``key_column``, or has missing, empty or
        invalid geometries (all such problems are reported together).

        Examples
        --------
        >>> from geopandas import GeoDataFrame
        >>> from shapely import box
        >>> frame = GeoDataFrame({"code": ["A", "B"]},
        ...                      geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1)], crs="EPSG:4326")
        >>> DistrictIndex.from_frame(frame, key_column="code").locate(1.5, 0.5)
        'B'
        """
        require_crs(frame, WGS84)
        if key_column not in frame.columns:
            raise ValueError(f"key column {key_column!r} is not in the frame")
        column = frame[key_column]
        missing = np.flatnonzero(column.isna().to_numpy())
        if missing.size:
            raise ValueError(f"key column {key_column!r} is missing at rows {missing.tolist()}")
        return cls(column.tolist(), list(frame.geometry.array), grid_size=grid_size)

    @property
    def keys(self) -> tuple[K, ...]:
        """District keys in index order; `locate_many` answers positions into this tuple."""
        return self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"DistrictIndex({len(self._keys)} districts)"

    def locate_many(self, lon: ArrayLike, lat: ArrayLike) -> NDArray[np.intp]:
        """Position in `keys` of the district holding each point, or -1 where none does.

        ``lon`` and ``lat`` are WGS 84 degrees of the same shape; the answer has that shape.
        Points with NaN or infinite coordinates answer -1.

        Examples
        --------
        >>> from shapely import box
        >>> index = DistrictIndex([10, 20], [box(0, 0, 1, 1), box(2, 0, 3, 1)])
        >>> index.locate_many([0.5, 2.5, 1.5, float("nan")], [0.5, 0.5, 0.5, 0.5]).tolist()
        [0, 1, -1, -1]
        """
        lon_deg = np.asarray(lon, dtype=np.float64)
        lat_deg = np.asarray(lat, dtype=np.float64)
        if lon_deg.shape != lat_deg.shape:
            raise ValueError(f"lon has shape {lon_deg.shape} but lat has shape {lat_deg.shape}")
        x, y = lon_deg.ravel(), lat_deg.ravel()
        grid = self._grid
        found = np.full(x.size, NOT_FOUND, dtype=np.intp)
        col = (x - grid.min_lon) * grid.cells_per_lon
        row = (y - grid.min_lat) * grid.cells_per_lat
        on_grid = np.flatnonzero((col >= 0) & (col < grid.n_lon) & (row >= 0) & (row < grid.n_lat))
        cells = row[on_grid].astype(np.intp) * grid.n_lon + col[on_grid].astype(np.intp)
        owners = grid.owner[cells]
        found[on_grid] = owners
        mixed = owners == _MIXED
        if mixed.any():
            points = on_grid[mixed]
            found[points] = self._test_mixed(x[points], y[points], cells[mixed])
        return found.reshape(lon_deg.shape)

    def _test_mixed(
        self, x: NDArray[np.float64], y: NDArray[np.float64], cells: NDArray[np.intp]
    ) -> NDArray[np.intp]:
        """Test points in mixed cells against each district touching their cell."""
        grid = self._grid
        first = grid.start[cells]
        count = grid.start[cells + 1] - first
        total = int(count.sum())
        # One (point, district) pair per candidate, ordered by point and then by district.
        point = np.repeat(np.arange(cells.size), count)
        offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        district = grid.candidates[np.repeat(first, count) + offset]

        hit = np.zeros(total, dtype=bool)
        by_district = np.argsort(district, kind="stable")
        sorted_district = district[by_district]
        breaks = np.flatnonzero(np.diff(sorted_district)) + 1
        for pairs in np.split(by_district, breaks):
            if pairs.size:
                geom = self._geoms[district[pairs[0]]]
                hit[pairs] = shapely.intersects_xy(geom, x[point[pairs]], y[point[pairs]])

        found = np.full(cells.size, NOT_FOUND, dtype=np.intp)
        hit_point, hit_district = point[hit], district[hit]
        # Pairs are in district order within each point, so a point's first hit wins.
        first_hit = np.ones(hit_point.size, dtype=bool)
        first_hit[1:] = hit_point[1:] != hit_point[:-1]
        found[hit_point[first_hit]] = hit_district[first_hit]
        return found

    def locate(self, lon: float, lat: float) -> K | None:
        """Key of the district holding one point (WGS 84 degrees), or ``None`` if none does.

        Agrees with `locate_many` on every point, and avoids numpy on the common path, so a
        call costs a few microseconds.

        Examples
        --------
        >>> from shapely import box
        >>> index = DistrictIndex(["A"], [box(0, 0, 1, 1)])
        >>> index.locate(0.25, 0.75), index.locate(float("nan"), 0.5)
        ('A', None)
        """
        col = (lon - self._origin[0]) * self._scale[0]
        row = (lat - self._origin[1]) * self._scale[1]
        if not (0.0 <= col < self._shape[0] and 0.0 <= row < self._shape[1]):
            return None
        cell = int(row) * self._shape[0] + int(col)
        owner = self._owner_list[cell]
        if owner >= 0:
            return self._keys[owner]
        if owner == NOT_FOUND:
            return None
        for district in self._candidates_of[cell]:
            if shapely.intersects_xy(self._geom_list[district], lon, lat):
                return self._keys[district]
        return None
