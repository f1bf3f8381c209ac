"""The browser files a map needs: npm packages served from our own route, or inlined.

Leaflet and its plugins are pinned in ``package.json`` / ``package-lock.json`` and installed
into ``node_modules`` by ``npm ci``; they are never copied into the tree and never loaded
from a CDN. Pages link them under ``/static/vendor/<package>/<file>`` (a file of the
package's ``dist`` folder); a self-contained map file inlines them instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fieldops.config import REPO_ROOT

DEFAULT_VENDOR_DIR: Final = REPO_ROOT / "node_modules"
OWN_STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

# Each npm package a map may load, and the folder of it that is served.
VENDOR_PACKAGES: Final[Mapping[str, str]] = {
    "leaflet": "dist",
    "leaflet.markercluster": "dist",
    "leaflet.heat": "dist",
}

# What a FieldOps map loads, in order: (package or "fieldops", file).
MAP_JS: Final = (
    ("leaflet", "leaflet.js"),
    ("leaflet.markercluster", "leaflet.markercluster.js"),
    ("leaflet.heat", "leaflet-heat.js"),
    ("fieldops", "map.js"),
)
MAP_CSS: Final = (
    ("leaflet", "leaflet.css"),
    ("leaflet.markercluster", "MarkerCluster.css"),
    ("fieldops", "map.css"),
)

_SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SOURCE_MAP = re.compile(r"^\s*//# sourceMappingURL=.*$|/\*# sourceMappingURL=.*?\*/", re.M)
_CSS_URL = re.compile(r"url\((['\"]?)([^)'\"]+)\1\)")


class MissingAssets(Exception):
    """The npm packages are not installed (run ``npm ci``)."""


def vendor_dir_of(settings: object) -> Path:
    """The ``node_modules`` folder the app serves: ``settings.vendor_dir`` when the settings
    have it, else the one beside the repository."""
    folder = getattr(settings, "vendor_dir", None)
    return Path(folder) if folder else DEFAULT_VENDOR_DIR


def package_version(vendor_dir: Path, package: str) -> str:
    """The installed version of ``package`` (raises ``MissingAssets`` when absent)."""
    manifest = vendor_dir / package / "package.json"
    try:
        version = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError) as exc:
        raise MissingAssets(
            f"npm package {package!r} is not installed in {vendor_dir}: run `npm ci` "
            "at the repository root"
        ) from exc
    return str(version)


def check_installed(vendor_dir: Path) -> dict[str, str]:
    """Every vendored package's installed version; raises ``MissingAssets`` naming all missing."""
    versions: dict[str, str] = {}
    missing: list[str] = []
    for package in VENDOR_PACKAGES:
        try:
            versions[package] = package_version(vendor_dir, package)
        except MissingAssets:
            missing.append(package)
    if missing:
        raise MissingAssets(
            f"npm package(s) {', '.join(missing)} not installed in {vendor_dir}: "
            "run `npm ci` at the repository root"
        )
    return versions


def own_version() -> str:
    """A short digest of FieldOps' own map script and styles (changes when they do)."""
    digest = hashlib.sha256()
    for package, file in (*MAP_JS, *MAP_CSS):
        if package == "fieldops":
            digest.update((OWN_STATIC_DIR / file).read_bytes())
    return digest.hexdigest()[:12]


def asset_links(vendor_dir: Path, prefix: str = "/static") -> AssetLinks:
    """Links to the installed packages and our own files, versioned so browsers may cache
    them for long (raises ``MissingAssets`` when ``npm ci`` has not been run)."""
    return AssetLinks(prefix, {**check_installed(vendor_dir), "fieldops": own_version()})


def _safe_relative(path: str) -> Path | None:
    parts = path.split("/")
    if not parts or not all(_SAFE_PART.fullmatch(p) for p in parts):
        return None
    return Path(*parts)


def vendor_file(vendor_dir: Path, package: str, path: str) -> Path | None:
    """The file a ``/static/vendor/<package>/<path>`` request may serve, or ``None``.

    Only the served folder of a listed package, only plain relative names (no ``..``, no
    hidden files), only files that exist.
    """
    folder = VENDOR_PACKAGES.get(package)
    relative = _safe_relative(path)
    if folder is None or relative is None:
        return None
    root = (vendor_dir / package / folder).resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def own_file(path: str) -> Path | None:
    """A file of FieldOps' own static folder (``/static/fieldops/<path>``), or ``None``."""
    relative = _safe_relative(path)
    if relative is None:
        return None
    candidate = (OWN_STATIC_DIR / relative).resolve()
    if not candidate.is_relative_to(OWN_STATIC_DIR) or not candidate.is_file():
        return None
    return candidate


@dataclass(frozen=True)
class AssetLinks:
    """Where a page finds its browser files: ``{prefix}/vendor/<package>/<file>?v=<version>``
    and ``{prefix}/fieldops/<file>?v=<fieldops version>``."""

    prefix: str
    versions: Mapping[str, str]

    def url(self, package: str, file: str) -> str:
        folder = "fieldops" if package == "fieldops" else f"vendor/{package}"
        return f"{self.prefix}/{folder}/{file}?v={self.versions.get(package, '0')}"

    def js(self) -> list[tuple[str, str]]:
        return [(f"{package}/{file}", self.url(package, file)) for package, file in MAP_JS]

    def css(self) -> list[tuple[str, str]]:
        return [(f"{package}/{file}", self.url(package, file)) for package, file in MAP_CSS]


def _read_asset(vendor_dir: Path, package: str, file: str) -> Path:
    found = own_file(file) if package == "fieldops" else vendor_file(vendor_dir, package, file)
    if found is None:
        raise MissingAssets(f"{package}/{file} not found (vendor folder {vendor_dir})")
    return found


def _inline_css(path: Path) -> str:
    """The stylesheet with each relative ``url(...)`` replaced by a data: URI."""

    def data_uri(match: re.Match[str]) -> str:
        target = match.group(2)
        if target.startswith(("data:", "#")):
            return match.group(0)
        file = (path.parent / target).resolve()
        if not file.is_relative_to(path.parent.resolve()) or not file.is_file():
            return match.group(0)
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        encoded = base64.b64encode(file.read_bytes()).decode("ascii")
        return f'url("data:{kind};base64,{encoded}")'

    return _CSS_URL.sub(data_uri, _SOURCE_MAP.sub("", path.read_text(encoding="utf-8")))


def inline_assets(html: str, links: AssetLinks, vendor_dir: Path) -> str:
    """Replace every script and stylesheet link of ``links`` in ``html`` by the file itself,
    so the page needs no server at all."""
    for package, file in MAP_JS:
        tag = f'<script src="{links.url(package, file)}"></script>'
        body = _SOURCE_MAP.sub("", _read_asset(vendor_dir, package, file).read_text("utf-8"))
        # A script body must not close its own tag early.
        body = body.replace("</script", "<\\/script")
        html = html.replace(tag, f"<script>{body}</script>")
    for package, file in MAP_CSS:
        tag = f'<link rel="stylesheet" href="{links.url(package, file)}"/>'
        css = _inline_css(_read_asset(vendor_dir, package, file))
        html = html.replace(tag, f"<style>{css}</style>")
    return html
