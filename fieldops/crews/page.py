"""The crew's phone page at /crew and its own script and styles."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from fieldops.errors import NotFound

router = APIRouter(include_in_schema=False)

STATIC: Final = Path(__file__).resolve().parent / "static"
# Everything the page loads comes from this server; nothing inline, nothing from outside.
PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@router.get("/crew", response_class=HTMLResponse)
def crew_page() -> HTMLResponse:
    """The crew's assignments, a small map, and accept / decline / en route / on scene /
    done buttons. The page holds no data: it asks for the crew key and reads the API."""
    return HTMLResponse((STATIC / "crew.html").read_text(encoding="utf-8"), headers=PAGE_HEADERS)


@router.get("/static/crew/{name}")
def crew_asset(name: str) -> FileResponse:
    if name not in {"crew.js", "crew.css"}:
        raise NotFound(f"no crew page file {name}")
    return FileResponse(STATIC / name, headers={"X-Content-Type-Options": "nosniff"})
