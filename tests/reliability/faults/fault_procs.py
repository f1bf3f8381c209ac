"""Real processes for the fault tests: the API as `fieldops serve` runs it, `fieldops
scheduler run`, a private PostgreSQL cluster and a webhook receiver, all on 127.0.0.1, each
stopped by its own process id (or its own process group) and nothing else."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from fieldops.city import load_city
from fieldops.clock import SystemClock
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work
from fieldops.db.migrate import upgrade

ROOT = Path(__file__).resolve().parents[3]
FIELDOPS = Path(sys.executable).with_name("fieldops")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
LAYERS = ROOT / "layers"
WEBHOOK_SECRET = "fault-test-webhook-secret"
# A worker is up when uvicorn logs this (one line per worker process).
STARTED = "Application startup complete."
# Runs the API with a file size limit: past it a write fails with EFBIG (Python ignores
# SIGXFSZ), as on a full disk, without mounting anything.
LIMITED = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
)


@dataclass(frozen=True)
class FaultDb:
    """A fresh database of one test."""

    backend: str  # spatialite | postgis
    url: str


# Tests that run on both backends take ``fault_db`` with these (PostGIS skipped in CI fails).
BACKENDS = [
    pytest.param("spatialite", id="spatialite"),
    pytest.param("postgis", id="postgis", marks=pytest.mark.postgis),
]


def prepare(url: str) -> None:
    """Migrate and load the city (districts, services, crews, escalation policy) now."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        with unit_of_work(make_sessionmaker(engine)) as session:
            load_city(session, LAYERS, now=SystemClock().now())
    finally:
        engine.dispose()


def fold_wal(path: Path) -> None:
    """Checkpoint the WAL into the file and empty it (outside any transaction)."""
    engine = make_engine(f"sqlite:///{path}")
    raw = engine.raw_connection()
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()
        engine.dispose()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(present: bool, why: str) -> None:
    """Skip when a tool is missing here; in CI a fault test that cannot run fails instead."""
    if present:
        return
    if in_ci():
        pytest.fail(f"{why}: in CI a fault test may not be skipped")
    pytest.skip(why)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, ready: Callable[[], bool], timeout_s: float, pause_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(pause_s)


@dataclass
class Service:
    """One process this test started (in a process group of its own)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9 this process alone (the workers, if any, are its children)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # Workers orphaned by a kill -9 of their supervisor are still in its group.
            os.killpg(self.process.pid, signal.SIGKILL)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _spawn(name: str, argv: list[str], env: dict[str, str], log: Path) -> Service:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIELDOPS_")}
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=clean | env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, process, log)


def get(port: int, path: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def ready(port: int) -> bool:
    try:
        return get(port, "/readyz")[0] == 200
    except OSError:
        return False


def start_api(
    url: str,
    *,
    workers: int,
    log_dir: Path,
    fsize_limit: int | None = None,
    name: str = "api",
    scheduler: bool = False,
) -> Service:
    """The API as production runs it (``fieldops.serving``, as ``fieldops serve`` does:
    ``workers`` processes, each with its own socket; the scheduled jobs in the first only
    with ``scheduler``), ready when every worker has started and /readyz answers 200."""
    port = free_port()
    argv = [
        sys.executable, "-m", "fieldops.serving", "fieldops.app:app_from_environment",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        *([] if scheduler else ["--no-scheduler"]),
    ]  # fmt: skip
    if fsize_limit is not None:
        argv = [sys.executable, "-c", LIMITED, str(fsize_limit), *argv]
    # One client address and one key stand for a whole city here: no intake rate limit.
    env = {"FIELDOPS_DATABASE_URL": url, "FIELDOPS_INTAKE_RATE_LIMIT": "false"}
    api = _spawn(name, argv, env, log_dir / f"{name}.log")
    api.port = port
    started = api.log_text().count(STARTED)

    def up() -> bool:
        if not api.alive():
            raise AssertionError(f"{name} exited with {api.process.returncode}:\n{api.tail()}")
        return api.log_text().count(STARTED) >= started + workers and ready(port)

    try:
        wait_for(f"{name} on port {port}", up, timeout_s=90)
    except BaseException:
        api.stop()
        raise
    return api


def start_scheduler(url: str, *, log_dir: Path, webhook_url: str, name: str) -> Service:
    """``fieldops scheduler run`` with the webhook sender, alone in its process."""
    env = {
        "FIELDOPS_DATABASE_URL": url,
        "FIELDOPS_WEBHOOK_URL": webhook_url,
        "FIELDOPS_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    scheduler = _spawn(name, [str(FIELDOPS), "scheduler", "run"], env, log_dir / f"{name}.log")

    def up() -> bool:
        if not scheduler.alive():
            raise AssertionError(f"{name} exited:\n{scheduler.tail()}")
        return "Scheduler running" in scheduler.log_text()

    wait_for(name, up, timeout_s=60)
    return scheduler


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append((int(entry.name), cmdline.decode(errors="replace")))
    return found


def worker_pids(api: Service) -> list[int]:
    """The worker processes under the API's supervisor."""
    return sorted(pid for pid, cmd in _children(api.process.pid) if "spawn_main" in cmd)


