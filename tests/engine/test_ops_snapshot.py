"""Snapshot shapes: lag per partition, lag in seconds, rates, and the ``--once --json`` document."""

from __future__ import annotations

import orjson

from engine.ops.snapshot import (
    ClusterSnapshot, GroupPartition, PartitionEnds, as_json, commit_rates, group_positions, lag_of, topic_rates,
    with_ages,
)

ENDS = {"a": {0: PartitionEnds(0, 10), 1: PartitionEnds(2, 7)}, "b": {0: PartitionEnds(0, 0)}}


def test_lag_is_never_negative():
    assert lag_of(10, 4) == 6
    assert lag_of(10, 12) == 0


def test_group_positions_join_commits_with_ends_and_drop_unknowns():
    committed = {"a": {0: 4, 1: 7, 5: 1}, "gone": {0: 3}, "b": {0: -1}}
    assert group_positions(ENDS, committed) == {"a": {0: GroupPartition(4, 6), 1: GroupPartition(7, 0)}}


def test_ages_come_from_the_record_at_the_committed_offset():
    positions = {"a": {0: GroupPartition(4, 6), 1: GroupPartition(7, 0)}, "b": {0: GroupPartition(0, 3)}}
    aged = with_ages(positions, {("a", 0, 4): 100_000, ("a", 1, 7): 1}, now=130.5)
    assert aged["a"][0].lag_seconds == 30.5
    assert aged["a"][1].lag_seconds == 0.0  # no lag, no age whatever the record says
    assert aged["b"][0].lag_seconds is None  # lagging, record unknown


def test_json_document_has_exactly_the_contract_keys():
    snap = ClusterSnapshot(1.0, ENDS, {"g": {"a": {0: GroupPartition(4, 6, 2.5)}}}, {"bad_price": 2})
    doc = orjson.loads(orjson.dumps(as_json(snap, "OK")))
    assert list(doc) == ["status", "topics", "groups", "dlq"]
    assert doc["topics"]["a"] == {"partitions": {"0": {"high": 10}, "1": {"high": 7}}}
    assert doc["groups"] == {"g": {"a": {"0": {"committed": 4, "lag": 6, "lag_seconds": 2.5}}}}
    assert doc["dlq"] == {"bad_price": 2}
    assert as_json(None, "ERR") == {"status": "ERR", "topics": {}, "groups": {}, "dlq": {}}


def test_rates_between_two_snapshots():
    before = ClusterSnapshot(10.0, ENDS, {"g": {"a": {0: GroupPartition(4, 6)}}})
    later = {"a": {0: PartitionEnds(0, 30), 1: PartitionEnds(2, 7)}, "b": {0: PartitionEnds(0, 0)}}
    after = ClusterSnapshot(12.0, later, {"g": {"a": {0: GroupPartition(10, 20)}}})
    assert topic_rates(before, after) == {"a": 10.0, "b": 0.0}
    assert commit_rates(before, after) == {("g", "a"): 3.0}
    assert topic_rates(after, after) == {}
