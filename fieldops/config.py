"""Typed settings, read from arguments or ``FIELDOPS_*`` environment variables, never at import."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from platformdirs import user_data_path
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_database_url() -> str:
    """The embedded SpatiaLite file under the user's data directory."""
    return f"sqlite:///{user_data_path('fieldops') / 'fieldops.db'}"


class Settings(BaseSettings):
    """Everything FieldOps needs to know about where it runs."""

    model_config = SettingsConfigDict(env_prefix="FIELDOPS_", extra="forbid")

    database_url: str = Field(default_factory=default_database_url)
    environment: Literal["production", "development", "test"] = "development"
    layers_dir: Path = REPO_ROOT / "layers"
    # Drill scenarios the API may start by name, and where drills write their output.
    scenarios_dir: Path = REPO_ROOT / "scenarios"
    data_dir: Path = Field(default_factory=lambda: user_data_path("fieldops"))
    # Where `npm ci` installed Leaflet and its plugins; served at /static/vendor.
    vendor_dir: Path = REPO_ROOT / "node_modules"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Largest request body accepted, in bytes; Open311 descriptions top out at 4,000
    # characters, so anything near this limit is a mistake or an attack.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # Optional raster tiles behind the vector base map; empty keeps every page offline.
    tile_url: str = ""
    request_log: bool = False
    # The city served: Open311's jurisdiction and the zone its times are shown in.
    jurisdiction_id: str = "montreal.ca"
    timezone: str = "America/Toronto"
    contact: str = "FieldOps operations desk, 311 (dial 3-1-1), ops@montreal.example"
    key_service: str = "Ask the operations desk for an Open311 API key: ops@montreal.example"
    # Projected CRS for measuring in metres in this city (Montréal: NAD83 / MTM zone 8).
    metric_crs: str = "EPSG:32188"
    # A crew position older than this is shown and treated as stale.
    stale_position_s: int = Field(default=300, ge=10)
    # Run the escalation and notification jobs inside the API process.
    run_scheduler: bool = True
    # Notifications go to this webhook (signed with the secret); empty: to the log.
    webhook_url: str = ""
    webhook_secret: str = ""
    # Where the public reaches this server (Open311 discovery lists it).
    public_url: str = "http://127.0.0.1:8000"
    # Public intake (every Open311 POST, report creation on /api/v1) is rate limited per key
    # and per client address with token buckets: a burst, then a sustained rate per minute.
    # Dispatcher, manager and admin keys are never limited. A citizen files a few reports a
    # minute at most, but one address may be a library's Wi-Fi or a carrier's NAT: 20 at
    # once, then 10 a minute. One key is usually a whole citizen app, thousands of phones:
    # 120 at once, then 60 a minute, well above a big city's 311 volume even in a storm.
    intake_rate_limit: bool = True
    intake_key_burst: int = Field(default=120, ge=1)
    intake_key_per_minute: float = Field(default=60.0, gt=0)
    intake_address_burst: int = Field(default=20, ge=1)
    intake_address_per_minute: float = Field(default=10.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(
                "database_url must be sqlite:///PATH (SpatiaLite) or "
                "postgresql+psycopg://USER:PASSWORD@HOST/DB (PostGIS)"
            )
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url

    @model_validator(mode="after")
    def _safe_in_production(self) -> Settings:
        if self.environment == "production" and self.tile_url.startswith("http://"):
            raise ValueError("tile_url must use https in production")
        if self.webhook_url and len(self.webhook_secret) < 16:
            raise ValueError("webhook_url needs a webhook_secret of at least 16 characters")
        return self

    @property
    def stale_after(self) -> timedelta:
        return timedelta(seconds=self.stale_position_s)

    @property
    def is_spatialite(self) -> bool:
        return self.database_url.startswith("sqlite")
