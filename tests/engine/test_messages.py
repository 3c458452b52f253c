"""Size rules of produced messages: packing lines under the limit, and dead-letter records that always fit."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.messages import TooLarge, dead_letter_record, pack_lines


@given(st.lists(st.binary(min_size=0, max_size=60).map(lambda b: b.replace(b"\n", b"")), max_size=80),
       st.integers(min_value=60, max_value=400))
def test_packed_messages_fit_keep_every_line_in_order(lines, limit):
    packets = list(pack_lines(lines, limit))
    assert all(len(p) <= limit for p in packets)
    assert [line for p in packets for line in p.split(b"\n")] == (lines if lines else [])
    # greedy: no two neighbours would have fitted together
    assert all(len(a) + 1 + len(b) > limit for a, b in zip(packets, packets[1:]))


def test_a_line_larger_than_a_message_is_refused_by_name():
    with pytest.raises(TooLarge, match="1001 bytes"):
        list(pack_lines([b"x" * 10, b"y" * 1001], 1000))


def test_bars_of_a_big_batch_become_several_messages_under_the_limit():
    bar = orjson.dumps({"symbol": "RELIANCE", "timeframe": "1m", "indicators": {f"c{i}": 1.5 for i in range(25)}})
    packets = list(pack_lines([bar] * 5000, 1_000_000))  # ~2.4 MB of bars: the backfill burst
    assert len(packets) >= 2 and all(len(p) <= 1_000_000 for p in packets)
    assert sum(p.count(b"\n") + 1 for p in packets) == 5000


def test_a_small_dead_letter_keeps_its_original_whole():
    record = orjson.loads(dead_letter_record("bad_json", "not JSON", b'{"symbol": "TCS"', topic="market.ticks",
                                            partition=3, offset=17, line=0))
    assert record == {"reason": "bad_json", "detail": "not JSON", "topic": "market.ticks", "partition": 3,
                      "offset": 17, "line": 0, "original": '{"symbol": "TCS"'}


@pytest.mark.parametrize("raw", [b"A" * 3_000_000, b"\x01" * 3_000_000, bytes(range(256)) * 12_000],
                         ids=["text", "control-bytes", "binary"])
def test_a_dead_letter_of_a_huge_original_keeps_its_first_bytes_length_and_sha256(raw):
    value = dead_letter_record("too_large", "too big", raw, topic="market.ticks", partition=0, offset=5, line=None,
                               max_bytes=1_000_000)
    assert len(value) <= 1_000_000
    record = orjson.loads(value)
    kept = record["original"].encode() if "original" in record else base64.b64decode(record["original_b64"])
    assert record["truncated"] is True and record["original_length"] == len(raw)
    assert record["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert raw.startswith(kept) and len(kept) > 1000
