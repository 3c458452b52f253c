"""Micro-benchmark of the tick hot path: packet decode/validate and tick -> bar aggregation.

Run: ``python benchmarks/ticks.py [--ticks N]``. Prints cost per tick, each beside its
floor measured in the same run (a bare ``orjson.loads`` per line for decoding;
a numpy pass over the same columns for aggregation). Best of several repeats.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import orjson

from engine.bars import BarAggregator
from engine.cli.files import builtin_instruments
from engine.domain import NS_PER_S, Tick
from engine.instruments import InstrumentRegistry
from engine.ticks import decode_packets, encode_packet

OPEN_NS = 1767584700 * NS_PER_S  # 2026-01-05 09:15 IST
PACKET = 100


def best_of(fn: Callable[[], object], repeats: int = 7) -> float:
    """Fastest wall time of ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def synthetic(registry: InstrumentRegistry, n: int, seed: int = 1) -> list[Tick]:
    """``n`` in-session ticks round-robin over the registry, 10 ms apart, random-walk prices."""
    rng = np.random.default_rng(seed)
    prices = 1000 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    return [
        Tick(registry.symbols[k % len(registry)], OPEN_NS + k * 10_000_000, round(float(prices[k]), 2), float(k % 50))
        for k in range(n)
    ]


def bench_decode(registry: InstrumentRegistry, ticks: list[Tick]) -> None:
    packets = [encode_packet(ticks[k : k + PACKET]) for k in range(0, len(ticks), PACKET)]
    lines = [ln for p in packets for ln in p.split(b"\n")]
    n = len(ticks)
    decode = best_of(lambda: decode_packets(packets, registry)) / n * 1e6
    floor = best_of(lambda: [orjson.loads(ln) for ln in lines]) / n * 1e6
    encode = best_of(lambda: [encode_packet(ticks[k : k + PACKET]) for k in range(0, n, PACKET)]) / n * 1e6
    print(f"decode_packets ({PACKET} ticks/packet): {decode:6.3f} us/tick")
    print(f"  floor, orjson.loads per line:        {floor:6.3f} us/tick  (decode = {decode / floor:.1f}x floor)")
    print(f"encode_packet:                          {encode:6.3f} us/tick")


def bench_bars(registry: InstrumentRegistry, ticks: list[Tick]) -> None:
    decoded = decode_packets([encode_packet(ticks)], registry)
    cols = (decoded.inst, decoded.ts_ns, decoded.price, decoded.qty)
    n = len(decoded)
    floor = best_of(lambda: (cols[2] > 0).sum() + np.maximum.reduce(cols[1])) / n * 1e9
    print(f"bar aggregation, {len(registry)} instruments x 5 timeframes:")
    for batch in (1, 64, 1024, 16384):
        runs = max(1, min(n, 200_000 if batch > 1 else 20_000) // batch)

        def feed(batch: int = batch, runs: int = runs) -> None:
            agg = BarAggregator(len(registry), 2.0)
            for k in range(runs):
                agg.update(*(c[k * batch : (k + 1) * batch] for c in cols))
                agg.take_closed()

        per_tick = best_of(feed, repeats=3) / (runs * batch) * 1e9
        print(f"  batches of {batch:>6}: {per_tick:9.1f} ns/tick")
    print(f"  floor, one numpy pass:  {floor:9.1f} ns/tick")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200_000)
    args = parser.parse_args()
    registry = InstrumentRegistry(builtin_instruments())
    ticks = synthetic(registry, args.ticks)
    BarAggregator(1).update(np.array([0]), np.array([OPEN_NS]), np.array([1.0]), np.array([1.0]))  # compile
    bench_decode(registry, ticks)
    bench_bars(registry, ticks)


if __name__ == "__main__":
    main()
