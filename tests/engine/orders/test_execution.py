"""``risk_management.execution`` (docs/orders.md): valid settings, path-precise errors, and the loader's bad rows."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.errors import ConfigError, DocumentError
from engine.orders.execution import Execution, Product
from engine.strategy import InvalidStrategyRow, deployment_from_row, deployments_from_rows
from tests.engine.strategy.test_deployments import DECLARATIVE, DEMO

WHERE = "risk_management.execution"


def test_a_fixed_quantity_mis_row():
    ex = Execution.from_json({"mode": "paper", "product": "MIS", "quantity": 10, "slippage_bps": 5})
    assert ex == Execution(Product.MIS, quantity=10, slippage_bps=Decimal(5))
    assert ex.quantity_at(Decimal("2500.00")) == 10 and ex.mode == "paper"


def test_a_capital_cnc_row_sizes_by_floor_of_capital_over_price():
    ex = Execution.from_json({"mode": "paper", "product": "CNC", "capital": "25000.50"})
    assert (ex.product, ex.quantity, ex.capital, ex.slippage_bps) == (Product.CNC, None, Decimal("25000.50"), 0)
    assert ex.quantity_at(Decimal("2500.00")) == 10  # 25,000.50 / 2,500 = 10.0002
    assert ex.quantity_at(Decimal("2500.06")) == 9  # 25,000.50 / 2,500.06 = 9.99996...
    assert ex.quantity_at(Decimal("30000")) == 0  # buys none: the gate rejects it (zero_quantity)


def test_numbers_are_read_exactly():
    ex = Execution.from_json({"mode": "paper", "product": "MIS", "capital": 0.1, "slippage_bps": 2.5})
    assert ex.capital == Decimal("0.1") and ex.slippage_bps == Decimal("2.5")  # not 0.1000000000000000055...
    one = {"mode": "paper", "product": "MIS", "quantity": 1}
    assert Execution.from_json({**one, "slippage_bps": 1000}).slippage_bps == 1000  # the bound is allowed
    assert Execution.from_json({**one, "slippage_bps": "0"}).slippage_bps == 0


@pytest.mark.parametrize(
    "doc",
    [
        {"mode": "paper", "product": "MIS", "quantity": 10},
        {"mode": "paper", "product": "CNC", "capital": "12345.67", "slippage_bps": "7.5"},
    ],
)
def test_settings_survive_their_json(doc):
    ex = Execution.from_json(doc)
    assert Execution.from_json(ex.to_json()) == ex


ACCOUNT = "0b7c4f4e-5d1a-4c2b-9a57-3f1e2d9c8b01"


@pytest.mark.parametrize(
    ("doc", "path", "fragment"),
    [
        ([], WHERE, "must be an object"),
        ("paper", WHERE, "must be an object"),
        ({"mode": "live", "product": "MIS", "quantity": 1}, f"{WHERE}.broker_account", "'live' needs the id of"),
        ({"mode": "live", "product": "MIS", "quantity": 1, "broker_account": "acct-1"}, f"{WHERE}.broker_account",
         "got 'acct-1'"),
        ({"mode": "paper", "product": "MIS", "quantity": 1, "broker_account": ACCOUNT}, f"{WHERE}.broker_account",
         "only a 'live' row"),
        ({"product": "MIS", "quantity": 1}, f"{WHERE}.mode", "must be 'paper' or 'live', got None"),
        ({"mode": "PAPER", "product": "MIS", "quantity": 1}, f"{WHERE}.mode", "must be 'paper' or 'live'"),
        ({"mode": "paper", "product": "NRML", "quantity": 1}, f"{WHERE}.product", "'MIS' or 'CNC', got 'NRML'"),
        ({"mode": "paper", "product": "mis", "quantity": 1}, f"{WHERE}.product", "'MIS' or 'CNC'"),
        ({"mode": "paper", "quantity": 1}, f"{WHERE}.product", "got None"),
        ({"mode": "paper", "product": "MIS", "quantity": 0}, f"{WHERE}.quantity", "integer ≥ 1, got 0"),
        ({"mode": "paper", "product": "MIS", "quantity": -3}, f"{WHERE}.quantity", "integer ≥ 1"),
        ({"mode": "paper", "product": "MIS", "quantity": True}, f"{WHERE}.quantity", "got True"),
        ({"mode": "paper", "product": "MIS", "quantity": 10.0}, f"{WHERE}.quantity", "got 10.0"),
        ({"mode": "paper", "product": "MIS", "quantity": "10"}, f"{WHERE}.quantity", "got '10'"),
        ({"mode": "paper", "product": "MIS", "capital": 0}, f"{WHERE}.capital", "≥ 0.01"),
        ({"mode": "paper", "product": "MIS", "capital": -100}, f"{WHERE}.capital", "≥ 0.01"),
        ({"mode": "paper", "product": "MIS", "capital": "lots"}, f"{WHERE}.capital", "must be a number"),
        ({"mode": "paper", "product": "MIS", "capital": True}, f"{WHERE}.capital", "must be a number"),
        ({"mode": "paper", "product": "MIS", "capital": [1000]}, f"{WHERE}.capital", "must be a number"),
        ({"mode": "paper", "product": "MIS", "capital": float("nan")}, f"{WHERE}.capital", "must be a number"),
        ({"mode": "paper", "product": "MIS", "capital": "Infinity"}, f"{WHERE}.capital", "must be a number"),
        ({"mode": "paper", "product": "MIS", "quantity": 1, "capital": 1000}, WHERE, "exactly one of"),
        ({"mode": "paper", "product": "MIS"}, WHERE, "exactly one of"),
        ({"mode": "paper", "product": "MIS", "quantity": None, "capital": None}, WHERE, "exactly one of"),
        ({"mode": "paper", "product": "MIS", "quantity": 1, "qty": 1}, f"{WHERE}.qty", "unknown key"),
        ({"mode": "paper", "product": "MIS", "quantity": 1, "slippage_bps": 1001}, f"{WHERE}.slippage_bps", "≤ 1000"),
        ({"mode": "paper", "product": "MIS", "quantity": 1, "slippage_bps": -1}, f"{WHERE}.slippage_bps", "≥ 0"),
        ({"mode": "paper", "product": "MIS", "quantity": 1, "slippage_bps": "x"}, f"{WHERE}.slippage_bps", "number"),
        ({"mode": "paper", "product": "MIS", "quantity": 1, "slippage_bps": False}, f"{WHERE}.slippage_bps", "number"),
    ],
)
def test_a_bad_setting_names_its_path(doc, path, fragment):
    with pytest.raises(DocumentError) as caught:
        Execution.from_json(doc)
    assert caught.value.path == path and fragment in caught.value.problem
    assert str(caught.value).startswith(f"{path}: ") and isinstance(caught.value, ConfigError)


def test_live_names_its_broker_account():
    with pytest.raises(DocumentError) as caught:
        Execution.from_json({"mode": "live", "product": "MIS", "quantity": 1})
    assert caught.value.problem == ("'live' needs the id of a connected broker account (sharewise broker list),"
                                    " got None")
    live = Execution.from_json({"mode": "live", "broker_account": ACCOUNT.upper(), "product": "MIS", "quantity": 1})
    assert live.live and live.broker_account == ACCOUNT  # normalised, so every signal of the row names it alike
    assert Execution.from_json(live.to_json()) == live
    assert not Execution.from_json({"mode": "paper", "product": "MIS", "quantity": 1}).live


def test_the_path_prefix_can_be_chosen():
    with pytest.raises(DocumentError) as caught:
        Execution.from_json({"mode": "paper", "product": "MIS", "quantity": 0}, where="--execution")
    assert caught.value.path == "--execution.quantity"


# --- the loader -------------------------------------------------------------------------------


def test_a_row_with_an_execution_trades_and_one_without_gives_signals_only():
    trading = {**DEMO, "risk_management": {"execution": {"mode": "paper", "product": "CNC", "quantity": 5}}}
    assert deployment_from_row(trading).execution == Execution(Product.CNC, quantity=5)
    as_text = {**DEMO, "risk_management": '{"target_atr": 3, "execution": {"mode": "paper", "product": "MIS", '
                                          '"capital": 50000, "slippage_bps": 5}}'}  # fmt: skip
    d = deployment_from_row(as_text)
    assert d.execution == Execution(Product.MIS, capital=Decimal(50000), slippage_bps=Decimal(5))
    assert deployment_from_row(DEMO).execution is None
    assert deployment_from_row({**DEMO, "risk_management": {"execution": None}}).execution is None
    declarative = {**DECLARATIVE, "risk_management": {"stop_atr": 1.5, "execution": {"mode": "paper",
                                                                                      "product": "MIS", "quantity": 2}}}
    assert deployment_from_row(declarative).execution == Execution(Product.MIS, quantity=2)


@pytest.mark.parametrize(
    ("execution", "path", "fragment"),
    [
        ({"mode": "paper", "product": "NRML", "quantity": 1}, f"{WHERE}.product", "'MIS' or 'CNC'"),
        ({"mode": "live", "product": "MIS", "quantity": 1}, f"{WHERE}.broker_account", "'live'"),
        ({"mode": "paper", "product": "MIS", "quantity": 1.5}, f"{WHERE}.quantity", "integer ≥ 1"),
        ({"mode": "paper", "product": "MIS"}, WHERE, "exactly one of"),
        ({"mode": "paper", "product": "MIS", "quantity": 1, "slippage_bps": 5000}, f"{WHERE}.slippage_bps", "≤ 1000"),
        ("paper", WHERE, "must be an object"),
    ],
)
@pytest.mark.parametrize("row", [DEMO, DECLARATIVE], ids=["named", "declarative"])
def test_a_row_with_a_bad_execution_is_an_invalid_row_naming_the_path(row, execution, path, fragment):
    errors: list[InvalidStrategyRow] = []
    bad = {**row, "risk_management": {"target_atr": 2, "execution": execution}}
    good = {**row, "id": "good"}
    assert [d.strategy_id for d in deployments_from_rows([bad, good], errors)] == ["good"]
    [error] = errors
    assert error.path == path and fragment in error.problem
    assert error.as_dict() == {"error": "InvalidStrategyRow", "strategy_id": row["id"], "user_id": row["user_id"],
                               "name": row["name"], "path": path, "message": error.problem}  # fmt: skip
    with pytest.raises(InvalidStrategyRow):
        deployment_from_row(bad)
