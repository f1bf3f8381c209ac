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


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "description": "RFC 9457 problem naming each field at fault",
        "content": {"application/problem+json": {"schema": _PROBLEM_SCHEMA}},
    }
}
"""What every error answer looks like, for the OpenAPI document (in place of FastAPI's
default 422 body, which this API never sends)."""
