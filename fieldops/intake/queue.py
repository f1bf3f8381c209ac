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

While reports keep coming the writer keeps its database connection from one batch to the
next: the pool's check-out (and its ping, one round trip to the database) is paid once per
busy spell, not once per batch. The connection goes back to the pool as soon as nothing is
waiting (before the batch's senders are answered), and after any failure, so an idle
writer holds none and every spell starts from a connection the pool has just checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from fieldops.db.engine import unit_of_work
from fieldops.errors import FieldOpsError
from fieldops.intake.context import IntakeContext
from fieldops.intake.service import IntakeOutcome, Submission, submit_many

DEFAULT_MAX_BATCH = 64

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    """One report on its way through the queue, and where its sender waits: a future on
    an event loop (``submit_async``) or an event (``submit``)."""

    submission: Submission
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None
    done: threading.Event | None = None
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
        slot = _Slot(submission, done=threading.Event())
        self._put(slot)
        assert slot.done is not None
        slot.done.wait()
        return slot.result()

    async def submit_async(self, submission: Submission) -> IntakeOutcome:
        """``submit`` for the event loop: awaits the commit without holding a thread."""
        loop = asyncio.get_running_loop()
        slot = _Slot(submission, loop=loop, future=loop.create_future())
        self._put(slot)
        assert slot.future is not None
        await slot.future
        return slot.result()

    def _put(self, slot: _Slot) -> None:
        with self._wake:
            if self._writer is None:
                self._writer = threading.Thread(target=self._run, name="intake-writer", daemon=True)
                self._writer.start()
            self._waiting.append(slot)
            self._wake.notify()

    def _take(self) -> list[_Slot]:
        """Every report waiting, up to ``max_batch``; at least one (waits for it)."""
        with self._wake:
            while not self._waiting:
                self._wake.wait()
            count = min(len(self._waiting), self.max_batch)
            return [self._waiting.popleft() for _ in range(count)]

    def _run(self) -> None:
        connection: Connection | None = None
        while True:
            # A connection is kept only while reports are waiting (see below).
            batch = self._take()
            try:
                try:
                    if connection is None:
                        connection = self._connect()
                    self._write(batch, connection)
                except Exception as error:
                    # Whatever failed, the next batch starts from a checked connection.
                    _release(connection)
                    connection = None
                    if len(batch) == 1:
                        batch[0].error = error
                    else:
                        for slot in batch:
                            self._write_alone(slot)
            except BaseException as error:  # never leave a sender waiting
                log.exception("intake writer failed on a batch of %d", len(batch))
                for slot in batch:
                    if slot.outcome is None and slot.error is None:
                        slot.error = error
            if connection is not None and self._idle():
                # Back in the pool before anyone is answered: a sender that then shuts the
                # app down (and disposes of the pool) finds no connection still out.
                _release(connection)
                connection = None
            _answer(batch)

    def _idle(self) -> bool:
        with self._wake:
            return not self._waiting

    def _connect(self) -> Connection:
        with self.sessions() as session:
            engine = session.get_bind()
        assert isinstance(engine, Engine)
        return engine.connect()

    def _write(self, batch: list[_Slot], connection: Connection) -> None:
        """Take the batch in on ``connection``, in one transaction; raises (and keeps
        nothing) when the database refuses it."""
        with self.sessions(bind=connection) as session:
            try:
                results = submit_many(
                    session, [slot.submission for slot in batch], context=self.context()
                )
                session.commit()
            except BaseException:
                session.rollback()
                raise
        self._settle(batch, results)

    def _write_alone(self, slot: _Slot) -> None:
        """One report of a refused batch, in a transaction of its own on a pooled session."""
        try:
            with unit_of_work(self.sessions) as session:
                results = submit_many(session, [slot.submission], context=self.context())
        except Exception as error:
            slot.error = error
            return
        self._settle([slot], results)

    def _settle(self, batch: list[_Slot], results: list[IntakeOutcome | FieldOpsError]) -> None:
        self.batches += 1
        for slot, result in zip(batch, results, strict=True):
            if isinstance(result, FieldOpsError):
                slot.error = result
            else:
                slot.outcome = result


def _release(connection: Connection | None) -> None:
    """Give the writer's connection back to the pool (which drops it if it was lost)."""
    if connection is None:
        return
    try:
        connection.close()
    except Exception:
        log.warning("intake writer could not return its connection", exc_info=True)


def _answer(batch: list[_Slot]) -> None:
    """Wake every sender of a settled batch: one call into each event loop for all of its
    senders, rather than one per report."""
    waiting: defaultdict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = defaultdict(list)
    for slot in batch:
        if slot.done is not None:
            slot.done.set()
        elif slot.loop is not None and slot.future is not None:
            waiting[slot.loop].append(slot.future)
    for loop, futures in waiting.items():
        # A closed loop raises RuntimeError: nobody there waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_futures, futures)


def _settle_futures(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # the sender may have gone (a closed connection)
            future.set_result(None)
