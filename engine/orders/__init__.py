"""Orders in the pure core: execution settings, position rules, the risk gate, paper fills, charges and books.

Everything here is a pure function of signals and 1-minute bars in market time (docs/orders.md):
the order stage (streams.orders) and ``sharewise backtest`` drive the same classes.
"""
