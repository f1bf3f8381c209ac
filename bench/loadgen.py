"""A closed-loop HTTP/1.1 load generator for servers on 127.0.0.1: keep-alive connections,
warm-up, a fixed measured window, per-request latency, and its own CPU use.

Two engines drive the same loop:

``raw``
    asyncio streams (on uvloop when it is installed) writing requests rendered to bytes
    once, up front, and reading answers with a minimal HTTP/1.1 parser. It costs about a
    tenth of the CPU per request that httpx does, so it is the default: on a 2-core
    machine every cycle the load generator burns is a cycle the server under test loses.
``httpx``
    ``httpx.AsyncClient`` (HTTP/1.1, one pooled connection per worker). Kept to check
    the raw engine against a well-known client.

Each of ``connections`` workers sends a request, waits for the whole answer, and sends
the next one. Requests that *finish* inside the measured window (after ``warmup_s``,
for ``duration_s``) count for requests/s and the latency percentiles. When the window
closes no new request starts, but those in flight are waited for (up to ``drain_s``), so
every request the server answered is counted in ``status_counts``: a caller can compare
what the server says it stored with what it acknowledged. The run is bounded both in
time (``warmup_s + duration_s + drain_s``) and in count (``max_requests``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import percentile

if TYPE_CHECKING:
    import httpx

LOOPBACK = "127.0.0.1"
ENGINES = ("raw", "httpx")

# Called at the start and at the end of the measured window; returns cumulative CPU
# seconds per named consumer (server processes, database...). The load generator adds
# its own under "loadgen".
CpuProbe = Callable[[], Mapping[str, float]]


@dataclass(frozen=True)
class Request:
    """One request to send: method, path, extra headers and body."""

    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadResult:
    """What one run measured. Latencies in milliseconds; CPU in cores (CPU s / wall s)."""

    engine: str
    connections: int
    window_s: float
    completed: int  # answers finished inside the measured window
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # inside the window: unexpected status or a failed exchange
    status_counts: dict[int, int]  # every answer of the run, warm-up and drain included
    failed_exchanges: int  # whole run: connection errors, bad answers, unfinished at the end
    sent: int  # requests started over the whole run
    cpu_cores: dict[str, float]  # mean cores used during the window, "loadgen" included

    def count(self, status: int) -> int:
        return self.status_counts.get(status, 0)


class _BadResponse(Exception):
    pass


@dataclass
class _Run:
    """State shared by the workers of one run (one thread: no locks needed)."""

    requests: Sequence[object]
    ok_status: frozenset[int]
    warm_end: float
    deadline: float
    max_requests: int
    sent: int = 0
    last_finished: float = 0.0
    in_window: int = 0
    errors_in_window: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def next_request(self) -> object | None:
        if self.sent >= self.max_requests or time.perf_counter() >= self.deadline:
            return None
        request = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        return request

    def record(self, started: float, status: int | None) -> None:
        finished = time.perf_counter()
        self.last_finished = finished
        if status is None:
            self.failed += 1
        else:
            self.statuses[status] += 1
        if self.warm_end <= finished <= self.deadline:
            self.in_window += 1
            self.latencies.append(finished - started)
            if status is None or status not in self.ok_status:
                self.errors_in_window += 1


def render(request: Request, *, host: str, port: int) -> bytes:
    """The request as HTTP/1.1 bytes on a keep-alive connection."""
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    if request.body or request.method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(request.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one whole answer; returns (status, server wants to close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or len(head) < 12:
        raise _BadResponse(head[:40])
    status = int(head[9:12])
    lower = head.lower()
    close = b"\r\nconnection: close" in lower
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        length = int(lower[at + 17 : end])
        if length:
            await reader.readexactly(length)
    elif b"\r\ntransfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif status >= 200 and status not in (204, 304):
        # No length and not chunked: the body runs to the end of the connection.
        await reader.read()
        close = True
    return status, close


async def _raw_worker(run: _Run, host: str, port: int) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    try:
        while (payload := run.next_request()) is not None:
            started = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                writer.write(payload)  # type: ignore[arg-type]
                status, close = await _read_response(reader)
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,
                _BadResponse,
            ):
                run.record(started, None)
                if writer is not None:
                    writer.close()
                writer = reader = None
                # A refused or reset connection fails at once: do not spin on it.
                await asyncio.sleep(0.01)
                continue
            run.record(started, status)
            if close:
                writer.close()
                writer = reader = None
    finally:
        if writer is not None:
            writer.close()


async def _httpx_worker(run: _Run, client: httpx.AsyncClient) -> None:
    import httpx

    while (request := run.next_request()) is not None:
        assert isinstance(request, Request)
        started = time.perf_counter()
        try:
            response = await client.request(
                request.method, request.path, content=request.body, headers=dict(request.headers)
            )
        except httpx.HTTPError:
            run.record(started, None)
            await asyncio.sleep(0.01)
            continue
        run.record(started, response.status_code)


def _cpu(probe: CpuProbe | None) -> dict[str, float]:
    sample = dict(probe()) if probe is not None else {}
    sample["loadgen"] = time.process_time()
    sample["_at"] = time.perf_counter()
    return sample


async def _drive(
    *,
    engine: str,
    port: int,
    requests: Sequence[Request],
    connections: int,
    warmup_s: float,
    duration_s: float,
    drain_s: float,
    max_requests: int,
    ok_status: frozenset[int],
    cpu_probe: CpuProbe | None,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    prepared: Sequence[object] = (
        [render(r, host=LOOPBACK, port=port) for r in requests] if engine == "raw" else requests
    )
    start = time.perf_counter()
    run = _Run(
        requests=prepared,
        ok_status=ok_status,
        warm_end=start + warmup_s,
        deadline=start + warmup_s + duration_s,
        max_requests=max_requests,
    )
    samples: dict[str, dict[str, float]] = {}
    # Sample CPU (ours and the probe's) at the edges of the window, on the loop's own clock.
    loop.call_later(warmup_s, lambda: samples.setdefault("start", _cpu(cpu_probe)))
    loop.call_later(warmup_s + duration_s, lambda: samples.setdefault("end", _cpu(cpu_probe)))

    client: httpx.AsyncClient | None = None
    if engine == "httpx":
        import httpx

        client = httpx.AsyncClient(
            base_url=f"http://{LOOPBACK}:{port}",
            http1=True,
            http2=False,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            timeout=httpx.Timeout(warmup_s + duration_s + drain_s),
        )
        workers = [asyncio.ensure_future(_httpx_worker(run, client)) for _ in range(connections)]
    else:
        workers = [
            asyncio.ensure_future(_raw_worker(run, LOOPBACK, port)) for _ in range(connections)
        ]
    hard_stop = warmup_s + duration_s + drain_s
    try:
        done, pending = await asyncio.wait(workers, timeout=hard_stop)
        # Anything still running past the drain allowance is counted as failed, not waited for.
        for task in pending:
            task.cancel()
        run.failed += len(pending)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if (exc := task.exception()) is not None:
                raise exc
    finally:
        if client is not None:
            await client.aclose()

    # A run cut short by max_requests measures up to its last answer.
    window_s = max(min(run.deadline, run.last_finished) - run.warm_end, 1e-9)
    # Normally taken by the timers above; a run that ended early ends here.
    start_cpu = samples.get("start") or _cpu(cpu_probe)
    end_cpu = samples.get("end") or _cpu(cpu_probe)
    sampled_s = max(end_cpu["_at"] - start_cpu["_at"], 1e-9)
    cpu_cores = {
        name: (end_cpu[name] - start_cpu[name]) / sampled_s
        for name in end_cpu
        if name in start_cpu and name != "_at"
    }
    latencies = run.latencies
    return LoadResult(
        engine=engine,
        connections=connections,
        window_s=window_s,
        completed=run.in_window,
        requests_per_s=run.in_window / window_s,
        p50_ms=percentile(latencies, 50) * 1e3 if latencies else float("nan"),
        p99_ms=percentile(latencies, 99) * 1e3 if latencies else float("nan"),
        errors=run.errors_in_window,
        status_counts=dict(run.statuses),
        failed_exchanges=run.failed,
        sent=run.sent,
        cpu_cores=cpu_cores,
    )


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float, float] | None:
    """(comm, ppid, CPU seconds, CPU seconds of its reaped children) of a process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # Fields after the name: state ppid ... utime stime cutime cstime (12th to 15th).
    own = (int(fields[11]) + int(fields[12])) * _TICK_S
    children = (int(fields[13]) + int(fields[14])) * _TICK_S
    return comm, int(fields[1]), own, children


