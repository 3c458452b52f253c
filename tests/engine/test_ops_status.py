"""Status rules of ``sharewise monitor``: Burrow-like trends per partition, workers, severity order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ops.snapshot import ClusterSnapshot, GroupPartition, PartitionEnds
from engine.ops.status import (
    Finding, History, Sample, Status, Verdict, WorkerBeat, broker_down, evaluate, partition_trend, worker_findings,
    workers_state,
)


def _samples(*points: tuple[float, int, int]) -> list[Sample]:
    return [Sample(at, committed, lag) for at, committed, lag in points]


def test_no_lag_is_ok_whatever_the_commits():
    assert partition_trend(_samples((0, 5, 3), (20, 5, 0)), window=10) is None


def test_lag_without_commits_over_the_window_is_a_stall():
    found = partition_trend(_samples((0, 5, 3), (5, 5, 3), (10, 5, 3)), window=10)
    assert found is not None and found.status is Status.STALL
    assert "lag 3" in found.detail


def test_less_history_than_the_window_judges_nothing():
    assert partition_trend(_samples((0, 5, 3), (9.9, 5, 3)), window=10) is None
    assert partition_trend(_samples((0, 5, 3)), window=0) is None


def test_commits_with_growing_lag_warn():
    found = partition_trend(_samples((0, 5, 3), (5, 8, 4), (10, 12, 7)), window=10)
    assert found is not None and found.status is Status.WARN
    assert "3 to 7" in found.detail


def test_commits_with_lag_that_shrank_once_are_ok():
    assert partition_trend(_samples((0, 5, 3), (5, 9, 2), (10, 12, 7)), window=10) is None


def test_a_lag_that_was_zero_inside_the_window_is_not_a_stall():
    # caught up once in the window (the topic was idle, then got new messages): not stuck
    assert partition_trend(_samples((0, 5, 3), (5, 5, 0), (10, 5, 3)), window=10) is None


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 50)), min_size=1, max_size=12))
def test_rules_never_fire_on_zero_lag_and_stall_means_no_commit(points):
    samples = [Sample(float(i), c, lag) for i, (c, lag) in enumerate(points)]
    found = partition_trend(samples, window=float(len(samples) - 1))
    if samples[-1].lag == 0:
        assert found is None
    if found is not None and found.status is Status.STALL:
        assert samples[0].committed == samples[-1].committed and all(s.lag > 0 for s in samples)
    if found is not None and found.status is Status.WARN:
        assert samples[-1].lag > samples[0].lag


def _snapshot(at: float, committed: int, high: int, group: str = "g", topic: str = "t") -> ClusterSnapshot:
    return ClusterSnapshot(at, {topic: {0: PartitionEnds(0, high)}},
                           {group: {topic: {0: GroupPartition(committed, high - committed)}}})


def test_history_keeps_one_sample_older_than_the_window_as_anchor():
    history = History(window=2.0)
    for i in range(10):
        history.add(_snapshot(float(i), 4, 10))
    found = history.findings()
    assert [f.status for f in found] == [Status.STALL]
    assert found[0].subject == "group g t[0]"
    assert "2.0s" in found[0].detail  # exactly one window: older samples were dropped


def test_history_forgets_partitions_that_disappear():
    history = History(window=1.0)
    history.add(_snapshot(0.0, 4, 10, group="old"))
    history.add(_snapshot(2.0, 4, 10, group="new"))
    history.add(_snapshot(4.0, 4, 10, group="new"))
    assert {f.subject for f in history.findings()} == {"group new t[0]"}


def test_evaluate_judges_only_the_watched_groups_and_the_worst_wins():
    history = History(window=1.0)
    snaps = [ClusterSnapshot(float(i), {"t": {0: PartitionEnds(0, 10 + 5 * i), 1: PartitionEnds(0, 10)}},
                             {"stuck": {"t": {1: GroupPartition(4, 6)}},
                              "behind": {"t": {0: GroupPartition(i, 10 + 4 * i)}}}) for i in range(3)]
    for snap in snaps:
        history.add(snap)
    verdict = evaluate(snaps[-1], history)
    assert verdict.status is Status.STALL
    assert [f.status for f in verdict.findings] == [Status.STALL, Status.WARN]
    assert evaluate(snaps[-1], history, groups={"behind"}).status is Status.WARN


def test_silent_workers_of_a_lagging_group_are_an_error():
    beats = [WorkerBeat("w1", "engine", 42.0), WorkerBeat("w2", "engine", 15.0), WorkerBeat("w3", "idle", 99.0)]
    found = worker_findings(beats, {"engine": 7, "idle": 0}, timeout=10)
    assert found == [Finding(Status.ERR, "workers of engine", "last heartbeat 15s ago while 7 messages wait")]
    assert worker_findings(beats, {"engine": 7}, timeout=20) == []


def test_evaluate_turns_silent_workers_into_err():
    history = History(window=10.0)
    snap = _snapshot(0.0, 3, 10, group="engine")
    history.add(snap)
    verdict = evaluate(snap, history, beats=[WorkerBeat("w1", "engine", 30.0)])
    assert verdict.status is Status.ERR and verdict.findings[0].subject == "workers of engine"


def test_workers_state_lines():
    assert workers_state([], {}) == (False, "no worker has reported a heartbeat")
    up, line = workers_state([WorkerBeat("w1", "engine", 1.5)], {"engine": 100})
    assert up and line.startswith("1 alive (engine)")
    up, line = workers_state([WorkerBeat("w1", "engine", 50)], {"engine": 0})
    assert up and line.startswith("idle")
    up, line = workers_state([WorkerBeat("w1", "engine", 50)], {"engine": 3})
    assert not up and "workers of engine" in line


def test_severity_order_and_verdict_of_nothing():
    assert Status.OK < Status.WARN < Status.STALL < Status.ERR
    assert Verdict.of([]) == Verdict(Status.OK, ())
    down = broker_down("127.0.0.1:1", "connection refused")
    assert down.status is Status.ERR and str(down.status) == "ERR"
