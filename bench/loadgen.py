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

Mixed loads: give each `Request` a ``kind`` (``weighted_mix`` interleaves several streams
by weight) and the result carries the same figures per kind in ``LoadResult.kinds``. An
``on_answer`` hook sees every exchange (which request, its status, the answer's body), so
a caller can check afterwards that each write the server acknowledged was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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

# Called once per exchange, on the load generator's loop (keep it cheap): the request's
# index in ``requests``, its status (None when the exchange failed) and the answer's body.
AnswerHook = Callable[[int, int | None, bytes], None]


@dataclass(frozen=True)
class Request:
    """One request to send: method, path, extra headers and body; ``kind`` groups it with
    others for per-kind figures (`LoadResult.kinds`). ``path_at_send``, when given, gives
    the path at the moment the request goes out, for a request that follows earlier
    answers (a map polling a change feed from the cursor of its last answer)."""

    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    kind: str = ""
    path_at_send: Callable[[], str] | None = None

    def now(self) -> Request:
        """This request as it goes out now."""
        if self.path_at_send is None:
            return self
        return replace(self, path=self.path_at_send(), path_at_send=None)


@dataclass(frozen=True)
class KindResult:
    """The figures of one kind of request inside a mixed run (same meaning as LoadResult's)."""

    kind: str
    completed: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    status_counts: dict[int, int]
    failed_exchanges: int

    def count(self, status: int) -> int:
        return self.status_counts.get(status, 0)


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
    kinds: dict[str, KindResult] = field(default_factory=dict)  # requests that name a kind

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
    on_answer: AnswerHook | None = None
    # Paced runs send request n at begun + n * interval_s (0: as fast as answers come).
    interval_s: float = 0.0
    begun: float = 0.0
    # Per kind (only when requests name kinds): the kind of each request, by index.
    kind_of: Sequence[str] | None = None
    kind_latencies: dict[str, list[float]] = field(default_factory=dict)
    kind_statuses: dict[str, Counter[int]] = field(default_factory=dict)
    kind_failed: Counter[str] = field(default_factory=Counter)
    kind_errors: Counter[str] = field(default_factory=Counter)

    def next_request(self) -> tuple[int, object] | None:
        if self.sent >= self.max_requests or time.perf_counter() >= self.deadline:
            return None
        index = self.sent % len(self.requests)
        self.sent += 1
        return index, self.requests[index]

    async def paced(self) -> tuple[int, object] | None:
        """The next request, at its turn when the run is paced (``interval_s``)."""
        picked = self.next_request()
        if picked is not None and self.interval_s:
            delay = self.begun + (self.sent - 1) * self.interval_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        return picked

    def record(self, started: float, status: int | None, index: int = 0, body: bytes = b"") -> None:
        finished = time.perf_counter()
        self.last_finished = finished
        if self.on_answer is not None:
            self.on_answer(index, status, body)
        kind = self.kind_of[index] if self.kind_of is not None else None
        if status is None:
            self.failed += 1
            if kind is not None:
                self.kind_failed[kind] += 1
        else:
            self.statuses[status] += 1
            if kind is not None:
                self.kind_statuses.setdefault(kind, Counter())[status] += 1
        if self.warm_end <= finished <= self.deadline:
            self.in_window += 1
            self.latencies.append(finished - started)
            bad = status is None or status not in self.ok_status
            if bad:
                self.errors_in_window += 1
            if kind is not None:
                self.kind_latencies.setdefault(kind, []).append(finished - started)
                if bad:
                    self.kind_errors[kind] += 1


def render(request: Request, *, host: str, port: int) -> bytes:
    """The request as HTTP/1.1 bytes on a keep-alive connection."""
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    if request.body or request.method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(request.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Read one whole answer; returns (status, server wants to close, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or len(head) < 12:
        raise _BadResponse(head[:40])
    status = int(head[9:12])
    lower = head.lower()
    close = b"\r\nconnection: close" in lower
    body = b""
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        length = int(lower[at + 17 : end])
        if length:
            body = await reader.readexactly(length)
    elif b"\r\ntransfer-encoding: chunked" in lower:
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunks.append((await reader.readexactly(size + 2))[:size])
            if size == 0:
                break
        body = b"".join(chunks)
    elif status >= 200 and status not in (204, 304):
        # No length and not chunked: the body runs to the end of the connection.
        body = await reader.read()
        close = True
    return status, close, body


async def _raw_worker(run: _Run, host: str, port: int) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    try:
        while (picked := await run.paced()) is not None:
            index, payload = picked
            started = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                if isinstance(payload, Request):  # rendered when sent (path_at_send)
                    payload = render(payload.now(), host=host, port=port)
                writer.write(payload)  # type: ignore[arg-type]
                status, close, body = await _read_response(reader)
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,
                _BadResponse,
            ):
                run.record(started, None, index)
                if writer is not None:
                    writer.close()
                writer = reader = None
                # A refused or reset connection fails at once: do not spin on it.
                await asyncio.sleep(0.01)
                continue
            run.record(started, status, index, body)
            if close:
                writer.close()
                writer = reader = None
    finally:
        if writer is not None:
            writer.close()


async def _httpx_worker(run: _Run, client: httpx.AsyncClient) -> None:
    import httpx

    while (picked := await run.paced()) is not None:
        index, request = picked
        assert isinstance(request, Request)
        request = request.now()
        started = time.perf_counter()
        try:
            response = await client.request(
                request.method, request.path, content=request.body, headers=dict(request.headers)
            )
        except httpx.HTTPError:
            run.record(started, None, index)
            await asyncio.sleep(0.01)
            continue
        run.record(started, response.status_code, index, response.content)


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
    on_answer: AnswerHook | None,
    rate_per_s: float | None,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    prepared: Sequence[object] = (
        [r if r.path_at_send else render(r, host=LOOPBACK, port=port) for r in requests]
        if engine == "raw"
        else requests
    )
    start = time.perf_counter()
    run = _Run(
        requests=prepared,
        ok_status=ok_status,
        warm_end=start + warmup_s,
        deadline=start + warmup_s + duration_s,
        max_requests=max_requests,
        on_answer=on_answer,
        kind_of=[r.kind for r in requests] if any(r.kind for r in requests) else None,
        interval_s=1.0 / rate_per_s if rate_per_s else 0.0,
        begun=start,
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
        kinds=_per_kind(run, window_s),
    )


def _per_kind(run: _Run, window_s: float) -> dict[str, KindResult]:
    if run.kind_of is None:
        return {}
    kinds = dict.fromkeys(run.kind_of)  # in order of first appearance
    found = {}
    for kind in kinds:
        latencies = run.kind_latencies.get(kind, [])
        found[kind] = KindResult(
            kind=kind,
            completed=len(latencies),
            requests_per_s=len(latencies) / window_s,
            p50_ms=percentile(latencies, 50) * 1e3 if latencies else float("nan"),
            p99_ms=percentile(latencies, 99) * 1e3 if latencies else float("nan"),
            errors=run.kind_errors[kind],
            status_counts=dict(run.kind_statuses.get(kind, {})),
            failed_exchanges=run.kind_failed[kind],
        )
    return found


def weighted_mix(
    streams: Mapping[str, Sequence[Request]],
    weights: Mapping[str, float],
    n: int,
    *,
    seed: int = 0,
) -> list[Request]:
    """``n`` requests interleaving the ``streams`` by ``weights`` (exact shares, in a seeded
    random order), each marked with its kind. Every stream is taken in its own order, so
    unique writes stay unique as long as a stream holds enough of them (it is cycled when
    short)."""
    if set(weights) - set(streams) or any(w < 0 for w in weights.values()):
        raise ValueError("every weight needs a stream, and weights must not be negative")
    total = sum(weights.values())
    if total <= 0 or n < 1:
        raise ValueError("need a positive weight and n >= 1")
    names = [k for k, w in weights.items() if w > 0]
    if any(not streams[k] for k in names):
        raise ValueError("every weighted stream needs at least one request")
    shares = {k: int(n * weights[k] / total) for k in names}
    # Hand the rounding remainder to the heaviest kinds.
    for k in sorted(names, key=lambda k: -weights[k])[: n - sum(shares.values())]:
        shares[k] += 1
    order = [k for k in names for _ in range(shares[k])]
    random.Random(seed).shuffle(order)
    taken = dict.fromkeys(names, 0)
    mixed = []
    for k in order:
        stream = streams[k]
        request = stream[taken[k] % len(stream)]
        taken[k] += 1
        mixed.append(request if request.kind == k else replace(request, kind=k))
    return mixed


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


def _tree_cpu(stats: Mapping[int, tuple[str, int, float, float]], root: int) -> float:
    """CPU seconds of ``root`` and every process below it (their reaped children too)."""
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, (_comm, ppid, _cpu, _reaped) in stats.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(stats[p][2] + stats[p][3] for p in tree if p in stats)


def process_cpu_probe(server_pid: int, *, others: Mapping[str, int] | None = None) -> CpuProbe:
    """CPU seconds so far of the server's process tree, of PostgreSQL (its backends that
    ended included: the postmaster reaps them), of the whole machine (busy) and idle;
    ``others`` names more process trees to report (``{"scheduler": pid}``)."""

    def sample() -> dict[str, float]:
        stats = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                found = _stat(int(entry.name))
                if found is not None:
                    stats[int(entry.name)] = found
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in fields[:8]]
        idle = (ticks[3] + ticks[4]) * _TICK_S
        return {
            "server": _tree_cpu(stats, server_pid),
            **{name: _tree_cpu(stats, pid) for name, pid in (others or {}).items()},
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
    on_answer: AnswerHook | None = None,
    rate_per_s: float | None = None,
) -> LoadResult:
    """Drive ``requests`` (cycled in order) at ``127.0.0.1:port`` and measure.

    ``ok_status`` is what counts as success; any other status, or a failed exchange, is
    an error. ``cpu_probe`` is sampled at both edges of the measured window (see
    `CpuProbe`); the load generator's own CPU is always reported as ``"loadgen"``.
    ``on_answer`` sees every exchange of the run (see `AnswerHook`); requests that name
    a ``kind`` get per-kind figures in ``LoadResult.kinds``. ``rate_per_s`` paces the run
    (an open loop: requests go out at that rate, at most ``connections`` in flight), so
    two runs can compare latency at the same offered load.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if not requests:
        raise ValueError("no requests to send")
    if connections < 1 or duration_s <= 0 or warmup_s < 0 or drain_s < 0:
        raise ValueError("need connections >= 1, duration_s > 0, warmup_s >= 0, drain_s >= 0")
    if rate_per_s is not None and rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
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
                on_answer=on_answer,
                rate_per_s=rate_per_s,
            )
        )
