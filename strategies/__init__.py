"""Built-in strategy plugins, one module each (third-party ones arrive through the
``sharewise.strategies`` entry point group; see :mod:`engine.strategy.discovery`).

:data:`BUILTINS` maps each built-in's name to its ``module:Class`` reference,
the same spelling an entry point uses.
"""

BUILTINS: dict[str, str] = {
    "ema_cross": "strategies.ema_cross:EmaCross",
    "rsi_reversion": "strategies.rsi_reversion:RsiReversion",
    "macd_cross": "strategies.macd_cross:MacdCross",
    "bollinger_breakout": "strategies.bollinger_breakout:BollingerBreakout",
    "adx_trend": "strategies.adx_trend:AdxTrend",
    "donchian_breakout": "strategies.donchian_breakout:DonchianBreakout",
}
