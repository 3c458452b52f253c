"""Leases' usage counters (docs/models.md, "Usage"): recounted from ``trading_signal``, never incremented.

A lessee's signal carries its lease in ``market_data.lease_id``; :func:`refresh_lease_usage` sets each lease's
``total_signals_generated`` and ``usage_stats`` (``{"signals", "last_signal_at", "symbols"}``) from the
signals the table holds, in one statement. A replay writes no signal twice (ids are deterministic), so a
recount never counts one twice either. A lease that has none gets zeros.
"""

from __future__ import annotations

from typing import Sequence

import asyncpg

_REFRESH = """
WITH counted AS (
    SELECT l.id,
           count(s.id) AS n,
           max(s.timestamp) AS last_at,
           coalesce(jsonb_agg(DISTINCT s.symbol ORDER BY s.symbol) FILTER (WHERE s.symbol IS NOT NULL), '[]'::jsonb) AS symbols
    FROM ai_studio_modellease l
    LEFT JOIN trading_signal s ON s.market_data ? 'lease_id' AND s.market_data ->> 'lease_id' = l.id::text
    WHERE $1::uuid[] IS NULL OR l.id = ANY($1::uuid[])
    GROUP BY l.id
)
UPDATE ai_studio_modellease l
SET total_signals_generated = c.n,
    usage_stats = jsonb_build_object('signals', c.n, 'last_signal_at', c.last_at, 'symbols', c.symbols),
    updated_at = now()
FROM counted c
WHERE l.id = c.id
  AND (l.total_signals_generated IS DISTINCT FROM c.n
       OR l.usage_stats IS DISTINCT FROM jsonb_build_object('signals', c.n, 'last_signal_at', c.last_at,
                                                            'symbols', c.symbols))
"""


async def refresh_lease_usage(conn: asyncpg.Connection, lease_ids: Sequence[str] | None = None) -> int:
    """Recount the usage of ``lease_ids`` (None: every lease); return how many leases changed."""
    status = await conn.execute(_REFRESH, None if lease_ids is None else list(lease_ids))
    return int(status.split()[-1])
