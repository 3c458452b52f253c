"""The order path's fast ids equal the standard library's uuid5 (ids are part of the contract: docs/orders.md)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from engine.orders.ids import ORDER_EVENT_NAMESPACE, ORDER_NAMESPACE, order_event_id, order_id, order_key, order_tag, uuid5_text


@given(st.text())
def test_uuid5_text_is_uuid5(name):
    assert uuid5_text(ORDER_EVENT_NAMESPACE, name) == str(uuid.uuid5(ORDER_EVENT_NAMESPACE, name))


def test_order_ids_and_tags():
    key = "3f0c9a52-4a1e-5d0b-9a52-000000000001|entry"
    assert order_key(key) == str(order_id(key)) == str(uuid.uuid5(ORDER_NAMESPACE, key))
    ident = order_id(key)
    assert order_event_id(str(ident), "COMPLETE") == str(uuid.uuid5(ORDER_EVENT_NAMESPACE, f"{ident}|COMPLETE"))
    assert order_tag(ident) == str(ident).replace("-", "")[:20] and len(order_tag(ident)) == 20
