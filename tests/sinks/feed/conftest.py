"""Fixtures of the feed tests: a fresh database, the session broker, topics of their own."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from engine.settings import Settings
from tests.sinks.feed.support import SECRET, FeedEnv


@pytest.fixture
def feed_env(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path) -> FeedEnv:
    suffix = uuid.uuid4().hex[:10]
    settings = Settings.from_env({"SHAREWISE_HOME": str(tmp_path), "SHAREWISE_JWT_SECRET": SECRET,
                                  "SHAREWISE_PARTITIONS": "4"})
    topics = {channel: f"test.{channel}.{suffix}" for channel in ("signals", "orders", "notifications", "bars")}
    return FeedEnv(settings, pg_dsn, kafka_bootstrap, topics)