def process_cpu_probe(server_pid: int) -> CpuProbe:
    """CPU seconds so far of the server's process tree, of PostgreSQL (its backends that
    ended included: the postmaster reaps them), of the whole machine (busy) and idle."""

    def sample() -> dict[str, float]:
        stats = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                found = _stat(int(entry.name))
                if found is not None:
                    stats[int(entry.name)] = found
        tree = {server_pid}
        grew = True
        while grew:
            grew = False
            for pid, (_comm, ppid, _cpu, _reaped) in stats.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in fields[:8]]
        idle = (ticks[3] + ticks[4]) * _TICK_S
        return {
            "server": sum(stats[p][2] + stats[p][3] for p in tree if p in stats),
            "postgres": sum(
                cpu + reaped for comm, _pp, cpu, reaped in stats.values() if comm == "postgres"
            ),
            "machine_busy": sum(ticks) * _TICK_S - idle,
            "idle": idle,
        }

    return sample


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_load(
    *,
    port: int,
    requests: Sequence[Request],
    connections: int = 32,
    warmup_s: float = 2.0,
    duration_s: float = 10.0,
    drain_s: float = 5.0,
    max_requests: int = 200_000,
    ok_status: frozenset[int] = frozenset({200}),
    engine: str = "raw",
    cpu_probe: CpuProbe | None = None,
) -> LoadResult:
    """Drive ``requests`` (cycled in order) at ``127.0.0.1:port`` and measure.

    ``ok_status`` is what counts as success; any other status, or a failed exchange, is
    an error. ``cpu_probe`` is sampled at both edges of the measured window (see
    `CpuProbe`); the load generator's own CPU is always reported as ``"loadgen"``.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if not requests:
        raise ValueError("no requests to send")
    if connections < 1 or duration_s <= 0 or warmup_s < 0 or drain_s < 0:
        raise ValueError("need connections >= 1, duration_s > 0, warmup_s >= 0, drain_s >= 0")
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(
            _drive(
                engine=engine,
                port=port,
                requests=requests,
                connections=connections,
                warmup_s=warmup_s,
                duration_s=duration_s,
                drain_s=drain_s,
                max_requests=max_requests,
                ok_status=ok_status,
                cpu_probe=cpu_probe,
            )
        )
