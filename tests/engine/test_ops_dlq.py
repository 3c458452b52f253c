"""Dead-letter records, their tally, and the replay marks that make a replay happen once."""

from __future__ import annotations

import base64

import orjson
import pytest

from engine.errors import BadData
from engine.ops.dlq import (
    DeadLetter, DeadLetterTally, DlqEntry, is_replay_group, newest, replay_group, replay_start, replayed_before,
)

TICK = b'{"symbol":"TCS","time":1767584700000,"price":-1,"qty":1}'


def _record(reason: str = "bad_price", **extra: object) -> bytes:
    doc = {"reason": reason, "detail": "price <= 0", "topic": "market.ticks", "partition": 3, "offset": 41, "line": 2,
           "original": TICK.decode()}
    doc.update(extra)
    return orjson.dumps(doc)


def test_a_record_round_trips_through_parse_and_as_dict():
    letter = DeadLetter.parse(_record())
    assert (letter.reason, letter.partition, letter.offset, letter.line) == ("bad_price", 3, 41, 2)
    assert letter.original == TICK
    assert letter.symbol() == "TCS"
    assert DeadLetter.parse(orjson.dumps(letter.as_dict())) == letter


def test_non_utf8_originals_travel_as_base64():
    raw = b"\xff\xfe not text"
    doc = orjson.loads(_record())
    del doc["original"]
    doc["original_b64"] = base64.b64encode(raw).decode()
    letter = DeadLetter.parse(orjson.dumps(doc))
    assert letter.original == raw and letter.symbol() is None
    assert letter.as_dict()["original_b64"] == doc["original_b64"]


@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", b'{"detail": "no reason"}',
                                   b'{"reason": "x", "original_b64": "***"}'])
def test_what_is_not_a_dead_letter_is_bad_data(value):
    with pytest.raises(BadData) as exc:
        DeadLetter.parse(value)
    assert exc.value.reason == "dlq_unreadable"


def test_symbol_only_from_a_json_object_with_a_string_symbol():
    for original, symbol in [(b'{"symbol": 5}', None), (b'{"price": 1}', None), (b"[]", None), (b"{bad", None),
                             (b'{"symbol": "INFY"}', "INFY")]:
        assert DeadLetter("r", "", None, None, None, None, original).symbol() == symbol


def test_replay_marks_per_reason_and_for_all():
    marks = {replay_group(None): {0: 5}, replay_group("bad_price"): {0: 9, 1: 2}}
    assert replayed_before(0, 4, "unknown_symbol", marks)
    assert not replayed_before(0, 5, "unknown_symbol", marks)
    assert replayed_before(0, 8, "bad_price", marks)
    assert not replayed_before(1, 2, "bad_price", marks)
    assert replay_start(0, None, marks) == 5
    assert replay_start(0, "bad_price", marks) == 9
    assert replay_start(2, "bad_price", marks) == 0
    assert is_replay_group(replay_group("x")) and is_replay_group(replay_group(None))
    assert not is_replay_group("sharewise-engine") and not is_replay_group("sharewise-dlq-replayer")


def test_tally_counts_by_reason_and_keeps_the_newest():
    entries = [DlqEntry.read(p, o, 1000 * o + p, _record("bad_price" if o % 2 else "late"))
               for p in (0, 1) for o in range(4)]
    entries.append(DlqEntry.read(1, 4, 99_000, b"garbage"))
    tally = DeadLetterTally(examples=3)
    tally.add(entries[:5])
    tally.add(entries[5:])
    assert tally.counts == {"bad_price": 4, "late": 4, "dlq_unreadable": 1}
    assert tally.positions == {0: 4, 1: 5}
    assert [(e.partition, e.offset) for e in tally.latest] == [(0, 3), (1, 3), (1, 4)]
    assert newest(entries, 0) == []