def client_connections(pid: int, port: int) -> int:
    """Established TCP connections that process ``pid`` holds on local ``port``."""
    return len(_sockets(pid, port, state="01"))


def listening_sockets(pid: int, port: int) -> set[str]:
    """The listening sockets (their inodes) that process ``pid`` holds on local ``port``."""
    return _sockets(pid, port, state="0A")


def _sockets(pid: int, port: int, *, state: str) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        local_port = int(cols[1].split(":")[1], 16)
        if local_port == port and cols[3] == state and cols[9] in inodes:
            found.add(cols[9])
    return found


# --- the webhook receiver ------------------------------------------------------------------


@dataclass
class Receiver:
    """Records every delivery it takes: (notification id, signature valid). Once armed,
    it holds the next delivery without answering (the sender stays mid-send) until
    released."""

    url: str
    deliveries: list[tuple[int, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    armed: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def hold_next(self) -> None:
        self.armed.set()


@contextlib.contextmanager
def webhook_receiver(delay_s: float = 0.0) -> Iterator[Receiver]:
    """A tiny HTTP server on 127.0.0.1 that checks each delivery's signature and keeps it."""
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            expected = (
                "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
            )
            valid = hmac.compare_digest(expected, self.headers.get("X-FieldOps-Signature", ""))
            if delay_s:
                time.sleep(delay_s)
            with receiver.lock:
                receiver.deliveries.append((int(json.loads(body)["id"]), valid))
                hold = receiver.armed.is_set() and not receiver.holding.is_set()
                if hold:
                    receiver.holding.set()
            if hold:
                receiver.released.wait(timeout=30)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.shutdown()
        server.server_close()


# --- a private PostgreSQL cluster ----------------------------------------------------------


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of this test alone: restarting it disturbs no one else."""

    folder: Path
    port: int
    run_as: list[str]

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str) -> None:
        # Into a file, not a pipe: the server it starts would hold a pipe open for ever.
        with (self.folder / "pg_ctl.log").open("ab") as out:
            subprocess.run(
                [*self.run_as, str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
            )

    def restart(self) -> None:
        """Crash-restart: no shutdown checkpoint, WAL recovery on start (``-m immediate``)."""
        log = str(self.folder / "server.log")
        self.pg_ctl("restart", "-m", "immediate", "-w", "-t", "60", "-l", log)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivateCluster]:
    """initdb in a temporary folder, started on a free port of 127.0.0.1 (as the postgres
    user when we are root: PostgreSQL refuses to run as root), with PostGIS created in a
    ``fieldops`` database; stopped and removed afterwards."""
    need((PG_BIN / "initdb").is_file(), f"{PG_BIN}/initdb is missing (Debian's postgresql-15)")
    run_as: list[str] = []
    user = None
    if os.geteuid() == 0:
        user = next((u for u in pwd.getpwall() if u.pw_name == "postgres"), None)
        need(user is not None, "there is no postgres user to run a cluster as")
        need(shutil.which("runuser") is not None, "runuser is missing")
        run_as = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="fieldops-pg-", dir="/tmp"))
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)
    cluster = PrivateCluster(folder=folder, port=free_port(), run_as=run_as)
    try:
        subprocess.run(
            [*run_as, str(PG_BIN / "initdb"), "-D", str(cluster.data), "-A", "trust",
             "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = (
            f"-p {cluster.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={folder} -c max_connections=200"
        )
        cluster.pg_ctl("start", "-w", "-t", "60", "-l", str(folder / "server.log"), "-o", options)
        admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE fieldops")
        admin.dispose()
        engine = sa.create_engine(cluster.url("fieldops"))
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE EXTENSION postgis")
        engine.dispose()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            cluster.pg_ctl("stop", "-m", "immediate", "-w", "-t", "30")
        shutil.rmtree(folder, ignore_errors=True)
