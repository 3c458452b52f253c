"""Kafka default partitioner: murmur2 vectors from Kafka's own tests, and agreement with aiokafka."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2 as aiokafka_murmur2
from hypothesis import given, settings, strategies as st

from engine.cli.files import builtin_instruments
from engine.partitioner import murmur2, partition_for

# Expected values from Apache Kafka's UtilsTest.testMurmur2 (signed Java ints).
KAFKA_VECTORS = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS.items())
def test_murmur2_matches_kafka_java(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_murmur2_matches_aiokafka_on_any_bytes(data: bytes) -> None:
    assert murmur2(data) & 0xFFFFFFFF == aiokafka_murmur2(data)


@pytest.mark.parametrize("partitions", [1, 3, 8, 12, 64])
def test_partition_of_every_instrument_matches_aiokafka(partitions: int) -> None:
    all_partitions = list(range(partitions))
    for inst in builtin_instruments():
        expected = DefaultPartitioner()(inst.symbol.encode(), all_partitions, all_partitions)
        assert partition_for(inst.symbol, partitions) == expected


def test_partition_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="partitions"):
        partition_for("TCS", 0)
