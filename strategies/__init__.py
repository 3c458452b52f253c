"""Built-in strategy plugins, one module each.

They register through the same ``sharewise.strategies`` entry point group as third-party plugins
(declared in pyproject.toml; see :mod:`engine.strategy.discovery`), so the core never imports them.
"""
