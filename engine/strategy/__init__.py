"""Strategies: the plugin API, discovery, declarative rules, the isolating runner and backtests.

The names the pipeline and plugin authors use are re-exported here::

    from engine.strategy import Strategy, StrategyConfig, param, SignalIntent, SignalType, IndicatorView
    from engine.strategy import StrategyRunner, Deployment, deployments_from_rows, signal_record
"""

from engine.strategy.api import (
    DocumentError,
    IndicatorView,
    Risk,
    SignalIntent,
    SignalType,
    Strategy,
    buy_sell,
    confidence_from,
    crossed_above,
    crossed_below,
)
from engine.strategy.config import Param, StrategyConfig, param
from engine.strategy.deployments import InvalidStrategyRow, deployment_from_row, deployments_from_rows
from engine.strategy.discovery import StrategyInfo, available, create
from engine.strategy.rules import RuleError, parse_rule
from engine.strategy.runner import Deployment, EmittedSignal, FailureKind, StrategyFailure, StrategyRunner
from engine.strategy.signals import SignalRecord, round_price, signal_record
from engine.strategy.specs import column_of

__all__ = [
    "Deployment",
    "DocumentError",
    "EmittedSignal",
    "FailureKind",
    "IndicatorView",
    "InvalidStrategyRow",
    "Param",
    "Risk",
    "RuleError",
    "SignalIntent",
    "SignalRecord",
    "SignalType",
    "Strategy",
    "StrategyConfig",
    "StrategyFailure",
    "StrategyInfo",
    "StrategyRunner",
    "available",
    "buy_sell",
    "column_of",
    "confidence_from",
    "create",
    "crossed_above",
    "crossed_below",
    "deployment_from_row",
    "deployments_from_rows",
    "param",
    "parse_rule",
    "round_price",
    "signal_record",
]
