"""Response classes: JSON rendered with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONBody(Response):
    """JSON for bodies built by hand (GeoJSON feeds, replayed answers, problems)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class GeoJSONBody(JSONBody):
    media_type = "application/geo+json"


class ProblemBody(JSONBody):
    media_type = "application/problem+json"
