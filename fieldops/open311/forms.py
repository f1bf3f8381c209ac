"""The text fields of an Open311 POST form, parsed from the body once per request."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request

# Where the fields are kept in the ASGI scope. The intake rate limiter reads the form first
# (it needs the api_key) and leaves the fields there, so the route does not parse the body
# a second time.
FORM_FIELDS: Final = "fieldops.open311.form_fields"

Fields = list[tuple[str, str]]


async def form_fields(request: Request) -> Fields:
    """Every text field of the form, in order, repeats kept (a file part is no field).

    Parsed as Starlette parses a form (URL-encoded or multipart; any other content type has
    no fields), so whoever reads first sees exactly what the route sees. A body that cannot
    be parsed raises Starlette's HTTPException (400; MultiPartException outside an app) and
    leaves nothing kept.
    """
    kept: Fields | None = request.scope.get(FORM_FIELDS)
    if kept is not None:
        return kept
    form = await request.form()
    try:
        fields = [(key, value) for key, value in form.multi_items() if isinstance(value, str)]
    finally:
        await form.close()
    request.scope[FORM_FIELDS] = fields
    return fields
