"""The plugin's own state (``core.database``): how many summaries it has served, across workers and restarts.

The seed's ``database.currentThunk()``: the value the plugin holds itself, next to the upstreams'.
One row, bumped in a transaction for each summary answered (a 503 is not one), so every worker
and every kernel instance sharing the database counts together.

The migration runs on first use once the plugin is configured (``ready``), not when an
unconfigured plugin starts: a kernel that does not use the plugin gets no database for it.
"""

from __future__ import annotations

import asyncio
from typing import Final

from kernel.api import DatabaseService

__all__ = ["MIGRATIONS", "SummaryStore"]

MIGRATIONS: Final = [
    (
        "001_summary_counter",
        """
        CREATE TABLE summary_counter (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            served BIGINT NOT NULL
        );
        INSERT INTO summary_counter (id, served) VALUES (1, 0);
        """,
    ),
]


class SummaryStore:
    """The counter of summaries served; ``ready`` applies the migrations once per worker."""

    def __init__(self, database: DatabaseService) -> None:
        self._database = database
        self._ready = False
        self._lock = asyncio.Lock()

    async def ready(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if not self._ready:
                await self._database.migrate(MIGRATIONS)
                self._ready = True

    async def count_served(self) -> int:
        """Count one more summary served; the total, this one included."""
        await self.ready()
        db = await self._database.get_client()
        async with db.transaction() as tx:
            await tx.execute("UPDATE summary_counter SET served = served + 1 WHERE id = 1")
            return int(await tx.fetch_val("SELECT served FROM summary_counter WHERE id = 1"))
