"""Tick packets: decode/validate into columns, one reason per bad line, encode round trip."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import orjson
import pytest
from hypothesis import given, settings, strategies as st

from engine.bars import BarAggregator
from engine.cli.files import builtin_instruments
from engine.domain import IST, Reason, Tick, datetime_to_ns
from engine.instruments import InstrumentRegistry
from engine.ticks import DecodedTicks, decode_packets, encode_packet, encode_tick

REGISTRY = InstrumentRegistry(builtin_instruments())
OPEN_MS = 1767584700000  # 2026-01-05 09:15:00 IST


def decode_packet(data: bytes, registry: InstrumentRegistry) -> DecodedTicks:
    """Decode one message (a packet or a single tick); see :func:`decode_packets`."""
    return decode_packets([data], registry)


def line(**fields: object) -> bytes:
    tick = {"symbol": "TCS", "time": OPEN_MS, "price": 3100.5, "qty": 3}
    tick.update(fields)
    return orjson.dumps({k: v for k, v in tick.items() if v is not ...})


BAD_LINES = [
    (b"not json", Reason.BAD_JSON),
    (b"[1, 2]", Reason.BAD_JSON),
    (b'{"symbol": "TCS", "time": 1767584700000', Reason.BAD_JSON),
    (line(price=...), Reason.MISSING_FIELD),
    (line(symbol=..., qty=...), Reason.MISSING_FIELD),
    (b'{"symbol":"TCS","time":1767584700000,"price":NaN,"qty":1}', Reason.BAD_PRICE),
    (b'{"symbol":"TCS","time":1767584700000,"price":Infinity,"qty":1}', Reason.BAD_PRICE),
    (line(price=-1.5), Reason.BAD_PRICE),
    (line(price=0), Reason.BAD_PRICE),
    (line(price=2e9), Reason.BAD_PRICE),
    (line(price="3100.5"), Reason.BAD_PRICE),
    (line(price=True), Reason.BAD_PRICE),
    (line(price=None), Reason.BAD_PRICE),
    (line(qty=-1), Reason.BAD_QTY),
    (line(qty="ten"), Reason.BAD_QTY),
    (b'{"symbol":"TCS","time":1767584700000,"price":1.0,"qty":NaN}', Reason.BAD_QTY),
    (line(time="2026-01-05T09:15:00"), Reason.BAD_TIME),  # no offset
    (line(time="yesterday"), Reason.BAD_TIME),
    (line(time=1767584700.5), Reason.BAD_TIME),  # float: ms must be an integer
    (line(time=OPEN_MS * 1000), Reason.BAD_TIME),  # microseconds: outside 2000-2100 as ms
    (line(symbol="ACME"), Reason.UNKNOWN_SYMBOL),
    (line(symbol="tcs"), Reason.UNKNOWN_SYMBOL),
    (line(symbol=7), Reason.UNKNOWN_SYMBOL),
    (line(time=OPEN_MS - 1), Reason.OUT_OF_SESSION),  # 09:14:59.999
    (line(time="2026-01-05T15:30:00+05:30"), Reason.OUT_OF_SESSION),
]


def test_each_bad_line_gets_its_reason_and_good_lines_survive() -> None:
    good = [line(), line(time="2026-01-05T09:16:00.5+05:30", price=3101, qty=0), line(symbol="M&M", time=OPEN_MS + 1)]
    lines = [good[0]] + [raw for raw, _ in BAD_LINES] + good[1:]
    decoded = decode_packet(b"\n".join(lines), REGISTRY)
    assert [(r.line, r.raw, r.reason) for r in decoded.rejects] == [
        (k + 1, raw, reason) for k, (raw, reason) in enumerate(BAD_LINES)
    ]
    assert all(r.detail for r in decoded.rejects)
    n = len(lines)
    assert decoded.line.tolist() == [0, n - 2, n - 1]
    assert decoded.inst.tolist() == [REGISTRY.index["TCS"], REGISTRY.index["TCS"], REGISTRY.index["M&M"]]
    ist_ms = datetime_to_ns(datetime(2026, 1, 5, 9, 16, 0, 500_000, tzinfo=IST))
    assert decoded.ts_ns.tolist() == [OPEN_MS * 10**6, ist_ms, (OPEN_MS + 1) * 10**6]
    assert decoded.price.tolist() == [3100.5, 3101.0, 3100.5]
    assert decoded.qty.tolist() == [3.0, 0.0, 3.0]
    assert decoded.inst.dtype == np.int64 and decoded.ts_ns.dtype == np.int64


def test_batch_of_messages_keeps_message_and_line_of_every_tick() -> None:
    values = [line() + b"\n" + line(price=-1), b"\n\n", line(qty=5) + b"\r\n" + b"garbage\r\n" + line(qty=6)]
    decoded = decode_packets(values, REGISTRY)
    assert decoded.message.tolist() == [0, 2, 2] and decoded.line.tolist() == [0, 0, 2]
    assert decoded.qty.tolist() == [3.0, 5.0, 6.0]
    assert [(r.message, r.line, r.reason) for r in decoded.rejects] == [
        (0, 1, Reason.BAD_PRICE), (2, 1, Reason.BAD_JSON),
    ]  # fmt: skip


def test_a_pretty_printed_single_tick_is_one_tick() -> None:
    pretty = orjson.dumps(orjson.loads(line()), option=orjson.OPT_INDENT_2)
    assert pretty.count(b"\n") > 3
    decoded = decode_packet(pretty, REGISTRY)
    assert len(decoded) == 1 and not decoded.rejects


def test_late_ticks_from_the_aggregator_become_rejects_with_original_bytes() -> None:
    lines = [line(time=OPEN_MS + 10_000), line(time=OPEN_MS + 7_000), line(time=OPEN_MS + 9_000)]
    decoded = decode_packets([b"\n".join(lines)], REGISTRY)
    status = BarAggregator(len(REGISTRY), lateness_s=2.0).update(
        decoded.inst, decoded.ts_ns, decoded.price, decoded.qty
    )
    late = decoded.rejected_by(status)
    assert [(r.line, r.raw, r.reason) for r in late] == [(1, lines[1], Reason.LATE)]


timestamps = st.integers(0, 375 * 60 * 1000 - 1).map(lambda ms: (OPEN_MS + ms) * 10**6)
ticks = st.builds(
    Tick,
    symbol=st.sampled_from(REGISTRY.symbols),
    ts_ns=st.one_of(timestamps, timestamps.map(lambda ns: ns + 123_000)),  # whole ms, or sub-ms (µs)
    price=st.floats(0.01, 1e6),
    qty=st.one_of(st.integers(0, 10**6), st.floats(0, 1e6)),
)


@settings(deadline=None)
@given(st.lists(ticks, max_size=50))
def test_encode_then_decode_round_trips(batch: list[Tick]) -> None:
    decoded = decode_packet(encode_packet(batch), REGISTRY)
    assert not decoded.rejects
    assert decoded.inst.tolist() == [REGISTRY.index[t.symbol] for t in batch]
    assert decoded.ts_ns.tolist() == [t.ts_ns for t in batch]
    assert decoded.price.tolist() == [t.price for t in batch]
    assert decoded.qty.tolist() == [float(t.qty) for t in batch]


junk = st.one_of(st.sampled_from([raw for raw, _ in BAD_LINES]), st.binary(max_size=30).filter(lambda b: b"\n" not in b))


@settings(deadline=None)
@given(st.lists(st.one_of(ticks.map(encode_tick), junk), max_size=40))
def test_every_non_blank_line_is_either_a_tick_or_one_reject(lines: list[bytes]) -> None:
    decoded = decode_packet(b"\n".join(lines), REGISTRY)
    rejected = [r.line for r in decoded.rejects]
    assert not set(rejected) & set(decoded.line.tolist())
    non_blank = [k for k, raw in enumerate(lines) if raw.strip()]
    assert sorted(rejected + decoded.line.tolist()) == non_blank


def test_encode_tick_uses_epoch_ms_when_whole() -> None:
    assert orjson.loads(encode_tick(Tick("TCS", OPEN_MS * 10**6, 1.5, 2)))["time"] == OPEN_MS
    assert orjson.loads(encode_tick(Tick("TCS", OPEN_MS * 10**6 + 250_000, 1.5, 2)))["time"] == (
        "2026-01-05T03:45:00.000250+00:00"
    )


@pytest.mark.parametrize("text", ["2026-01-05T03:45:00Z", "2026-01-05T09:15:00+05:30", "2026-01-04T22:15:00-05:30"])
def test_iso_times_with_any_offset(text: str) -> None:
    decoded = decode_packet(line(time=text), REGISTRY)
    assert decoded.ts_ns.tolist() == [OPEN_MS * 10**6]


# --- columnar packets ----------------------------------------------------------------------------

from engine.ticks import COLUMNAR_PREFIX, encode_columnar  # noqa: E402

GOOD = [("TCS", OPEN_MS + k, 3100.5 + k, k) for k in range(7)] + [("INFY", OPEN_MS + 9, 1500.25, 0.5)]


def test_a_columnar_packet_decodes_to_the_same_columns_as_its_ndjson_packet():
    columnar = encode_columnar(*zip(*GOOD))
    ndjson = b"\n".join(line(symbol=s, time=t, price=p, qty=q) for s, t, p, q in GOOD)
    assert columnar.startswith(COLUMNAR_PREFIX)
    a, b = decode_packets([columnar, columnar], REGISTRY), decode_packets([ndjson, ndjson], REGISTRY)
    for name in ("inst", "ts_ns", "price", "qty", "message", "line"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.rejects == [] and len(a) == 2 * len(GOOD)


@pytest.mark.parametrize("bad, reason", [
    (("NOPE", OPEN_MS, 10.0, 1), Reason.UNKNOWN_SYMBOL),
    (("TCS", OPEN_MS, -1.0, 1), Reason.BAD_PRICE),
    (("TCS", OPEN_MS, 10.0, -1), Reason.BAD_QTY),
    (("TCS", "yesterday", 10.0, 1), Reason.BAD_TIME),
    (("TCS", OPEN_MS, True, 1), Reason.BAD_PRICE),
])
def test_a_bad_tick_in_a_columnar_packet_is_judged_alone_with_its_own_json(bad, reason):
    rows = GOOD[:3] + [bad] + GOOD[3:]
    decoded = decode_packet(encode_columnar(*zip(*rows)), REGISTRY)
    assert len(decoded) == len(GOOD)
    [reject] = decoded.rejects
    assert (reject.line, reject.reason) == (3, reason)
    assert orjson.loads(reject.raw) == dict(zip(("symbol", "time", "price", "qty"), bad))


def test_a_malformed_columnar_packet_is_one_reject():
    for raw in (COLUMNAR_PREFIX + b'"symbol": ["TCS"]', COLUMNAR_PREFIX + b'"symbol":["TCS"],"time":[1],"price":[1],"qty":[]}'):
        decoded = decode_packet(raw, REGISTRY)
        assert len(decoded) == 0 and len(decoded.rejects) == 1
        assert decoded.rejects[0].raw == raw


def test_a_late_tick_of_a_columnar_packet_keeps_its_rendered_line():
    agg = BarAggregator(len(REGISTRY), lateness_s=1.0)
    rows = [("TCS", OPEN_MS + 60_000, 10.0, 1), ("TCS", OPEN_MS, 11.0, 1)]
    decoded = decode_packet(encode_columnar(*zip(*rows)), REGISTRY)
    status = agg.update(decoded.inst, decoded.ts_ns, decoded.price, decoded.qty)
    [late] = decoded.rejected_by(status)
    assert late.reason == Reason.LATE and orjson.loads(late.raw)["price"] == 11.0
