"""The text fields of an Open311 POST form, parsed from the body once per request."""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote_plus

from starlette.exceptions import HTTPException
from starlette.requests import Request

# Where the fields are kept in the ASGI scope. The intake rate limiter reads the form first
# (it needs the api_key) and leaves the fields there, so the route does not parse the body
# a second time.
FORM_FIELDS: Final = "fieldops.open311.form_fields"

# Starlette's limits for a form (``Request.form``'s defaults), kept by our own parser too.
MAX_FIELDS: Final = 1000
MAX_FIELD_BYTES: Final = 1024 * 1024

URLENCODED: Final = "application/x-www-form-urlencoded"

Fields = list[tuple[str, str]]


async def form_fields(request: Request) -> Fields:
    """Every text field of the form, in order, repeats kept (a file part is no field).

    Parsed as Starlette parses a form (URL-encoded or multipart; any other content type has
    no fields), so whoever reads first sees exactly what the route sees. A body that cannot
    be parsed raises Starlette's HTTPException (400; MultiPartException outside an app) and
    leaves nothing kept. A URL-encoded body, what Open311 clients send, is parsed here in a
    few string operations (Starlette's parser walks it byte by byte, in Python), field for
    field as Starlette would.
    """
    kept: Fields | None = request.scope.get(FORM_FIELDS)
    if kept is not None:
        return kept
    media_type = request.headers.get("content-type", "").partition(";")[0]
    if media_type.strip(" \t").lower() == URLENCODED:  # the blanks Starlette's parser drops
        fields = parse_urlencoded(await request.body())
    else:
        form = await request.form()
        try:
            fields = [(key, value) for key, value in form.multi_items() if isinstance(value, str)]
        finally:
            await form.close()
    request.scope[FORM_FIELDS] = fields
    return fields


def parse_urlencoded(body: bytes) -> Fields:
    """A URL-encoded form's fields, as Starlette's form parser reads them: split at each
    ``&`` (empty parts skipped), the name up to the first ``=`` (a part without one is a
    name with an empty value), ``+`` and %-escapes decoded as UTF-8 (a bad sequence
    replaced, not refused); over Starlette's limits, its 400."""
    fields: Fields = []
    for part in body.decode("latin-1").split("&"):
        if not part:
            continue
        if len(part) - ("=" in part) > MAX_FIELD_BYTES:
            raise HTTPException(400, f"Field exceeded maximum size of {MAX_FIELD_BYTES // 1024}KB.")
        if len(fields) == MAX_FIELDS:
            raise HTTPException(400, f"Too many fields. Maximum number of fields is {MAX_FIELDS}.")
        name, _, value = part.partition("=")
        fields.append((unquote_plus(name), unquote_plus(value)))
    return fields
