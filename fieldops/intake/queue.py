"""Group commit for intake: the reports a process receives while a transaction is being
written wait, then go together in the next one.

One writer thread per process takes every report waiting (up to ``max_batch``), takes
them in through ``submit_many`` in one transaction, commits, and only then answers each
sender. Under light load a batch holds one report and nothing waits longer than it
would have alone; under heavy load one commit (one fsync, a handful of statements)
serves tens of reports, and the database sees one writer per process instead of one
per request.

Senders are request handlers on the event loop (``submit_async``: no thread of the
pool is held while the report waits) or plain threads (``submit``). If a batch fails as
a whole (a lost connection, a constraint), its reports are tried again one per
transaction, so one bad report never costs the others theirs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from fieldops.db.engine import unit_of_work
from fieldops.errors import FieldOpsError
from fieldops.intake.context import IntakeContext
from fieldops.intake.service import IntakeOutcome, Submission, submit_many

DEFAULT_MAX_BATCH = 64

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    submission: Submission
    answered: Callable[[], None]  # called from the writer thread once the slot is settled
    outcome: IntakeOutcome | None = None
    error: BaseException | None = None

    def result(self) -> IntakeOutcome:
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


@dataclass
class IntakeQueue:
    """One per process. The writer thread starts with the first report."""

    sessions: sessionmaker[Session]
    context: Callable[[], IntakeContext]
    max_batch: int = DEFAULT_MAX_BATCH
    batches: int = 0  # transactions written (benchmarks and tests look)
    _waiting: deque[_Slot] = field(default_factory=deque)
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _writer: threading.Thread | None = None

    def submit(self, submission: Submission) -> IntakeOutcome:
        """Take in one report, committed before this returns; raises its error."""
        done = threading.Event()
        slot = _Slot(submission, done.set)
        self._put(slot)
        done.wait()
        return slot.result()

    async def submit_async(self, submission: Submission) -> IntakeOutcome:
        """``submit`` for the event loop: awaits the commit without holding a thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def answered() -> None:
            loop.call_soon_threadsafe(_settle, future)

        slot = _Slot(submission, answered)
        self._put(slot)
        await future
        return slot.result()

    def _put(self, slot: _Slot) -> None:
        with self._wake:
            if self._writer is None:
                self._writer = threading.Thread(target=self._run, name="intake-writer", daemon=True)
                self._writer.start()
            self._waiting.append(slot)
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._waiting:
                    self._wake.wait()
                count = min(len(self._waiting), self.max_batch)
                batch = [self._waiting.popleft() for _ in range(count)]
            try:
                self._write(batch)
            except BaseException as error:  # never leave a sender waiting
                log.exception("intake writer failed on a batch of %d", len(batch))
                for slot in batch:
                    if slot.outcome is None and slot.error is None:
                        slot.error = error
            for slot in batch:
                slot.answered()

    def _write(self, batch: list[_Slot]) -> None:
        try:
            with unit_of_work(self.sessions) as session:
                results = submit_many(
                    session, [slot.submission for slot in batch], context=self.context()
                )
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
            else:
                for slot in batch:
                    self._write([slot])
            return
        self.batches += 1
        for slot, result in zip(batch, results, strict=True):
            if isinstance(result, FieldOpsError):
                slot.error = result
            else:
                slot.outcome = result


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():  # the sender may have gone (a closed connection)
        future.set_result(None)
