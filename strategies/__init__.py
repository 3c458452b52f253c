"""Built-in strategy plugins (third-party ones arrive through the ``sharewise.strategies`` entry point group)."""
