"""The ``sharewise`` command line: the composition root wiring core and adapters together.

Each command family lives in its own module here and exposes ``register(app)``;
:mod:`engine.cli.app` lists them in one place.
"""
