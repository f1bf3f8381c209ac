"""Browser fixtures: the real app under uvicorn on 127.0.0.1 (SpatiaLite file), and Debian's
headless Chromium driven by Playwright, with every request and console error recorded.

Chromium comes from Debian (``apt-get install chromium``; scripts/test.sh installs it), never
from ``playwright install``. Without it the tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Route,
    sync_playwright,
)

from fieldops.app import create_app
from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.city import load_city
from fieldops.config import Settings
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work
from fieldops.db.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ROOT / "layers"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = frozenset({"127.0.0.1"})
# Schemes that never leave the machine.
LOCAL_SCHEMES = frozenset({"data", "blob", "about", "file"})


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveApp:
    """The app serving on 127.0.0.1: its base URL, a dispatcher key and an HTTP client."""

    base_url: str
    database_url: str
    key: str
    http: httpx.Client

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.is_success, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        assert response.is_success, response.text
        return response.json()


@pytest.fixture(scope="session")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """The real app (scheduler off) on a free port, over a SpatiaLite file with the city."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'fieldops.db'}"
    engine = make_engine(database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with unit_of_work(sessions) as session:
        load_city(session, LAYERS, now=_now())
    with unit_of_work(sessions) as session:
        _key, secret = create_key(session, name="browser", role=Role.DISPATCHER, now=_now())
    engine.dispose()

    settings = Settings(database_url=database_url, environment="test", run_scheduler=False)
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fieldops-browser-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the app did not start"
        assert time.monotonic() < deadline, "the app took over 30 s to start"
        time.sleep(0.05)
    base_url = f"http://127.0.0.1:{port}"
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    ) as http:
        yield LiveApp(base_url=base_url, database_url=database_url, key=secret, http=http)
    server.should_exit = True
    thread.join(timeout=10)


def _now() -> Any:
    from fieldops.clock import SystemClock

    return SystemClock().now()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh does)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        yield _launch(playwright)


def _launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@dataclass
class Traffic:
    """What a page asked for and what went wrong in it."""

    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def outside(self) -> list[str]:
        """Requests to anything but 127.0.0.1 (or a scheme that stays on the machine)."""
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in LOCAL_SCHEMES
            and urlsplit(url).hostname not in LOCAL_HOSTS
        ]


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def page(browser: Browser, traffic: Traffic) -> Iterator[Page]:
    """A fresh page that records every request and console error, and lets nothing leave
    127.0.0.1 (a request elsewhere is aborted and reported)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="fr-CA")

    def guard(route: Route, request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in LOCAL_SCHEMES or parts.hostname in LOCAL_HOSTS:
            route.fallback()
        else:
            traffic.blocked.append(request.url)
            route.abort()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            traffic.errors.append(f"console: {message.text} ({message.location})")

    context.route("**/*", guard)
    page = context.new_page()
    page.on("request", lambda request: traffic.requests.append(request.url))
    page.on("console", console)
    page.on("pageerror", lambda error: traffic.errors.append(f"page error: {error}"))
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    """``screenshot(page, name)``: save one under test-artifacts/ (ignored by git)."""

    def save(page: Page, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        page.screenshot(path=str(path))
        return path

    return save


@pytest.fixture
def wait_ready() -> Callable[[Page], None]:
    """``wait_ready(page)``: wait until the map has drawn its data (at most 20 s)."""

    def wait(page: Page) -> None:
        page.wait_for_function("() => document.documentElement.dataset.foReady === '1'")

    return wait
