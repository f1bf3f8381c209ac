"""Serving an app on worker processes that share the connections evenly.

uvicorn's own ``--workers`` binds one listening socket and hands it to every worker: the
kernel gives each new connection to whichever worker is waiting in ``accept``, and a burst
of connections (a proxy's pool opening, a load test) can land mostly on one worker. For
FieldOps that costs twice: intake commits the reports a process receives together
(``fieldops.intake.queue``), so under the intake benchmark one worker wrote batches of ten
while the other, with a handful of connections, wrote batches of two at three times the
CPU per report. Here every worker listens on a socket of its own, bound with
``SO_REUSEPORT`` to the same address, and the kernel spreads new connections across them
by a hash of each connection's addresses.

Only the first worker runs the scheduled jobs (escalation, staleness, notifications): one
scheduler per server, however many processes answer requests.

A worker that exits while the server runs is started again (at most once a second),
unless its first start failed (an app that cannot load, an address it cannot take): then
the server stops, with the worker's exit status. Every worker gets SIGTERM when the
supervisor dies, however it dies (Linux's parent-death signal). SIGINT or SIGTERM stops
every worker with uvicorn's graceful shutdown (requests in flight are answered), then the
server.

``python -m fieldops.serving APP`` serves any ASGI app factory this way (the benchmarks
serve their peer app with it, so that both are served alike); ``fieldops serve`` serves
FieldOps.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from types import FrameType

import uvicorn

log = logging.getLogger("fieldops.serving")

# How long a stopping worker gets to answer what it has in flight before it is killed.
GRACE_S = 30.0
# A worker that exits is started again at most this often.
RESTART_S = 1.0


@dataclass(frozen=True)
class Spec:
    app: str  # "module:factory", called once in every worker
    host: str
    port: int
    workers: int
    scheduler: bool  # the first worker runs the scheduled jobs (FIELDOPS_RUN_SCHEDULER)
    log_level: str = "info"


def serve(spec: Spec) -> None:
    """Serve until SIGINT or SIGTERM; one process for one worker, else a supervisor."""
    if spec.workers < 1:
        raise ValueError("workers must be at least 1")
    if spec.workers == 1:
        _scheduler_environment(spec, 0)
        _server(spec).run()
        return
    if spec.port == 0:
        raise ValueError("several workers need a port given (0 would give each its own)")
    sys.exit(_supervise(spec))


def _supervise(spec: Spec) -> int:
    """Run the workers, start again one that exits; returns the server's exit code."""
    spawn = multiprocessing.get_context("spawn")
    stop_signal: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stop_signal.append(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    workers: dict[int, _Worker] = {}

    def start(index: int, *, served: bool) -> None:
        serving = spawn.Event()  # set by the worker once it takes connections
        process = spawn.Process(
            target=_worker,
            args=(spec, index, serving, os.getpid()),
            name=f"fieldops-worker-{index + 1}",
        )
        process.start()
        workers[index] = _Worker(process, serving, time.monotonic(), served)

    exit_code = 0
    try:
        for index in range(spec.workers):
            start(index, served=False)
        while not stop_signal:
            time.sleep(0.2)
            for index, worker in list(workers.items()):
                process = worker.process
                if process.is_alive() or stop_signal:
                    continue
                served = worker.served or worker.serving.is_set()
                if not served:  # the server's own start failed: no use trying again
                    said = "worker %d exited during start-up (code %s): stopping"
                    log.error(said, index + 1, process.exitcode)
                    exit_code = _exit_status(process.exitcode)
                    stop_signal.append(signal.SIGTERM)
                    break
                # Not more than one start a second per worker (a worker that dies at once,
                # say while its database is away, is not started again and again).
                if time.monotonic() - worker.started < RESTART_S:
                    continue
                said = "worker %d (pid %s) exited with code %s: starting another"
                log.warning(said, index + 1, process.pid, process.exitcode)
                start(index, served=True)
    finally:
        _stop([worker.process for worker in workers.values()])
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return exit_code


@dataclass
class _Worker:
    process: BaseProcess
    serving: EventType  # set once it serves
    started: float  # monotonic
    served: bool  # a worker in its place served before: it is started again on exit


def _exit_status(code: int | None) -> int:
    """A shell's status for a child's exit code (killed by signal N: 128 + N)."""
    if code is None or code == 0:
        return 1
    return 128 - code if code < 0 else code


def _stop(processes: list[BaseProcess]) -> None:
    """SIGTERM to every worker (uvicorn shuts down gracefully), then wait; kill stragglers."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _worker(spec: Spec, index: int, serving: EventType, supervisor: int) -> None:
    """One worker process: its own socket on the shared address, then uvicorn."""
    _scheduler_environment(spec, index)
    _stop_with(supervisor)
    # The address family as uvicorn picks it: IPv6 for an address with a colon.
    family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((spec.host, spec.port))
    server = _server(spec, serving)  # uvicorn sets up its logging here
    logging.getLogger("uvicorn.error").info(
        "Worker %d of %d (pid %d) on %s:%d, scheduled jobs %s",
        index + 1, spec.workers, os.getpid(), spec.host, spec.port,
        "on" if os.environ["FIELDOPS_RUN_SCHEDULER"] == "true" else "off",
    )  # fmt: skip
    server.run(sockets=[sock])


def _stop_with(supervisor: int) -> None:
    """Ask Linux for a SIGTERM when the supervisor dies (even by kill -9), so that no
    worker goes on serving, or running the jobs, without it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's stop is all there is
        return
    if os.getppid() != supervisor:  # it died before the request was in
        os.kill(os.getpid(), signal.SIGTERM)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _scheduler_environment(spec: Spec, index: int) -> None:
    on = spec.scheduler and index == 0
    os.environ["FIELDOPS_RUN_SCHEDULER"] = "true" if on else "false"


def _server(spec: Spec, serving: EventType | None = None) -> uvicorn.Server:
    config = uvicorn.Config(
        spec.app,
        factory=True,
        host=spec.host,
        port=spec.port,
        log_level=spec.log_level,
        access_log=False,
    )
    return _Server(config, serving)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the supervisor once it has started (app loaded, lifespan
    started, socket listening)."""

    def __init__(self, config: uvicorn.Config, serving: EventType | None) -> None:
        super().__init__(config)
        self._serving = serving

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._serving is not None:
            self._serving.set()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fieldops.serving", description="Serve an ASGI app factory."
    )
    parser.add_argument("app", help="module:factory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-scheduler", action="store_true", help="no worker runs the jobs")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    serve(
        Spec(
            app=args.app,
            host=args.host,
            port=args.port,
            workers=args.workers,
            scheduler=not args.no_scheduler,
            log_level=args.log_level,
        )
    )


if __name__ == "__main__":
    main()
