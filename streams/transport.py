"""Faust's aiokafka transport with a consumer tuned for packed input.

Faust hard-codes ``fetch_max_wait_ms=1500`` on its worker consumer. Its leader-topic
partition is always empty, so once the data partitions have buffered records the only
fetch in flight is a 1.5 s long-poll on that empty partition and packed throughput
stalls (measured: 83k instead of 216k ticks/s). Tansu also never answers a
long-poll early when records arrive (measured: produce->consume p50 135 ms at a 500 ms wait,
30 ms at 100 ms, 3 ms at 10 ms), so every hop of the pipeline costs about half the wait.
This transport lowers the wait to 20 ms; everything else is Faust's own driver.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka

from engine.settings import Settings

SCHEME = "sharewise"
FETCH_MAX_WAIT_MS = 20


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # read by AIOKafkaConsumer.start() when it builds its fetcher
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Consumer(faust_aiokafka.Consumer):
    #: set once the worker failed: from then on no offset is committed, whatever Faust thinks was
    #: processed, so a restart resumes from the last checkpoint (docs/architecture.md, "Failures")
    commits_frozen = False

    async def _commit(self, offsets: Any) -> bool:
        if self.commits_frozen:
            return False
        return await super()._commit(offsets)

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


drivers.TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:Transport")


def faust_app(settings: Settings, group_id: str, bootstrap: str) -> faust.App:
    """The worker's Faust app on this transport, with the settings measured to matter (streams/broker.py)."""
    return faust.App(
        group_id, broker=f"{SCHEME}://{bootstrap}", value_serializer="raw", key_serializer="raw",
        store="memory://", web_enabled=False, topic_partitions=settings.partitions,
        datadir=str(settings.home / "faust"),  # Faust's default is "<app id>-data" in the current directory
        topic_disable_leader=True, broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0, consumer_auto_offset_reset="earliest", producer_linger=0.005,
        producer_max_batch_size=262144, consumer_max_fetch_size=4 * 1024 * 1024, loghandlers=[],
        producer_max_request_size=max(1_048_576, settings.max_message_bytes + 65_536),
        producer_request_timeout=settings.send_timeout_s,
        # acks wait for checkpoints, so a rebalance must not wait for them (the next owner replays)
        stream_wait_empty=False,
    )  # fmt: skip
