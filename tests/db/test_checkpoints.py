"""The checkpoint store on real PostgreSQL: a save cancelled half-way must not leave its row locks behind."""

from __future__ import annotations

import asyncio

from db.checkpoints import PostgresCheckpointStore, load_checkpoints
from db.connect import connect
from engine.ports import Checkpoint


def _rows(offset: int) -> list[Checkpoint]:
    return [Checkpoint(p, offset, b"state", 1, "cluster-a") for p in range(4)]


def test_a_save_cancelled_inside_its_transaction_releases_its_locks(pg_dsn: str) -> None:
    async def scenario() -> None:
        first, second = PostgresCheckpointStore(pg_dsn), PostgresCheckpointStore(pg_dsn)
        await first.save("g", "market.ticks", "w1", _rows(10))
        blocker = await connect(pg_dsn)
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT 1 FROM engine.checkpoint WHERE partition = 3 FOR UPDATE")
        stuck = asyncio.create_task(first.save("g", "market.ticks", "w1", _rows(20)))  # locks 0-2, waits on 3
        await asyncio.sleep(0.5)
        stuck.cancel()  # a worker's stop cancels its checkpoint timer (streams/worker.py)
        await asyncio.gather(stuck, return_exceptions=True)
        await tx.rollback()
        await blocker.close()
        # the next owner's checkpoint of the same partitions goes through: nothing of the cancelled save holds them
        await asyncio.wait_for(second.save("g", "market.ticks", "w2", _rows(30)), 20)
        conn = await connect(pg_dsn)
        try:
            saved = await load_checkpoints(conn, "g", "market.ticks", [0, 1, 2, 3])
        finally:
            await conn.close()
        assert {c.next_offset for c in saved.values()} == {30}
        await first.save("g", "market.ticks", "w1", _rows(40))  # and the cancelled store works again
        await first.close()
        await second.close()

    asyncio.run(scenario())
