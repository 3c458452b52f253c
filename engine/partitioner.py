"""Kafka's default partitioner for keyed records, so every tick of a symbol lands on one partition.

Java Kafka's ``DefaultPartitioner`` (and aiokafka's, and librdkafka's
``murmur2_random``) place a record with a non-null key on
``toPositive(murmur2(key_bytes)) % partitions``, where ``murmur2`` is
``org.apache.kafka.common.utils.Utils.murmur2`` (MurmurHash2, seed
``0x9747b28c``) and ``toPositive`` clears the sign bit. Ticks are keyed by
their symbol in UTF-8, so a packet built with :func:`partition_for` goes where
a single-tick message with the same key would go.
"""

from __future__ import annotations

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data``, as the signed 32-bit int Java returns."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    body = length & ~3
    for i in range(0, body, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        h ^= int.from_bytes(data[body:], "little")
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, partitions: int) -> int:
    """Partition of a record keyed ``key`` (UTF-8) among ``partitions``; raise ``ValueError`` if < 1."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions
