"""The feed protocol state machine, without a server: frames in, frames/requests/close out."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.feed.protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    Authenticate,
    FeedSession,
    Identity,
    SessionState,
    Subscribe,
    Unsubscribe,
)

USER = "6f1c3a52-9a43-4c1f-8d2e-0b7f3f1d2a10"


def frames(session: FeedSession) -> list[dict]:
    return [orjson.loads(f) for f in session.data_to_send()]


def open_session(tier: str = "PRO", channels: tuple[str, ...] = ("signals", "orders", "notifications", "bars")
                 ) -> FeedSession:
    session = FeedSession()
    session.receive_text('{"op":"auth","token":"t"}')
    assert session.requests_received() == [Authenticate("t")]
    session.auth_succeeded(Identity(USER, tier, frozenset(channels), "jti"))
    assert frames(session)[0]["op"] == "auth_ok"
    return session


def test_auth_then_subscribe_yields_requests_and_frames() -> None:
    session = FeedSession()
    session.receive_text(b'{"op":"auth","token":"abc"}')
    assert session.state is SessionState.AUTHENTICATING
    assert session.requests_received() == [Authenticate("abc")]
    session.auth_succeeded(Identity(USER, "FREE", frozenset({"signals", "bars"}), "j"))
    assert frames(session) == [{"op": "auth_ok", "user_id": USER, "tier": "FREE", "channels": ["signals", "bars"]}]
    session.receive_text('{"op":"subscribe","channel":"signals","symbols":["reliance","TCS"],"since_seq":7}')
    [request] = session.requests_received()
    assert request == Subscribe("signals", frozenset({"RELIANCE", "TCS"}), 7)
    session.subscribed(request, 12)
    assert frames(session) == [{"op": "subscribed", "channel": "signals", "symbols": ["RELIANCE", "TCS"],
                                "since_seq": 7, "seq": 12}]


@pytest.mark.parametrize("first", ['{"op":"auth"}', '{"op":"auth","token":""}', '{"op":"auth","token":5}',
                                   '{"op":"subscribe","channel":"signals"}', '{"op":"unsubscribe","channel":"bars"}'])
def test_missing_token_or_no_auth_closes_4401(first: str) -> None:
    session = FeedSession()
    session.receive_text(first)
    assert session.state is SessionState.CLOSED
    assert session.close is not None and session.close.code == CLOSE_UNAUTHORIZED
    assert session.requests_received() == []


def test_auth_failure_and_timeout_close_4401() -> None:
    session = FeedSession()
    session.receive_text('{"op":"auth","token":"x"}')
    session.auth_failed("expired")
    assert session.close is not None and (session.close.code, session.close.reason) == (4401, "unauthorized: expired")
    late = FeedSession()
    late.auth_timed_out()
    assert late.close is not None and late.close.code == CLOSE_UNAUTHORIZED
    opened = open_session()
    opened.auth_timed_out()
    assert opened.close is None


@pytest.mark.parametrize("text, reason", [
    ("{not json", "bad_json"),
    ("[1,2]", "bad_json"),
    ('"hello"', "bad_json"),
    ('{"op":"dance"}', "unknown_op"),
    ('{"channel":"signals"}', "unknown_op"),
    ('{"op":5}', "unknown_op"),
    ('{"op":"subscribe","channel":"gossip"}', "bad_argument"),
    ('{"op":"subscribe","channel":"signals","since_seq":-1}', "bad_argument"),
    ('{"op":"subscribe","channel":"signals","since_seq":"3"}', "bad_argument"),
    ('{"op":"subscribe","channel":"signals","since_seq":true}', "bad_argument"),
    ('{"op":"subscribe","channel":"signals","since_seq":1.5}', "bad_argument"),
    ('{"op":"subscribe","channel":"signals","since_seq":9223372036854775808}', "bad_argument"),
    ('{"op":"subscribe","channel":"signals","symbols":[]}', "bad_argument"),
    ('{"op":"subscribe","channel":"signals","symbols":"TCS"}', "bad_argument"),
    ('{"op":"subscribe","channel":"signals","symbols":["<script>"]}', "bad_argument"),
    ('{"op":"subscribe","channel":"signals","symbols":[1]}', "bad_argument"),
    ('{"op":"auth","token":"again"}', "bad_argument"),
])
def test_malformed_frames_get_an_error_and_the_session_stays_usable(text: str, reason: str) -> None:
    session = open_session()
    session.receive_text(text)
    [error] = frames(session)
    assert error["op"] == "error" and error["reason"] == reason and error["detail"]
    assert session.state is SessionState.OPEN and session.requests_received() == []
    session.receive_text('{"op":"ping","id":42}')
    assert frames(session) == [{"op": "pong", "id": 42}]


def test_binary_frames_get_an_error() -> None:
    session = open_session()
    session.receive_binary(b"\x00\x01")
    assert frames(session)[0]["reason"] == "binary_not_supported"
    assert session.state is SessionState.OPEN


def test_ping_works_before_auth() -> None:
    session = FeedSession()
    session.receive_text('{"op":"ping"}')
    assert frames(session) == [{"op": "pong"}]
    assert session.state is SessionState.AWAITING_AUTH


def test_channel_outside_the_token_closes_4403() -> None:
    session = open_session(channels=("signals",))
    session.receive_text('{"op":"subscribe","channel":"orders"}')
    assert session.close is not None and session.close.code == CLOSE_FORBIDDEN
    assert "orders" in session.close.reason
    assert session.requests_received() == []


@pytest.mark.parametrize("tier, allowed, refused", [("FREE", 5, 6), ("PRO", 50, 51)])
def test_bar_symbols_are_limited_by_tier(tier: str, allowed: int, refused: int) -> None:
    session = open_session(tier=tier)
    many = [f"SYM{i}" for i in range(refused)]
    session.receive_text(orjson.dumps({"op": "subscribe", "channel": "bars", "symbols": many}))
    [error] = frames(session)
    assert error["reason"] == "symbol_limit" and error["limit"] == allowed and error["tier"] == tier
    assert str(allowed) in error["detail"]
    session.receive_text('{"op":"subscribe","channel":"bars"}')
    assert frames(session)[0]["reason"] == "symbol_limit"
    session.receive_text(orjson.dumps({"op": "subscribe", "channel": "bars", "symbols": many[:allowed]}))
    assert session.requests_received() == [Subscribe("bars", frozenset(many[:allowed]), None)]
    assert session.state is SessionState.OPEN


def test_elite_may_follow_every_bar() -> None:
    session = open_session(tier="ELITE")
    session.receive_text('{"op":"subscribe","channel":"bars"}')
    assert session.requests_received() == [Subscribe("bars", None, None)]


def test_personal_channels_have_no_symbol_limit() -> None:
    session = open_session(tier="FREE")
    session.receive_text(orjson.dumps({"op": "subscribe", "channel": "signals", "symbols": [f"S{i}" for i in range(40)]}))
    assert len(session.requests_received()) == 1


def test_unsubscribe_and_unrecoverable_and_too_slow() -> None:
    session = open_session()
    session.receive_text('{"op":"unsubscribe","channel":"orders"}')
    [request] = session.requests_received()
    assert request == Unsubscribe("orders")
    session.unsubscribed(request)
    assert frames(session) == [{"op": "unsubscribed", "channel": "orders"}]
    sub = Subscribe("signals", None, 3)
    session.unrecoverable(sub)
    [error] = frames(session)
    assert (error["op"], error["reason"], error["channel"], error["since_seq"]) == ("error", "unrecoverable", "signals", 3)
    session.too_slow()
    assert session.close is not None and session.close.code == CLOSE_TOO_SLOW
    session.receive_text('{"op":"ping"}')
    assert session.data_to_send() == []


def test_secrets_do_not_leak_through_reprs() -> None:
    assert "secret-token" not in repr(Authenticate("secret-token"))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                 st.dictionaries(st.sampled_from(["op", "channel", "symbols", "since_seq", "token", "id"]),
                                 st.one_of(st.none(), st.integers(), st.text(max_size=20), st.booleans(),
                                           st.lists(st.text(max_size=8), max_size=3),
                                           st.sampled_from(["auth", "subscribe", "unsubscribe", "ping", "bars",
                                                            "signals"])),
                                 max_size=5).map(json.dumps)))
def test_any_text_frame_leaves_an_open_session_open_or_answers_it(text: str) -> None:
    session = open_session(tier="FREE", channels=("signals", "bars"))
    session.receive_text(text)
    out = frames(session)
    requests = session.requests_received()
    if session.state is SessionState.CLOSED:
        assert session.close is not None and session.close.code in (CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN)
    else:
        assert len(out) + len(requests) >= 1 or orjson.loads(text).get("op") == "unsubscribe"
        for request in requests:
            assert not isinstance(request, Subscribe) or request.channel in ("signals", "bars")
