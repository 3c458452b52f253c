"""Running a command's event loop so that it always ends.

``asyncio.run`` cancels leftover tasks at exit and waits for them without a limit; a library
task that swallows its cancellation (seen with Faust's services) then hangs the process after
the work is done. :func:`run` waits for leftovers a bounded time instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")
log = logging.getLogger("sharewise")


def run(main: Coroutine[Any, Any, T], *, grace: float = 5.0) -> T:
    """Run ``main`` to completion on a new loop; give leftover tasks ``grace`` seconds to finish."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in leftovers:
                task.cancel()
            if leftovers:
                _, pending = loop.run_until_complete(asyncio.wait(leftovers, timeout=grace))
                if pending:
                    log.warning("%d background task(s) did not stop within %.0fs; exiting anyway", len(pending), grace)
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), grace))
        except (TimeoutError, RuntimeError) as exc:
            log.warning("event loop shutdown incomplete: %s", exc)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
