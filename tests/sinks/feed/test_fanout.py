"""Subscriptions and the router, without sockets: the rules behind gap-free, duplicate-free resume."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.feed.fanout import PENDING_LIMIT, Phase, Router, Subscription


class Collect:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)


def frame(seq: int) -> bytes:
    return str(seq).encode()


def test_live_subscription_drops_old_and_repeated_seqs() -> None:
    out = Collect()
    sub = Subscription(out, "u", "signals", None, since_seq=None)
    sub.start_at(10)
    assert sub.go_live() == []
    for seq in (9, 10, 11, 11, 12, 11, 13):
        sub.offer(seq, frame(seq))
    assert out.frames == [b"11", b"12", b"13"]


def test_catch_up_hands_over_parked_frames_after_history() -> None:
    out = Collect()
    sub = Subscription(out, "u", "signals", None, since_seq=3)
    sub.begin_page()
    sub.offer(6, frame(6))  # dispatched while history 4..5 is read: committed after the snapshot
    sub.offer(7, frame(7))
    for seq in (4, 5):
        out.push(frame(seq))
        sub.replayed(seq)
    out.frames.extend(sub.go_live())
    sub.offer(7, frame(7))
    sub.offer(8, frame(8))
    assert out.frames == [b"4", b"5", b"6", b"7", b"8"]
    assert sub.phase is Phase.LIVE


def test_parked_frames_already_in_history_are_not_sent_twice() -> None:
    out = Collect()
    sub = Subscription(out, "u", "signals", None, since_seq=0)
    sub.begin_page()
    sub.offer(2, frame(2))
    for seq in (1, 2, 3):
        out.push(frame(seq))
        sub.replayed(seq)
    out.frames.extend(sub.go_live())
    assert out.frames == [b"1", b"2", b"3"]


def test_overflowing_pending_forces_another_history_read() -> None:
    sub = Subscription(Collect(), "u", "signals", None, since_seq=0)
    sub.begin_page()
    for seq in range(1, PENDING_LIMIT + 2):
        sub.offer(seq, frame(seq))
    assert sub.overflowed
    with pytest.raises(RuntimeError):
        sub.go_live()
    sub.begin_page()
    assert not sub.overflowed and sub.pending == []


def test_router_delivers_only_to_the_owner_and_matching_symbols() -> None:
    router = Router()
    mine, theirs, filtered = Collect(), Collect(), Collect()
    subs = [Subscription(mine, "alice", "signals", None, None), Subscription(theirs, "bob", "signals", None, None),
            Subscription(filtered, "alice", "signals", frozenset({"TCS"}), None)]
    for sub in subs:
        router.add(sub)
        sub.go_live()
    router.dispatch("alice", "signals", 1, "INFY", b"a1")
    router.dispatch("alice", "signals", 2, "TCS", b"a2")
    router.dispatch("bob", "signals", 1, "TCS", b"b1")
    router.dispatch("alice", "orders", 1, "TCS", b"o1")
    assert mine.frames == [b"a1", b"a2"] and theirs.frames == [b"b1"] and filtered.frames == [b"a2"]
    router.remove(subs[0])
    router.dispatch("alice", "signals", 3, "TCS", b"a3")
    assert mine.frames == [b"a1", b"a2"] and filtered.frames == [b"a2", b"a3"]
    assert router.count() == 2


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=60), st.integers(min_value=0, max_value=2**31), st.integers(1, 7))
def test_history_plus_live_is_every_seq_once(since: int, seed: int, page: int) -> None:
    """Whatever the interleaving of history pages and live (possibly repeated) frames: since+1..N, once, in order."""
    rng = random.Random(seed)
    total = 60
    committed = 0
    out = Collect()
    sub = Subscription(out, "u", "signals", None, since_seq=since)
    while sub.phase is Phase.CATCHING_UP:
        sub.begin_page()
        for _ in range(rng.randint(0, 3)):  # messages committed and dispatched during the read
            if committed < total:
                committed += 1
                sub.offer(committed, frame(committed))
        snapshot = committed
        rows = [s for s in range(sub.last_seq + 1, snapshot + 1)][:page]
        for seq in rows:
            out.push(frame(seq))
            sub.replayed(seq)
            if rng.random() < 0.3 and committed < total:  # a live frame while we send history
                committed += 1
                sub.offer(committed, frame(committed))
            if rng.random() < 0.2:
                old = rng.randint(1, max(committed, 1))
                sub.offer(old, frame(old))  # a redelivered (or another server's) earlier message
        if len(rows) < page and not sub.overflowed:
            out.frames.extend(sub.go_live())
    while committed < total:
        committed += 1
        sub.offer(committed, frame(committed))
        sub.offer(committed, frame(committed))
    assert out.frames == [frame(s) for s in range(since + 1, total + 1)] or since >= total
