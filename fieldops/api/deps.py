"""FastAPI dependencies: settings, clock, sessions, the caller, and role checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from fieldops.auth.models import Role
from fieldops.auth.service import Principal, authenticate, digest_secret
from fieldops.clock import Clock
from fieldops.config import Settings
from fieldops.db.engine import READ_ONLY
from fieldops.dispatch.service import TravelModel
from fieldops.dispatch.travel import load_travel_model
from fieldops.errors import Forbidden, Unauthenticated
from fieldops.intake.context import IntakeContext
from fieldops.intake.queue import IntakeQueue

# How long a process trusts a key it has looked up. A key revoked through another process
# (the CLI, another worker) stops working within this many seconds.
PRINCIPAL_TTL_S = 5.0


@dataclass
class AppState:
    """What one running app holds: built by ``create_app``, shared by every request."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    _intake: IntakeContext | None = None
    # Secret digest -> (principal, monotonic expiry): a key is looked up at most once per
    # PRINCIPAL_TTL_S per process; revoking through this process's API drops it at once.
    _principals: dict[str, tuple[Principal, float]] = field(default_factory=dict)
    _travel: TravelModel | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _intake_queue: IntakeQueue | None = None

    @cached_property
    def read_engine(self) -> Engine:
        """The engine for sessions that only read: SpatiaLite begins them DEFERRED."""
        return self.engine.execution_options(**READ_ONLY)

    @property
    def intake_queue(self) -> IntakeQueue:
        """The process's group-commit queue for intake (see fieldops.intake.queue)."""
        if self._intake_queue is None:
            with self._lock:
                if self._intake_queue is None:
                    self._intake_queue = IntakeQueue(self.sessions, self.intake_context)
        return self._intake_queue

    def intake_context(self) -> IntakeContext:
        """The cached intake context, loaded on first use in a read-only session of its
        own (a request's write session would hold SpatiaLite's lock until it answers)."""
        if self._intake is None:
            with self._lock:
                if self._intake is None:
                    with self.sessions() as session:
                        session.connection(execution_options=READ_ONLY)
                        self._intake = IntakeContext.load(session)
        return self._intake

    async def intake_context_async(self) -> IntakeContext:
        """``intake_context`` for handlers on the event loop: the first load runs in the
        thread pool (on the loop it could wait for a connection only the loop hands back)."""
        if self._intake is not None:
            return self._intake
        return await run_in_threadpool(self.intake_context)

    def cached_principal(self, secret: str) -> Principal | None:
        """The key's principal if this process looked it up lately; never the database."""
        cached = self._principals.get(digest_secret(secret))
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    def principal(self, secret: str) -> Principal | None:
        """The key's principal, from the cache or the database."""
        digest = digest_secret(secret)
        cached = self._principals.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        with self.sessions() as session:
            session.connection(execution_options=READ_ONLY)
            found = authenticate(session, secret)
        if found is None:
            self._principals.pop(digest, None)
            return None
        if len(self._principals) > 10_000:
            self._principals.clear()
        self._principals[digest] = (found, time.monotonic() + PRINCIPAL_TTL_S)
        return found

    def forget_principals(self) -> None:
        """Drop every cached key (after a key was revoked)."""
        self._principals.clear()

    def travel(self) -> TravelModel:
        """The city's travel model (its street graphs), built on first use."""
        if self._travel is None:
            with self._lock:
                if self._travel is None:
                    self._travel = load_travel_model(
                        self.settings.layers_dir, metric_crs=self.settings.metric_crs
                    )
        return self._travel

    def forget_intake_context(self) -> None:
        """Drop the cache after districts or services changed."""
        with self._lock:
            self._intake = None


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.fieldops
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_now(state: State) -> datetime:
    return state.clock.now()


Now = Annotated[datetime, Depends(get_now)]


def get_session(state: State) -> Iterator[Session]:
    """A session for a request that writes: the route commits before it answers."""
    with state.sessions() as session:
        try:
            yield session
        finally:
            session.rollback()


def get_read_session(state: State) -> Iterator[Session]:
    """A session for a request that only reads (never queues behind writers on SpatiaLite).
    It takes its connection at its first query, not here: one held while the request's key
    is looked up (with another) lets busy requests empty the pool, each waiting for a second."""
    with state.sessions(bind=state.read_engine) as session:
        try:
            yield session
        finally:
            session.rollback()


DbSession = Annotated[Session, Depends(get_session)]
ReadSession = Annotated[Session, Depends(get_read_session)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


async def get_principal(request: Request, state: State) -> Principal:
    secret = _bearer(request)
    if secret is None:
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    # Async on purpose, like the other cheap dependencies here: a sync one costs a hop to
    # the thread pool on every request. A cache miss reads the database in the thread pool:
    # on the event loop it would wait for a pooled connection that only the loop can hand
    # back (finished requests release theirs through it), and the whole process would stall.
    principal = state.cached_principal(secret) or await run_in_threadpool(state.principal, secret)
    if principal is None:
        raise Unauthenticated("the API key is unknown or revoked")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets only ``roles`` through (admin always passes)."""
    allowed = frozenset(roles) | {Role.ADMIN}

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(
                f"role {principal.role} may not do this; needs one of {', '.join(sorted(allowed))}"
            )
        return principal

    return check


Staff = Annotated[Principal, Depends(require_roles(Role.DISPATCHER, Role.MANAGER))]
CrewMember = Annotated[Principal, Depends(require_roles(Role.CREW))]
Admin = Annotated[Principal, Depends(require_roles())]
