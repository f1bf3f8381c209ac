"""GeoReport v2 documents in XML and JSON, mapped mechanically from the same structure.

A document is a root tag, an item tag and a list of items (or one object for the
service definition and discovery). Nested lists become ``<plural><singular>...`` in XML
and arrays in JSON; ``None`` becomes an empty element or ``null``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any
from xml.etree import ElementTree as ET

import orjson

XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'


class Format(StrEnum):
    XML = "xml"
    JSON = "json"

    @property
    def media_type(self) -> str:
        return (
            "text/xml; charset=utf-8" if self is Format.XML else "application/json; charset=utf-8"
        )


# The element name of one member of each list, in XML.
SINGULAR = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
    "notes": "note",
    "errors": "error",
    "media_urls": "media_url",
    "service_request_updates": "request_update",
}


# What XML 1.0 cannot carry: dropped on output whatever reached the database.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return _NOT_XML.sub("", str(value))


def _append(parent: ET.Element, tag: str, value: Any) -> None:
    element = ET.SubElement(parent, tag)
    if isinstance(value, Mapping):
        for key, item in value.items():
            _append(element, key, item)
    elif isinstance(value, list | tuple):
        child_tag = SINGULAR.get(tag, "item")
        for item in value:
            _append(element, child_tag, item)
    else:
        text = _text(value)
        if text is not None:
            element.text = text


def render_xml(root: str, body: Sequence[Any] | Mapping[str, Any]) -> bytes:
    element = ET.Element(root)
    if isinstance(body, Mapping):
        for key, value in body.items():
            _append(element, key, value)
    else:
        for item in body:
            _append(element, SINGULAR[root], item)
    return (XML_DECLARATION + ET.tostring(element, encoding="unicode")).encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def render(fmt: Format, root: str, body: Sequence[Any] | Mapping[str, Any]) -> bytes:
    """The document in ``fmt``: XML under ``root``, or the bare JSON array/object."""
    if fmt is Format.XML:
        return render_xml(root, body)
    return orjson.dumps(body, default=_json_default)
