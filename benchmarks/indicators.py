"""The 25-column indicator set against its peers, per bar, in one run.

Run: ``python benchmarks/indicators.py [--instruments 2000 --bars 600]``.

The engine is fed the way the stream feeds it: one bar per instrument at a time (bar ``i`` of
every instrument, then bar ``i + 1``), in micro-batches of 1, 64 and 1,024 bars through
:meth:`IndicatorSet.update` — the public call, Python overhead included. Peers on the same
data, all 20 TA-Lib functions behind the 25 columns:

* TA-Lib batch: each function once per instrument over its whole series;
* TA-Lib 0.8 streaming handles: ``talib.stream.X(history)`` opened on a warm-up, then one
  ``update`` per bar and function (timed: the updates);
* talipp: one indicator object per function and instrument, ``add`` per bar — talipp has no
  MFI and no MOM, so it runs 18 of the 20 functions (and is cheaper for it).

Peers that are slow run on a slice of the instruments; every figure is per bar (one bar of
one instrument through all its functions), so slices compare honestly. Times are the
process's CPU time (all of it single-threaded), so other load on the machine does not
inflate them. Targets (never
asserted): 1,024-bar batches at most 1.5x TA-Lib batch, at least 10x cheaper than streaming
handles, at least 300x cheaper than talipp.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import talib
from talib import stream
from talipp import indicators as tp
from talipp.ohlcv import OHLCV

from engine.indicators import default_set

WARMUP = 60  # bars of history that open every streaming handle (TEMA(20) needs 58)


@dataclass(frozen=True, slots=True)
class Market:
    """Bars as ``[bar, instrument]`` arrays."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def series(self, i: int) -> tuple[np.ndarray, ...]:
        """Instrument ``i``'s contiguous (high, low, close, volume)."""
        return tuple(np.ascontiguousarray(a[:, i]) for a in (self.high, self.low, self.close, self.volume))


def make_market(instruments: int, bars: int, seed: int = 7) -> Market:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (bars, instruments)), axis=0))
    opens = np.vstack([close[:1], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.004, (2, bars, instruments)))
    high = np.maximum(opens, close) * (1 + spread[0])
    low = np.minimum(opens, close) * (1 - spread[1])
    volume = rng.integers(0, 10_000, (bars, instruments)).astype(np.float64)
    return Market(opens, high, low, close, volume)


def engine_ns(market: Market, batch: int, bars: int) -> tuple[float, int]:
    """ns per bar of the default set fed bar-major in micro-batches; and its state bytes."""
    instruments = market.close.shape[1]
    indicators = default_set(instruments)
    inst = np.tile(np.arange(instruments, dtype=np.int64), bars)
    flat = [np.ascontiguousarray(a[:bars].reshape(-1)) for a in
            (market.open, market.high, market.low, market.close, market.volume)]
    indicators.update(inst[:1], *(a[:1] for a in flat))  # load the compiled kernel
    indicators.reset(np.arange(instruments))
    started = time.process_time()
    for i in range(0, inst.size, batch):
        indicators.update(inst[i:i + batch], *(a[i:i + batch] for a in flat))
    return (time.process_time() - started) / inst.size * 1e9, indicators.state_bytes_per_instrument


def _talib_all(h: np.ndarray, l: np.ndarray, c: np.ndarray, v: np.ndarray) -> None:  # noqa: E741
    talib.SMA(c, 20), talib.EMA(c, 20), talib.WMA(c, 20), talib.DEMA(c, 20), talib.TEMA(c, 20)
    talib.RSI(c, 14), talib.MACD(c, 12, 26, 9), talib.BBANDS(c, 20, 2, 2, 0), talib.ATR(h, l, c, 14)
    talib.ADX(h, l, c, 14), talib.PLUS_DI(h, l, c, 14), talib.MINUS_DI(h, l, c, 14)
    talib.STOCH(h, l, c, 14, 3, 0, 3, 0), talib.CCI(h, l, c, 20), talib.MFI(h, l, c, v, 14)
    talib.OBV(c, v), talib.WILLR(h, l, c, 14), talib.ROC(c, 10), talib.MOM(c, 10), talib.STDDEV(c, 20, 1)


def talib_batch_ns(market: Market) -> float:
    bars, instruments = market.close.shape
    series = [market.series(i) for i in range(instruments)]
    started = time.process_time()
    for h, l, c, v in series:  # noqa: E741
        _talib_all(h, l, c, v)
    return (time.process_time() - started) / (bars * instruments) * 1e9


