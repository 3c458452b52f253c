"""``python -m engine.cli``: the same as the ``sharewise`` command."""

from engine.cli.app import main

main()
