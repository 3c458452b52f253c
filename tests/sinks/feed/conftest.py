"""Fixtures of the feed tests: a fresh database, the session broker, topics of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.settings import Settings
from tests.fixtures.kafka import unique_topic
from tests.sinks.feed.support import SECRET, FeedEnv


@pytest.fixture
def feed_env(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path) -> FeedEnv:
    settings = Settings.from_env({"SHAREWISE_HOME": str(tmp_path), "SHAREWISE_JWT_SECRET": SECRET,
                                  "SHAREWISE_PARTITIONS": "4"})
    topics = {channel: unique_topic(f"feed-{channel}") for channel in ("signals", "orders", "notifications", "bars")}
    return FeedEnv(settings, pg_dsn, kafka_bootstrap, topics)