def _open_streams(h: np.ndarray, l: np.ndarray, c: np.ndarray, v: np.ndarray) -> tuple[list, list, list]:  # noqa: E741
    """``update`` methods of the 20 handles, opened on the first WARMUP bars, grouped by inputs:
    (close), (high, low, close), (high, low, close, volume) and (close, volume)."""
    w = slice(0, WARMUP)
    by_close = [stream.SMA(c[w], 20), stream.EMA(c[w], 20), stream.WMA(c[w], 20), stream.DEMA(c[w], 20),
                stream.TEMA(c[w], 20), stream.RSI(c[w], 14), stream.MACD(c[w], 12, 26, 9),
                stream.BBANDS(c[w], 20, 2, 2, 0), stream.ROC(c[w], 10), stream.MOM(c[w], 10),
                stream.STDDEV(c[w], 20, 1)]
    by_hlc = [stream.ATR(h[w], l[w], c[w], 14), stream.ADX(h[w], l[w], c[w], 14),
              stream.PLUS_DI(h[w], l[w], c[w], 14), stream.MINUS_DI(h[w], l[w], c[w], 14),
              stream.STOCH(h[w], l[w], c[w], 14, 3, 0, 3, 0), stream.CCI(h[w], l[w], c[w], 20),
              stream.WILLR(h[w], l[w], c[w], 14)]
    return ([x.update for x in by_close], [x.update for x in by_hlc],
            [stream.MFI(h[w], l[w], c[w], v[w], 14).update, stream.OBV(c[w], v[w]).update])


def talib_stream_ns(market: Market, instruments: int) -> float:
    """ns per bar of one ``update`` per function, bar-major over a slice of instruments."""
    bars = market.close.shape[0]
    feeds = []
    for i in range(instruments):
        h, l, c, v = market.series(i)  # noqa: E741
        feeds.append((_open_streams(h, l, c, v), h.tolist(), l.tolist(), c.tolist(), v.tolist()))
    started = time.process_time()
    for bar in range(WARMUP, bars):
        for (by_close, by_hlc, (mfi, obv)), h, l, c, v in feeds:  # noqa: E741
            hb, lb, cb, vb = h[bar], l[bar], c[bar], v[bar]
            for update in by_close:
                update(cb)
            for update in by_hlc:
                update(hb, lb, cb)
            mfi(hb, lb, cb, vb)
            obv(cb, vb)
    return (time.process_time() - started) / ((bars - WARMUP) * instruments) * 1e9


def _talipp_set() -> tuple[list, list]:
    """(close-fed, bar-fed) talipp indicators for the functions talipp has (no MFI, no MOM)."""
    by_close = [tp.SMA(20), tp.EMA(20), tp.WMA(20), tp.DEMA(20), tp.TEMA(20), tp.RSI(14),
                tp.MACD(12, 26, 9), tp.BB(20, 2.0), tp.ROC(10), tp.StdDev(20)]
    by_bar = [tp.ATR(14), tp.ADX(14, 14), tp.Stoch(14, 3), tp.CCI(20), tp.OBV(), tp.Williams(14)]
    return by_close, by_bar


def talipp_ns(market: Market, instruments: int) -> float:
    bars = market.close.shape[0]
    feeds = []
    for i in range(instruments):
        columns = (market.open, market.high, market.low, market.close, market.volume)
        o, h, l, c, v = (a[:, i].tolist() for a in columns)  # noqa: E741
        feeds.append((c, [OHLCV(*row) for row in zip(o, h, l, c, v)], *_talipp_set()))
    started = time.process_time()
    for bar in range(bars):
        for closes, ohlcv, by_close, by_bar in feeds:
            for indicator in by_close:
                indicator.add(closes[bar])
            for indicator in by_bar:
                indicator.add(ohlcv[bar])
    return (time.process_time() - started) / (bars * instruments) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instruments", type=int, default=2000)
    parser.add_argument("--bars", type=int, default=600, help="bars per instrument")
    parser.add_argument("--single-bars", type=int, default=20, help="bars per instrument fed in batches of 1")
    parser.add_argument("--stream-instruments", type=int, default=200)
    parser.add_argument("--talipp-instruments", type=int, default=10)
    args = parser.parse_args()
    market = make_market(args.instruments, args.bars)
    rows: dict[str, float] = {}
    for batch, bars in ((1, min(args.single_bars, args.bars)), (64, args.bars), (1024, args.bars)):
        rows[f"engine, micro-batches of {batch}"], state_bytes = engine_ns(market, batch, bars)
    rows["TA-Lib batch"] = talib_batch_ns(market)
    rows[f"TA-Lib streaming handles ({args.stream_instruments} instruments)"] = talib_stream_ns(
        market, min(args.stream_instruments, args.instruments))
    rows[f"talipp, 18 of 20 functions ({args.talipp_instruments} instruments)"] = talipp_ns(
        market, min(args.talipp_instruments, args.instruments))
    print(f"{args.instruments} instruments x {args.bars} bars, 25 columns (20 TA-Lib functions)")
    for name, ns in rows.items():
        print(f"  {name:55s} {ns:12,.1f} ns/bar")
    engine = rows["engine, micro-batches of 1024"]
    peers = list(rows.values())[3:]
    print(f"  engine(1024) / TA-Lib batch            {engine / peers[0]:8.2f}x   (target <= 1.5)")
    print(f"  TA-Lib streaming / engine(1024)        {peers[1] / engine:8.1f}x   (target >= 10)")
    print(f"  talipp / engine(1024)                  {peers[2] / engine:8.1f}x   (target >= 300)")
    print(f"  engine state: {state_bytes:,} bytes per instrument")


if __name__ == "__main__":
    main()
