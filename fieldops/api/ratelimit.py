"""Rate limits on public intake: token buckets per API key and per client address.

Every Open311 POST and every report created on the dispatcher API takes one token from the
bucket of its key and one from the bucket of its client address; when either is empty the
answer is 429 with ``Retry-After``, as an RFC 9457 problem on ``/api/v1`` and a GeoReport
v2 error list (XML or JSON, by the format suffix) on ``/open311/v2``. Dispatcher, manager and
admin keys are never limited: a radio room in a storm must not be told to wait.

The buckets live in the process: each worker keeps its own, so with N workers a client may
get up to N times the configured rates.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fieldops.api.deps import AppState
from fieldops.api.errors import problem
from fieldops.auth.models import Role
from fieldops.open311.api import error_response
from fieldops.open311.forms import form_fields
from fieldops.open311.wire import Format

# Keys of these roles skip the public-intake limits altogether.
UNLIMITED_ROLES: Final = frozenset({Role.DISPATCHER, Role.MANAGER, Role.ADMIN})
OPEN311_PREFIX: Final = "/open311/v2/"
# Report creation on the dispatcher API (staff only today; a public key is limited there
# before it is refused, so probing it costs the same as posting).
API_INTAKE_PATHS: Final = frozenset({"/api/v1/incidents"})
# Past this many buckets the least recently used go first. A bucket untouched for
# burst / rate seconds (2 minutes by default) is full again, the same as a new one, so
# forgetting the oldest almost never forgets a client that is still over its limit.
MAX_BUCKETS: Final = 100_000
_FORMAT_SUFFIX: Final = re.compile(r"\.([A-Za-z]+)$")


@dataclass(frozen=True)
class Limit:
    """``burst`` requests at once, then ``per_minute`` sustained."""

    burst: int
    per_minute: float

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0

    def describe(self) -> str:
        return f"{self.burst} at once, then {self.per_minute:g} a minute"


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


class TokenBuckets:
    """One token bucket per identity (a key id, an address), all with the same limit."""

    def __init__(self, limit: Limit, *, max_buckets: int = MAX_BUCKETS) -> None:
        self.limit = limit
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def level(self, identity: Hashable, now: float) -> float:
        """The tokens ``identity`` holds at ``now`` (seconds), refilled since last use."""
        bucket = self._buckets.get(identity)
        if bucket is None:
            return float(self.limit.burst)
        # A clock stepped backwards refills nothing rather than draining the bucket.
        elapsed = max(0.0, now - bucket.at)
        return min(float(self.limit.burst), bucket.tokens + elapsed * self.limit.per_second)

    def wait_s(self, level: float) -> float:
        """Seconds until a bucket at ``level`` holds a whole token (0 when it does)."""
        return 0.0 if level >= 1.0 else (1.0 - level) / self.limit.per_second

    def store(self, identity: Hashable, tokens: float, now: float) -> None:
        bucket = self._buckets.get(identity)
        if bucket is None:
            self._buckets[identity] = _Bucket(tokens, now)
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens, bucket.at = tokens, now
            self._buckets.move_to_end(identity)

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True)
class Refusal:
    """Why a request must wait: which bucket is empty and for how long."""

    scope: str  # "key" or "address"
    limit: Limit
    retry_after_s: int


class IntakeLimiter:
    """The key buckets and the address buckets of one process."""

    def __init__(self, *, key: Limit, address: Limit) -> None:
        self.keys = TokenBuckets(key)
        self.addresses = TokenBuckets(address)
        self._lock = threading.Lock()

    def take(self, *, key_id: int | None, address: str, now: float) -> Refusal | None:
        """Take a token from the key's bucket (if any) and the address's, or none at all.

        Both or neither: a request refused for its address does not also spend its key's
        token, so one noisy address cannot drain a citizen app's key for everyone else.
        """
        wanted: list[tuple[str, TokenBuckets, Hashable]] = [("address", self.addresses, address)]
        if key_id is not None:
            wanted.insert(0, ("key", self.keys, key_id))
        with self._lock:
            levels = [(name, b, ident, b.level(ident, now)) for name, b, ident in wanted]
            waits = [(b.wait_s(level), name, b) for name, b, _ident, level in levels]
            wait, name, buckets = max(waits, key=lambda w: w[0])
            if wait > 0:
                return Refusal(name, buckets.limit, max(1, math.ceil(wait)))
            for _name, b, ident, level in levels:
                b.store(ident, level - 1.0, now)
        return None


def is_public_intake(method: str, path: str) -> bool:
    """Whether a request is public intake, and so rate limited."""
    return method == "POST" and (path.startswith(OPEN311_PREFIX) or path in API_INTAKE_PATHS)


class IntakeRateLimitMiddleware:
    """Pure ASGI middleware applying :class:`IntakeLimiter` before any route runs.

    Sits inside the body-size limit: an Open311 POST carries its key in the form, so the
    body is read here (at most ``max_body_bytes``) and handed on to the route unchanged,
    with its parsed fields in the scope so that the route does not parse it again.
    """

    def __init__(self, app: ASGIApp, *, state: AppState) -> None:
        self.app = app
        self.state = state
        settings = state.settings
        self.enabled = settings.intake_rate_limit
        self.limiter = IntakeLimiter(
            key=Limit(settings.intake_key_burst, settings.intake_key_per_minute),
            address=Limit(settings.intake_address_burst, settings.intake_address_per_minute),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.enabled
            or scope["type"] != "http"
            or not is_public_intake(scope["method"], scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        open311 = scope["path"].startswith(OPEN311_PREFIX)
        replay = receive
        # The key where the route reads it: the api_key form field on Open311, else bearer.
        secret = None if open311 else _bearer(scope)
        if open311:
            messages, complete = await _read_body(receive)
            replay = _replaying(messages, receive)
            if not complete:
                # The client went away (or the body was over the size limit): the layers
                # around the route answer that, not us.
                await self.app(scope, replay, send)
                return
            secret = await _form_key(scope, messages)
        # A cache hit costs nothing; a miss reads the key in the thread pool, as the API's
        # own key check does (on the event loop it could wait for a pooled connection that
        # only the loop can hand back).
        principal = (
            self.state.cached_principal(secret)
            or await run_in_threadpool(self.state.principal, secret)
            if secret
            else None
        )
        if principal is not None and principal.role in UNLIMITED_ROLES:
            await self.app(scope, replay, send)
            return
        client = scope.get("client")
        refusal = self.limiter.take(
            key_id=principal.key_id if principal else None,
            address=client[0] if client else "-",
            now=self.state.clock.now().timestamp(),
        )
        if refusal is None:
            await self.app(scope, replay, send)
            return
        response = _too_many(scope["path"], refusal, open311=open311)
        await response(scope, replay, send)


def _too_many(path: str, refusal: Refusal, *, open311: bool) -> Response:
    who = "this API key" if refusal.scope == "key" else "this address"
    detail = (
        f"too many reports from {who} (at most {refusal.limit.describe()}); "
        f"retry in {refusal.retry_after_s} s"
    )
    headers = {"Retry-After": str(refusal.retry_after_s)}
    if not open311:
        return problem(429, "Too many requests", detail, headers=headers)
    suffix = _FORMAT_SUFFIX.search(path)
    fmt = Format.JSON if suffix and suffix.group(1).lower() == "json" else Format.XML
    response = error_response(fmt, 429, [("", detail)])
    response.headers.update(headers)
    return response


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
    return None


async def _read_body(receive: Receive) -> tuple[list[Message], bool]:
    """Every message of the request body; False when the client left before its end."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, False
        if not message.get("more_body", False):
            return messages, True


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives the buffered messages again, then listens to the client."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _form_key(scope: Scope, messages: list[Message]) -> str | None:
    """The ``api_key`` of a form body (the last one, as the Open311 route reads it).

    The form is parsed as the route parses it and its fields are left in the scope
    (:data:`fieldops.open311.forms.FORM_FIELDS`): the route does not parse the body again.
    """
    try:
        fields = await form_fields(Request(scope, _replaying(messages, _no_more)))
    except (HTTPException, MultiPartException):
        return None  # unreadable: the route answers that in its own words
    values = [v for k, v in fields if k == "api_key"]
    key = values[-1].strip() if values else ""
    return key or None


async def _no_more() -> Message:
    return {"type": "http.disconnect"}
