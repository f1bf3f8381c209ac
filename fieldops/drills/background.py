"""Drills started through the API: run one at a time on a background thread of the process
that took the request, each in its own folder under ``<data_dir>/drills/<id>/`` with its
state in ``status.json``, so any worker process can answer for it.

A drill never shares the app's database: it runs on a SpatiaLite file in its folder, or on
its scenario's [database] (a scratch PostGIS, never the live one).

The worker thread is a daemon: stopping the server never waits for a drill. A drill cut
short that way keeps the status it had ("running"); start it again.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from fieldops.config import Settings
from fieldops.drills.model import DrillOptions
from fieldops.drills.spec import Scenario
from fieldops.errors import FieldOpsError

log = logging.getLogger("fieldops.drills")

DRILL_ID = re.compile(r"^[0-9a-f]{32}$")
SCENARIO_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")
# How often a running drill rewrites its progress (wall seconds).
PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class DrillRequest:
    scenario: str  # file stem in the scenarios folder
    options: DrillOptions
    requested_by: str


def scenario_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.toml"))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace the file at once: a reader never sees half of it."""
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class DrillJobs:
    """The drills of one app: started in the background, read back from their folders."""

    def __init__(self, settings: Settings, now: Callable[[], datetime]) -> None:
        self.settings = settings
        self.now = now
        self.root = settings.data_dir / "drills"
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Path, Scenario, DrillOptions] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._serve, name="drill", daemon=True)
        self._worker.start()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            self._run(*item)

    def folder(self, drill_id: str) -> Path | None:
        """The drill's folder, if ``drill_id`` names one."""
        if not DRILL_ID.match(drill_id):
            return None
        folder = self.root / drill_id
        return folder if (folder / "status.json").is_file() else None

    def status(self, drill_id: str) -> dict[str, Any] | None:
        folder = self.folder(drill_id)
        if folder is None:
            return None
        data: dict[str, Any] = json.loads((folder / "status.json").read_text(encoding="utf-8"))
        return data

    def _update(self, folder: Path, **changes: Any) -> None:
        with self._lock:
            data = json.loads((folder / "status.json").read_text(encoding="utf-8"))
            data.update(changes)
            _write_json(folder / "status.json", data)

    def start(self, request: DrillRequest, scenario: Scenario) -> dict[str, Any]:
        """Queue the drill; it starts when the drill before it has finished."""
        drill_id = uuid.uuid4().hex
        folder = self.root / drill_id
        folder.mkdir(parents=True)
        options = request.options
        status = {
            "id": drill_id,
            "status": "queued",
            "scenario": request.scenario,
            "name": scenario.drill.name,
            "seed": scenario.drill.seed if options.seed is None else options.seed,
            "scale": options.scale,
            "duration_h": options.duration_h or scenario.drill.duration_h,
            "requested_by": request.requested_by,
            "created_at": self.now().isoformat(),
            "started_at": None,
            "finished_at": None,
            "progress": 0.0,
            "error": None,
        }
        _write_json(folder / "status.json", status)
        self._queue.put((folder, scenario, options))
        return status

    def _run(self, folder: Path, scenario: Scenario, options: DrillOptions) -> None:
        from fieldops.drills.play import play

        self._update(folder, status="running", started_at=self.now().isoformat())
        last = [0.0]

        def progress(_strategy: str, done: float) -> None:
            if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
                last[0] = time.monotonic()
                self._update(folder, progress=round(done, 3))

        try:
            played = play(
                scenario,
                folder=folder,
                layers_dir=self.settings.layers_dir,
                options=replace(options, strategy="optimal"),
                strategies=["optimal"],
                written_at=self.now,
                live_url=self.settings.database_url,
                on_progress=progress,
                db_field="scenario.database.url",
            )
        except FieldOpsError as exc:
            self._update(
                folder, status="failed", error=exc.detail, finished_at=self.now().isoformat()
            )
            return
        except Exception:
            log.exception("drill %s failed", folder.name)
            self._update(
                folder,
                status="failed",
                error="the drill stopped on an internal error (see the server log)",
                finished_at=self.now().isoformat(),
            )
            return
        self._update(
            folder,
            status="done",
            progress=1.0,
            finished_at=self.now().isoformat(),
            database=played.databases[0],
            database_kept=played.kept,
        )

    def shutdown(self) -> None:
        """Finish the drills queued so far, then stop the worker (tests; a server just exits)."""
        self._queue.put(None)
        self._worker.join()
