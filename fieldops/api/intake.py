"""How a request handler hands a report to intake: group-committed through the process's
queue, or, with an Idempotency-Key, alone with the key's stored answer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from fieldops.api.deps import AppState
from fieldops.api.idempotent import WriteResult, write_once
from fieldops.auth.service import Principal
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import IntakeOutcome, Submission, submit_report

# What the route answers for an accepted report: its status code and body.
Answer = Callable[[IntakeOutcome], tuple[int, Any]]


async def take_in(
    state: AppState,
    new: NewReport,
    *,
    principal: Principal,
    now: datetime,
    idempotency_key: str | None,
    fingerprint: Callable[[], str],
    answer_of: Answer,
) -> WriteResult:
    """Take one report in; committed before this returns. Without a key (the common case)
    it shares a transaction with the other reports arriving now; with one, it runs alone
    in the thread pool so the key, the report and the answer commit together."""
    if idempotency_key is None:
        submission = Submission(new, principal.actor, now, principal.key_id)
        return WriteResult(*answer_of(await state.intake_queue.submit_async(submission)))
    context = await state.intake_context_async()
    key = idempotency_key

    def once() -> WriteResult:
        with state.sessions() as session:
            return write_once(
                session,
                principal=principal,
                key=key,
                fingerprint=fingerprint(),
                now=now,
                work=lambda: answer_of(
                    submit_report(
                        session,
                        new,
                        context=context,
                        actor=principal.actor,
                        now=now,
                        key_id=principal.key_id,
                    )
                ),
            )

    return await run_in_threadpool(once)
