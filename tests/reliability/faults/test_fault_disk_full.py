"""The SpatiaLite file's disk fills up under load (a file size limit on the server process,
so writes fail with EFBIG as on a full disk): writes get a clear 5xx problem, reads go on,
nothing acknowledged is lost, and once the limit is lifted the refused writes, sent again
with their Idempotency-Key, are stored once each."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fault_checks import audit, half_written, tally, unclear_failures
from fault_procs import fold_wal, start_api, wait_for
from fault_traffic import WRITES, Calls, Traffic, make_keys

MIX = {"open311": 0.3, "incident": 0.3, "position": 0.1, "read": 0.3}
# Room left on the "disk" once the database is there: a few dozen reports.
ROOM_BYTES = 256 * 1024


def test_full_disk_refuses_writes_clearly_and_keeps_reads_and_data(
    spatialite_template: Path, city_points: list[tuple[float, float]], tmp_path: Path
) -> None:
    path = tmp_path / "fieldops.db"
    shutil.copyfile(spatialite_template, path)
    url = f"sqlite:///{path}"
    keys = make_keys(url)
    fold_wal(path)
    limit = path.stat().st_size + ROOM_BYTES

    api = start_api(url, workers=1, log_dir=tmp_path, fsize_limit=limit, name="api-full")
    try:
        calls = Calls(keys, city_points, MIX, seed=4)
        with Traffic(api.port, calls, connections=4, retry=False) as full:

            def refused() -> int:
                return sum(
                    1
                    for call, answer in full.answers()
                    if call.kind in WRITES and answer.status is not None and answer.status >= 500
                )

            wait_for("writes to be refused", lambda: refused() >= 10, 60, 0.2)
            full_at = time.monotonic()
            time.sleep(1.5)
        assert api.alive(), api.tail()
    finally:
        api.stop()

    counts = tally(full)
    assert unclear_failures(full) == [], counts
    answers = [(c, a) for c, a in full.answers() if a.at > full_at]
    # Once full: writes refused with 507 (one that still fits is taken, and checked
    # below like every other), reads answered as before.
    assert {a.status for c, a in answers if c.kind in WRITES} <= {200, 201, 507}, counts
    assert [a.status for c, a in answers if c.kind == "read"] != [], counts
    assert {a.status for c, a in answers if c.kind == "read"} == {200}, counts
    before = audit(url, full.exchanges)
    assert before.problems == []
    assert before.acknowledged > 0 and before.unacknowledged >= 10
    assert half_written(url) == {}

    # The limit lifted: the refused writes, sent again with their keys, are taken once.
    again = [e.call for e in full.exchanges if e.call.kind in WRITES and not e.acknowledged]
    api = start_api(url, workers=1, log_dir=tmp_path, name="api-room")
    try:
        with Traffic(api.port, iter(again), connections=4) as retry:
            retry.wait(60)
    finally:
        api.stop()
    assert len(retry.exchanges) == len(again)
    assert all(e.acknowledged for e in retry.exchanges), tally(retry)
    after = audit(url, [*full.exchanges, *retry.exchanges])
    assert after.problems == []
    assert half_written(url) == {}
