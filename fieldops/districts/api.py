"""District routes: the list and the polygons (public: the city's own boundaries)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Response
from geoalchemy2.shape import to_shape
from pydantic import BaseModel
from shapely.geometry import mapping

from fieldops.api.deps import ReadSession
from fieldops.districts.repo import list_districts

router = APIRouter(prefix="/api/v1", tags=["districts"])


class DistrictRead(BaseModel):
    id: int
    code: str
    name: str
    kind: str
    area_km2: float


@router.get("/districts", response_model=list[DistrictRead])
def get_districts(session: ReadSession) -> list[DistrictRead]:
    return [
        DistrictRead(
            id=d.id, code=d.code, name=d.name, kind=d.kind, area_km2=round(d.area_m2 / 1e6, 3)
        )
        for d in list_districts(session)
    ]


@router.get("/districts.geojson")
def get_districts_geojson(session: ReadSession) -> Response:
    """Every district polygon as a GeoJSON FeatureCollection (EPSG:4326)."""
    features = [
        {
            "type": "Feature",
            "id": d.id,
            "geometry": mapping(to_shape(d.geom)),
            "properties": {"code": d.code, "name": d.name, "kind": d.kind},
        }
        for d in list_districts(session)
    ]
    payload = orjson.dumps({"type": "FeatureCollection", "features": features})
    return Response(payload, media_type="application/geo+json")
