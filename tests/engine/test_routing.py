"""Routing in the pure core: which ticks a partition applies, which it forwards, and forwards applied once."""

from __future__ import annotations

import numpy as np
import orjson

from engine.instruments import InstrumentRegistry
from engine.partitioner import partition_for
from engine.routing import ORIGIN_HEADER, AppliedOrigins, Origin, origin_of, owners, route
from engine.ticks import decode_packets

SYMBOLS = ("RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN")
REGISTRY = InstrumentRegistry.from_symbols(SYMBOLS)
PARTITIONS = 4


def tick(symbol: str, t: int = 1767584700000) -> bytes:
    return orjson.dumps({"symbol": symbol, "time": t, "price": 100.5, "qty": 3})


def test_owners_follow_kafkas_murmur2_over_the_partition_count():
    assert owners(SYMBOLS, PARTITIONS).tolist() == [partition_for(s, PARTITIONS) for s in SYMBOLS]


def test_ticks_owned_elsewhere_are_forwarded_with_their_bytes_and_never_applied_here():
    owner = owners(SYMBOLS, PARTITIONS)
    here = int(owner[0])  # RELIANCE's partition
    lines = [tick(s, 1767584700000 + k) for k, s in enumerate(SYMBOLS)]
    decoded = decode_packets([b"\n".join(lines)], REGISTRY)
    routed = route(decoded, np.array([here]), np.array([False]), owner)
    local = [SYMBOLS[i] for i in decoded.inst[routed.local]]
    assert local == [s for s in SYMBOLS if partition_for(s, PARTITIONS) == here]
    forwarded = {p: lines_ for (_, p), lines_ in routed.forwards.items()}
    assert here not in forwarded and routed.misrouted == []
    assert sorted(line for ls in forwarded.values() for line in ls) == sorted(
        line for line, s in zip(lines, SYMBOLS) if partition_for(s, PARTITIONS) != here)
    for p, ls in forwarded.items():
        assert all(partition_for(orjson.loads(line)["symbol"], PARTITIONS) == p for line in ls)


def test_a_forward_that_arrives_at_a_partition_not_its_owner_is_misrouted_not_applied():
    owner = owners(SYMBOLS, PARTITIONS)
    wrong = (int(owner[1]) + 1) % PARTITIONS
    decoded = decode_packets([tick("TCS")], REGISTRY)
    routed = route(decoded, np.array([wrong]), np.array([True]), owner)
    assert not routed.local.any() and routed.forwards == {} and routed.misrouted == [0]


def test_origins_round_trip_and_a_repeated_forward_is_not_new():
    origin = Origin(3, 1200, 1)
    assert origin_of([("other", b"x"), (ORIGIN_HEADER, origin.encode())]) == origin
    assert origin_of({ORIGIN_HEADER: origin.encode()}) == origin
    assert origin_of(None) is None and Origin.decode(b"3:x:1") is None and Origin.decode(b"-1:2:0") is None
    applied = AppliedOrigins()
    assert applied.is_new(origin)
    applied.applied(origin)
    assert not applied.is_new(origin) and not applied.is_new(Origin(3, 1200, 0)) and not applied.is_new(Origin(3, 5))
    assert applied.is_new(Origin(3, 1200, 2)) and applied.is_new(Origin(2, 0))
    assert AppliedOrigins.from_json(orjson.loads(orjson.dumps(applied.to_json()))).marks == applied.marks
